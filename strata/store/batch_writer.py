"""Rows written off the hot path: buffered in memory, COPYed into one table in batches.

The pattern of the usage ledger (`strata.gateway.ledger.LedgerWriter`), for any table:
`record(item)` appends to a bounded buffer and returns (no await, no I/O, never raises); a
background task turns what is buffered into rows (`form`, which may take its time: it runs
in the flush, never in a request) every `flush_interval_s` and COPYs them, one transaction
per batch. The rows of a batch are formed once and kept until committed, with the ids `form`
gave them: a batch re-sent after a commit whose answer was lost fails on the primary key as a
whole; such a batch is then written row by row, skipping the rows already there. A failed
write is logged and retried with backoff.

A row the database refuses (a `DataError`: a value it cannot store) would fail its batch
forever; such a batch is written row by row too, and the refused rows are dropped and
counted. While the database is unreachable the buffer holds at most `max_buffered` items;
beyond that the oldest are dropped and counted. `aclose()` writes what is left.

This module knows nothing of what the rows hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import sql

from strata.store.database import Pool

logger = logging.getLogger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]
Form = Callable[[list[T]], Awaitable[list[Row]]]

MAX_BACKOFF_S = 10.0
CLOSE_ATTEMPTS = 3
CONNECT_TIMEOUT_S = 5.0


class BatchWriter(Generic[T]):
    """Buffers items and COPYs their rows into `table` in the background.

    `record` may be called from the event loop's thread at any time, before `start()` too.
    `start()` needs a running event loop; `aclose()` stops the task and writes the rest.
    """

    def __init__(
        self,
        pool: Pool,
        table: str,
        columns: Sequence[str],
        form: Form[T],
        *,
        flush_interval_s: float,
        max_buffered: int = 10_000,
        max_batch: int = 500,
        label: str | None = None,
    ) -> None:
        assert flush_interval_s > 0 and max_buffered > 0 and max_batch > 0
        self._pool = pool
        self._copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        self._form = form
        self._interval_s = flush_interval_s
        self._max_buffered = max_buffered
        self._max_batch = max_batch
        self.label = label or table
        self._buffer: deque[T] = deque()
        self._pending: list[Row] | None = None  # formed, not yet committed
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._writing = asyncio.Lock()
        self._failures = 0
        self.dropped = 0  # items dropped because the buffer was full
        self._dropped_logged = 0
        self.refused = 0  # rows the database refused (DataError)
        self.written = 0

    @property
    def buffered(self) -> int:
        """Items not yet committed."""
        return len(self._buffer) + (len(self._pending) if self._pending else 0)

    def record(self, item: T) -> None:
        """Queue one item; never blocks, never raises, never logs (the flush loop reports)."""
        if len(self._buffer) >= self._max_buffered:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(item)

    def start(self) -> None:
        assert self._task is None, "BatchWriter.start() twice"
        self._task = asyncio.create_task(self._run(), name=f"{self.label}-writer")

    async def flush(self) -> None:
        """Write what is buffered when it is called; raises what the database raised."""
        async with self._writing:
            left = len(self._buffer)
            while self._pending is not None or left > 0:
                if self._pending is None:
                    items = [self._buffer.popleft() for _ in range(min(self._max_batch, left))]
                    left = min(left - len(items), len(self._buffer))
                    self._pending = await self._form(items)
                await self._write(self._pending)
                self._pending = None

    async def aclose(self) -> None:
        """Stop the background task and write what is left (a few attempts)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        for attempt in range(CLOSE_ATTEMPTS):
            if await self._flush_logged():
                return
            await asyncio.sleep(0.2 * 2**attempt)
        logger.error("%s: %d items could not be written and are lost", self.label, self.buffered)

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
        except Exception as exc:  # the database (or a row's forming) may fail in any way
            self._failures += 1
            logger.warning(
                "%s: write failed (%d waiting, attempt %d): %s",
                self.label, self.buffered, self._failures, exc,
            )  # fmt: skip
            return False
        self._failures = 0
        return True

    def _report_drops(self) -> None:
        if self.dropped > self._dropped_logged:
            logger.error(
                "%s: buffer full (%d), dropped %d oldest items so far",
                self.label, self._max_buffered, self.dropped,
            )  # fmt: skip
            self._dropped_logged = self.dropped

    async def _write(self, rows: list[Row]) -> None:
        try:
            await self._copy_rows(rows)
        except (psycopg.errors.UniqueViolation, psycopg.DataError):
            # Written before (whole, or partly by an earlier row-by-row pass), or a row the
            # database refuses: row by row, each row stored once, the refused ones dropped.
            await self._write_one_by_one(rows)
            return
        self.written += len(rows)

    async def _write_one_by_one(self, rows: list[Row]) -> None:
        for row in rows:
            try:
                await self._copy_rows([row])
            except psycopg.errors.UniqueViolation:
                continue  # already written
            except psycopg.DataError as exc:
                self.refused += 1
                logger.error("%s: a row was refused and dropped: %s", self.label, exc)
                continue
            self.written += 1

    async def _copy_rows(self, rows: list[Row]) -> None:
        async with (
            self._pool.connection(timeout=CONNECT_TIMEOUT_S) as conn,
            conn.cursor() as cur,
            cur.copy(self._copy) as copy,
        ):
            for row in rows:
                await copy.write_row(row)
