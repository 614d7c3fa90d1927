"""The usage ledger: one row per finished gateway request, written in batches, and its reports.

`LedgerWriter.record` is the hot path: it appends to an in-memory buffer and returns, with no
await and no I/O. A background task writes the buffer every `gateway.ledger_flush_ms` in
batches, one `INSERT ... SELECT FROM unnest(...)` statement each. A failed write is logged and
the same batch retried (with backoff) on the next tick; each row carries a uuid assigned when
its batch is formed, so a batch whose commit was lost in transit and is written again is not
counted twice. `aclose()` writes everything still buffered, so a clean shutdown loses nothing.

While the database is unreachable the buffer is bounded (`max_buffered` records, default
100,000, i.e. tens of MB): beyond that the oldest buffered records are dropped and counted
(`dropped`), and the flush loop logs the count at ERROR. Dropping the oldest keeps the rows
the limiter and reports most care about (the current period's) when the outage ends.

`usage_report` and `period_usage` read the ledger back: the first for `strata usage report`,
the second to seed the limiter's daily and monthly counters at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, get_args

import psycopg

from strata.errors import InvalidRequestError
from strata.gateway.principal import ScopeKind
from strata.store.database import Pool

logger = logging.getLogger(__name__)

MAX_BATCH = 5_000  # rows per INSERT
MAX_BACKOFF_S = 10.0
CLOSE_ATTEMPTS = 3
CONNECT_TIMEOUT_S = 5.0  # waiting for a pooled connection; the pool's default is 30 s


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecord:
    """One finished request, as the ledger stores it. `at` is timezone-aware (UTC)."""

    request_id: str  # the x-request-id; callers may reuse one, so it is not unique
    at: datetime
    tenant: str
    user: str
    key_id: str
    model: str
    upstream: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    status: int = 200
    error_code: str | None = None
    cost_usd: float = 0.0
    guard_score: float | None = None  # highest injection probability the guard gave
    guard_flags: str | None = None  # its findings, `detector:kind:action`, comma-separated


_COLUMNS = (
    "id", "request_id", "at", "tenant", "user_name", "key_id", "model", "upstream",
    "prompt_tokens", "completion_tokens", "cached_tokens", "ttft_ms", "duration_ms", "status",
    "error_code", "cost_usd", "guard_score", "guard_flags",
)  # fmt: skip
# COPY is the cheapest way in, for the gateway (one text payload, no per-value adaptation on
# the event loop) and for PostgreSQL. A batch is one transaction with ids fixed when it formed,
# so a batch re-sent after a commit whose answer was lost fails on the primary key as a whole:
# that failure means "already written", and nothing is counted twice.
_COPY_SQL = f"COPY usage_ledger ({', '.join(_COLUMNS)}) FROM STDIN"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
ROWS_PER_SLICE = 32  # formatting yields to the event loop this often: no long pauses


def _text(value: str | None) -> str:
    """A value in COPY's text format: NULL as \\N, separators escaped."""
    if value is None:
        return "\\N"
    return value.translate(_ESCAPES) if _NEEDS_ESCAPE.search(value) else value


def _number(value: float | None) -> str:
    return "\\N" if value is None else repr(value)


def _copy_line(row_id: str, r: UsageRecord) -> str:
    return "\t".join(
        (
            row_id, _text(r.request_id), r.at.isoformat(), _text(r.tenant), _text(r.user),
            _text(r.key_id), _text(r.model), _text(r.upstream), str(r.prompt_tokens),
            str(r.completion_tokens), str(r.cached_tokens), _number(r.ttft_ms),
            _number(r.duration_ms), str(r.status), _text(r.error_code), repr(r.cost_usd),
            _number(r.guard_score), _text(r.guard_flags),
        )
    ) + "\n"  # fmt: skip


@dataclass(frozen=True)
class _Batch:
    """Rows written (and retried) together: their COPY payload, ids fixed at formation."""

    size: int
    payload: bytes

    @classmethod
    def of(cls, records: list[UsageRecord]) -> _Batch:
        lines = "".join(_copy_line(row_id(r.at), r) for r in records)
        return cls(len(records), lines.encode())

    @classmethod
    async def formed(cls, records: list[UsageRecord]) -> _Batch:
        """`of`, yielding to the event loop between slices so requests keep flowing."""
        parts = []
        for start in range(0, len(records), ROWS_PER_SLICE):
            parts.append(cls.of(records[start : start + ROWS_PER_SLICE]).payload)
            await asyncio.sleep(0)
        return cls(len(records), b"".join(parts))


def row_id(at: datetime) -> str:
    """A UUIDv7 (RFC 9562: 48 bits of Unix milliseconds, then random bits, so ids sort by
    time and the primary key grows at its right edge) as 32 hex digits, which PostgreSQL
    reads as a uuid; built without a UUID object, since a ledger batch makes thousands."""
    return f"{_uuid7_int(at):032x}"


def _uuid7_int(at: datetime) -> int:
    millis = int(at.timestamp() * 1000) & (2**48 - 1)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    return (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant


class LedgerWriter:
    """Buffers usage records and writes them to `usage_ledger` in the background.

    `record` may be called from the event loop's thread at any time, before `start()` too.
    `start()` needs a running event loop; `aclose()` stops the task and writes the rest.
    """

    def __init__(self, pool: Pool, *, flush_interval_s: float, max_buffered: int = 100_000) -> None:
        assert flush_interval_s > 0 and max_buffered > 0
        self._pool = pool
        self._interval_s = flush_interval_s
        self._max_buffered = max_buffered
        self._buffer: deque[UsageRecord] = deque()
        self._pending: _Batch | None = None  # formed, not yet committed
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._writing = asyncio.Lock()  # one writer of `_pending` at a time
        self._failures = 0
        self.dropped = 0  # records dropped because the buffer was full
        self._dropped_logged = 0
        self.written = 0  # rows committed by this writer

    @property
    def buffered(self) -> int:
        """Records not yet committed."""
        return len(self._buffer) + (self._pending.size if self._pending else 0)

    def record(self, rec: UsageRecord) -> None:
        """Queue one row; never blocks, never raises, never logs (the flush loop reports)."""
        if len(self._buffer) >= self._max_buffered:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(rec)

    def start(self) -> None:
        assert self._task is None, "LedgerWriter.start() twice"
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def flush(self) -> None:
        """Write what is buffered when it is called; raises what the database raised.
        Records arriving meanwhile wait for the next flush, so a busy gateway writes one
        batch per interval instead of a stream of tiny ones."""
        async with self._writing:
            left = len(self._buffer)
            while self._pending is not None or left > 0:
                if self._pending is None:
                    self._pending = await _Batch.formed(self._take(min(MAX_BATCH, left)))
                    left = min(left - self._pending.size, len(self._buffer))
                await self._write(self._pending)
                self.written += self._pending.size
                self._pending = None

    async def aclose(self) -> None:
        """Stop the background task and write what is left (a few attempts; what still
        cannot be written is logged as lost)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        for attempt in range(CLOSE_ATTEMPTS):
            if await self._flush_logged():
                return
            await asyncio.sleep(0.2 * 2**attempt)
        logger.error("usage ledger: %d records could not be written and are lost", self.buffered)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._delay_s())
            if not self._stopping.is_set():
                await self._flush_logged()

    def _delay_s(self) -> float:
        backoff = self._interval_s * 2 ** min(self._failures, 16)
        return min(backoff, max(MAX_BACKOFF_S, self._interval_s))

    async def _flush_logged(self) -> bool:
        """`flush`, turning a failure into a log line; True when everything was written."""
        self._report_drops()
        try:
            await self.flush()
        except Exception as exc:  # the database may fail in any way; never crash the gateway
            self._failures += 1
            logger.warning(
                "usage ledger: write failed (%d records waiting, attempt %d): %s",
                self.buffered,
                self._failures,
                exc,
            )
            return False
        self._failures = 0
        return True

    def _report_drops(self) -> None:
        if self.dropped > self._dropped_logged:
            logger.error(
                "usage ledger: buffer full (%d records), dropped %d oldest records so far",
                self._max_buffered,
                self.dropped,
            )
            self._dropped_logged = self.dropped

    def _take(self, most: int) -> list[UsageRecord]:
        return [self._buffer.popleft() for _ in range(min(most, len(self._buffer)))]

    async def _write(self, batch: _Batch) -> None:
        try:
            async with (
                self._pool.connection(timeout=CONNECT_TIMEOUT_S) as conn,
                conn.cursor() as cur,
                cur.copy(_COPY_SQL) as copy,
            ):
                await copy.write(batch.payload)
        except psycopg.errors.UniqueViolation:
            logger.info("usage ledger: a re-sent batch of %d was already written", batch.size)


# -- reading the ledger back --------------------------------------------------------------------

ReportBy = Literal["user", "tenant", "key", "model"]
_GROUP_BY: dict[str, str] = {
    "user": "tenant || '/' || user_name",
    "tenant": "tenant",
    "key": "key_id",
    "model": "model",
}


@dataclass(frozen=True)
class UsageRow:
    """One line of a usage report; shares are fractions (0..1) of the period's totals."""

    key: str  # the user ("tenant/user"), tenant, key id or model
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cost_share: float
    token_share: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class PeriodUsage:
    """Tokens (prompt + completion) and cost of one limiter scope in the current UTC day and
    month; scope ids as in `Principal.scopes()`: key id, "tenant/user", tenant name."""

    kind: ScopeKind
    id: str
    day_tokens: int
    day_cost_usd: float
    month_tokens: int
    month_cost_usd: float


async def usage_report(
    pool: Pool, by: str, top: int, since: datetime | None = None
) -> list[UsageRow]:
    """The `top` biggest spenders grouped `by` user, tenant, key or model since `since`
    (default: all time), by cost then tokens; shares are of everything in the period."""
    _check_by(by)
    if top < 1:
        raise InvalidRequestError(f"top must be at least 1 (got {top}).", param="top")
    query = _REPORT_SQL.format(group=_GROUP_BY[by])
    async with pool.connection() as conn:
        cursor = await conn.execute(query, {"since": since, "top": top})
        return [_usage_row(row) for row in await cursor.fetchall()]


def _check_by(by: str) -> None:
    if by not in get_args(ReportBy):
        raise InvalidRequestError(
            f"by must be one of {', '.join(get_args(ReportBy))} (got {by!r}).", param="by"
        )


_REPORT_SQL = """
SELECT {group} AS key, count(*) AS requests,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cost_usd) AS cost_usd,
       coalesce(sum(cost_usd) / nullif(sum(sum(cost_usd)) OVER (), 0), 0) AS cost_share,
       coalesce(sum(prompt_tokens + completion_tokens)::numeric
                / nullif(sum(sum(prompt_tokens + completion_tokens)) OVER (), 0), 0)
           AS token_share
FROM usage_ledger
WHERE %(since)s::timestamptz IS NULL OR at >= %(since)s
GROUP BY 1
ORDER BY cost_usd DESC, sum(prompt_tokens + completion_tokens) DESC, key
LIMIT %(top)s
"""


def _usage_row(row: tuple[Any, ...]) -> UsageRow:
    key, requests, prompt, completion, cost, cost_share, token_share = row
    return UsageRow(
        key, requests, int(prompt), int(completion), float(cost), float(cost_share),
        float(token_share),
    )  # fmt: skip


TOP_FRACTIONS = (0.01, 0.05, 0.10, 0.20)


class TopShare(NamedTuple):
    """The biggest `fraction` of scopes (`scopes` of them) and their shares of the period."""

    fraction: float
    scopes: int
    cost_share: float
    token_share: float


class CostQuantiles(NamedTuple):
    """Cost per request in US dollars."""

    p50: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True)
class Concentration:
    """How unevenly usage is spread: what share the biggest users (or tenants, keys, models)
    take, and the distribution of cost per request."""

    by: str
    scopes: int
    top: tuple[TopShare, ...]
    cost_per_request: CostQuantiles


async def concentration(pool: Pool, by: str, since: datetime | None = None) -> Concentration:
    """The concentration curve ("the top 5% of users = X% of cost") over the period."""
    _check_by(by)
    async with pool.connection() as conn:
        cursor = await conn.execute(_PER_SCOPE_SQL.format(group=_GROUP_BY[by]), {"since": since})
        per_scope = [(float(c), int(t)) for c, t in await cursor.fetchall()]
        cursor = await conn.execute(_COST_PER_REQUEST_SQL, {"since": since})
        row = await cursor.fetchone()
    quantiles = CostQuantiles(*(float(v or 0) for v in (row or (0, 0, 0, 0))))
    return Concentration(by, len(per_scope), _top_shares(per_scope), quantiles)


def _top_shares(per_scope: list[tuple[float, int]]) -> tuple[TopShare, ...]:
    """`per_scope` is (cost, tokens) sorted by cost then tokens, biggest first."""
    total_cost = sum(c for c, _ in per_scope) or 1.0
    total_tokens = sum(t for _, t in per_scope) or 1
    shares = []
    for fraction in TOP_FRACTIONS:
        n = max(1, round(fraction * len(per_scope))) if per_scope else 0
        top = per_scope[:n]
        cost, tokens = sum(c for c, _ in top), sum(t for _, t in top)
        shares.append(TopShare(fraction, n, cost / total_cost, tokens / total_tokens))
    return tuple(shares)


_PER_SCOPE_SQL = """
SELECT sum(cost_usd), sum(prompt_tokens + completion_tokens)
FROM usage_ledger
WHERE %(since)s::timestamptz IS NULL OR at >= %(since)s
GROUP BY {group}
ORDER BY 1 DESC, 2 DESC
"""
_COST_PER_REQUEST_SQL = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY cost_usd),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY cost_usd),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY cost_usd),
       max(cost_usd)
FROM usage_ledger
WHERE %(since)s::timestamptz IS NULL OR at >= %(since)s
"""


def period_starts(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The start of the current UTC day and UTC calendar month."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


async def period_usage(pool: Pool, since_day: datetime, since_month: datetime) -> list[PeriodUsage]:
    """Per key, user and tenant: tokens and cost since `since_day` and since `since_month`
    (normally `period_starts()`), from one scan of the month's rows."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            _PERIOD_SQL, {"day": since_day, "month": min(since_day, since_month)}
        )
        return [_period_usage(row) for row in await cursor.fetchall()]


_PERIOD_SQL = """
SELECT CASE WHEN GROUPING(key_id) = 0 THEN 'key'
            WHEN GROUPING(user_name) = 0 THEN 'user' ELSE 'tenant' END AS kind,
       CASE WHEN GROUPING(key_id) = 0 THEN key_id
            WHEN GROUPING(user_name) = 0 THEN tenant || '/' || user_name ELSE tenant END AS id,
       coalesce(sum(prompt_tokens + completion_tokens) FILTER (WHERE at >= %(day)s), 0),
       coalesce(sum(cost_usd) FILTER (WHERE at >= %(day)s), 0),
       sum(prompt_tokens + completion_tokens),
       sum(cost_usd)
FROM usage_ledger
WHERE at >= %(month)s
GROUP BY GROUPING SETS ((key_id), (tenant, user_name), (tenant))
ORDER BY 1, 2
"""


def _period_usage(row: tuple[Any, ...]) -> PeriodUsage:
    kind, scope_id, day_tokens, day_cost, month_tokens, month_cost = row
    return PeriodUsage(
        kind, scope_id, int(day_tokens), float(day_cost), int(month_tokens), float(month_cost)
    )
