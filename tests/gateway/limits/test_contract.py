"""The `Limiter` contract (strata/gateway/limits/types.py), run against both backends: the
in-process `MemoryLimiter` and `RedisLimiter` on a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strata.config import LimitSettings
from strata.errors import InvalidRequestError, RateLimitError
from strata.gateway.limits import (
    CONCURRENCY,
    QUOTA,
    RATE_LIMIT,
    TOO_LARGE,
    Ask,
    Limiter,
    MemoryLimiter,
    RedisLimiter,
    Reservation,
    SeedEntry,
    Usage,
    windows,
)
from strata.gateway.principal import Scope

from . import FakeClock, scope


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter(clock)
        return
    url = request.getfixturevalue("redis_url")
    redis_limiter = RedisLimiter.from_url(url, LimitSettings(), clock)
    yield redis_limiter
    await redis_limiter.aclose()


async def admitted(limiter: Limiter, scopes: Sequence[Scope], ask: Ask) -> Reservation | None:
    try:
        return await limiter.reserve(scopes, ask)
    except (RateLimitError, InvalidRequestError):  # full for now, or larger than the limit
        return None


async def room(limiter: Limiter, scopes: Sequence[Scope], tokens: int) -> None:
    """Assert exactly `tokens` more tokens fit: `tokens` does, one more does not."""
    if tokens > 0:
        assert await admitted(limiter, scopes, Ask(tokens=tokens + 1, requests=0)) is None
    fits = await admitted(limiter, scopes, Ask(tokens=tokens, requests=0))
    assert fits is not None
    await limiter.release(fits)


async def test_twenty_concurrent_reserves_against_room_for_five_admit_exactly_five(
    limiter: Limiter,
) -> None:
    scopes = [scope("tenant", "acme", daily_tokens=500)]
    results = await asyncio.gather(*(admitted(limiter, scopes, Ask(tokens=100)) for _ in range(20)))
    assert sum(r is not None for r in results) == 5


async def test_a_tenant_rejection_leaves_the_key_untouched(limiter: Limiter) -> None:
    key = scope("key", "k1", tpm=1000, rpm=100)
    first = [key, scope("tenant", "acme", tpm=150)]
    assert await admitted(limiter, first, Ask(tokens=100)) is not None
    with pytest.raises(RateLimitError) as info:
        await limiter.reserve(first, Ask(tokens=100))
    assert "tenant 'acme'" in info.value.message
    await room(limiter, [key, scope("tenant", "other")], 900)  # only the admitted 100 counted


async def test_settle_corrects_down_to_real_usage(limiter: Limiter) -> None:
    scopes = [scope(tpm=1000)]
    reservation = await limiter.reserve(scopes, Ask(tokens=600))
    await limiter.settle(reservation, Usage(tokens=150))
    await room(limiter, scopes, 850)


async def test_settle_never_raises_usage_above_the_reservation(limiter: Limiter) -> None:
    scopes = [scope(tpm=1000, daily_cost_usd=1.0)]
    reservation = await limiter.reserve(scopes, Ask(tokens=600, cost_usd=0.5))
    await limiter.settle(reservation, Usage(tokens=5000, cost_usd=3.0))
    await room(limiter, scopes, 400)
    assert await admitted(limiter, scopes, Ask(requests=0, cost_usd=0.5)) is not None


async def test_settle_keeps_the_request_and_frees_the_slot(limiter: Limiter) -> None:
    scopes = [scope(rpm=1, concurrent=1)]
    reservation = await limiter.reserve(scopes, Ask())
    await limiter.settle(reservation, Usage(tokens=0))
    with pytest.raises(RateLimitError) as info:
        await limiter.reserve(scopes, Ask())
    assert info.value.code == RATE_LIMIT  # the request still counts...
    assert await admitted(limiter, [scope(concurrent=1)], Ask()) is not None  # ...the slot not


async def test_release_returns_everything(limiter: Limiter) -> None:
    scopes = [scope(rpm=1, tpm=100, concurrent=1, daily_tokens=100, monthly_cost_usd=0.5)]
    ask = Ask(tokens=100, cost_usd=0.5)
    await limiter.release(await limiter.reserve(scopes, ask))
    assert await admitted(limiter, scopes, ask) is not None


async def test_settle_and_release_are_idempotent(limiter: Limiter) -> None:
    scopes = [scope(rpm=1, tpm=1000)]
    reservation = await limiter.reserve(scopes, Ask(tokens=600))
    await limiter.settle(reservation, Usage(tokens=100))
    await limiter.settle(reservation, Usage(tokens=0))
    await limiter.release(reservation)
    assert not reservation.is_open
    await room(limiter, scopes, 900)
    with pytest.raises(RateLimitError):  # the release did not return the request either
        await limiter.reserve(scopes, Ask())


async def test_concurrency_limit(limiter: Limiter) -> None:
    scopes = [scope("user", "acme/alice", concurrent=2)]
    first, _ = [await limiter.reserve(scopes, Ask()) for _ in range(2)]
    with pytest.raises(RateLimitError) as info:
        await limiter.reserve(scopes, Ask())
    assert info.value.code == CONCURRENCY
    assert info.value.retry_after_s == 1.0
    await limiter.release(first)
    assert await admitted(limiter, scopes, Ask()) is not None


async def test_minute_window_resets(limiter: Limiter, clock: FakeClock) -> None:
    scopes = [scope(rpm=2, tpm=100)]
    await limiter.reserve(scopes, Ask(tokens=100))
    clock.advance(30)
    with pytest.raises(RateLimitError) as info:
        await limiter.reserve(scopes, Ask(tokens=1))
    assert info.value.code == RATE_LIMIT
    assert info.value.retry_after_s == 29.0  # the fake clock sits 1 s into its minute + 30 s
    clock.to_next_minute()
    await room(limiter, scopes, 100)


async def test_daily_budget_resets_at_utc_midnight(limiter: Limiter, clock: FakeClock) -> None:
    scopes = [scope("tenant", "acme", daily_tokens=100)]
    await limiter.reserve(scopes, Ask(tokens=100))
    clock.to_next_minute()
    with pytest.raises(RateLimitError) as info:
        await limiter.reserve(scopes, Ask(tokens=1))
    assert info.value.code == QUOTA
    assert "daily token budget" in info.value.message
    clock.to_next_day()
    await room(limiter, scopes, 100)


async def test_monthly_budget_outlives_days_and_resets_with_the_month(
    limiter: Limiter, clock: FakeClock
) -> None:
    scopes = [scope("tenant", "acme", monthly_cost_usd=1.0)]
    await limiter.reserve(scopes, Ask(cost_usd=1.0))
    this_month = windows.month(clock.now)
    clock.now = this_month.resets_at - 1  # the month's last second: still full
    assert await admitted(limiter, scopes, Ask(cost_usd=0.000001)) is None
    clock.now = this_month.resets_at
    assert await admitted(limiter, scopes, Ask(cost_usd=1.0)) is not None


async def test_settle_after_the_window_rolled_over_leaves_the_new_window_alone(
    limiter: Limiter, clock: FakeClock
) -> None:
    scopes = [scope(tpm=100)]
    old = await limiter.reserve(scopes, Ask(tokens=100))
    clock.to_next_minute()
    await limiter.reserve(scopes, Ask(tokens=100))
    await limiter.settle(old, Usage(tokens=0))
    with pytest.raises(RateLimitError):
        await limiter.reserve(scopes, Ask(tokens=1))


async def test_an_ask_beyond_the_whole_limit_says_lower_max_tokens(limiter: Limiter) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await limiter.reserve([scope(tpm=100)], Ask(tokens=101))
    assert info.value.code == TOO_LARGE
    assert "lower max_tokens" in info.value.message


async def test_costs_are_exact_in_micro_dollars(limiter: Limiter) -> None:
    scopes = [scope("tenant", "acme", daily_cost_usd=0.3)]
    assert await admitted(limiter, scopes, Ask(cost_usd=0.1)) is not None
    assert await admitted(limiter, scopes, Ask(cost_usd=0.2)) is not None  # 0.1 + 0.2 > 0.3
    assert await admitted(limiter, scopes, Ask(cost_usd=0.000001)) is None


async def test_unlimited_scopes_admit_everything(limiter: Limiter) -> None:
    scopes = [scope("key", "k"), scope("tenant", "t")]
    reservation = await limiter.reserve(scopes, Ask(tokens=10**12, cost_usd=1e9))
    assert reservation.checks == ()
    await limiter.settle(reservation, Usage(tokens=5))


async def test_seed_starts_day_and_month_counters(limiter: Limiter) -> None:
    await limiter.seed([SeedEntry("tenant", "acme", 80, 0.75, 900, 9.0)])
    await room(limiter, [scope("tenant", "acme", daily_tokens=100)], 20)
    await room(limiter, [scope("tenant", "acme", monthly_tokens=1000)], 100)
    daily_cost = [scope("tenant", "acme", daily_cost_usd=1.0)]
    assert await admitted(limiter, daily_cost, Ask(requests=0, cost_usd=0.250001)) is None
    assert await admitted(limiter, daily_cost, Ask(requests=0, cost_usd=0.25)) is not None
    monthly_cost = [scope("tenant", "acme", monthly_cost_usd=10.0)]
    assert await admitted(limiter, monthly_cost, Ask(requests=0, cost_usd=1.000001)) is None


async def test_seed_never_overwrites_a_live_counter(limiter: Limiter) -> None:
    scopes = [scope("tenant", "acme", daily_tokens=100)]
    await limiter.reserve(scopes, Ask(tokens=50))
    await limiter.seed([SeedEntry("tenant", "acme", 10, 0.0, 10, 0.0)])
    await room(limiter, scopes, 50)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    limit=st.integers(1, 300),
    asks=st.lists(st.integers(1, 120), min_size=1, max_size=25),
)
async def test_concurrent_reserves_never_exceed_and_only_refuse_what_does_not_fit(
    limiter: Limiter, limit: int, asks: list[int]
) -> None:
    scopes = [scope("key", uuid.uuid4().hex, tpm=limit), scope("tenant", "acme")]
    results = await asyncio.gather(
        *(limiter.reserve(scopes, Ask(tokens=n)) for n in asks), return_exceptions=True
    )
    taken = sum(r.tokens for r in results if isinstance(r, Reservation))
    assert taken <= limit
    for tokens, result in zip(asks, results, strict=True):
        if isinstance(result, RateLimitError | InvalidRequestError):
            # Counters only grew, so what did not fit then does not fit now either.
            assert taken + tokens > limit
            assert (result.code == TOO_LARGE) == (tokens > limit)


# One reserve, settle or release at a time, checked against a one-counter model of the minute.
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(1, 80)),
        st.tuples(st.just("settle"), st.integers(0, 100)),
        st.tuples(st.just("release"), st.just(0)),
        st.tuples(st.just("next_minute"), st.just(0)),
    ),
    max_size=30,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=_OPS)
async def test_random_sequences_match_a_model(
    limiter: Limiter, clock: FakeClock, ops: list[tuple[str, int]]
) -> None:
    scopes = [scope("key", uuid.uuid4().hex, tpm=150)]
    used, minute = 0, 0
    held: list[tuple[Reservation, int]] = []  # open reservations and their minute
    for op, n in ops:
        if op == "reserve":
            reservation = await admitted(limiter, scopes, Ask(tokens=n))
            assert (reservation is not None) == (used + n <= 150)
            if reservation is not None:
                used += n
                held.append((reservation, minute))
        elif op == "next_minute":
            clock.to_next_minute()
            used, minute = 0, minute + 1
        elif held:
            reservation, taken_in = held.pop(0)
            back = reservation.tokens if op == "release" else max(reservation.tokens - n, 0)
            await (
                limiter.release(reservation)
                if op == "release"
                else limiter.settle(reservation, Usage(tokens=n))
            )
            used -= back if taken_in == minute else 0
