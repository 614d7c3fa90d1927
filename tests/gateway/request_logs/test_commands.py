from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import Result

from strata.config import RequestLogSettings, Settings
from strata.gateway.admin_commands import tenants_app
from strata.gateway.request_logs.commands import logs_app
from strata.gateway.request_logs.entry import LogEntry, LogRedactor
from strata.gateway.request_logs.service import RequestLogs
from strata.store.database import Database
from tests.gateway.request_logs.support import EMAIL
from tests.support.cli import ok, store_cli

app = typer.Typer()  # registered the way strata.cli registers them
app.add_typer(tenants_app, name="tenants")
app.add_typer(logs_app, name="logs")


@pytest.fixture
def cli(pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.chdir(tmp_path)  # no ./strata.yaml
    return store_cli(app, pg_dsn, tmp_path)


def _write(settings: Settings, *entries: LogEntry) -> None:
    async def write() -> None:
        async with Database(settings, pool_size=1) as db:
            logs = RequestLogs(db.pool, RequestLogSettings(), LogRedactor())
            for entry in entries:
                logs.writer.record(entry)
            await logs.writer.flush()

    asyncio.run(write())


def _entry(n: int, **fields: Any) -> LogEntry:
    values: dict[str, Any] = {
        "request_id": f"req-{n}", "at": datetime.now(UTC) - timedelta(minutes=n),
        "tenant": "acme", "user": "alice", "key_id": "k" * 12, "end_user": "u-1",
        "session": "s-1", "route": "/v1/chat/completions", "model": "m", "stream": False,
        "messages": (("user", f"question {n} from {EMAIL}"),), "answer": f"answer {n}",
        "truncated": False, "prompt_tokens": 3, "completion_tokens": 4, "cost_usd": 0.5,
        "ttft_ms": 10.0, "duration_ms": 20.0, "status": 200, "error_code": None, **fields,
    }  # fmt: skip
    return LogEntry(**values)


def test_enable_disable_and_list_tenants(cli: Any) -> None:
    missing = cli("logs", "enable", "acme")
    assert missing.exit_code == 1 and "No tenant 'acme'" in missing.output
    ok(cli("tenants", "create", "acme"))
    assert "on for tenant acme (retention 14 days)" in ok(
        cli("logs", "enable", "acme", "--retention-days", "14")
    )
    assert "off for tenant acme (retention 14 days)" in ok(cli("logs", "disable", "acme"))
    listed = json.loads(ok(cli("logs", "tenants", "--json")))
    assert [(t["tenant"], t["enabled"], t["retention_days"]) for t in listed] == [
        ("acme", False, 14)
    ]
    assert cli("logs", "enable", "acme", "--retention-days", "0").exit_code == 2


def test_search_show_delete_and_purge(cli: Any, pg_settings: Settings) -> None:
    old = datetime.now(UTC) - timedelta(days=40)
    stale = _entry(3, at=old, tenant="b", session=None)
    _write(pg_settings, _entry(1), _entry(2, session="s-2"), stale)
    found = json.loads(ok(cli("logs", "search", "--session", "s-1", "--json")))
    assert [r["request_id"] for r in found["data"]] == ["req-1"]
    table = ok(cli("logs", "search", "-q", "question", "--limit", "1"))
    assert "REQUEST ID" in table and "req-1" in table and "more: --cursor" in table
    shown = ok(cli("logs", "show", "req-2"))
    assert "[user] question 2 from [REDACTED:email]" in shown and "[answer] answer 2" in shown
    assert cli("logs", "show", "req-404").exit_code == 1
    assert cli("logs", "search", "--cursor", "garbage").exit_code == 2
    assert "Purged 1 rows" in ok(cli("logs", "purge"))
    assert "Deleted 2 logs and 0 feedback scores" in ok(cli("logs", "delete", "--tenant", "acme"))
    assert json.loads(ok(cli("logs", "search", "--json")))["data"] == []
