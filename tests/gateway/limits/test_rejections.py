from __future__ import annotations

import pytest

from strata.errors import InvalidRequestError
from strata.gateway.limits.meters import CONCURRENCY, QUOTA, RATE_LIMIT, TOO_LARGE
from strata.gateway.limits.plan import plan
from strata.gateway.limits.rejections import (
    CONCURRENCY_RETRY_S,
    exceeded,
    rejection,
    too_large,
)
from strata.gateway.limits.types import Ask, Check
from strata.gateway.principal import ScopeKind

from . import scope

NOW = 1_750_000_030.0  # 2025-06-15T15:07:10Z, 50 s before the minute ends (15:08:00)


def check(kind: ScopeKind = "tenant", **limits: int | float) -> Check:
    (only,) = plan([scope(kind, "acme", **limits)], Ask(tokens=300, cost_usd=0.25), NOW)
    return only


def test_rate_limit_names_scope_limit_size_left_asked_and_reset() -> None:
    error = exceeded(check(tpm=1000), used=800, now=NOW)
    assert error.status_code == 429
    assert error.code == RATE_LIMIT
    assert error.retry_after_s == 50.0
    assert error.message == (
        "Rate limit exceeded for tenant 'acme': the tokens-per-minute limit is 1,000 tokens; "
        "200 tokens left, 300 tokens asked; it resets at 2025-06-15T15:08:00Z (in 50 s)."
    )


def test_cost_quota_is_in_dollars_and_resets_at_midnight_utc() -> None:
    error = exceeded(check(daily_cost_usd=2.0), used=1_900_000, now=NOW)
    assert error.code == QUOTA
    assert "Quota exceeded for tenant 'acme': the daily cost budget is $2.00;" in error.message
    assert "$0.10 left, $0.25 asked" in error.message
    assert "2025-06-16T00:00:00Z" in error.message
    assert error.retry_after_s == 1_750_032_000 - NOW


def test_usage_beyond_a_lowered_limit_reports_nothing_left() -> None:
    assert "0 requests left, 1 request asked" in exceeded(check(rpm=5), used=9, now=NOW).message


def test_concurrency_says_how_many_are_in_flight_and_retries_soon() -> None:
    error = exceeded(check("key", concurrent=4), used=4, now=NOW)
    assert error.code == CONCURRENCY
    assert error.retry_after_s == CONCURRENCY_RETRY_S
    assert "concurrent requests for key 'acme'" in error.message
    assert "4 are in flight" in error.message


def test_too_large_says_to_lower_max_tokens_not_to_retry() -> None:
    error = too_large(check(monthly_tokens=1000)._replace(amount=5000), NOW)
    assert error.code == TOO_LARGE
    assert "asks 5,000 tokens but the monthly token budget is 1,000 tokens" in error.message
    assert "can never be admitted; lower max_tokens" in error.message
    assert "retry" not in error.message.lower()


def test_a_zero_limit_can_never_admit_anything() -> None:
    with pytest.raises(InvalidRequestError) as info:
        plan([scope("key", "acme", concurrent=0)], Ask(), NOW)
    assert info.value.message == (
        "Request too large for key 'acme': it asks 1 request but the concurrency limit is "
        "0 requests, so it can never be admitted; ask an administrator to raise it."
    )


def test_the_failure_that_clears_last_is_reported() -> None:
    minute, day, slots = check(tpm=1000), check(daily_tokens=1000), check(concurrent=1)
    error = rejection([(minute, 900), (day, 900), (slots, 1)], NOW)
    assert error.code == QUOTA
    assert error.retry_after_s is not None and error.retry_after_s > 3600
    assert rejection([(slots, 1)], NOW).code == CONCURRENCY
