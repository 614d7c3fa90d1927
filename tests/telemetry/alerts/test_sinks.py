"""The sinks against a real local HTTP receiver: delivery, the secret header, retries, timeouts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from strata.config import WebhookSettings
from strata.telemetry.alerts.sinks import NEVER, LogSink, WebhookSink, fingerprint, webhook_body
from strata.telemetry.alerts.state import Alert
from tests.support.webhook_receiver import WebhookReceiver

FIRING = Alert("cost_anomaly", "warning", "firing", {"tenant": "acme"}, 2e-3, 1.5e-5,
               "tenant acme: median cost per request $0.002 ...", since=1_700_000_000.0,
               fired_at=1_700_000_060.0)  # fmt: skip
RESOLVED = replace(FIRING, state="resolved", resolved_at=1_700_000_360.0)


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def _sink(hook: WebhookReceiver, **settings: object) -> WebhookSink:
    return WebhookSink(WebhookSettings.model_validate({"url": hook.url, **settings}), 0.01)


async def _until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_the_body_is_shaped_like_an_alertmanager_webhook() -> None:
    body = webhook_body(FIRING)
    assert body["version"] == "4" and body["status"] == "firing"
    (alert,) = body["alerts"]
    labels = {"alertname": "cost_anomaly", "severity": "warning", "tenant": "acme"}
    assert alert["labels"] == labels and body["commonLabels"] == labels
    assert alert["annotations"] == {"summary": FIRING.message}
    assert alert["startsAt"] == "2023-11-14T22:14:20Z" and alert["endsAt"] == NEVER
    assert alert["value"] == 2e-3 and alert["threshold"] == 1.5e-5
    resolved = webhook_body(RESOLVED)["alerts"][0]
    assert resolved["status"] == "resolved" and resolved["endsAt"] == "2023-11-14T22:19:20Z"
    assert resolved["fingerprint"] == alert["fingerprint"] == fingerprint(labels)


async def test_alerts_are_posted_with_the_secret_header(hook: WebhookReceiver) -> None:
    sink = _sink(hook, secret="s3cret")
    sink.send(FIRING)
    sink.send(RESOLVED)
    await _until(lambda: sink.delivered == 2)
    await sink.aclose()
    assert [b["status"] for b in hook.delivered()] == ["firing", "resolved"]
    post = hook.posts[0]
    assert post.path == "/hook" and post.headers["x-strata-alert-secret"] == "s3cret"
    assert post.headers["content-type"] == "application/json"


async def test_a_failing_receiver_is_retried_until_it_takes_the_alert(
    hook: WebhookReceiver,
) -> None:
    hook.fail_next(2, status=503)
    sink = _sink(hook, retries=3)
    sink.send(FIRING)
    await _until(lambda: sink.delivered == 1)
    await sink.aclose()
    assert [p.status for p in hook.posts] == [503, 503, 200]
    assert len(hook.delivered()) == 1 and sink.failed == 0


async def test_a_refusal_is_not_retried(
    hook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    hook.fail_next(1, status=400)
    sink = _sink(hook, retries=3)
    sink.send(FIRING)
    await _until(lambda: sink.failed == 1)
    await sink.aclose()
    assert [p.status for p in hook.posts] == [400]
    assert "not delivered: HTTP 400" in caplog.text


async def test_a_hanging_receiver_neither_blocks_the_caller_nor_the_next_alerts(
    hook: WebhookReceiver,
) -> None:
    hook.stall_s = 2.0
    sink = _sink(hook, timeout_s=0.2, retries=1)
    started = time.perf_counter()
    sink.send(FIRING)
    sink.send(RESOLVED)
    assert time.perf_counter() - started < 0.05  # send only queues
    await _until(lambda: sink.failed == 2)  # each: 2 attempts of 0.2 s, then given up
    hook.stall_s = 0.0
    sink.send(FIRING)
    await _until(lambda: sink.delivered == 1)
    await sink.aclose()


async def test_closing_delivers_what_is_queued(hook: WebhookReceiver) -> None:
    sink = _sink(hook)
    for _ in range(5):
        sink.send(FIRING)
    await sink.aclose()
    assert len(hook.delivered()) == 5


def test_the_log_sink_warns_on_firing_and_informs_on_resolving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="strata.alerts")
    LogSink().send(FIRING)
    LogSink().send(RESOLVED)
    firing, resolved = caplog.records
    assert firing.levelno == logging.WARNING and resolved.levelno == logging.INFO
    assert firing.getMessage().startswith('alert firing: cost_anomaly{tenant="acme"}: tenant acme')
    assert resolved.getMessage().startswith('alert resolved: cost_anomaly{tenant="acme"}')
