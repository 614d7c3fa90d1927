"""A discrete-event simulation of strata's engine: the engine's own scheduler decides every
step, a fitted `StepTimeModel` says how long the step takes.

Nothing about scheduling is re-implemented here. The simulation drives the real
`strata.engine.scheduler.Scheduler` (continuous batching, the token budget with chunked
prefill, the batch cap, the block manager with prefix caching and preemption, the bounded
queue) with a `FixedBatchPolicy`, on requests whose token ids exist only for the block
manager's bookkeeping. The loop around it mirrors `strata.engine.engine.Engine._run`:

- a request joins the waiting queue at its arrival; a step schedules whatever has arrived by
  the time it starts, and its tokens are streamed when it ends;
- an idle engine (nothing running) with a batching window waits until the window after the
  first waiting request's arrival has passed, or until as many requests wait as the cap allows;
- a step that schedules nothing (every request blocked on KV blocks) is retried 5 ms later;
- the queue bound rejects arrivals with 503, and a prompt plus output longer than the context
  is refused (400); both are recorded as failed requests.

What it returns is what the load generator measures on a real run: one `RequestRecord` per
request, times in seconds from the start, so `strata.bench.summary.summarize` computes the
same statistics from both. It knows nothing of HTTP, tokenization or detokenization: their
cost is in the step times only as far as the profile measured them (in-process, streaming).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from strata.bench.records import RequestRecord
from strata.compute.step_time import StepShape, StepTimeModel
from strata.engine.batch_policy import FixedBatchPolicy
from strata.engine.block_manager import BlockManager
from strata.engine.request import Request
from strata.engine.sampling_params import SamplingParams
from strata.engine.scheduler import Scheduler, SchedulerConfig
from strata.errors import ConfigError, OverloadedError

BLOCKED_RETRY_S = 0.005  # Engine._run's wait when a step schedules nothing
# First token after the shared prefix: unique per request, above any vocabulary, and inside
# int32, which the block hash packs token ids as (`strata.engine.block_hash`).
UNIQUE_TOKEN_BASE = 1 << 30


@dataclass(frozen=True)
class SimRequest:
    arrival_s: float  # seconds from the start
    prompt_tokens: int  # all of it, the shared prefix included
    output_tokens: int
    shared_prefix_tokens: int = 0  # leading prompt tokens every request has in common


@dataclass(frozen=True)
class SimEngine:
    """The batching settings under test and the engine sizes they run in."""

    max_num_seqs: int
    token_budget: int
    batch_window_s: float
    block_size: int
    num_blocks: int
    max_model_len: int
    max_waiting: int
    enable_prefix_caching: bool = True

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ConfigError("batch cap: must be >= 1")
        if self.token_budget < 1:
            raise ConfigError("token budget: must be >= 1")
        if self.batch_window_s < 0:
            raise ConfigError("batching window: must be >= 0")


@dataclass(frozen=True)
class SimulatedRun:
    records: list[RequestRecord]  # one per request, in input order
    steps: list[tuple[float, StepShape]]  # when each step started, and what it computed


def simulate(
    requests: Sequence[SimRequest],
    engine: SimEngine,
    step_time: StepTimeModel,
    jitter: random.Random | None = None,
) -> SimulatedRun:
    """Run `requests` through the engine's scheduler on simulated time. With `jitter`, each
    step's predicted time is scaled by a ratio drawn from the profile's measured / predicted
    ratios."""
    return _Simulation(requests, engine, step_time, jitter).run()


class _Simulation:
    def __init__(
        self,
        requests: Sequence[SimRequest],
        engine: SimEngine,
        step_time: StepTimeModel,
        jitter: random.Random | None,
    ):
        self.requests = requests
        self.engine = engine
        self.step_time = step_time
        self.jitter = jitter
        policy = FixedBatchPolicy(engine.max_num_seqs, engine.token_budget, engine.batch_window_s)
        blocks = BlockManager(engine.num_blocks, engine.block_size, engine.enable_prefix_caching)
        config = SchedulerConfig(engine.max_waiting, engine.max_model_len)
        self.scheduler = Scheduler(config, blocks, (), policy)
        self.records = [RequestRecord(sent=r.arrival_s, prompt_tokens=r.prompt_tokens)
                        for r in requests]  # fmt: skip
        order = sorted(range(len(requests)), key=lambda i: requests[i].arrival_s)
        self.pending: deque[int] = deque(order)
        self.clock = 0.0
        self.steps: list[tuple[float, StepShape]] = []

    def run(self) -> SimulatedRun:
        while self.pending or self.scheduler.has_work:
            self._arrive()
            if self.scheduler.has_work:
                self._gather()
                self._step()
            elif self.pending:  # idle until the next arrival
                self.clock = max(self.clock, self.requests[self.pending[0]].arrival_s)
        return SimulatedRun(self.records, self.steps)

    def _arrive(self) -> None:
        """Queue every request that has arrived by now."""
        while self.pending and self.requests[self.pending[0]].arrival_s <= self.clock:
            index = self.pending.popleft()
            spec = self.requests[index]
            if spec.prompt_tokens + spec.output_tokens > self.engine.max_model_len:
                self.records[index].error = "400"  # EngineCore.check refuses it
                continue
            try:
                self.scheduler.add(self._request(index))
            except OverloadedError:
                self.records[index].error = "503"

    def _gather(self) -> None:
        """The batching window of an idle engine (`Engine._gather_batch`)."""
        scheduler, window = self.scheduler, self.engine.batch_window_s
        head = scheduler.waiting.peek()
        if window <= 0 or scheduler.running or head is None:
            return
        deadline = head.arrival_time + window
        while len(scheduler.waiting) < self.engine.max_num_seqs and self.clock < deadline:
            next_arrival = self.requests[self.pending[0]].arrival_s if self.pending else deadline
            self.clock = max(self.clock, min(next_arrival, deadline))
            self._arrive()

    def _step(self) -> None:
        output = self.scheduler.schedule()
        if not output.chunks:
            self.clock += BLOCKED_RETRY_S
            return
        shape = StepShape.of(output, self.engine.block_size)
        self.steps.append((self.clock, shape))
        seconds = self.step_time.predict(shape)
        if self.jitter is not None:
            seconds *= self.step_time.jitter(self.jitter)
        self.clock += seconds
        for request in self.scheduler.update(output, [0] * len(output.sampling_chunks)):
            self._stream(request)

    def _stream(self, request: Request) -> None:
        record = self.records[int(request.request_id)]
        if record.first_token is None:
            record.first_token = self.clock
        record.token_times.append(self.clock)
        record.output_tokens += 1
        if request.is_finished:
            record.finished = self.clock

    def _request(self, index: int) -> Request:
        spec = self.requests[index]
        shared = min(spec.shared_prefix_tokens, spec.prompt_tokens - 1)
        ids = [*range(1, shared + 1), UNIQUE_TOKEN_BASE + index]
        ids += [0] * (spec.prompt_tokens - len(ids))
        params = SamplingParams(
            max_tokens=spec.output_tokens, temperature=0.0, ignore_eos=True,
            min_tokens=spec.output_tokens,
        )  # fmt: skip
        return Request(str(index), ids, params, arrival_time=spec.arrival_s)
