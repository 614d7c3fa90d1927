"""Reading, searching and deleting request logs in PostgreSQL.

Search is keyset-paginated, newest first: the cursor is the last row's (created_at, id),
opaque to callers. `q` is PostgreSQL full-text search (`websearch_to_tsquery`, 'simple'
configuration: words, "quoted phrases", `or`, `-not`) over the messages and the answer, on a
GIN index. Logs are stored redacted, so a search for a redacted e-mail address finds nothing;
`[REDACTED:email]` marks where one was.

Retention: a log (and a feedback score) is deleted once older than its tenant's
`retention_days`, else `request_logs.retention_days`; `purge_batch` deletes one small batch
(rows locked by another replica's purge are skipped), so a purge never holds long locks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from strata.errors import InvalidRequestError, NotFoundError
from strata.store.database import Pool

MAX_LIMIT = 200
MAX_QUERY_CHARS = 500
PREVIEW_CHARS = 200
DELETE_BATCH = 1000
PURGE_BATCH = 1000


@dataclass(frozen=True)
class LogQuery:
    """A search; every filter is optional. `until` is exclusive; both are timezone-aware."""

    tenant: str | None = None
    user: str | None = None  # the key's strata user
    end_user: str | None = None  # OpenAI's `user` field
    session: str | None = None
    q: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class Feedback:
    name: str
    score: float
    comment: str | None
    key_id: str
    created_at: datetime


@dataclass(frozen=True)
class LogSummary:
    """One log in a search result: everything but the full texts (previews instead)."""

    request_id: str
    created_at: datetime
    tenant: str
    user: str
    key_id: str
    end_user: str | None
    session: str | None
    route: str
    model: str
    stream: bool
    status: int
    error_code: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    ttft_ms: float | None
    duration_ms: float
    truncated: bool
    prompt_preview: str  # the start of the last message
    response_preview: str
    scores: dict[str, float]  # feedback name -> score


@dataclass(frozen=True)
class LogPage:
    data: list[LogSummary]
    next_cursor: str | None  # None: this was the last page


@dataclass(frozen=True)
class LogDetail:
    """One log in full, with its feedback."""

    summary: LogSummary
    messages: list[dict[str, str]]  # [{"role", "content"}], redacted
    response: str
    feedback: list[Feedback] = field(default_factory=list)


_SUMMARY = f"""
SELECT l.id, l.request_id, l.created_at, l.tenant, l.user_name, l.key_id, l.end_user,
       l.session_id, l.route, l.model, l.stream, l.status, l.error_code, l.prompt_tokens,
       l.completion_tokens, l.cost_usd, l.ttft_ms, l.duration_ms, l.truncated,
       left(coalesce(l.messages -> -1 ->> 'content', ''), {PREVIEW_CHARS}) AS prompt_preview,
       left(l.response, {PREVIEW_CHARS}) AS response_preview,
       (SELECT coalesce(jsonb_object_agg(f.name, f.score), '{{}}') FROM request_log_feedback f
        WHERE f.tenant = l.tenant AND f.request_id = l.request_id) AS scores
"""


async def search(pool: Pool, query: LogQuery) -> LogPage:
    """One page of logs matching `query`, newest first."""
    where, params = _filters(query)
    statement = (
        sql.SQL(_SUMMARY + " FROM request_logs l WHERE ")
        + sql.SQL(" AND ").join(where)
        + sql.SQL(" ORDER BY l.created_at DESC, l.id DESC LIMIT %(limit)s")
    )
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, {**params, "limit": query.limit + 1})
        rows = await cur.fetchall()
    page = [_summary(r) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    return LogPage(page, _cursor(rows[query.limit - 1]) if more else None)


def check_query(query: LogQuery) -> LogQuery:
    """`query` if its limit, text and window make sense; else a 400 naming the field."""
    if not 1 <= query.limit <= MAX_LIMIT:
        raise InvalidRequestError(
            f"limit must be 1-{MAX_LIMIT} (got {query.limit}).", param="limit"
        )
    if query.q is not None and len(query.q) > MAX_QUERY_CHARS:
        raise InvalidRequestError(f"q must be at most {MAX_QUERY_CHARS} characters.", param="q")
    if query.since and query.until and query.since >= query.until:
        raise InvalidRequestError("since must be before until.", param="since")
    if query.cursor is not None:
        _decode_cursor(query.cursor)
    return query


def _filters(query: LogQuery) -> tuple[list[sql.Composable], dict[str, Any]]:
    columns = {"tenant": "l.tenant", "user": "l.user_name", "end_user": "l.end_user",
               "session": "l.session_id"}  # fmt: skip
    where: list[sql.Composable] = [sql.SQL("true")]
    params: dict[str, Any] = {}
    for name, column in columns.items():
        if getattr(query, name) is not None:
            where.append(sql.SQL(f"{column} = %({name})s"))
            params[name] = getattr(query, name)
    if query.q and query.q.strip():
        where.append(sql.SQL("l.search @@ websearch_to_tsquery('simple', %(q)s)"))
        params["q"] = query.q
    if query.since is not None:
        where.append(sql.SQL("l.created_at >= %(since)s"))
        params["since"] = query.since
    if query.until is not None:
        where.append(sql.SQL("l.created_at < %(until)s"))
        params["until"] = query.until
    if query.cursor is not None:
        where.append(sql.SQL("(l.created_at, l.id) < (%(c_at)s, %(c_id)s)"))
        params["c_at"], params["c_id"] = _decode_cursor(query.cursor)
    return where, params


def _cursor(row: Mapping[str, Any]) -> str:
    raw = f"{row['created_at'].isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, row_id = raw.split("|")
        return datetime.fromisoformat(at), uuid.UUID(row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequestError(
            "cursor is not one this API returned; pass next_cursor from the previous page.",
            param="cursor",
        ) from exc


async def find(pool: Pool, request_id: str, tenant: str | None = None) -> LogDetail:
    """The newest log with this request id (of `tenant`), with its feedback; 404 if none."""
    statement = (
        _SUMMARY + ", l.messages, l.response FROM request_logs l "
        "WHERE l.request_id = %(rid)s AND (%(tenant)s::text IS NULL OR l.tenant = %(tenant)s) "
        "ORDER BY l.created_at DESC, l.id DESC LIMIT 1"
    )
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, {"rid": request_id, "tenant": tenant})
        row = await cur.fetchone()
        if row is None:
            raise NotFoundError(
                f"No request log with request id {request_id!r}"
                + (f" for tenant {tenant!r}." if tenant else "."),
                code="log_not_found",
                param="request_id",
            )
        await cur.execute(_FEEDBACK_SQL, (row["tenant"], request_id))
        feedback = [Feedback(**f) for f in await cur.fetchall()]
    return LogDetail(_summary(row), row["messages"], row["response"], feedback)


_FEEDBACK_SQL = (
    "SELECT name, score, comment, key_id, created_at FROM request_log_feedback "
    "WHERE tenant = %s AND request_id = %s ORDER BY name"
)


async def exists(pool: Pool, tenant: str, request_id: str) -> bool:
    """Whether `tenant` has a stored log with this request id."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT 1 FROM request_logs WHERE request_id = %s AND tenant = %s LIMIT 1",
            (request_id, tenant),
        )
        return await cursor.fetchone() is not None


def _summary(row: Mapping[str, Any]) -> LogSummary:
    return LogSummary(
        row["request_id"], row["created_at"], row["tenant"], row["user_name"], row["key_id"],
        row["end_user"], row["session_id"], row["route"], row["model"], row["stream"],
        row["status"], row["error_code"], row["prompt_tokens"], row["completion_tokens"],
        float(row["cost_usd"]), row["ttft_ms"], row["duration_ms"], row["truncated"],
        row["prompt_preview"], row["response_preview"],
        {k: float(v) for k, v in row["scores"].items()},
    )  # fmt: skip


# -- retention and deletion ---------------------------------------------------------------------


async def purge_batch(pool: Pool, default_days: int, now: datetime, batch: int) -> tuple[int, int]:
    """Delete up to `batch` logs and `batch` feedback scores past their tenant's retention, in
    one transaction: (logs, scores) deleted; fewer than `batch` of each: nothing more is due."""
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT min(retention_days) FROM request_log_tenants")
        row = await cursor.fetchone()
        shortest = min(default_days, row[0] if row and row[0] else default_days)
        params = {"default": default_days, "now": now, "batch": batch,
                  "oldest": now - timedelta(days=shortest)}  # fmt: skip
        logs = await conn.execute(_PURGE_LOGS_SQL, params)
        scores = await conn.execute(_PURGE_FEEDBACK_SQL, params)
        return logs.rowcount, scores.rowcount


async def purge_expired(
    pool: Pool, default_days: int, clock: Callable[[], datetime], batch: int = PURGE_BATCH
) -> int:
    """Delete every log and score past its retention, batch by batch; how many went."""
    deleted = 0
    while True:
        logs, scores = await purge_batch(pool, default_days, clock(), batch)
        deleted += logs + scores
        if max(logs, scores) < batch:
            return deleted
        await asyncio.sleep(0)  # other work runs between batches


# `oldest` (the shortest retention anywhere) lets the created_at index narrow the scan first.
_PURGE_TEMPLATE = """
WITH doomed AS (
    SELECT {x_key} FROM {table} x LEFT JOIN request_log_tenants t ON t.tenant = x.tenant
    WHERE x.created_at < %(oldest)s
      AND x.created_at < %(now)s - make_interval(days => coalesce(t.retention_days, %(default)s))
    ORDER BY x.created_at
    LIMIT %(batch)s
    FOR UPDATE OF x SKIP LOCKED
)
DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM doomed)
"""
_PURGE_LOGS_SQL = _PURGE_TEMPLATE.format(table="request_logs", key="id", x_key="x.id")
_PURGE_FEEDBACK_SQL = _PURGE_TEMPLATE.format(
    table="request_log_feedback",
    key="tenant, request_id, name",
    x_key="x.tenant, x.request_id, x.name",
)


async def delete_tenant_logs(pool: Pool, tenant: str) -> tuple[int, int]:
    """Every log and feedback score of `tenant`, in batches: (logs, scores) deleted."""
    logs = 0
    while True:
        async with pool.connection() as conn:
            cursor = await conn.execute(_DELETE_TENANT_SQL, (tenant, DELETE_BATCH))
        logs += cursor.rowcount
        if cursor.rowcount < DELETE_BATCH:
            break
    async with pool.connection() as conn:
        cursor = await conn.execute("DELETE FROM request_log_feedback WHERE tenant = %s", (tenant,))
    return logs, cursor.rowcount


_DELETE_TENANT_SQL = (
    "DELETE FROM request_logs WHERE id IN (SELECT id FROM request_logs WHERE tenant = %s LIMIT %s)"
)


def utc(moment: datetime | None) -> datetime | None:
    """A naive time read as UTC; an aware one unchanged."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
