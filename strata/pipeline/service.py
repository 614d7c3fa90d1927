"""Every configured source, each in its own thread, restarted after connection failures.

`PipelineService(settings, store_conninfo, embedder).start()` runs one `SourcePipeline` per
`pipeline.sources` entry (a `DebeziumPipeline` for `kind: debezium`; what `strata pipeline run`
and `strata serve` use); `stop()` asks the loops to finish their current transaction and joins
them. A lost connection (primary, broker or store restarting) is retried with backoff from the
last confirmed position; a configuration problem (`PipelineError`) stops that source and is
logged — the other sources keep running.
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
        wanted = settings.pipeline.sources
        self.sources = [s for s in wanted if sources is None or s.name in sources]
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
        delay = RETRY_FIRST_S
        while not self._stop.is_set():
            kind = DebeziumPipeline if source.kind == "debezium" else SourcePipeline
            pipeline = kind(
                source,
                self.settings.pipeline,
                self._conninfo,
                self._embedder,
                self._chunker,
                screen=self._screen,
            )
            try:
                pipeline.run(self._stop)
                return
            except PipelineError as exc:
                logger.error("pipeline source '%s' stopped: %s", source.name, exc)
                self.failed[source.name] = exc.message
                return
            except _TRANSIENT as exc:
                logger.warning(
                    "pipeline source '%s': %s; retrying in %.0f s", source.name, exc, delay
                )
            self._stop.wait(delay)
            delay = min(delay * 2, RETRY_MAX_S)
