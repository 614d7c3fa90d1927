"""Alerts through a live gateway: real HTTP clients (the `openai` SDK) against the gateway in
front of a mock upstream, on a real PostgreSQL, posting to a real local webhook receiver.

A latency spike (the upstream stalls) and a cost anomaly (one tenant's requests turn 100x
more expensive) each fire exactly once within a bounded time, show in `GET /admin/alerts` and
`strata:alerts_firing`, and resolve once the cause is gone. Windows are seconds long here;
every wait polls with a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strata.config import Settings
from tests.gateway.conftest import gateway_settings
from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream
from tests.support.webhook_receiver import WebhookReceiver

WINDOW_S = 2.0
ALERTS: dict[str, Any] = {
    "interval_s": 0.1,
    "window_s": WINDOW_S,
    "baseline_s": 10.0,  # coarse baseline slices of 1 s
    "for_s": WINDOW_S,  # one slow request cannot fire: it leaves the window first
    "resolve_after_s": 0.5,
    "min_samples": 5,
    "freshness": {"slo_s": None},
}
SECRET = "hook-secret"
FIRE_WITHIN_S = 12.0  # from the cause to the webhook POST
RESOLVE_WITHIN_S = 12.0


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockUpstream]:
    with MockUpstream("mock", models=("mock-model", "mock-big")) as mock:
        yield mock


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


class _Load:
    """Requests in a loop from a few threads until stopped, recording when each completed.
    `model` is read per request: change it to change what the requests cost."""

    def __init__(self, gateway: LiveGateway, key: str, threads: int, stream: bool) -> None:
        self.model = "mock-model"
        self.completed: list[float] = []  # time.monotonic()
        self.errors: list[BaseException] = []
        self._client = gateway.client(key)
        self._stream = stream
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not self.errors, self.errors[:3]

    def older_than(self, age_s: float) -> int:
        """Requests that completed more than `age_s` ago."""
        cutoff = time.monotonic() - age_s
        return sum(1 for done in list(self.completed) if done < cutoff)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._one()
            except Exception as exc:  # reported when the load stops
                self.errors.append(exc)
                return
            self.completed.append(time.monotonic())

    def _one(self) -> None:
        messages = [{"role": "user", "content": "hi"}]
        create = self._client.chat.completions.create
        if self._stream:
            for _ in create(model=self.model, messages=messages, max_tokens=8, stream=True):  # type: ignore[arg-type]
                pass
        else:
            create(model=self.model, messages=messages, max_tokens=8)  # type: ignore[arg-type]


def _settings(pg_dsn: str, tmp_path: Path, upstream: MockUpstream, hook: WebhookReceiver,
              **alerts: Any) -> Settings:  # fmt: skip
    webhook = {"url": hook.url, "secret": SECRET, "timeout_s": 2.0}
    return gateway_settings(
        pg_dsn, tmp_path, upstream,
        gateway={"ledger_flush_ms": 20},
        pricing={"models": {"mock-model": {"input_per_mtok": 1, "output_per_mtok": 1},
                            "mock-big": {"input_per_mtok": 100, "output_per_mtok": 100}}},
        alerts={**ALERTS, **alerts, "webhook": webhook},
    )  # fmt: skip


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Poll until `predicate` holds; the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


def _events(hook: WebhookReceiver) -> list[tuple[str, str, dict[str, str]]]:
    """(alertname, status, labels without alertname and severity) per delivered POST."""
    found = []
    for body in hook.delivered():
        (alert,) = body["alerts"]
        labels = dict(alert["labels"])
        name = labels.pop("alertname")
        labels.pop("severity")
        found.append((name, alert["status"], labels))
    return found


def _seen(hook: WebhookReceiver, rule: str, status: str) -> bool:
    return any(name == rule and state == status for name, state, _ in _events(hook))


def _both_latency(hook: WebhookReceiver, status: str) -> bool:
    return _seen(hook, "e2e_p99", status) and _seen(hook, "ttft_p99", status)


def _warm_up(load: _Load | list[_Load]) -> None:
    """Until every load has a baseline: requests older than the window, over two slices."""
    loads = load if isinstance(load, list) else [load]
    _wait(lambda: all(x.older_than(WINDOW_S + 2.0) >= 10 for x in loads), 60, "a baseline")


def _firing_now(gateway: LiveGateway) -> list[dict[str, Any]]:
    reply = gateway.admin("GET", "/alerts")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["enabled"] is True
    return [a for a in body["data"] if a["state"] == "firing"]


def _gauge(gateway: LiveGateway, rule: str) -> float:
    with gateway.http(gateway.admin_key) as http:
        text = http.get("/metrics").text
    line = next(
        x for x in text.splitlines() if x.startswith(f'strata:alerts_firing{{rule="{rule}"}}')
    )
    return float(line.rsplit(" ", 1)[1])


def _quiet_for(gateway: LiveGateway, passes: int) -> None:
    """Let the evaluator run `passes` more times (nothing more may fire meanwhile)."""
    alerts = gateway.runtime.alerts
    assert alerts is not None
    target = alerts.evaluations + passes
    _wait(lambda: alerts.evaluations >= target, 30, f"{passes} more evaluations")


def test_a_latency_spike_fires_once_and_resolves(
    pg_dsn: str, tmp_path: Path, upstream: MockUpstream, hook: WebhookReceiver
) -> None:
    upstream.reset()
    latency = {"ttft_p99_ms": None, "e2e_p99_ms": None, "jump_factor": 3.0, "jump_min_ms": 200}
    settings = _settings(pg_dsn, tmp_path, upstream, hook, latency=latency)
    with LiveGateway(settings) as gateway:
        key = gateway.create_key(tenant="acme", user="alice")
        with _Load(gateway, key, threads=6, stream=True) as load:
            _warm_up(load)
            assert hook.posts == []
            upstream.stall_s = 0.6  # every answer's head now waits 600 ms
            fired = _wait(lambda: _both_latency(hook, "firing"), FIRE_WITHIN_S, "firing")
            assert fired >= WINDOW_S  # the for-duration held
            assert {a["rule"] for a in _firing_now(gateway)} == {"e2e_p99", "ttft_p99"}
            assert _gauge(gateway, "e2e_p99") == 1.0
            upstream.stall_s = 0.0
            _wait(lambda: _both_latency(hook, "resolved"), RESOLVE_WITHIN_S, "resolved")
            _quiet_for(gateway, passes=20)
        assert _firing_now(gateway) == [] and _gauge(gateway, "e2e_p99") == 0.0
    route = {"route": "/v1/chat/completions"}
    assert sorted(_events(hook), key=lambda e: (e[0], e[1])) == [
        ("e2e_p99", "firing", route), ("e2e_p99", "resolved", route),
        ("ttft_p99", "firing", route), ("ttft_p99", "resolved", route),
    ]  # fmt: skip
    assert all(post.headers["x-strata-alert-secret"] == SECRET for post in hook.posts)


def test_a_tenants_cost_anomaly_fires_once_and_resolves(
    pg_dsn: str, tmp_path: Path, upstream: MockUpstream, hook: WebhookReceiver
) -> None:
    upstream.reset()
    latency = {"ttft_p99_ms": None, "e2e_p99_ms": None, "jump_factor": None}
    settings = _settings(pg_dsn, tmp_path, upstream, hook, latency=latency)
    with LiveGateway(settings) as gateway:
        acme_key = gateway.create_key(tenant="acme", user="alice")
        globex_key = gateway.create_key(tenant="globex", user="bob")
        with (
            _Load(gateway, acme_key, threads=2, stream=False) as acme,
            _Load(gateway, globex_key, threads=2, stream=False) as globex,
        ):
            _warm_up([acme, globex])
            assert hook.posts == []
            acme.model = "mock-big"  # the same tokens at 100x the price
            _wait(lambda: _seen(hook, "cost_anomaly", "firing"), FIRE_WITHIN_S, "firing")
            (firing,) = _firing_now(gateway)
            assert firing["rule"] == "cost_anomaly" and firing["labels"] == {"tenant": "acme"}
            assert firing["value"] > firing["threshold"] and "tenant acme" in firing["message"]
            assert _gauge(gateway, "cost_anomaly") == 1.0
            acme.model = "mock-model"
            _wait(lambda: _seen(hook, "cost_anomaly", "resolved"), RESOLVE_WITHIN_S, "resolved")
            _quiet_for(gateway, passes=20)
    acme_only = {"tenant": "acme"}
    assert _events(hook) == [
        ("cost_anomaly", "firing", acme_only),
        ("cost_anomaly", "resolved", acme_only),
    ]
