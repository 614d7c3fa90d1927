"""Where alerts go when they fire and when they resolve: the log, and a webhook.

A sink's `send` never blocks: the evaluator calls it on the gateway's event loop. The webhook
sink only queues the alert; its own task POSTs it, with a total timeout per attempt and
retries with exponential backoff on connection errors, timeouts, 408, 429 and 5xx. The body
is shaped like Alertmanager's webhook (version 4, one alert per POST), so receivers built for
Alertmanager read it as they are.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from strata.background import stop
from strata.config import WebhookSettings
from strata.telemetry.alerts.state import Alert, labels_text

logger = logging.getLogger("strata.alerts")

QUEUE_SIZE = 1000  # alerts waiting for the webhook; beyond it new ones are dropped (logged)
RETRY_STATUSES = frozenset({408, 429})
NEVER = "0001-01-01T00:00:00Z"  # Alertmanager's "no end yet"


class Sink(Protocol):
    def send(self, alert: Alert) -> None:
        """Take an alert that just fired or resolved; returns at once."""
        ...

    async def aclose(self) -> None:
        """Deliver what is pending, within the sink's own time limit, then stop."""
        ...


class LogSink:
    """Firing alerts as warnings, resolved ones as info, on the `strata.alerts` logger."""

    def send(self, alert: Alert) -> None:
        name = alert.rule + labels_text(alert.labels)
        if alert.state == "firing":
            logger.warning("alert firing: %s: %s", name, alert.message)
        else:
            logger.info("alert resolved: %s (last: %s)", name, alert.message)

    async def aclose(self) -> None:
        return None


class WebhookSink:
    """POSTs each alert as JSON to `alerts.webhook.url` from a background task."""

    def __init__(self, settings: WebhookSettings, backoff_s: float = 0.5) -> None:
        assert settings.url is not None, "a webhook sink needs alerts.webhook.url"
        self._url = settings.url
        self._timeout_s = settings.timeout_s
        self._attempts = settings.retries + 1
        self._backoff_s = backoff_s
        secret = settings.secret
        self._headers = {settings.secret_header: secret.get_secret_value()} if secret else {}
        self._client = httpx.AsyncClient(timeout=settings.timeout_s)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_SIZE)
        self._worker: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def send(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(json.dumps(webhook_body(alert)).encode())
        except asyncio.QueueFull:
            logger.warning("alert webhook: %d alerts waiting; dropped %s", QUEUE_SIZE, alert.rule)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        """Give what is queued up to one timeout more, then stop."""
        if self._worker is not None:
            try:
                await asyncio.wait_for(self._queue.join(), self._timeout_s)
            except TimeoutError:
                logger.warning("alert webhook: %d alerts not delivered", self._queue.qsize())
            await stop(self._worker)
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            body = await self._queue.get()
            try:
                await self._deliver(body)
            finally:
                self._queue.task_done()

    async def _deliver(self, body: bytes) -> None:
        problem = ""
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
            problem, retry = await self._post(body)
            if not problem:
                self.delivered += 1
                return
            if not retry:
                break
        self.failed += 1
        logger.warning("alert webhook %s: not delivered: %s", self._url, problem)

    async def _post(self, body: bytes) -> tuple[str, bool]:
        """("", _) when delivered, else (what went wrong, whether a retry may help)."""
        headers = {"content-type": "application/json", **self._headers}
        try:
            reply = await asyncio.wait_for(
                self._client.post(self._url, content=body, headers=headers), self._timeout_s
            )
        except (httpx.HTTPError, TimeoutError) as exc:
            return f"{type(exc).__name__} {exc}".strip(), True
        if reply.is_success:
            return "", False
        status = reply.status_code
        return f"HTTP {status}", status >= 500 or status in RETRY_STATUSES


def webhook_body(alert: Alert) -> dict[str, Any]:
    """One alert in Alertmanager's webhook shape, plus strata's `value` and `threshold`."""
    status = "resolved" if alert.state == "resolved" else "firing"
    labels = {"alertname": alert.rule, "severity": alert.severity, **alert.labels}
    annotations = {"summary": alert.message}
    item = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": _iso(alert.fired_at or alert.since),
        "endsAt": _iso(alert.resolved_at) if alert.resolved_at is not None else NEVER,
        "fingerprint": fingerprint(labels),
        "value": alert.value,
        "threshold": alert.threshold,
    }
    return {"version": "4", "receiver": "strata", "status": status,
            "groupKey": item["fingerprint"], "truncatedAlerts": 0,
            "groupLabels": {"alertname": alert.rule}, "commonLabels": labels,
            "commonAnnotations": annotations, "externalURL": "", "alerts": [item]}  # fmt: skip


def fingerprint(labels: dict[str, str]) -> str:
    """A stable id of an alert's labels: the same alert has it when it fires and resolves."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
