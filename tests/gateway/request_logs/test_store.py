from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from strata.config import RequestLogSettings
from strata.errors import InvalidRequestError, NotFoundError
from strata.gateway.request_logs.entry import LogEntry, LogRedactor
from strata.gateway.request_logs.feedback import FeedbackBody, put_score
from strata.gateway.request_logs.service import RequestLogs
from strata.gateway.request_logs.store import (
    LogQuery,
    check_query,
    delete_tenant_logs,
    find,
    purge_expired,
    search,
)
from strata.gateway.request_logs.tenants import get_setting, list_settings, set_setting
from strata.store.database import Database

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _entry(n: int, **fields: Any) -> LogEntry:
    values: dict[str, Any] = {
        "request_id": f"req-{n}", "at": NOW - timedelta(minutes=n), "tenant": "acme",
        "user": "alice", "key_id": "k" * 12, "end_user": None, "session": None,
        "route": "/v1/chat/completions", "model": "m", "stream": False,
        "messages": (("user", f"question number {n}"),), "answer": f"answer number {n}",
        "truncated": False, "prompt_tokens": 3, "completion_tokens": 4, "cost_usd": 0.5,
        "ttft_ms": 10.0, "duration_ms": 20.0, "status": 200, "error_code": None, **fields,
    }  # fmt: skip
    return LogEntry(**values)


async def _write(database: Database, *entries: LogEntry) -> None:
    logs = RequestLogs(database.pool, RequestLogSettings(), LogRedactor())
    for entry in entries:
        logs.writer.record(entry)
    await logs.writer.flush()


async def _tenants(database: Database, *names: str) -> None:
    async with database.pool.connection() as conn:
        for name in names:
            await conn.execute("INSERT INTO tenants (name) VALUES (%s)", (name,))


def _ids(page: Any) -> list[str]:
    return [s.request_id for s in page.data]


async def test_search_filters_by_each_field_newest_first(pg_database: Database) -> None:
    await _write(
        pg_database,
        _entry(1, session="s-1", end_user="u-1"),
        _entry(2, session="s-1", user="bob"),
        _entry(3, tenant="other", session="s-1"),
        _entry(4, answer="Your refund policy covers 30 days", end_user="u-1"),
        _entry(5, messages=(("user", "Where is order 12345?"),)),
    )
    pool = pg_database.pool
    assert _ids(await search(pool, LogQuery())) == [f"req-{n}" for n in range(1, 6)]
    assert _ids(await search(pool, LogQuery(tenant="acme", session="s-1"))) == ["req-1", "req-2"]
    assert _ids(await search(pool, LogQuery(user="bob"))) == ["req-2"]
    assert _ids(await search(pool, LogQuery(end_user="u-1"))) == ["req-1", "req-4"]
    assert _ids(await search(pool, LogQuery(q='"refund policy"'))) == ["req-4"]
    assert _ids(await search(pool, LogQuery(q="order 12345"))) == ["req-5"]
    assert _ids(await search(pool, LogQuery(q="number -question"))) == ["req-5"]
    window = LogQuery(since=NOW - timedelta(minutes=3), until=NOW - timedelta(minutes=1))
    assert _ids(await search(pool, window)) == ["req-2", "req-3"]


async def test_search_pages_follow_the_cursor(pg_database: Database) -> None:
    await _write(pg_database, *(_entry(n) for n in range(7)))
    seen, cursor = [], None
    while True:
        page = await search(pg_database.pool, LogQuery(limit=3, cursor=cursor))
        seen += _ids(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"req-{n}" for n in range(7)]


def test_bad_queries_name_the_field() -> None:
    cases = {
        "limit": LogQuery(limit=0),
        "cursor": LogQuery(cursor="not-a-cursor"),
        "q": LogQuery(q="x" * 501),
        "since": LogQuery(since=NOW, until=NOW),
    }
    for field, query in cases.items():
        with pytest.raises(InvalidRequestError) as caught:
            check_query(query)
        assert caught.value.param == field


async def test_find_gives_the_newest_log_of_an_id_with_its_feedback(pg_database: Database) -> None:
    await _write(pg_database, _entry(1), _entry(9, request_id="req-1"), _entry(2, tenant="b"))
    body = FeedbackBody(request_id="req-1", score=1, name="thumbs", comment="good")
    await put_score(pg_database.pool, "acme", "k" * 12, body, "good")
    detail = await find(pg_database.pool, "req-1")
    assert detail.summary.created_at == NOW - timedelta(minutes=1)
    assert detail.messages == [{"role": "user", "content": "question number 1"}]
    assert detail.response == "answer number 1"
    assert [(f.name, f.score, f.comment) for f in detail.feedback] == [("thumbs", 1.0, "good")]
    assert detail.summary.scores == {"thumbs": 1.0}
    with pytest.raises(NotFoundError):
        await find(pg_database.pool, "req-2", tenant="acme")


async def test_purge_removes_only_rows_past_their_tenants_retention(pg_database: Database) -> None:
    await _tenants(pg_database, "acme", "brief")
    await set_setting(pg_database.pool, "brief", True, 7, actor="test")
    day = timedelta(days=1)
    await _write(
        pg_database,
        _entry(1, at=NOW - 40 * day),  # past the default 30 days
        _entry(2, at=NOW - 20 * day),
        _entry(3, at=NOW - 10 * day, tenant="brief"),  # past its own 7 days
        _entry(4, at=NOW - 5 * day, tenant="brief"),
        _entry(5, at=NOW - 31 * day, tenant="never-set"),
    )
    async with pg_database.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO request_log_feedback (tenant, request_id, name, score, key_id, created_at)"
            " VALUES ('acme', 'req-1', 's', 1, 'k', %s), ('acme', 'req-2', 's', 1, 'k', %s)",
            (NOW - 40 * day, NOW - 20 * day),
        )
    deleted = await purge_expired(pg_database.pool, 30, lambda: NOW, batch=1)
    assert deleted == 4
    assert sorted(_ids(await search(pg_database.pool, LogQuery()))) == ["req-2", "req-4"]
    assert (await find(pg_database.pool, "req-2")).summary.scores == {"s": 1.0}


async def test_deleting_a_tenants_logs_leaves_the_others(pg_database: Database) -> None:
    await _write(pg_database, _entry(1), _entry(2), _entry(3, tenant="keep"))
    await put_score(pg_database.pool, "acme", "k", FeedbackBody(request_id="req-1", score=0), None)
    assert await delete_tenant_logs(pg_database.pool, "acme") == (2, 1)
    assert _ids(await search(pg_database.pool, LogQuery())) == ["req-3"]


async def test_settings_are_per_existing_tenant_and_audited(pg_database: Database) -> None:
    await _tenants(pg_database, "acme")
    pool = pg_database.pool
    assert (await get_setting(pool, "acme")).enabled is False
    await set_setting(pool, "acme", True, None, actor="admin-key")
    off = await set_setting(pool, "acme", False, 14, actor="admin-key")
    assert (off.enabled, off.retention_days) == (False, 14)
    assert [(s.tenant, s.enabled) for s in await list_settings(pool)] == [("acme", False)]
    with pytest.raises(NotFoundError):
        await set_setting(pool, "nobody", True, None, actor="x")
    with pytest.raises(InvalidRequestError) as caught:
        await set_setting(pool, "acme", True, 0, actor="x")
    assert caught.value.param == "retention_days"
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT actor, action, target FROM audit_log ORDER BY id")
        assert await cursor.fetchall() == [
            ("admin-key", "request_logs.enable", "acme"),
            ("admin-key", "request_logs.disable", "acme"),
        ]
