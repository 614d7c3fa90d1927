"""The router's view of an engine's prefix cache: resets replace it, deltas patch it, what was
just sent counts until reported or lapsed, and a prompt scores the blocks held before the
first one missing."""

from __future__ import annotations

from strata.engine.kv_events import KvEvents
from strata.gateway.upstream.kv_index import KV_EVENTS, EngineView, KvIndex


def test_a_reset_replaces_the_view_and_a_delta_patches_it() -> None:
    view = EngineView(blocks={99})
    view.apply(KvEvents("run-1", 16, 3, True, (1, 2, 3), ()), now=0.0)
    assert view.blocks == {1, 2, 3}
    assert (view.instance, view.seq, view.block_size) == ("run-1", 3, 16)
    view.apply(KvEvents("run-1", 16, 5, False, (4,), (2,)), now=0.0)
    assert view.blocks == {1, 3, 4} and view.seq == 5


def test_another_instance_replaces_the_view_even_without_a_reset_flag() -> None:
    view = EngineView("run-1", 5, 16, {1, 2})
    view.apply(KvEvents("run-2", 16, 1, False, (7,), ()), now=0.0)
    assert view.blocks == {7} and view.instance == "run-2"


def test_a_prompt_scores_its_leading_blocks_only() -> None:
    view = EngineView(blocks={1, 2, 4})
    assert view.leading([1, 2, 3, 4], now=0.0) == 2
    assert view.leading([2, 1], now=0.0) == 2
    assert view.leading([5, 1], now=0.0) == 0
    assert view.leading([], now=0.0) == 0


def test_predicted_blocks_count_until_reported_evicted_or_lapsed() -> None:
    view = EngineView("run-1", 0, 16, {1})
    view.predict([1, 2, 3, 4], until=10.0)
    assert view.predicted == {2: 10.0, 3: 10.0, 4: 10.0}
    assert view.leading([1, 2, 3, 4, 5], now=5.0) == 4
    assert view.leading([1, 2, 3], now=10.0) == 1  # lapsed
    view.apply(KvEvents("run-1", 16, 2, False, (2,), (3,)), now=5.0)
    assert view.blocks == {1, 2} and view.predicted == {4: 10.0}  # reported, evicted
    view.apply(KvEvents("run-1", 16, 2, False, (), ()), now=11.0)
    assert view.predicted == {}


def test_an_engine_answer_is_validated() -> None:
    raw = (b'{"instance": "a", "block_size": 16, "seq": 2, "reset": false,'
           b' "stored": [18446744073709551615], "evicted": []}')  # fmt: skip
    assert KV_EVENTS.validate_json(raw).stored == (2**64 - 1,)


def test_the_index_knows_an_engine_once_it_answered_and_forgets_those_that_left() -> None:
    index = KvIndex()
    index.view("a")
    assert index.known("a") is None and index.known("b") is None
    index.view("a").apply(KvEvents("x", 16, 0, True, (), ()), now=0.0)
    assert index.known("a") is not None
    index.view("b")
    index.keep_only({"b"})
    assert set(index.views) == {"b"}
