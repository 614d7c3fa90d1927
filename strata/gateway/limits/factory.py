"""Picks the limiter backend from the settings."""

from __future__ import annotations

import time

from strata.config import Settings
from strata.gateway.limits.memory import MemoryLimiter
from strata.gateway.limits.redis_limiter import RedisLimiter
from strata.gateway.limits.types import Clock, Limiter


def build_limiter(settings: Settings, clock: Clock = time.time) -> Limiter:
    """`RedisLimiter` when `redis_url` is set (limits shared by every replica), else
    `MemoryLimiter` (exact for this one process)."""
    if settings.redis_url is not None:
        return RedisLimiter.from_url(settings.redis_url.get_secret_value(), settings.limits, clock)
    return MemoryLimiter(clock)
