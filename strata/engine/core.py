"""The synchronous heart of the engine: one step is schedule -> run -> update.

`EngineCore` is what tests and benchmarks drive directly (it counts steps); the async
`Engine` runs it on a background thread. The lock guards scheduler state: it is held while
scheduling and updating, not while the model runs, so requests can be added or aborted
during a forward pass (an aborted request's late results are dropped by `update`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from strata.engine.accounting import ReplicaAccountant
from strata.engine.batch_policy import BatchPolicy, FixedBatchPolicy, QueueState
from strata.engine.block_manager import BlockManager
from strata.engine.kv_events import KvEventLog
from strata.engine.model_config import ModelConfig
from strata.engine.model_runner import ModelRunner
from strata.engine.outputs import EngineStats, FinishReason
from strata.engine.request import Request
from strata.engine.scheduler import ScheduledChunk, Scheduler, SchedulerConfig, SchedulerOutput
from strata.errors import ConfigError, InvalidRequestError, OverloadedError
from strata.fairness import MAX_WEIGHT

# Told every step's schedule and wall seconds, on the engine thread (the step profiler listens).
StepObserver = Callable[[SchedulerOutput, float], None]


@dataclass(frozen=True)
class CoreConfig:
    """Engine sizes after resolving the settings against the model."""

    block_size: int
    num_blocks: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_waiting: int
    enable_prefix_caching: bool = True
    policy: str = "fcfs"
    batch_window_s: float = 0.0


class EngineCore:
    def __init__(
        self,
        config: CoreConfig,
        runner: ModelRunner,
        eos_token_ids: frozenset[int],
        batch_policy: BatchPolicy | None = None,
    ):
        self.config = config
        self.runner = runner
        self.batch_policy = batch_policy or FixedBatchPolicy(
            config.max_num_seqs, config.max_num_batched_tokens, config.batch_window_s
        )
        # What the prefix cache holds, for prefix-aware routers (`kv_events`, `kv_routes`).
        self.kv_events = KvEventLog(config.block_size, capacity=max(4096, 4 * config.num_blocks))
        self.block_manager = BlockManager(
            config.num_blocks, config.block_size, config.enable_prefix_caching, self.kv_events
        )
        self.scheduler = Scheduler(
            SchedulerConfig(config.max_waiting, config.max_model_len, config.policy),
            self.block_manager,
            eos_token_ids,
            self.batch_policy,
        )
        self.lock = threading.Lock()
        self.num_steps = 0
        self.last_batch_size = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.accountant = ReplicaAccountant()
        self.step_observers: list[StepObserver] = []
        self._requests: dict[str, Request] = {}

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    def add(self, request: Request) -> None:
        """Queue a request; raises InvalidRequestError or OverloadedError (nothing queued)."""
        self.check(request)
        with self.lock:
            if request.request_id in self._requests:
                raise InvalidRequestError(
                    f"request id {request.request_id!r} is already in use.", param="request_id"
                )
            retry_after = self.batch_policy.admit(self._queue_state(request), time.perf_counter())
            if retry_after is not None:
                raise OverloadedError(
                    "The engine cannot serve this request within its latency SLO right now; "
                    "retry later.",
                    retry_after_s=retry_after,
                    code="slo_overload",
                )
            self.scheduler.add(request)
            self._requests[request.request_id] = request

    def _queue_state(self, request: Request) -> QueueState:
        waiting = self.scheduler.waiting
        queued = sum(r.num_uncomputed_tokens for r in waiting) + request.num_tokens
        return QueueState(len(waiting), len(self.scheduler.running), queued)

    def abort(self, request_id: str, reason: FinishReason = "abort") -> None:
        with self.lock:
            request = self._requests.pop(request_id, None)
            if request is not None:
                self.scheduler.finish(request, reason)
                if not self.scheduler.running:
                    self.accountant.batch_emptied()

    def step(self) -> list[Request]:
        """Run one engine step; return the requests that gained a token (possibly finishing)."""
        started = time.perf_counter()
        with self.lock:
            output = self.scheduler.schedule()
            if not output.chunks:
                if not self.scheduler.running:
                    self.accountant.batch_emptied()
                return []
            self.accountant.step_started()
            inputs = self.runner.prepare(output)
        sampled = self.runner.run(inputs)
        with self.lock:
            changed = self.scheduler.update(output, sampled)
            for request in changed:
                if request.is_finished:
                    self._requests.pop(request.request_id, None)
            self.accountant.step_finished(output.chunks, bool(self.scheduler.running))
        self._report(output, changed, started)
        self.num_steps += 1
        self.last_batch_size = len(output.chunks)
        self.prompt_tokens += sum(_prompt_tokens_in(c) for c in output.chunks)
        self.generation_tokens += len(changed)
        return changed

    def _report(self, output: SchedulerOutput, changed: list[Request], started: float) -> None:
        now = time.perf_counter()
        policy = self.batch_policy
        policy.observe_step(now - started, output.num_tokens, len(output.chunks), now)
        for observe in self.step_observers:
            observe(output, now - started)
        for request in changed:
            if request.num_output_tokens == 1 and request.first_token_time is not None:
                policy.observe_first_token(request.first_token_time - request.arrival_time, now)
            if request.is_finished:
                policy.observe_finish(now)

    def check(self, request: Request) -> None:
        """Reject requests that can never run here, naming the field to change."""
        n_prompt, limit = request.num_prompt_tokens, self.config.max_model_len
        if not 0 < request.weight <= MAX_WEIGHT:
            raise InvalidRequestError(
                f"weight must be in (0, {MAX_WEIGHT:g}]; got {request.weight}.", param="weight"
            )
        if n_prompt == 0:
            raise InvalidRequestError("the prompt is empty.", param="prompt")
        vocab = self.runner.config.vocab_size
        if min(request.prompt_token_ids) < 0 or max(request.prompt_token_ids) >= vocab:
            raise InvalidRequestError(f"token ids must be in [0, {vocab}).", param="prompt")
        if n_prompt >= limit:
            raise InvalidRequestError(
                f"the prompt is {n_prompt} tokens; this model accepts at most {limit - 1} "
                "prompt tokens. Shorten the prompt.",
                param="prompt",
                code="context_length_exceeded",
            )
        if n_prompt + request.params.max_tokens > limit:
            raise InvalidRequestError(
                f"the prompt ({n_prompt} tokens) plus max_tokens "
                f"({request.params.max_tokens}) exceeds the context length {limit}; lower "
                f"max_tokens to at most {limit - n_prompt}.",
                param="max_tokens",
                code="context_length_exceeded",
            )

    def stats(self) -> EngineStats:
        with self.lock:
            bm = self.block_manager
            clock = self.accountant.snapshot()
            return EngineStats(
                num_running=len(self.scheduler.running),
                num_waiting=len(self.scheduler.waiting),
                num_waiting_keys=len({r.fairness_key for r in self.scheduler.waiting}),
                kv_blocks_total=bm.num_blocks,
                kv_blocks_used=bm.num_used_blocks,
                prefix_queries=bm.prefix_queries,
                prefix_hits=bm.prefix_hits,
                num_preemptions=self.scheduler.num_preemptions,
                num_steps=self.num_steps,
                last_batch_size=self.last_batch_size,
                prompt_tokens=self.prompt_tokens,
                generation_tokens=self.generation_tokens,
                batch_cap=self.batch_policy.max_num_seqs,
                token_budget=self.batch_policy.token_budget,
                batch_window_s=self.batch_policy.batch_window_s,
                slo_attainment=self.batch_policy.slo_attainment,
                num_shed=self.batch_policy.num_shed,
                replica_s=clock.replica_s,
                busy_s=clock.busy_s,
                idle_s=clock.idle_s,
            )


def _prompt_tokens_in(chunk: ScheduledChunk) -> int:
    end = min(chunk.start + chunk.num_tokens, chunk.request.num_prompt_tokens)
    return max(0, end - chunk.start)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("engine.device is 'cuda' but no CUDA device is visible; use 'auto'.")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on CUDA and on CPUs with native bf16 matmuls (AVX512-BF16 / AMX),
    where it measured ~2x fp32's throughput at batch 16-32; float32 elsewhere."""
    if name == "auto":
        native_bf16 = device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
        return torch.bfloat16 if native_bf16 else torch.float32
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def resolve_max_model_len(requested: int | None, model: ModelConfig) -> int:
    limit = model.max_position_embeddings
    if model.sliding_window:  # full attention is exact only inside the window
        limit = min(limit, model.sliding_window)
    if requested is not None and requested > limit:
        raise ConfigError(
            f"engine.max_model_len={requested} exceeds what this model supports ({limit})."
        )
    return requested or limit


def blocks_for_memory(
    memory_bytes: int, block_size: int, model: ModelConfig, dtype: torch.dtype, max_model_len: int
) -> int:
    per_block = block_size * model.kv_bytes_per_token(dtype.itemsize)
    num_blocks = memory_bytes // per_block
    needed = -(-max_model_len // block_size)
    if num_blocks < needed:
        raise ConfigError(
            f"engine.kv_cache_memory={memory_bytes} bytes holds {num_blocks} blocks, but one "
            f"request of max_model_len={max_model_len} needs {needed} "
            f"({needed * per_block} bytes); raise engine.kv_cache_memory or lower "
            "engine.max_model_len."
        )
    return int(num_blocks)
