"""NATS JetStream as a Debezium source's broker: a pull consumer with a durable name.

Debezium Server's `nats-jetstream` sink publishes each change event's JSON (the value only;
null values such as tombstones are not published) on the subject named after the event's
destination, `<topic.prefix>.<schema>.<table>`, into a stream whose subjects cover it. strata
reads one subject of that stream through a durable pull consumer with explicit acks: a message
is acknowledged after its index write, so one read but not indexed when strata stops is
delivered again (after `broker.ack_wait_s`, or at once to the restarted consumer).

If the durable consumer does not exist it is created to start right after the position the
index recorded, so deleting it (or pointing strata at a new name) resumes exactly. If a stopped
reader left events unacknowledged, the consumer is recreated right after the later of its ack
floor and that position, so they come again at once rather than after `ack_wait_s`.

nats-py is asyncio; this class keeps a private event loop and offers the pipeline's blocking
`Broker` methods over it (the pipeline thread runs the loop only inside those calls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.client import JetStreamContext

from strata.config import DebeziumBrokerSettings
from strata.pipeline.debezium.broker import BrokerLag, BrokerMessage
from strata.pipeline.errors import BrokerUnavailable, PipelineError

logger = logging.getLogger(__name__)
T = TypeVar("T")
CONNECT_TIMEOUT_S = 5.0
_CONNECTION_ERRORS = (nats.errors.Error, OSError, asyncio.TimeoutError)


class JetStreamBroker:
    """A durable pull consumer on one subject of one JetStream stream."""

    def __init__(self, settings: DebeziumBrokerSettings, durable: str) -> None:
        assert settings.kind == "nats" and settings.subject
        self.settings = settings
        self.durable = durable
        self.subject = settings.subject
        self._loop = asyncio.new_event_loop()
        self._client: Client | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None

    def open(self, resume_after: int) -> None:
        self._call(self._open(resume_after))

    def fetch(self, limit: int, timeout_s: float) -> list[BrokerMessage]:
        messages = self._call(self._fetch(limit, max(timeout_s, 0.01)))
        return [BrokerMessage(m.metadata.sequence.stream, m.data or None, m) for m in messages]

    def ack(self, messages: Sequence[BrokerMessage]) -> None:
        if messages:
            self._call(self._ack(messages))

    def lag(self) -> BrokerLag:
        if self._client is None:
            self._call(self._connect())
        info = self._call(self._jetstream().consumer_info(self.settings.stream, self.durable))
        return BrokerLag(int(info.num_pending or 0), int(info.num_ack_pending or 0))

    def close(self) -> None:
        client, self._client, self._subscription = self._client, None, None
        try:
            if client is not None and not client.is_closed:
                self._loop.run_until_complete(client.close())
        except _CONNECTION_ERRORS as exc:
            logger.debug("closing the NATS connection: %s", exc)
        finally:
            self._loop.close()

    # --- inside the loop -----------------------------------------------------------------------

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the private loop; connection failures become `BrokerUnavailable`."""
        try:
            return self._loop.run_until_complete(work)
        except nats.js.errors.NotFoundError as exc:
            raise PipelineError(self._missing(exc)) from exc
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"NATS at {self.settings.url}: {exc!r}") from exc

    async def _connect(self) -> None:
        self._client = await nats.connect(
            self.settings.url,
            name=f"strata-{self.durable}",
            connect_timeout=CONNECT_TIMEOUT_S,
            max_reconnect_attempts=1,  # a lost server ends the run; the service restarts it
            reconnect_time_wait=0.5,
            error_cb=_log_error,
        )

    def _jetstream(self) -> JetStreamContext:
        assert self._client is not None
        return self._client.jetstream()

    async def _open(self, resume_after: int) -> None:
        await self._connect()
        js = self._jetstream()
        await js.stream_info(self.settings.stream)  # NotFoundError: say which stream
        try:
            info: ConsumerInfo | None = await js.consumer_info(self.settings.stream, self.durable)
        except nats.js.errors.NotFoundError:
            info = None
        if info is not None:
            self._check(info.config)
        if info is None or info.num_ack_pending:
            # Events a stopped reader left unacknowledged would wait out ack_wait_s before
            # JetStream delivers them again: start over right after what is done instead.
            done = info.ack_floor.stream_seq if info is not None and info.ack_floor else 0
            if info is not None:
                await js.delete_consumer(self.settings.stream, self.durable)
            start = max(resume_after, done)
            await js.add_consumer(self.settings.stream, self._consumer_config(start))
        self._subscription = await js.pull_subscribe_bind(
            durable=self.durable, stream=self.settings.stream
        )

    def _consumer_config(self, resume_after: int) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s,
            max_ack_pending=max(1000, 4 * self.settings.batch),
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if resume_after else DeliverPolicy.ALL,
            opt_start_seq=resume_after + 1 if resume_after else None,
        )

    async def _fetch(self, limit: int, timeout_s: float) -> list[Msg]:
        assert self._subscription is not None, "open() first"
        try:
            return await self._subscription.fetch(limit, timeout=timeout_s)
        except nats.errors.TimeoutError:  # nothing arrived in time
            return []

    def _check(self, config: ConsumerConfig) -> None:
        if config.filter_subject != self.subject or config.ack_policy != AckPolicy.EXPLICIT:
            raise PipelineError(
                f"JetStream consumer '{self.durable}' on stream '{self.settings.stream}' reads "
                f"subject {config.filter_subject!r} with ack policy {config.ack_policy}, not "
                f"{self.subject!r} with explicit acks: delete it (`nats consumer rm "
                f"{self.settings.stream} {self.durable}`; strata recreates it where the index "
                "left off) or set broker.durable to another name"
            )

    async def _ack(self, messages: Sequence[BrokerMessage]) -> None:
        for message in messages:
            await message.handle.ack()
        assert self._client is not None
        await self._client.flush()

    def _missing(self, exc: Exception) -> str:
        return (
            f"NATS at {self.settings.url} has no JetStream stream '{self.settings.stream}' "
            f"(broker.stream) or it lost consumer '{self.durable}' ({exc}): create the stream "
            "with subjects covering broker.subject (`nats stream add`, or Debezium Server's "
            "debezium.sink.nats-jetstream.create-stream=true)"
        )


async def _log_error(exc: Exception) -> None:
    logger.debug("NATS: %r", exc)
