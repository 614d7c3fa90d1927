from __future__ import annotations

import pytest

from strata.errors import InvalidRequestError, PayloadTooLargeError
from strata.guard.sanitize import SizeLimits, normalize, sanitize

FAMILY = "👨\u200d👩\u200d👧"  # ZWJ sequence
PERSIAN = "می\u200cخواهم"  # needs ZWNJ
CODE = "for (i = 0; i < n; i++) {\n\tx[i] = '\\u202e';\r\n}"


def test_normalized_copy_folds_width_zero_width_and_homoglyphs() -> None:
    assert normalize("ＩＧＮＯＲＥ") == "IGNORE"
    assert normalize("ig\u200bno\u2060re") == "ignore"
    assert normalize("Іgnоrе аll") == "Ignore all"  # Cyrillic І, о, е, а
    assert normalize("ρrοmρt") == "prompt"  # Greek rho and omicron


def test_forwarded_text_keeps_emoji_scripts_and_code() -> None:
    report = sanitize([("messages.0.content", f"{FAMILY} {PERSIAN}\n{CODE}")])
    assert report.texts[0].forwarded == f"{FAMILY} {PERSIAN}\n{CODE}"
    assert not report.changed


def test_refuse_names_field_code_point_and_position() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        sanitize([("messages.0.content", "ok"), ("messages.1.content", "ab\u202ecd")])
    assert caught.value.param == "messages.1.content"
    assert caught.value.code == "invalid_characters"
    assert "U+202E" in caught.value.message and "position 2" in caught.value.message


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\U000e0041", "\x00", "\x1b", "\x85"])
def test_strip_removes_hidden_characters_and_reports_them(char: str) -> None:
    report = sanitize([("prompt", f"a{char}b{char}")], hidden="strip")
    assert report.texts[0].forwarded == "ab"
    assert report.texts[0].normalized == "ab"
    assert [(c.path, c.codepoint, c.count) for c in report.changes] == [("prompt", ord(char), 2)]


def test_tab_newline_carriage_return_pass() -> None:
    assert sanitize([("prompt", "a\tb\nc\r\n")]).texts[0].forwarded == "a\tb\nc\r\n"


def test_size_limits_name_the_field() -> None:
    limits = SizeLimits(max_field_chars=10, max_total_chars=15)
    with pytest.raises(PayloadTooLargeError) as caught:
        sanitize([("a", "x" * 5), ("b", "x" * 11)], limits=limits)
    assert caught.value.param == "b" and caught.value.status_code == 413
    with pytest.raises(PayloadTooLargeError):
        sanitize([("a", "x" * 8), ("b", "x" * 8)], limits=limits)
