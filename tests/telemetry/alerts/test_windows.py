from __future__ import annotations

from strata.telemetry.alerts.windows import Slices

WINDOW_S, BASELINE_S = 10.0, 100.0  # fine slices of 1 s, coarse slices of 10 s


def test_samples_move_from_the_window_to_the_baseline_then_out() -> None:
    slices = Slices(WINDOW_S, BASELINE_S)
    for t in range(5):
        slices.add(0.5, 1000.0 + t)
    slices.roll(1005.0)
    assert (slices.current.total, slices.baseline.total) == (5, 0)
    slices.roll(1015.0)  # every sample is now older than the window
    assert (slices.current.total, slices.baseline.total) == (0, 5)
    slices.roll(1000.0 + WINDOW_S + BASELINE_S - 1)
    assert slices.baseline.total == 5  # still inside the baseline
    slices.roll(1000.0 + WINDOW_S + BASELINE_S + 10 + 1)  # past it, coarse slice included
    assert slices.baseline.total == 0 and slices.empty


def test_the_window_keeps_what_arrived_within_it() -> None:
    slices = Slices(WINDOW_S, BASELINE_S)
    slices.add(1.0, 1000.0)
    slices.add(2.0, 1009.5)
    slices.roll(1010.5)
    assert slices.current.total == 1 and slices.baseline.total == 1


def test_the_baseline_is_kept_in_about_ten_coarse_parts() -> None:
    slices = Slices(WINDOW_S, BASELINE_S)
    for t in range(0, 200):
        slices.add(0.1, 1000.0 + t)
        slices.roll(1000.0 + t)
    parts = slices.baseline_parts()
    assert 10 <= len(parts) <= 11
    assert sum(p.total for p in parts) == slices.baseline.total
    assert slices.current.total == WINDOW_S


def test_a_clock_stepping_back_does_not_lose_samples() -> None:
    slices = Slices(WINDOW_S, BASELINE_S)
    slices.add(1.0, 1005.0)
    slices.add(1.0, 1003.0)
    assert slices.current.total == 2
