"""Load shapes: when a benchmark releases its requests.

A `LoadShape` only decides *when* request i is sent; it measures nothing and knows nothing of
HTTP. `drive(send, budget)` calls `send(0)`, `send(1)`, ... until the `Budget` is spent and
returns once every request it started has finished. Closed loop (`FixedConcurrency`): N clients,
each sending its next request when the last one finishes. Open loop (`ConstantRate`,
`PoissonRate`): requests leave on a schedule, however slowly the server answers.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from strata.errors import ConfigError

Send = Callable[[int], Coroutine[Any, Any, None]]  # sends request i; returns once it has finished


@dataclass(frozen=True)
class Budget:
    """When a run stops sending: after `requests` requests and/or `duration_s` seconds, whichever
    comes first. Requests already sent are always waited for (each has its own timeout)."""

    requests: int | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.requests is None and self.duration_s is None:
            raise ConfigError("a run needs --requests and/or --duration, or it would never stop")
        if (self.requests is not None and self.requests < 1) or (
            self.duration_s is not None and self.duration_s <= 0
        ):
            raise ConfigError("--requests and --duration must be positive")

    def allows(self, sent: int, elapsed_s: float) -> bool:
        """Whether request number `sent` (0-based) may leave `elapsed_s` into the run."""
        if self.requests is not None and sent >= self.requests:
            return False
        return self.duration_s is None or elapsed_s < self.duration_s

    def describe(self) -> dict[str, Any]:
        return {"requests": self.requests, "duration_s": self.duration_s}


class LoadShape(ABC):
    """A policy for releasing requests; see the module docstring for the contract."""

    @abstractmethod
    async def drive(self, send: Send, budget: Budget) -> None: ...

    @property
    @abstractmethod
    def name(self) -> str:
        """Short and file-name safe, e.g. `concurrency-8`."""

    @property
    @abstractmethod
    def label(self) -> str:
        """For people, e.g. `fixed concurrency 8`."""

    @property
    def max_in_flight(self) -> int | None:
        """The most requests this shape can have open at once; None: no bound of its own."""
        return None

    @abstractmethod
    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class FixedConcurrency(LoadShape):
    concurrency: int

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError("--concurrency must be >= 1")

    async def drive(self, send: Send, budget: Budget) -> None:
        start, numbers = time.perf_counter(), itertools.count()

        async def client() -> None:
            while budget.allows(index := next(numbers), time.perf_counter() - start):
                await send(index)

        await asyncio.gather(*(client() for _ in range(self.concurrency)))

    @property
    def name(self) -> str:
        return f"concurrency-{self.concurrency}"

    @property
    def label(self) -> str:
        return f"fixed concurrency {self.concurrency}"

    @property
    def max_in_flight(self) -> int:
        return self.concurrency

    def describe(self) -> dict[str, Any]:
        return {"kind": "concurrency", "concurrency": self.concurrency}


class OpenLoop(LoadShape):
    """Sends request i at `arrivals()[i]` seconds after the start, without waiting for answers.
    The budget is checked against the planned time, so a duration-bounded run sends the same
    requests however the server behaves."""

    rate: float

    @abstractmethod
    def arrivals(self) -> Iterator[float]:
        """Planned send times, seconds from the start, non-decreasing, the first at 0."""

    async def drive(self, send: Send, budget: Budget) -> None:
        start, sending = time.perf_counter(), list[asyncio.Task[None]]()
        for index, at in enumerate(self.arrivals()):
            if not budget.allows(index, at):
                break
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            sending.append(asyncio.create_task(send(index)))
        await asyncio.gather(*sending)

    def _check_rate(self) -> None:
        if not self.rate > 0:
            raise ConfigError("--rate must be > 0 requests per second")


@dataclass(frozen=True)
class ConstantRate(OpenLoop):
    rate: float  # requests per second

    def __post_init__(self) -> None:
        self._check_rate()

    def arrivals(self) -> Iterator[float]:
        return (index / self.rate for index in itertools.count())

    @property
    def name(self) -> str:
        return f"rate-{self.rate:g}"

    @property
    def label(self) -> str:
        return f"constant rate {self.rate:g} req/s"

    def describe(self) -> dict[str, Any]:
        return {"kind": "constant", "rate": self.rate}


@dataclass(frozen=True)
class PoissonRate(OpenLoop):
    """Independent arrivals at `rate` per second on average: exponential gaps, seeded. `stream`
    picks one of many independent arrival sequences under the same seed."""

    rate: float
    seed: int = 0
    stream: int = 0

    def __post_init__(self) -> None:
        self._check_rate()

    def arrivals(self) -> Iterator[float]:
        rng = random.Random(f"strata-bench-arrivals:{self.seed}:{self.stream}")
        at = 0.0
        while True:
            yield at
            at += rng.expovariate(self.rate)

    @property
    def name(self) -> str:
        return f"poisson-{self.rate:g}"

    @property
    def label(self) -> str:
        return f"Poisson arrivals {self.rate:g} req/s"

    def describe(self) -> dict[str, Any]:
        return {"kind": "poisson", "rate": self.rate, "seed": self.seed, "stream": self.stream}
