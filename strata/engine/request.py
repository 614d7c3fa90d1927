"""One request's state as it moves through the engine: waiting, running, finished."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from strata.engine.outputs import FinishReason, RequestTiming
from strata.engine.sampling_params import SamplingParams


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Request:
    """A sequence of token ids being extended, and the KV blocks that hold it.

    `fairness_key` and `weight` are opaque to the engine: the gateway may set them (a tenant,
    a user) and a queue policy may use them; the engine never interprets them further.
    Mutated only by the scheduler (under the engine lock).
    """

    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    fairness_key: str | None = None
    weight: float = 1.0
    priority: int = 0
    arrival_time: float = field(default_factory=time.perf_counter)

    status: RequestStatus = RequestStatus.WAITING
    token_ids: list[int] = field(init=False)  # prompt followed by outputs
    num_computed_tokens: int = 0  # tokens whose K/V are in the cache
    num_cached_tokens: int = 0  # prompt tokens the prefix cache served at first admission
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)  # hashes of full blocks, in order
    finish_reason: FinishReason | None = None
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    finished_time: float | None = None
    num_preemptions: int = 0
    replica_seconds: float = 0.0  # its share of the replica's busy time (engine.accounting)
    generator: Any = None  # torch.Generator for seeded sampling, made on first use

    def __post_init__(self) -> None:
        self.token_ids = list(self.prompt_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - len(self.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[len(self.prompt_token_ids) :]

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is RequestStatus.FINISHED

    def timing(self) -> RequestTiming:
        return RequestTiming(
            self.arrival_time, self.first_scheduled_time, self.first_token_time, self.finished_time
        )
