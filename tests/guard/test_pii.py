from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.guard.pii import StreamRedactor, iban_valid, luhn_valid, redact, scan

SECRETS = {
    "openai_key": "sk-proj-Ab3dEf5gHi7jKl9mNo1pQr3sTu5vWx7y",
    "anthropic_key": "sk-ant-api03-Ab3dEf5gHi7jKl9mNo1pQr3sTu5",
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "github_token": "ghp_" + "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5",
    "slack_token": "xoxb-123456789012-abcdefABCDEF",
    "google_api_key": "AIza" + "Sy" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6q",
    "stripe_key": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "high_entropy": "Zq8vR2mK9xT4wL7nB3cF6hJ1pD5sG0yA",
    "credit_card": "4111 1111 1111 1111",
    "email": "jane.doe+billing@example.co.uk",
    "phone": "+1 415-555-0132",
    "iban": "GB82 WEST 1234 5698 7654 32",
}


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_each_kind_is_found_whole(kind: str) -> None:
    value = SECRETS[kind]
    text = f"here it is: {value} — thanks"
    spans = scan(text)
    assert [(s.kind, text[s.start : s.end]) for s in spans] == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",  # hex digest
        "id 123e4567-e89b-12d3-a456-426614174000",  # UUID
        "card 4111 1111 1111 1112",  # fails Luhn
        "IBAN GB82 WEST 1234 5698 7654 33",  # fails mod-97
        "released 2024-01-15, version 1.2.3, host 192.168.100.200",
        "a_very_long_snake_case_identifier_name_in_code = 1",
        "order number 12345",
    ],
)
def test_lookalikes_are_not_flagged(text: str) -> None:
    assert scan(text) == []


def test_checksums() -> None:
    assert luhn_valid("5500-0000-0000-0004") and not luhn_valid("0000 0000 0000 0000")
    assert iban_valid("DE89370400440532013000") and not iban_valid("DE89370400440532013001")


def test_redact_replaces_spans_with_their_kind() -> None:
    text = "mail jane@example.com or call +44 20 7946 0958"
    assert redact(text, scan(text)) == "mail [REDACTED:email] or call [REDACTED:phone]"


def _stream(text: str, size: int) -> str:
    redactor = StreamRedactor(lambda span: True)
    out = [redactor.feed(text[i : i + size]) for i in range(0, len(text), size)]
    return "".join(out) + redactor.finish()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 64])
def test_stream_redaction_equals_whole_text_redaction(size: int) -> None:
    text = " and ".join(f"{k}={v}" for k, v in SECRETS.items()) + " end."
    expected = redact(text, scan(text))
    streamed = _stream(text, size)
    assert streamed == expected
    for value in SECRETS.values():
        assert value not in streamed


def test_stream_releases_prose_a_token_behind() -> None:
    redactor = StreamRedactor(lambda span: True)
    assert redactor.feed("Hello") == ""  # the first token may still grow into a key
    assert redactor.feed(" there, how are yo") == "Hello there, how are "
    assert redactor.feed("u?") == ""
    assert redactor.finish() == "you?"


def test_stream_holds_a_number_that_may_continue_across_spaces() -> None:
    redactor = StreamRedactor(lambda span: True)
    assert redactor.feed("My card is 4111 1111 ") == "My card is "
    assert redactor.feed("1111 1111 thanks") == "[REDACTED:credit_card] "
    assert redactor.finish() == "thanks"


PROSE = ["the", "Order", "shipped", "to", "I", "ABC", "12", "-", "(555)", "on", "\n", "Call", "me"]


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.sampled_from(PROSE + list(SECRETS.values())), min_size=1, max_size=25),
    separators=st.lists(st.sampled_from([" ", "  ", "\n", ", ", "-", ""]), min_size=25),
    cuts=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=60),
)
def test_any_chunking_redacts_like_the_whole_text(
    parts: list[str], separators: list[str], cuts: list[int]
) -> None:
    text = "".join(p + sep for p, sep in zip(parts, separators, strict=False))
    redactor = StreamRedactor(lambda span: True)
    out, at = [], 0
    for size in cuts * (len(text) // max(1, sum(cuts)) + 1):
        if at >= len(text):
            break
        out.append(redactor.feed(text[at : at + size]))
        at += size
    out.append(redactor.feed(text[at:]) + redactor.finish())
    assert "".join(out) == redact(text, scan(text))


def test_stream_records_offsets_in_the_unredacted_stream() -> None:
    redactor = StreamRedactor(lambda span: span.kind == "email")
    text = "x" * 100 + " bob@example.com " + "y" * 100
    out = redactor.feed(text[:105]) + redactor.feed(text[105:]) + redactor.finish()
    assert "[REDACTED:email]" in out
    (span,) = redactor.spans
    assert text[span.start : span.end] == "bob@example.com"
