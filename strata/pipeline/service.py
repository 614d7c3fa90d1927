"""Every configured source, each in its own thread, restarted after connection failures.

`PipelineService(settings, store_conninfo, embedder).start()` runs one `SourcePipeline` per
`pipeline.sources` entry (or `pipeline.worker.sources`; a `DebeziumPipeline` for `kind:
debezium`; what `strata pipeline run` and `strata serve` use); `stop()` asks the loops to finish
their current transaction and joins them.

Each source's thread first has to own the source (`strata.pipeline.ownership`): while another
worker does, it stands by, trying every `pipeline.worker.poll_interval_s`; once it owns it, it
streams from the slot's (or broker's) confirmed position. A lost connection (primary, broker or
store restarting) gives the source up and competes for it again after a backoff, so a healthy
worker may take over meanwhile; a configuration problem (`PipelineError`) stops that source and
is logged — the other sources keep running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import psycopg
import psycopg2

from strata.config import PipelineSourceSettings, Settings
from strata.pipeline.chunker import Chunker
from strata.pipeline.debezium.pipeline import DebeziumPipeline
from strata.pipeline.embedder import Embedder, count_tokens
from strata.pipeline.errors import BrokerUnavailable, PipelineError
from strata.pipeline.ownership import Ownership, SourceLock, worker_id
from strata.pipeline.screen import screen_for
from strata.pipeline.source import SourcePipeline

logger = logging.getLogger(__name__)
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
_TRANSIENT = (
    psycopg.OperationalError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    BrokerUnavailable,
)


class PipelineService:
    """Runs sources in threads until `stop()`."""

    def __init__(
        self,
        settings: Settings,
        store_conninfo: str,
        embedder: Embedder,
        *,
        sources: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings
        self._conninfo = store_conninfo
        self._embedder = embedder
        self._chunker = Chunker(count_tokens, settings.pipeline.chunk_tokens)
        self._screen = screen_for(settings.guard)
        self._worker = settings.pipeline.worker
        self.worker = worker_id(self._worker)
        wanted = sources if sources is not None else self._worker.sources
        self.sources = [s for s in settings.pipeline.sources if wanted is None or s.name in wanted]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.failed: dict[str, str] = {}  # source -> why it stopped

    def start(self) -> None:
        for source in self.sources:
            thread = threading.Thread(
                target=self._supervise, args=(source,), name=f"pipeline-{source.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)

    def wait(self) -> None:
        """Block until every source thread has ended."""
        for thread in self._threads:
            while thread.is_alive():
                thread.join(0.5)

    def _supervise(self, source: PipelineSourceSettings) -> None:
        lock = SourceLock(
            self._conninfo, source.name, self.worker, dead_peer_s=self._worker.dead_peer_s
        )
        try:
            self._compete(source, lock)
        finally:
            lock.release()

    def _compete(self, source: PipelineSourceSettings, lock: SourceLock) -> None:
        """Own `source`, then stream it until stopped; after a lost connection, give it up
        and compete again after a backoff."""
        delay = RETRY_FIRST_S
        standing_by = False
        while not self._stop.is_set():
            try:
                ownership = lock.try_acquire()
                if ownership is None:
                    if not standing_by:
                        self._announce_standby(lock)
                    standing_by = True
                    self._stop.wait(self._worker.poll_interval_s)
                    continue
                standing_by = False
                logger.info("pipeline source '%s': %s owns it now", source.name, self.worker)
                self._pipeline(source, ownership).run(self._stop)
                return
            except PipelineError as exc:
                logger.error("pipeline source '%s' stopped: %s", source.name, exc)
                self.failed[source.name] = exc.message
                return
            except _TRANSIENT as exc:
                logger.warning(
                    "pipeline source '%s': %s; giving it up, competing again in %.0f s",
                    source.name,
                    exc,
                    delay,
                )
                lock.release()
            self._stop.wait(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _announce_standby(self, lock: SourceLock) -> None:
        holder = lock.holder()
        logger.info(
            "pipeline source '%s': owned by worker %s since %s; %s stands by (trying every %.1f s)",
            lock.source,
            holder.worker if holder else "?",
            holder.since if holder else "?",
            self.worker,
            self._worker.poll_interval_s,
        )

    def _pipeline(
        self, source: PipelineSourceSettings, ownership: Ownership
    ) -> SourcePipeline | DebeziumPipeline:
        kind = DebeziumPipeline if source.kind == "debezium" else SourcePipeline
        return kind(
            source,
            self.settings.pipeline,
            self._conninfo,
            self._embedder,
            self._chunker,
            screen=self._screen,
            ownership=ownership,
        )
