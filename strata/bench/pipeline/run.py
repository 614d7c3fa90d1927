"""One pipeline benchmark run: load → backfill → stepped change rates → what the pipeline did.

`run(plan, databases, embedder)` loads the seeded tickets into the primary, backfills them
through a real `SourcePipeline` (timed), then streams: for each rate in `plan.rates` a writer
commits one row change per transaction at that rate for `seconds_per_rate`, waits until the
pipeline has applied every one of them, and reads back

- freshness: the pipeline's own samples (`pipeline_freshness`, commit timestamp → index
  write committed) of the transactions committed during the step;
- embeddings: what the pipeline computed and reused for each transaction (matched by xid),
  summed per kind of change, next to what re-embedding the whole document would have cost
  (the chunks of the document after the change; nothing for a delete).

Steps stop after the first one whose p95 reaches the target, once the reference rate (20/s)
has been measured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from pydantic import SecretStr

from strata.bench.pipeline import table
from strata.bench.pipeline.primary import Databases
from strata.bench.pipeline.workload import KINDS, Change, Workload
from strata.bench.records import percentile
from strata.config import PipelineSettings, PipelineSourceSettings
from strata.pipeline.changes import Transaction
from strata.pipeline.chunker import Chunker
from strata.pipeline.embedder import Embedder, count_tokens
from strata.pipeline.indexer import ApplyStats
from strata.pipeline.metrics import PipelineMetrics
from strata.pipeline.source import SourcePipeline

SOURCE = "tickets"
TEXT_KINDS = frozenset({"insert", "text_edit"})  # the changes that can need embeddings
POLL_S = 0.2
Say = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    documents: int = 10_000
    rates: tuple[float, ...] = (5, 10, 20, 40, 80)  # row changes per second
    seconds_per_rate: float = 30.0
    seed: int = 0
    chunk_tokens: int = 128
    target_p95_s: float = 1.0
    reference_rate: float = 20.0  # always measured, even when a lower rate missed the target
    drain_timeout_s: float = 900.0


@dataclass(frozen=True)
class Backfill:
    documents: int
    chunks: int
    embedded: int
    seconds: float

    @property
    def documents_per_s(self) -> float:
        return self.documents / self.seconds

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds


@dataclass
class KindCost:
    """Embeddings for the changes of one kind; `whole_document` is what re-embedding every
    chunk of the changed document would have computed instead."""

    changes: int = 0
    embedded: int = 0
    reused: int = 0
    whole_document: int = 0

    def add(self, other: KindCost) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class Freshness:
    samples: int
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    max_s: float | None

    @classmethod
    def of(cls, seconds: list[float]) -> Freshness:
        if not seconds:
            return cls(0, None, None, None, None)
        p50, p95, p99 = (percentile(seconds, q) for q in (50, 95, 99))
        return cls(len(seconds), p50, p95, p99, max(seconds))


@dataclass(frozen=True)
class RateStep:
    rate: float  # asked for
    seconds: float  # the writer's sending time
    changes: int
    drain_s: float  # after the last commit, until the pipeline had applied everything
    freshness: Freshness
    costs: dict[str, KindCost]
    writes: int  # index writes that applied the step's transactions

    @property
    def achieved_rate(self) -> float:
        return self.changes / self.seconds

    @property
    def transactions_per_write(self) -> float:
        return self.changes / self.writes if self.writes else 0.0


@dataclass(frozen=True)
class PipelineResult:
    plan: Plan
    backfill: Backfill
    steps: tuple[RateStep, ...]

    def meets(self, step: RateStep) -> bool:
        p95 = step.freshness.p95_s
        return p95 is not None and p95 < self.plan.target_p95_s

    @property
    def highest_rate_meeting_target(self) -> float | None:
        """The highest rate whose p95 stayed under the target, below any rate that missed it."""
        best = None
        for step in self.steps:
            if not self.meets(step):
                break
            best = step.rate
        return best

    def step_at(self, rate: float) -> RateStep | None:
        return next((s for s in self.steps if s.rate == rate), None)

    @property
    def costs(self) -> dict[str, KindCost]:
        """Every step's costs added up, per kind of change."""
        total: dict[str, KindCost] = {kind: KindCost() for kind in KINDS}
        for step in self.steps:
            for kind, cost in step.costs.items():
                total[kind].add(cost)
        return total


class RecordingPipeline(SourcePipeline):
    """A `SourcePipeline` that keeps what it did with each streamed transaction, by xid: the
    stats of the write that applied it (shared by every transaction of that write)."""

    def __init__(
        self,
        source: PipelineSourceSettings,
        settings: PipelineSettings,
        store_conninfo: str,
        embedder: Embedder,
        chunker: Chunker,
    ) -> None:
        super().__init__(
            source, settings, store_conninfo, embedder, chunker, metrics=PipelineMetrics()
        )
        self.applied: dict[int, ApplyStats] = {}  # xid -> what its apply() did

    def apply(self, transactions: Sequence[Transaction]) -> ApplyStats:
        stats = super().apply(transactions)
        self.applied.update((t.xid, stats) for t in transactions)
        return stats


class Follower:
    """Runs the pipeline's loop (`step` until stopped) in a thread, as `PipelineService` does."""

    def __init__(self, pipeline: SourcePipeline) -> None:
        self._pipeline = pipeline
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="bench-pipeline", daemon=True)

    def __enter__(self) -> Follower:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.check()

    def check(self) -> None:
        """Raise what stopped the loop, if anything did."""
        if self._error is not None:
            raise RuntimeError("the pipeline loop failed") from self._error

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._pipeline.step(POLL_S)
        except BaseException as exc:  # handed to the main thread by check()
            self._error = exc


def run(
    plan: Plan, databases: Databases, embedder: Embedder, *, say: Say = print
) -> PipelineResult:
    workload = Workload(plan.seed, plan.documents)
    with psycopg.connect(databases.primary, autocommit=True) as conn:
        table.create(conn, workload.initial())
    pipeline = make_pipeline(plan, databases, embedder)
    pipeline.open()
    try:
        backfill = run_backfill(pipeline, say)
        pipeline.start()
        with (
            Follower(pipeline) as follower,
            psycopg.connect(databases.primary, autocommit=True) as conn,
        ):
            steps = run_steps(
                plan, Stepper(pipeline, follower, workload, conn, databases.store), say
            )
    finally:
        pipeline.close()
    return PipelineResult(plan, backfill, tuple(steps))


def make_pipeline(plan: Plan, databases: Databases, embedder: Embedder) -> RecordingPipeline:
    source = PipelineSourceSettings(
        name=SOURCE,
        dsn=SecretStr(databases.primary),
        table=table.TABLE,
        text_columns=["title", "body"],
        metadata_columns=["status", "priority"],
        tenant_column="org",
        collection="support",
    )
    settings = PipelineSettings(
        sources=[source], chunk_tokens=plan.chunk_tokens, freshness_samples=1_000_000
    )
    chunker = Chunker(count_tokens, plan.chunk_tokens)
    return RecordingPipeline(source, settings, databases.store, embedder, chunker)


def run_backfill(pipeline: SourcePipeline, say: Say) -> Backfill:
    result = pipeline.backfill(progress=True)
    backfill = Backfill(result.rows, result.stats.chunks, result.stats.embedded, result.seconds)
    say(
        f"backfill: {backfill.documents} documents, {backfill.chunks} chunks in "
        f"{backfill.seconds:.1f} s ({backfill.documents_per_s:.1f} documents/s, "
        f"{backfill.chunks_per_s:.1f} chunks/s)"
    )
    return backfill


def run_steps(plan: Plan, stepper: Stepper, say: Say) -> list[RateStep]:
    steps: list[RateStep] = []
    for rate in plan.rates:
        step = stepper.step(rate, plan.seconds_per_rate, plan.drain_timeout_s)
        steps.append(step)
        fresh = step.freshness
        say(
            f"{rate:g} changes/s: {step.changes} changes, sent at {step.achieved_rate:.1f}/s; "
            f"freshness p50/p95/p99 {_s(fresh.p50_s)}/{_s(fresh.p95_s)}/{_s(fresh.p99_s)}; "
            f"drained {step.drain_s:.1f} s after the last commit"
        )
        missed = fresh.p95_s is None or fresh.p95_s >= plan.target_p95_s
        if missed and rate >= plan.reference_rate:
            break
    return steps


@dataclass
class Stepper:
    """Sends one rate's changes and collects what the pipeline did with them."""

    pipeline: RecordingPipeline
    follower: Follower
    workload: Workload
    primary: psycopg.Connection
    store_conninfo: str
    sent: list[tuple[int, Change]] = field(default_factory=list)

    def step(self, rate: float, seconds: float, drain_timeout_s: float) -> RateStep:
        self.sent = []
        since = datetime.now(UTC)
        sending_s = self._send(rate, round(rate * seconds))
        until = datetime.now(UTC)
        drain_s = self._drain(drain_timeout_s)
        return RateStep(
            rate=rate,
            seconds=sending_s,
            changes=len(self.sent),
            drain_s=drain_s,
            freshness=Freshness.of(self._freshness(since, until)),
            costs=self._costs(),
            writes=len({id(self.pipeline.applied[xid]) for xid, _ in self.sent}),
        )

    def _send(self, rate: float, count: int) -> float:
        """Commit `count` changes on an open-loop schedule; the seconds it took (≥ count/rate)."""
        started = time.monotonic()
        for i in range(count):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            change = self.workload.next_change()
            self.sent.append((table.apply(self.primary, change), change))
        return max(time.monotonic() - started, count / rate)

    def _drain(self, timeout_s: float) -> float:
        started = time.monotonic()
        while any(xid not in self.pipeline.applied for xid, _ in self.sent):
            self.follower.check()
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(
                    f"the pipeline did not apply the step's changes in {timeout_s} s"
                )
            time.sleep(0.05)
        return time.monotonic() - started

    def _freshness(self, since: datetime, until: datetime) -> list[float]:
        with psycopg.connect(self.store_conninfo) as conn:
            rows = conn.execute(
                "SELECT seconds FROM pipeline_freshness WHERE source = %s "
                "AND commit_at >= %s AND commit_at <= %s",
                (SOURCE, since, until),
            ).fetchall()
        return [float(r[0]) for r in rows]

    def _costs(self) -> dict[str, KindCost]:
        """Per kind of change, what the pipeline computed and reused for its row. A write that
        applied several changes of one row did that row's work once: it is counted for the
        last of them that brought text (an insert or a text edit), else for the last."""
        costs: dict[str, KindCost] = {kind: KindCost() for kind in KINDS}
        owner: dict[tuple[int, int], tuple[bool, int]] = {}  # (write, row) -> (text?, xid)
        for xid, change in self.sent:
            slot = (id(self.pipeline.applied[xid]), change.ticket_id)
            brings_text = change.kind in TEXT_KINDS
            if brings_text or not owner.get(slot, (False, 0))[0]:
                owner[slot] = (brings_text, xid)
        for xid, change in self.sent:
            stats = self.pipeline.applied[xid]
            key = str(change.ticket_id)
            counted = owner[(id(stats), change.ticket_id)][1] == xid
            embedded = stats.embedded_by_key[key] if counted else 0
            reused = stats.reused_by_key[key] if counted else 0
            costs[change.kind].add(KindCost(1, embedded, reused, self._whole_document(change)))
        return costs

    def _whole_document(self, change: Change) -> int:
        if change.after is None:
            return 0
        text = self.pipeline.mapper.render({"title": change.after.title, "body": change.after.body})
        return len(self.pipeline.indexer.chunker.chunk(text))


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
