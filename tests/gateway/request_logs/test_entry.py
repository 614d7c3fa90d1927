from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from strata.gateway.request_logs.entry import (
    COLUMNS,
    TRUNCATED,
    LogEntry,
    LogRedactor,
    RowMaker,
)
from strata.guard import Canary

OPENAI_KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8t"
EMAIL = "jane.doe@example.com"


def _entry(**fields: Any) -> LogEntry:
    values: dict[str, Any] = {
        "request_id": "req-1", "at": datetime(2025, 3, 1, tzinfo=UTC), "tenant": "acme",
        "user": "alice", "key_id": "k" * 12, "end_user": None, "session": None,
        "route": "/v1/chat/completions", "model": "m", "stream": False,
        "messages": (("user", "hi"),), "answer": "hello", "truncated": False,
        "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 0.0, "ttft_ms": None,
        "duration_ms": 1.0, "status": 200, "error_code": None, **fields,
    }  # fmt: skip
    return LogEntry(**values)


def test_secrets_pii_and_the_canary_are_redacted_whatever_the_policy() -> None:
    canary = Canary.random()
    text = f"key {OPENAI_KEY}, mail {EMAIL}, marker {canary.token}, card 4111 1111 1111 1111"
    redacted = LogRedactor(canary)(text)
    for raw in (OPENAI_KEY, EMAIL, canary.token, "4111 1111 1111 1111"):
        assert raw not in redacted
    assert "[REDACTED:openai_key]" in redacted and "[REDACTED:email]" in redacted
    assert "[REDACTED:canary]" in redacted and "[REDACTED:credit_card]" in redacted


def test_a_row_has_every_column_with_redacted_texts() -> None:
    row = RowMaker(LogRedactor(), 1000).row(
        _entry(messages=(("user", f"my key is {OPENAI_KEY}"),), answer=f"write to {EMAIL}")
    )
    values = dict(zip(COLUMNS, row, strict=True))
    redacted = "my key is [REDACTED:openai_key]"
    assert values["messages"].obj == [{"role": "user", "content": redacted}]
    assert values["response"] == "write to [REDACTED:email]"
    assert values["truncated"] is False and len(values["id"]) == 32


def test_texts_are_cut_after_redaction_so_no_secret_is_half_kept() -> None:
    maker = RowMaker(LogRedactor(), 100)
    text, cut = maker.text("x" * 90 + " " + OPENAI_KEY + " and more words after it", 100)
    assert cut and text.endswith(TRUNCATED)
    assert "sk-proj" not in text and "Ab3dEf" not in text  # the marker may be cut, never the key


def test_the_prompt_budget_goes_to_the_newest_messages_first() -> None:
    maker = RowMaker(LogRedactor(), 100)
    row = dict(zip(COLUMNS, maker.row(_entry(messages=(("system", "s" * 80), ("user", "u" * 80)))),
                   strict=True))  # fmt: skip
    system, user = row["messages"].obj
    assert user["content"] == "u" * 80
    assert system["content"] == "s" * 20 + TRUNCATED and row["truncated"]


def test_nul_characters_are_made_storable() -> None:
    text, _ = RowMaker(LogRedactor(), 100).text("a\x00b", 100)
    assert text == "a\ufffdb"
