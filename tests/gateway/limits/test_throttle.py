from __future__ import annotations

import logging

import pytest

from strata.gateway.limits.throttle import ThrottledWarning


def test_logs_once_per_interval_and_counts_what_it_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    warning = ThrottledWarning(logging.getLogger("test.throttle"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        for _ in range(5):
            warning.warning("store down: %s", "refused")
        now[0] += 10.0
        warning.warning("store down: %s", "refused")
    assert [r.getMessage() for r in caplog.records] == [
        "store down: refused",
        "store down: refused (4 more like this since the last one)",
    ]
