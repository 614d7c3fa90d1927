"""The gateway's request logs: who is logged, the transcript per call, the writer, the purge.

Per call, on the hot path: `transcript()` when the call is admitted (a dict lookup; None for a
tenant that is not logged) and `record()` when the finisher settles it (one append). Nothing
here awaits I/O on a request's behalf, and nothing here can fail a request: the writer and the
purge run in the background and log their failures.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from strata.background import stop
from strata.config import RequestLogSettings
from strata.gateway.body import GenerationBody
from strata.gateway.call import Call, TokenUsage
from strata.gateway.request_logs.entry import COLUMNS, LogEntry, LogRedactor, RowMaker
from strata.gateway.request_logs.store import purge_expired
from strata.gateway.request_logs.tenants import LoggedTenants
from strata.gateway.request_logs.transcript import Transcript, session_id
from strata.store.batch_writer import BatchWriter, Row
from strata.store.database import Pool

logger = logging.getLogger(__name__)
RECENT_IDS = 10_000  # ids recorded by this process whose rows may not be written yet


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RequestLogs:
    """Started and closed by `strata.gateway.runtime`; `record` works before `start` too."""

    def __init__(
        self,
        pool: Pool,
        settings: RequestLogSettings,
        redactor: LogRedactor,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._pool = pool
        self.settings = settings
        self.redact = redactor
        self._clock = clock
        self._rows = RowMaker(redactor, settings.max_text_chars)
        self.tenants = LoggedTenants(pool, settings.refresh_s)
        self.writer: BatchWriter[LogEntry] = BatchWriter(
            pool, "request_logs", COLUMNS, self._form,
            flush_interval_s=settings.flush_ms / 1000, label="request logs",
        )  # fmt: skip
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._purging: asyncio.Task[None] | None = None

    def transcript(
        self, headers: Mapping[str, str], tenant: str, body: GenerationBody
    ) -> Transcript | None:
        """A transcript to fill when `tenant` is logged; the session header is checked for
        every caller, so a bad one is refused whether or not the tenant is logged."""
        session = session_id(headers)
        if tenant not in self.tenants:
            return None
        return Transcript.of(body, session, self.settings.max_text_chars)

    def record(self, call: Call, usage: TokenUsage, cost: float) -> None:
        """Queue the finished call's log (when it has a transcript); never raises."""
        script = call.transcript
        if script is None:
            return
        who = call.principal
        self.writer.record(
            LogEntry(
                request_id=call.request_id, at=self._clock(), tenant=who.tenant, user=who.user,
                key_id=who.key_id, end_user=script.end_user, session=script.session,
                route=call.route, model=call.model, stream=script.stream,
                messages=script.messages, answer=script.answer, truncated=script.truncated,
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                cost_usd=cost, ttft_ms=call.ttft_ms, duration_ms=call.duration_ms,
                status=call.status, error_code=call.error_code,
            )
        )  # fmt: skip
        self._recent[(who.tenant, call.request_id)] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)

    def recorded_here(self, tenant: str, request_id: str) -> bool:
        """Whether this process recently logged the request (its row may still be buffered)."""
        return (tenant, request_id) in self._recent

    async def start(self) -> None:
        await self.tenants.start()
        self.writer.start()
        self._purging = asyncio.create_task(self._purge_loop(), name="request-log-purge")

    async def aclose(self) -> None:
        await stop(self._purging)
        self._purging = None
        await self.tenants.aclose()
        await self.writer.aclose()

    async def purge(self) -> int:
        """Delete every log and score past its retention now, batch by batch; the count."""
        return await purge_expired(self._pool, self.settings.retention_days, self._clock)

    async def _purge_loop(self) -> None:
        while True:
            try:
                deleted = await self.purge()
            except Exception as exc:  # the store may be down; try again next time
                logger.warning("request logs: retention purge failed: %s", exc)
            else:
                if deleted:
                    logger.info("request logs: purged %d rows past their retention", deleted)
            await asyncio.sleep(self.settings.purge_interval_s)

    async def _form(self, entries: list[LogEntry]) -> list[Row]:
        """Rows for a batch, redacted in a worker thread: a long text takes tens of ms to scan,
        and each regex step is short, so the event loop keeps its turns while it runs."""
        return await asyncio.to_thread(lambda: [self._rows.row(e) for e in entries])
