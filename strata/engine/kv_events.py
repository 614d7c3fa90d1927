"""Which prefix blocks an engine holds, told to routers cheaply: a bounded log of changes.

The block manager calls `stored` when a full block enters the prefix cache and `evicted` when
a cached block is reused for something else (both on the engine thread, under the engine
lock). A router asks `since(seq, instance)`: the blocks whose state changed after its cursor
`seq`, split by their state *now* (held or gone), so applying the answer to what it knew at
`seq` gives exactly what the engine holds now however often a block came and went. When the
cursor is older than the log keeps, or names another instance (the engine restarted), the
answer is a reset: every hash held now. A cursor costs the engine nothing between calls.

This module knows hashes and sequence numbers only, not HTTP (see `kv_routes`).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass
from uuid import uuid4


@dataclass(frozen=True)
class KvEvents:
    """What changed in an engine's prefix cache since a router's cursor."""

    instance: str  # this engine's run; a different one means the router's view is void
    block_size: int  # tokens per block: the router must hash prompts the same way
    seq: int  # the cursor to send next time
    reset: bool  # True: `stored` is everything held now; forget what was known before
    stored: tuple[int, ...]  # hashes held now that changed after the cursor (all, on reset)
    evicted: tuple[int, ...]  # hashes that changed after the cursor and are gone now


class KvEventLog:
    """Thread-safe: written on the engine thread, read from the server's event loop."""

    def __init__(self, block_size: int, capacity: int = 65_536) -> None:
        assert block_size > 0 and capacity > 0
        self.instance = uuid4().hex
        self.block_size = block_size
        self._lock = threading.Lock()
        self._changed: deque[int] = deque(maxlen=capacity)  # hashes, oldest change first
        self._seq = 0  # number of the newest change
        self._held: set[int] = set()

    def stored(self, block_hash: int) -> None:
        with self._lock:
            self._held.add(block_hash)
            self._append(block_hash)

    def evicted(self, block_hash: int) -> None:
        with self._lock:
            self._held.discard(block_hash)
            self._append(block_hash)

    @property
    def num_held(self) -> int:
        return len(self._held)

    def since(self, seq: int, instance: str | None) -> KvEvents:
        """The changes after cursor `seq` of `instance`; a reset when they cannot be told."""
        with self._lock:
            oldest = self._seq - len(self._changed)  # the log holds changes oldest+1 .. _seq
            if instance != self.instance or not oldest <= seq <= self._seq:
                return self._events(reset=True, stored=tuple(self._held), evicted=())
            changed = set(itertools.islice(self._changed, seq - oldest, None))
            stored = tuple(h for h in changed if h in self._held)
            evicted = tuple(h for h in changed if h not in self._held)
            return self._events(reset=False, stored=stored, evicted=evicted)

    def _append(self, block_hash: int) -> None:
        self._changed.append(block_hash)
        self._seq += 1

    def _events(
        self, *, reset: bool, stored: tuple[int, ...], evicted: tuple[int, ...]
    ) -> KvEvents:
        return KvEvents(self.instance, self.block_size, self._seq, reset, stored, evicted)
