"""What the gateway reads from an upstream's usage object."""

from __future__ import annotations

from typing import Any

import pytest

from strata.gateway.call import TokenUsage

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
         "prompt_tokens_details": {"cached_tokens": 8}}  # fmt: skip


def test_a_strata_engines_replica_seconds_are_read_with_the_tokens() -> None:
    usage = TokenUsage.from_json({**USAGE, "strata_replica_seconds": 0.125})
    assert usage == TokenUsage(12, 5, 8, reported=True, replica_seconds=0.125)
    assert TokenUsage.from_json({**USAGE, "strata_replica_seconds": 2}) == TokenUsage(
        12, 5, 8, reported=True, replica_seconds=2.0
    )


@pytest.mark.parametrize("value", [None, "0.5", True, -1.0, float("nan"), float("inf"), [1]])
def test_replica_seconds_that_are_not_a_plain_non_negative_number_are_ignored(value: Any) -> None:
    usage = TokenUsage.from_json({**USAGE, "strata_replica_seconds": value})
    assert usage == TokenUsage(12, 5, 8, reported=True, replica_seconds=None)


def test_other_upstreams_usage_has_no_replica_seconds() -> None:
    usage = TokenUsage.from_json(USAGE)
    assert usage is not None and usage.replica_seconds is None
