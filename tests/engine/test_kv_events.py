"""The KV event log: what a router learns by cursor matches what the prefix cache holds, however
often blocks come and go, and a cursor the log cannot serve gets the whole state instead."""

from __future__ import annotations

import random

from strata.engine.block_manager import BlockManager
from strata.engine.kv_events import KvEventLog, KvEvents
from strata.engine.request import Request
from strata.engine.sampling_params import SamplingParams


def _request(tokens: list[int], rid: str) -> Request:
    return Request(rid, tokens, SamplingParams(max_tokens=4))


def _prefill(bm: BlockManager, request: Request) -> None:
    bm.admit(request, bm.find_prefix(request))
    bm.append(request, request.num_uncomputed_tokens)
    request.num_computed_tokens = request.num_tokens
    bm.cache_full_blocks(request)


class Mirror:
    """A router's view, kept only from the log's answers."""

    def __init__(self) -> None:
        self.instance: str | None = None
        self.seq = 0
        self.blocks: set[int] = set()

    def read(self, log: KvEventLog) -> KvEvents:
        events = log.since(self.seq, self.instance)
        if events.reset:
            self.blocks = set(events.stored)
        self.blocks |= set(events.stored)
        self.blocks -= set(events.evicted)
        self.instance, self.seq = events.instance, events.seq
        return events


def test_the_first_read_is_a_reset_and_later_reads_are_deltas() -> None:
    log = KvEventLog(block_size=4)
    log.stored(1)
    log.stored(2)
    mirror = Mirror()
    first = mirror.read(log)
    assert first.reset and set(first.stored) == {1, 2} and first.seq == 2 and first.block_size == 4
    log.evicted(1)
    log.stored(3)
    delta = mirror.read(log)
    assert not delta.reset and delta.stored == (3,) and delta.evicted == (1,)
    assert mirror.read(log) == KvEvents(log.instance, 4, 4, False, (), ())


def test_a_block_that_came_and_went_is_reported_in_its_state_now() -> None:
    log = KvEventLog(block_size=4)
    mirror = Mirror()
    mirror.read(log)
    log.stored(7)
    log.evicted(7)
    log.evicted(8)
    log.stored(8)
    delta = mirror.read(log)
    assert delta.stored == (8,) and delta.evicted == (7,)
    assert mirror.blocks == {8}


def test_a_cursor_older_than_the_log_or_of_another_instance_gets_a_reset() -> None:
    log = KvEventLog(block_size=4, capacity=3)
    mirror = Mirror()
    mirror.read(log)
    for h in range(5):
        log.stored(h)
    events = mirror.read(log)  # 5 changes since the cursor, the log keeps 3
    assert events.reset and set(events.stored) == {0, 1, 2, 3, 4}
    assert log.since(events.seq, "another-run").reset
    assert log.since(events.seq + 1, log.instance).reset  # a cursor from the future
    assert not log.since(events.seq, log.instance).reset


def test_the_block_manager_reports_every_hash_it_caches_and_evicts() -> None:
    log = KvEventLog(block_size=2)
    bm = BlockManager(num_blocks=6, block_size=2, listener=log)
    mirror = Mirror()
    rng = random.Random(0)
    for i in range(40):  # more full blocks than the pool holds: evictions happen
        request = _request([rng.randrange(4) for _ in range(7)], f"r{i}")
        _prefill(bm, request)
        bm.free(request)
        if i % 3 == 0:
            mirror.read(log)
    mirror.read(log)
    cached = {b.hash for b in bm.blocks if b.hash is not None}
    assert mirror.blocks == cached and log.num_held == len(cached)
    assert log.since(0, None).seq > bm.num_blocks  # blocks were evicted and reported


def test_without_prefix_caching_nothing_is_reported() -> None:
    log = KvEventLog(block_size=2)
    bm = BlockManager(num_blocks=8, block_size=2, enable_prefix_caching=False, listener=log)
    _prefill(bm, _request([1, 2, 3, 4, 5], "a"))
    assert log.since(0, None) == KvEvents(log.instance, 2, 0, True, (), ())
