from __future__ import annotations

from strata.engine.block_manager import BlockManager
from strata.engine.request import Request
from strata.engine.sampling_params import SamplingParams


def _request(tokens: list[int], rid: str = "r") -> Request:
    return Request(rid, tokens, SamplingParams(max_tokens=4))


def _run_prefill(bm: BlockManager, request: Request) -> None:
    """Admit `request` and pretend its whole prompt was computed."""
    bm.admit(request, bm.find_prefix(request))
    bm.append(request, request.num_uncomputed_tokens)
    request.num_computed_tokens = request.num_tokens
    bm.cache_full_blocks(request)


def test_append_allocates_blocks_on_demand_and_free_returns_them() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    r = _request(list(range(10)))
    bm.admit(r, [])
    bm.append(r, 10)
    assert len(r.block_table) == 3 and len(set(r.block_table)) == 3
    assert bm.num_free_blocks == 5
    r.num_computed_tokens = 10
    bm.append(r, 2)  # positions 10, 11 still fit in block 3
    assert len(r.block_table) == 3
    bm.append(r, 3)  # position 12 needs a fourth block
    assert len(r.block_table) == 4
    bm.free(r)
    assert bm.num_free_blocks == 8 and r.block_table == [] and r.num_computed_tokens == 0


def test_prefix_hits_reuse_full_blocks_and_leave_one_token_to_compute() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    first = _request(list(range(12)), "a")
    _run_prefill(bm, first)
    same = _request(list(range(12)), "b")
    hits = bm.find_prefix(same)
    # 12 tokens = 3 full blocks, but the last token must be computed: only 2 blocks hit.
    assert hits == first.block_table[:2]
    longer = _request([*range(12), 99], "c")
    assert bm.find_prefix(longer) == first.block_table[:3]
    bm.admit(longer, bm.find_prefix(longer))
    assert longer.num_computed_tokens == 12
    assert [bm.blocks[b].ref_count for b in first.block_table] == [2, 2, 2]
    assert bm.prefix_queries == 12 + 13 and bm.prefix_hits == 12


def test_prefix_hash_chains_through_earlier_blocks() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    _run_prefill(bm, _request([1, 2, 3, 4, 5, 6, 7, 8, 9], "a"))
    # Same second block, different first block: no hit at all.
    other = _request([0, 2, 3, 4, 5, 6, 7, 8, 9], "b")
    assert bm.find_prefix(other) == []


def test_free_cached_blocks_are_revived_until_evicted_oldest_first() -> None:
    bm = BlockManager(num_blocks=4, block_size=2)
    a = _request([1, 2, 3, 4, 5], "a")
    _run_prefill(bm, a)  # 3 blocks, two of them full and hashed
    bm.free(a)
    assert bm.num_free_blocks == 4
    again = _request([1, 2, 3, 4, 5], "again")
    hits = bm.find_prefix(again)
    assert len(hits) == 2
    assert bm.can_admit(again, hits, 1)
    bm.admit(again, hits)
    assert bm.num_free_blocks == 2  # revived blocks left the free list
    bm.free(again)
    # A stranger needing all 4 blocks evicts every cached block.
    stranger = _request([9] * 8, "s")
    bm.admit(stranger, [])
    bm.append(stranger, 8)
    assert bm.find_prefix(_request([1, 2, 3, 4, 5], "late")) == []


def test_can_admit_counts_revived_blocks_against_free_space() -> None:
    bm = BlockManager(num_blocks=3, block_size=2)
    a = _request([1, 2, 3, 4, 5], "a")
    _run_prefill(bm, a)
    bm.free(a)
    b = _request([1, 2, 3, 4, 5, 6, 7], "b")
    hits = bm.find_prefix(b)
    assert len(hits) == 2
    # 4 cached tokens + 1 new = 3 blocks (2 revived + 1 fresh) = all 3 free blocks.
    assert bm.can_admit(b, hits, 1)
    # 4 + 3 = 7 tokens = 4 blocks: only 2 fresh, but the 2 revived also leave the free list.
    assert not bm.can_admit(b, hits, 3)


def test_disabled_prefix_caching_never_hits() -> None:
    bm = BlockManager(num_blocks=8, block_size=2, enable_prefix_caching=False)
    _run_prefill(bm, _request([1, 2, 3, 4, 5], "a"))
    assert bm.find_prefix(_request([1, 2, 3, 4, 5], "b")) == []
    assert bm.prefix_queries == 0
