"""Redis Streams as a Debezium source's broker: a consumer group, XACK after the index write.

Debezium Server's `redis` sink XADDs each change event to the stream named after its
destination, `<topic.prefix>.<schema>.<table>`. An entry is either "compact" (the default: one
field, the event key's JSON → the event value's JSON) or "extended" (fields `key` and `value`,
plus the headers). A null key or value is written as `default` (the sink's `null.key` /
`null.value`), so a tombstone's value is `default`.

strata reads the stream through a consumer group (`broker.durable`) with one consumer of the
same name: after a restart it first takes the entries it had read but not acknowledged (its
pending entries list), then new ones. A missing group is created to start after the position
the index recorded. Entry ids `<ms>-<seq>` become one growing integer position, ms × 2^20 + seq.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from strata.config import DebeziumBrokerSettings
from strata.pipeline.debezium.broker import BrokerLag, BrokerMessage
from strata.pipeline.errors import BrokerUnavailable

logger = logging.getLogger(__name__)
SEQ_BITS = 20
NULL_VALUE = b"default"  # the sink's default null.value


def position_of(entry_id: bytes | str) -> int:
    """A stream entry id `<ms>-<seq>` as one integer that grows with it."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    assert int(seq) < 1 << SEQ_BITS, f"entry {text}: more than 2^{SEQ_BITS} entries in 1 ms"
    return (int(ms) << SEQ_BITS) | int(seq)


def entry_id(position: int) -> str:
    return f"{position >> SEQ_BITS}-{position & ((1 << SEQ_BITS) - 1)}"


class RedisStreamBroker:
    """A consumer group (and its one consumer) on one Redis stream."""

    def __init__(self, settings: DebeziumBrokerSettings, durable: str) -> None:
        assert settings.kind == "redis"
        self.settings = settings
        self.stream = settings.stream
        self.group = durable
        self._client: redis.Redis | None = None
        self._cursor: str | None = "0"  # reading our pending entries from here; None: new ones

    def open(self, resume_after: int) -> None:
        client = self._connect()
        try:
            client.xgroup_create(self.stream, self.group, id=entry_id(resume_after), mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise BrokerUnavailable(f"Redis at {self.settings.url}: {exc}") from exc
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"Redis at {self.settings.url}: {exc}") from exc

    def fetch(self, limit: int, timeout_s: float) -> list[BrokerMessage]:
        client = self._connect()
        try:
            if self._cursor is not None:
                pending = self._read(client, self._cursor, limit, None)
                if pending:
                    self._cursor = pending[-1][0].decode()
                    return [_message(i, f) for i, f in pending]
                self._cursor = None
            fresh = self._read(client, ">", limit, max(1, int(timeout_s * 1000)))
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"Redis at {self.settings.url}: {exc}") from exc
        return [_message(i, f) for i, f in fresh]

    def ack(self, messages: Sequence[BrokerMessage]) -> None:
        if not messages:
            return
        try:
            self._connect().xack(self.stream, self.group, *[m.handle for m in messages])
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"Redis at {self.settings.url}: {exc}") from exc

    def lag(self) -> BrokerLag:
        try:
            groups = self._connect().xinfo_groups(self.stream)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"Redis at {self.settings.url}: {exc}") from exc
        for group in groups:
            if _text(group["name"]) == self.group:
                return BrokerLag(int(group.get("lag") or 0), int(group["pending"]))
        raise BrokerUnavailable(f"Redis stream {self.stream} has no consumer group {self.group}")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _connect(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.settings.url, socket_connect_timeout=5)
        return self._client

    def _read(
        self, client: redis.Redis, cursor: str, limit: int, block_ms: int | None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply: Any = client.xreadgroup(
            self.group, self.group, {self.stream: cursor}, count=limit, block=block_ms
        )
        if not reply:
            return []
        (_, entries), *_ = reply
        return [(i, f) for i, f in entries if f]  # a deleted entry comes back without fields


def _message(entry: bytes, fields: dict[bytes, bytes]) -> BrokerMessage:
    """The event value of a compact ({key: value}) or extended ({key, value, ...}) entry."""
    value = (
        fields[b"value"] if b"value" in fields and b"key" in fields else next(iter(fields.values()))
    )
    return BrokerMessage(position_of(entry), None if value == NULL_VALUE else value, entry)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
