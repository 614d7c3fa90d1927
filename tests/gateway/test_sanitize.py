from __future__ import annotations

import pytest

from strata.errors import InvalidRequestError
from strata.gateway.sanitize import check_texts


@pytest.mark.parametrize(
    "text",
    [
        "family 👨\u200d👩\u200d👧 emoji keep their zero-width joiners",
        "می\u200cخواهم",  # Persian needs ZWNJ
        "def f(x):\n\treturn x\r\n",
        "हिन्दी",
    ],
)
def test_legitimate_text_passes(text: str) -> None:
    check_texts([("messages.0.content", text)])


@pytest.mark.parametrize(
    ("text", "codepoint"),
    [
        ("safe \u202e txt.exe", "U+202E"),
        ("isolate \u2066x\u2069", "U+2066"),
        ("hidden \U000e0049\U000e0067", "U+E0049"),
        ("bell \x07", "U+0007"),
        ("c1 \x85", "U+0085"),
    ],
)
def test_hiding_characters_are_refused_naming_the_field(text: str, codepoint: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_texts([("messages.0.content", "fine"), ("messages.1.content", text)])
    assert caught.value.param == "messages.1.content"
    assert codepoint in caught.value.message
