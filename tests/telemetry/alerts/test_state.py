from __future__ import annotations

from strata.telemetry.alerts.state import Alert, AlertKey, AlertStates, Reading, Timing

KEY = AlertKey.of("e2e_p99", route="/v1/chat/completions")
TIMING = Timing(for_s=10.0, resolve_after_s=20.0, clear_ratio=0.8)


def _at(value: float, key: AlertKey = KEY) -> Reading:
    return Reading(key, value, 1.0, f"value {value}")


def _run(states: AlertStates, values: list[float | None], start: float = 0.0) -> list[Alert]:
    """One evaluation per second; None: the rule had no reading for the series."""
    changes = []
    for second, value in enumerate(values):
        readings = [] if value is None else [_at(value)]
        changes += states.update("e2e_p99", "critical", readings, start + second)
    return changes


def test_a_breach_fires_once_after_holding_for_the_for_duration() -> None:
    states = AlertStates(TIMING)
    changes = _run(states, [2.0] * 10)
    assert changes == [] and states.alerts()[0].state == "pending"
    changes = _run(states, [2.0] * 30, start=10)
    assert [a.state for a in changes] == ["firing"]
    fired = changes[0]
    assert fired.fired_at == 10 and fired.since == 0 and fired.labels == dict(KEY.labels)
    assert states.firing() == [states.alerts()[0]] and states.firing()[0].value == 2.0


def test_a_breach_shorter_than_the_for_duration_never_fires() -> None:
    states = AlertStates(TIMING)
    assert _run(states, [2.0] * 9 + [0.9] + [2.0] * 9) == []
    assert [a.state for a in states.alerts()] == ["pending"]


def test_hysteresis_holds_a_firing_alert_between_the_clear_level_and_the_threshold() -> None:
    states = AlertStates(TIMING)
    changes = _run(states, [2.0] * 11)
    # 0.9 is under the threshold (1.0) but over the clear level (0.8): it never counts as clear
    changes += _run(states, [0.9] * 100, start=11)
    assert [a.state for a in changes] == ["firing"]


def test_flapping_input_fires_once_and_resolves_once() -> None:
    states = AlertStates(TIMING)
    flapping = [2.0, 0.5] * 5  # clear and breached in turn: the clear timer keeps restarting
    changes = _run(states, [2.0] * 11 + flapping * 5 + [0.5] * 25)
    assert [a.state for a in changes] == ["firing", "resolved"]


def test_it_resolves_after_staying_clear_or_unread_long_enough() -> None:
    for clear in (0.5, None):
        states = AlertStates(TIMING)
        changes = _run(states, [2.0] * 11 + [clear] * 20)
        assert [a.state for a in changes] == ["firing"]
        changes = _run(states, [clear], start=31)
        assert [a.state for a in changes] == ["resolved"]
        assert changes[0].resolved_at == 31 and states.alerts() == []


def test_alerts_of_other_rules_are_not_cleared_by_a_rule_without_readings() -> None:
    states = AlertStates(Timing(0.0, 0.0, 0.8))
    other = AlertKey.of("cost_anomaly", tenant="acme")
    states.update("cost_anomaly", "warning", [_at(2.0, other)], 0.0)
    states.update("e2e_p99", "critical", [], 1.0)
    assert [a.rule for a in states.firing()] == ["cost_anomaly"]


def test_each_series_of_a_rule_has_its_own_state() -> None:
    states = AlertStates(Timing(0.0, 0.0, 0.8))
    a, b = AlertKey.of("r", tenant="a"), AlertKey.of("r", tenant="b")
    fired = states.update("r", "warning", [_at(2.0, a), _at(0.1, b)], 0.0)
    assert [x.labels for x in fired] == [{"tenant": "a"}]
    resolved = states.update("r", "warning", [_at(2.0, b)], 1.0)
    assert [(x.labels, x.state) for x in resolved] == [
        ({"tenant": "b"}, "firing"),
        ({"tenant": "a"}, "resolved"),
    ]
