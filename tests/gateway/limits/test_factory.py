from __future__ import annotations

from pydantic import SecretStr

from strata.config import LimitSettings, Settings
from strata.gateway.limits import Ask, MemoryLimiter, RedisLimiter, build_limiter

from . import scope


async def test_without_redis_url_limits_stay_in_memory() -> None:
    limiter = build_limiter(Settings(redis_url=None))
    assert isinstance(limiter, MemoryLimiter)


async def test_with_redis_url_limits_go_to_that_redis(redis_url: str) -> None:
    settings = Settings(redis_url=SecretStr(redis_url), limits=LimitSettings(on_redis_error="open"))
    limiter = build_limiter(settings)
    assert isinstance(limiter, RedisLimiter)
    try:
        reservation = await limiter.reserve([scope(rpm=5)], Ask())
        assert reservation.checks  # counted in Redis, not admitted uncounted
    finally:
        await limiter.aclose()
