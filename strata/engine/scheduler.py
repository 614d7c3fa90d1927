"""Continuous batching: which requests run in the next engine step, and how many tokens each.

Every step the scheduler spends a token budget: first on running requests, oldest first (a
decoding request costs one token, a request mid-prefill costs up to the rest of its prompt),
then on admitting waiting requests while the batch cap allows. Prompts longer than what is
left of the budget are prefilled in chunks across steps. When the KV pool runs dry, the
newest running request is preempted: its blocks are freed and it is later recomputed (its
prefix is often still cached).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from strata.engine.batch_policy import BatchPolicy
from strata.engine.block_manager import BlockManager
from strata.engine.outputs import FinishReason
from strata.engine.queue_policy import WaitingQueue, make_waiting_queue
from strata.engine.request import Request, RequestStatus
from strata.errors import OverloadedError


@dataclass(frozen=True)
class SchedulerConfig:
    max_waiting: int
    max_model_len: int
    policy: str = "fcfs"


class ScheduledChunk(NamedTuple):
    """Compute tokens [start, start + num_tokens) of `request` in this step; `samples` tells
    whether the chunk reaches the request's last token, so a new token is sampled."""

    request: Request
    start: int
    num_tokens: int
    samples: bool


@dataclass(frozen=True)
class SchedulerOutput:
    chunks: tuple[ScheduledChunk, ...]
    preempted: tuple[Request, ...]

    @property
    def num_tokens(self) -> int:
        return sum(c.num_tokens for c in self.chunks)

    @property
    def sampling_chunks(self) -> list[ScheduledChunk]:
        return [c for c in self.chunks if c.samples]


class Scheduler:
    """Owns the waiting queue and the running set. Not thread-safe: the engine locks it."""

    def __init__(
        self,
        config: SchedulerConfig,
        block_manager: BlockManager,
        eos_token_ids: Iterable[int],
        batch_policy: BatchPolicy,
    ):
        self.config = config
        self.block_manager = block_manager
        self.batch_policy = batch_policy
        self.eos_token_ids = frozenset(eos_token_ids)
        self.waiting: WaitingQueue = make_waiting_queue(config.policy)
        self.running: list[Request] = []
        self.num_preemptions = 0

    @property
    def has_work(self) -> bool:
        return bool(self.running) or len(self.waiting) > 0

    def add(self, request: Request) -> None:
        if len(self.waiting) >= self.config.max_waiting:
            raise OverloadedError(
                f"The engine queue is full ({self.config.max_waiting} waiting); retry shortly.",
                code="queue_full",
            )
        self.waiting.push(request)

    # -- schedule ------------------------------------------------------------------------

    def schedule(self) -> SchedulerOutput:
        budget = self.batch_policy.token_budget
        chunks: list[ScheduledChunk] = []
        yielded = self._yield_slot()
        preempted: list[Request] = []
        for request in list(self.running):
            if budget == 0 or request.status is not RequestStatus.RUNNING:
                continue
            num_tokens = min(request.num_uncomputed_tokens, budget)
            if self._make_room(request, num_tokens, preempted):
                chunks.append(self._grow(request, num_tokens))
                budget -= num_tokens
        if not preempted:
            chunks += self._admit(budget)
        return SchedulerOutput(tuple(chunks), tuple(yielded + preempted))

    def _yield_slot(self) -> list[Request]:
        """With the batch full, let the queue policy give the waiting head a running request's
        slot (fair queueing: a starved key takes one from the most-served key)."""
        if len(self.running) < self.batch_policy.max_num_seqs:
            return []
        victim = self.waiting.displaced_by_head(self.running)
        if victim is None:
            return []
        self._preempt(victim)
        return [victim]

    def _make_room(self, request: Request, num_tokens: int, preempted: list[Request]) -> bool:
        """Preempt the newest running requests until `request` fits; False if it was itself."""
        while not self.block_manager.can_append(request, num_tokens):
            victim = self.running[-1]
            self._preempt(victim)
            preempted.append(victim)
            if victim is request:
                return False
        return True

    def _admit(self, budget: int) -> list[ScheduledChunk]:
        chunks = []
        bm = self.block_manager
        cap = self.batch_policy.max_num_seqs
        while budget > 0 and len(self.running) < cap:
            request = self.waiting.peek()
            if request is None:
                break
            hits = bm.find_prefix(request)
            num_tokens = min(request.num_tokens - len(hits) * bm.block_size, budget)
            if not bm.can_admit(request, hits, num_tokens):
                break  # head of line waits for blocks; FCFS keeps its place
            self.waiting.pop()
            bm.admit(request, hits)
            self._start(request)
            chunks.append(self._grow(request, num_tokens))
            budget -= num_tokens
        return chunks

    def _start(self, request: Request) -> None:
        if request.first_scheduled_time is None:
            request.first_scheduled_time = time.perf_counter()
            request.num_cached_tokens = request.num_computed_tokens
        request.status = RequestStatus.RUNNING
        self.running.append(request)

    def _grow(self, request: Request, num_tokens: int) -> ScheduledChunk:
        self.block_manager.append(request, num_tokens)
        start = request.num_computed_tokens
        return ScheduledChunk(request, start, num_tokens, start + num_tokens == request.num_tokens)

    def _preempt(self, request: Request) -> None:
        self.running.remove(request)
        self.block_manager.free(request)
        request.status = RequestStatus.WAITING
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.push_front(request)

    # -- update --------------------------------------------------------------------------

    def update(self, output: SchedulerOutput, sampled: Sequence[int]) -> list[Request]:
        """Record a finished step; return the requests that gained a token (in order).

        `sampled` holds one token per sampling chunk, in `output.chunks` order. Requests
        aborted while the step ran are skipped.
        """
        tokens = iter(sampled)
        changed = []
        for chunk in output.chunks:
            token = next(tokens) if chunk.samples else None
            request = chunk.request
            if request.status is not RequestStatus.RUNNING:
                continue
            request.num_computed_tokens += chunk.num_tokens
            self.block_manager.cache_full_blocks(request)
            if token is not None:
                self._append_token(request, token)
                changed.append(request)
        return changed

    def _append_token(self, request: Request, token: int) -> None:
        request.token_ids.append(token)
        if request.first_token_time is None:
            request.first_token_time = time.perf_counter()
        reason = self._finish_reason(request, token)
        if reason is not None:
            self.finish(request, reason)

    def _finish_reason(self, request: Request, token: int) -> FinishReason | None:
        params = request.params
        n_out = request.num_output_tokens
        if n_out >= params.min_tokens:
            if token in params.stop_token_ids:
                return "stop"
            if not params.ignore_eos and token in self.eos_token_ids:
                return "stop"
        if n_out >= params.max_tokens or request.num_tokens >= self.config.max_model_len:
            return "length"
        return None

    def finish(self, request: Request, reason: FinishReason) -> None:
        """End `request` now (done, stopped by text, or aborted) and free its blocks."""
        if request.is_finished:
            return
        if request.status is RequestStatus.RUNNING:
            self.running.remove(request)
        else:
            self.waiting.remove(request)
        self.block_manager.free(request)
        request.status = RequestStatus.FINISHED
        request.finish_reason = reason
        request.finished_time = time.perf_counter()
