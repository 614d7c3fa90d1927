"""Dashboard sessions: opened for admins only, ended by expiry, logout or the key's revocation."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from strata.gateway import dashboard_sessions
from strata.gateway.dashboard_sessions import DashboardSessions
from strata.gateway.principal import Principal

ADMIN = Principal(key_id="k1", tenant="ops", user="root", role="admin")


@dataclass
class FakeClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_session_stands_for_its_admin_until_it_expires() -> None:
    clock = FakeClock()
    sessions = DashboardSessions(60.0, clock)
    token = sessions.open(ADMIN)
    assert len(token) >= 43 and sessions.principal(token) == ADMIN
    clock.now += 59.9
    assert sessions.principal(token) == ADMIN
    clock.now += 0.2
    assert sessions.principal(token) is None
    assert sessions.principal(None) is None and sessions.principal("forged") is None


def test_logout_and_revocation_end_sessions() -> None:
    sessions = DashboardSessions(60.0)
    first, second = sessions.open(ADMIN), sessions.open(ADMIN)
    other = sessions.open(replace(ADMIN, key_id="k2"))
    sessions.close(first)
    assert sessions.principal(first) is None and sessions.principal(second) == ADMIN
    sessions.close_for_key("k1")
    assert sessions.principal(second) is None
    assert sessions.principal(other) is not None
    sessions.close(None)


def test_a_session_ends_when_its_key_expires() -> None:
    sessions = DashboardSessions(3600.0)
    soon = replace(ADMIN, expires_at=datetime.now(UTC) + timedelta(milliseconds=50))
    token = sessions.open(soon)
    assert sessions.principal(token) == soon
    gone = replace(ADMIN, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert sessions.principal(sessions.open(gone)) is None


def test_only_admins_get_sessions_and_their_number_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions = DashboardSessions(60.0)
    with pytest.raises(AssertionError):
        sessions.open(replace(ADMIN, role="user"))
    monkeypatch.setattr(dashboard_sessions, "MAX_SESSIONS", 2)
    tokens = [sessions.open(ADMIN) for _ in range(3)]
    assert [sessions.principal(t) is not None for t in tokens] == [False, True, True]
