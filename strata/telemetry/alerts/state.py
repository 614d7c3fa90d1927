"""What rules read, and the state machine that turns readings into firing and resolved alerts.

A rule reports a `Reading` (value against threshold) for each series it can judge. Per alert:

    (none) --value > threshold--> pending --held for_s--> firing
    pending --not above threshold--> (none)
    firing --value <= threshold x clear_ratio, or no reading, for resolve_after_s--> resolved

A firing alert whose value sits between the clear level and the threshold stays firing and
its clear timer restarts: hysteresis and the two durations are what keep an alert from
flapping. `update` returns the alerts that just changed state: each alert is returned once
as "firing" and once as "resolved".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

State = Literal["pending", "firing", "resolved"]


class AlertKey(NamedTuple):
    """Which alert: its rule and the labels that tell its series apart (sorted pairs)."""

    rule: str
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, rule: str, **labels: str) -> AlertKey:
        return cls(rule, tuple(sorted(labels.items())))


@dataclass(frozen=True, slots=True)
class Reading:
    """One series judged by a rule now: `value` fires above `threshold`."""

    key: AlertKey
    value: float
    threshold: float
    message: str  # what is wrong, in words, with the numbers


@dataclass(frozen=True)
class Alert:
    """One alert as the admin API, the dashboard and the sinks show it. Times: Unix seconds."""

    rule: str
    severity: str
    state: State
    labels: dict[str, str]
    value: float
    threshold: float
    message: str
    since: float  # when the condition was first seen
    fired_at: float | None = None
    resolved_at: float | None = None


@dataclass(frozen=True)
class Timing:
    """How long a condition must hold to fire and stay clear to resolve, and the hysteresis."""

    for_s: float
    resolve_after_s: float
    clear_ratio: float


@dataclass
class _Tracked:
    alert: Alert
    clear_since: float | None = None  # when the alert was first seen clear, while firing


class AlertStates:
    """Every pending and firing alert, updated from one rule's readings at a time."""

    def __init__(self, timing: Timing) -> None:
        self._timing = timing
        self._tracked: dict[AlertKey, _Tracked] = {}

    def update(
        self, rule: str, severity: str, readings: Iterable[Reading], now: float
    ) -> list[Alert]:
        """Apply `rule`'s readings; its alerts without a reading count as clear."""
        seen: set[AlertKey] = set()
        changes: list[Alert] = []
        for reading in readings:
            seen.add(reading.key)
            changes += self._read(reading, severity, now)
        for key in [k for k in self._tracked if k.rule == rule and k not in seen]:
            changes += self._clear(key, now)
        return changes

    def alerts(self) -> list[Alert]:
        """Pending and firing alerts, oldest first."""
        return sorted((t.alert for t in self._tracked.values()), key=lambda a: a.since)

    def firing(self) -> list[Alert]:
        return [a for a in self.alerts() if a.state == "firing"]

    def _read(self, reading: Reading, severity: str, now: float) -> list[Alert]:
        tracked = self._tracked.get(reading.key)
        if reading.value > reading.threshold:
            return self._breached(reading, tracked, severity, now)
        if tracked is None:
            return []
        if tracked.alert.state == "pending":
            del self._tracked[reading.key]
            return []
        if reading.value > reading.threshold * self._timing.clear_ratio:
            tracked.clear_since = None  # between the clear level and the threshold: hold
            tracked.alert = _with_reading(tracked.alert, reading)
            return []
        tracked.alert = _with_reading(tracked.alert, reading)
        return self._clear(reading.key, now)

    def _breached(
        self, reading: Reading, tracked: _Tracked | None, severity: str, now: float
    ) -> list[Alert]:
        if tracked is None:
            alert = _new_alert(reading, severity, now)
            tracked = self._tracked[reading.key] = _Tracked(alert)
        tracked.clear_since = None
        tracked.alert = _with_reading(tracked.alert, reading)
        alert = tracked.alert
        if alert.state == "pending" and now - alert.since >= self._timing.for_s:
            tracked.alert = replace(alert, state="firing", fired_at=now)
            return [tracked.alert]
        return []

    def _clear(self, key: AlertKey, now: float) -> list[Alert]:
        tracked = self._tracked[key]
        if tracked.alert.state == "pending":
            del self._tracked[key]
            return []
        if tracked.clear_since is None:
            tracked.clear_since = now
        if now - tracked.clear_since < self._timing.resolve_after_s:
            return []
        del self._tracked[key]
        return [replace(tracked.alert, state="resolved", resolved_at=now)]


def _new_alert(reading: Reading, severity: str, now: float) -> Alert:
    return Alert(reading.key.rule, severity, "pending", dict(reading.key.labels), reading.value,
                 reading.threshold, reading.message, since=now)  # fmt: skip


def _with_reading(alert: Alert, reading: Reading) -> Alert:
    return replace(alert, value=reading.value, threshold=reading.threshold,
                   message=reading.message)  # fmt: skip


def labels_text(labels: Mapping[str, str]) -> str:
    """`{a="1", b="2"}` as a log line shows labels; empty for none."""
    if not labels:
        return ""
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
