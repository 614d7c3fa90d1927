"""Where a Debezium source reads its events: the `Broker` interface and its two kinds.

A broker hands out messages in order with a position that only grows (the JetStream stream
sequence, or a Redis stream entry id packed into one integer), remembers which ones were
acknowledged under a durable name (a JetStream durable consumer, a Redis consumer group), and
hands unacknowledged ones out again after a restart. The pipeline acknowledges a message only
after the index write that applied it has committed, and stores the position in that write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from strata.config import DebeziumBrokerSettings, PipelineSourceSettings
from strata.pipeline.errors import BrokerUnavailable, PipelineError


@dataclass(frozen=True)
class BrokerMessage:
    """One message: its position in the stream, its body (None: a null value), and the
    broker's handle to acknowledge it."""

    position: int
    data: bytes | None
    handle: Any


@dataclass(frozen=True)
class BrokerLag:
    """Messages not yet delivered to strata, and delivered but not yet acknowledged."""

    pending: int
    unacknowledged: int

    @property
    def total(self) -> int:
        return self.pending + self.unacknowledged


class Broker(Protocol):
    """One durable reader of one stream. Not thread-safe."""

    def open(self, resume_after: int) -> None:
        """Connect; create the durable reader if there is none, starting after position
        `resume_after` (0: from the beginning), else continue where it left off."""

    def fetch(self, limit: int, timeout_s: float) -> list[BrokerMessage]:
        """Up to `limit` messages in order; waits up to `timeout_s` for the first one."""

    def ack(self, messages: Sequence[BrokerMessage]) -> None:
        """Acknowledge `messages`: they are not delivered again."""

    def lag(self) -> BrokerLag:
        """How far the durable reader is behind the stream."""

    def close(self) -> None: ...


def durable_name(source: PipelineSourceSettings) -> str:
    """The durable consumer (or consumer group) of a source: broker.durable or strata_<name>."""
    assert source.broker is not None
    return source.broker.durable or f"strata_{source.name}"


def make_broker(source: PipelineSourceSettings) -> Broker:
    """The broker a `kind: debezium` source is configured to read."""
    settings: DebeziumBrokerSettings | None = source.broker
    assert settings is not None, "a debezium source has a broker (config validation)"
    if settings.kind == "nats":
        from strata.pipeline.debezium.jetstream import JetStreamBroker

        return JetStreamBroker(settings, durable_name(source))
    from strata.pipeline.debezium.redis_streams import RedisStreamBroker

    return RedisStreamBroker(settings, durable_name(source))


def consumer_lag(source: PipelineSourceSettings) -> tuple[BrokerLag | None, str | None]:
    """How far a source's durable reader is behind, or why the broker could not say."""
    broker = make_broker(source)
    try:
        return broker.lag(), None
    except (BrokerUnavailable, PipelineError) as exc:
        return None, exc.message
    finally:
        broker.close()
