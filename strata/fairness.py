"""Fair sharing by tokens: start-time fair queueing over opaque keys, and how a key travels.

A *fairness key* names who shares capacity fairly with whom. It is opaque: the gateway keys
by tenant, the engine only ever sees a hash of it and never learns what it stands for.

`VirtualClock` keeps one counter per key, its virtual finish time: serving `n` tokens to a key
advances it by `n / weight`, so a key of weight 2 may be served twice the tokens of a key of
weight 1 before it falls behind. The clock's `now` is the start tag of the newest item started.
A key's start tag is max(now, its finish): a key that was idle re-joins at the current virtual
time, so idling banks no credit for a later burst (and old debts fade as `now` passes them).

`FairQueue` orders queued items by those tags: the next one out is the head of the key with the
smallest start tag, the earliest arrival breaking ties. Within a key it is first come, first
served, and `push_front` puts an item back at the head of its key. With one key the order is
exactly FCFS.

What is charged is each user's choice: the engine (`strata.engine.fair_queue`) charges tokens
as it serves them, the router (`strata.gateway.upstream.admission`) the tokens the gateway
reserved, since it must decide before any answer exists.

This module knows no HTTP framework, engine or gateway types; the headers are plain strings.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from strata.errors import InvalidRequestError

DEFAULT_KEY = ""  # the key of requests that name none; no header can carry an empty key
MAX_WEIGHT = 100.0  # weights are in (0, MAX_WEIGHT]: a bounded ratio between two keys' shares
MAX_KEY_CHARS = 256
KEY_HEADER = "X-Strata-Fairness-Key"
WEIGHT_HEADER = "X-Strata-Fairness-Weight"

T = TypeVar("T")


class VirtualClock:
    """Virtual finish times per key and the virtual time `now` (both in tokens / weight).

    Invariant: every key with queued items has finish >= now, because `now` only moves to the
    smallest start tag among them. Keys whose finish fell behind `now` are forgotten now and
    then (they behave exactly as unknown keys), so memory follows the active keys only.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._finish: dict[str, float] = {}
        self._prune_at = 64

    def start_tag(self, key: str) -> float:
        return max(self.now, self._finish.get(key, 0.0))

    def start(self, key: str) -> None:
        """An item of `key` starts service: virtual time moves to its start tag."""
        self.now = self.start_tag(key)
        if len(self._finish) > self._prune_at:
            self._prune()

    def charge(self, key: str, tokens: float, weight: float) -> None:
        """`key` was served `tokens` tokens; an idle key is first lifted to `now`."""
        assert weight > 0 and tokens >= 0
        self._finish[key] = self.start_tag(key) + tokens / weight

    def _prune(self) -> None:
        self._finish = {k: f for k, f in self._finish.items() if f > self.now}
        self._prune_at = 2 * len(self._finish) + 64


@dataclass(eq=False)
class _Entry(Generic[T]):
    seq: int  # arrival order across keys; lower is older
    item: T


class FairQueue(Generic[T]):
    """Items queued per key, taken out in start-time fair order (see the module docstring).

    `pop` moves the clock's `now` to the popped key's start tag; charging that key for what it
    is served is the caller's business (`clock.charge`). Picking the next key scans the keys
    with queued items: O(keys), which stays small next to a model step or an HTTP call.
    """

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.clock = clock or VirtualClock()
        self._lanes: dict[str, deque[_Entry[T]]] = {}
        self._size = 0
        self._newer = itertools.count()
        self._older = itertools.count(-1, -1)

    def push(self, key: str, item: T) -> None:
        self._lanes.setdefault(key, deque()).append(_Entry(next(self._newer), item))
        self._size += 1

    def push_front(self, key: str, item: T) -> None:
        """Put `item` back ahead of everything else queued under `key` (and of equal tags)."""
        self._lanes.setdefault(key, deque()).appendleft(_Entry(next(self._older), item))
        self._size += 1

    def peek(self) -> T | None:
        key = self._next_key()
        return None if key is None else self._lanes[key][0].item

    def pop(self) -> tuple[str, T]:
        key = self._next_key()
        if key is None:
            raise IndexError("pop from an empty FairQueue")
        self.clock.start(key)
        return key, self._take(key, self._lanes[key][0])

    def remove(self, key: str, item: T) -> None:
        """Take `item` out of `key`'s lane; ValueError if it is not queued there."""
        lane = self._lanes.get(key)
        entry = None if lane is None else next((e for e in lane if e.item is item), None)
        if entry is None:
            raise ValueError("item is not queued under that key")
        self._take(key, entry)

    @property
    def num_keys(self) -> int:
        """Keys with at least one queued item."""
        return len(self._lanes)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[T]:
        return (e.item for lane in list(self._lanes.values()) for e in lane)

    def _next_key(self) -> str | None:
        best: tuple[float, int] | None = None
        best_key = None
        for key, lane in self._lanes.items():
            rank = (self.clock.start_tag(key), lane[0].seq)
            if best is None or rank < best:
                best, best_key = rank, key
        return best_key

    def _take(self, key: str, entry: _Entry[T]) -> T:
        lane = self._lanes[key]
        lane.remove(entry)
        if not lane:
            del self._lanes[key]
        self._size -= 1
        return entry.item


# -- how a key and its weight travel ------------------------------------------------------------


@dataclass(frozen=True)
class FairnessTag:
    """Whose share a request draws on (`key`) and how large that share is (`weight`)."""

    key: str
    weight: float = 1.0

    def wire_headers(self) -> tuple[tuple[str, str], ...]:
        """The headers an upstream engine reads (lower-case names, as ASGI wants them): the
        key hashed (`opaque_key`), and the weight."""
        key, weight = opaque_key(self.key), _number(self.weight)
        return ((KEY_HEADER.lower(), key), (WEIGHT_HEADER.lower(), weight))


def opaque_key(name: str) -> str:
    """A stable stand-in for `name` that does not reveal it (16 hex digits)."""
    return hashlib.blake2b(name.encode(), digest_size=8, person=b"strata-fair").hexdigest()


def tag_from_headers(headers: Mapping[str, str], fallback_key: str | None = None) -> FairnessTag:
    """The tag a caller sent in `X-Strata-Fairness-Key` / `-Weight` (header names in any case,
    as HTTP allows); without a key header, `fallback_key`, else the shared default key.
    Raises `InvalidRequestError` naming the header for a value that cannot be used."""
    key, raw_weight = _header(headers, KEY_HEADER), _header(headers, WEIGHT_HEADER)
    return FairnessTag(
        _checked_key(key) if key is not None else (fallback_key or DEFAULT_KEY),
        1.0 if raw_weight is None else parse_weight(raw_weight),
    )


def parse_weight(raw: str) -> float:
    try:
        weight = float(raw)
    except ValueError:
        weight = math.nan
    if not 0 < weight <= MAX_WEIGHT:  # NaN fails this too
        raise InvalidRequestError(
            f"{WEIGHT_HEADER} must be a number in (0, {MAX_WEIGHT:g}], e.g. 1 or 2.5; "
            f"got {raw[:40]!r}.",
            param=WEIGHT_HEADER,
            code="invalid_fairness_weight",
        )
    return weight


def _checked_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise InvalidRequestError(
            f"{KEY_HEADER} must be 1 to {MAX_KEY_CHARS} printable characters; send a stable "
            "name for whoever shares capacity (or leave the header out).",
            param=KEY_HEADER,
            code="invalid_fairness_key",
        )
    return key


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """`name` from Starlette's case-insensitive headers or a dict of lower-case names."""
    return headers.get(name.lower(), headers.get(name))


def _number(value: float) -> str:
    return format(value, ".6g")
