"""Helpers shared by the limiter tests: an injectable clock and scope builders."""

from __future__ import annotations

import time

from strata.gateway.principal import Limits, Scope, ScopeKind


class FakeClock:
    """A wall clock the test moves by hand. Starts one second into the next real minute:
    Redis expires keys by its own (real) clock, so fake time must never lie in the past."""

    def __init__(self) -> None:
        self.now = float((int(time.time() // 60) + 1) * 60 + 1)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def to_next_minute(self) -> None:
        self.now = (self.now // 60 + 1) * 60 + 1

    def to_next_day(self) -> None:
        self.now = (self.now // 86_400 + 1) * 86_400 + 1


def scope(kind: ScopeKind = "key", scope_id: str = "k1", **limits: int | float) -> Scope:
    return Scope(kind, scope_id, Limits(**limits))  # type: ignore[arg-type]
