"""The prefix cache's block hash is the same in every process: a router in another process
(the gateway) must compute exactly the hashes an engine publishes."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

from strata.engine.block_hash import ROOT_HASH, chain_hash, prefix_hashes

TOKENS = [1, 9690, 198, 2683, 359, 253, 1199, 7997, 327, 3536, 1558, 30, 1934, 19484, 284, 13383]
# The value pinned: changing the hash silently would make routers and engines of two strata
# versions disagree, so a change must show up here and be deliberate.
PINNED = 0xBA3DBE098BD5DAD1


def _hashes_in_a_fresh_interpreter(seed: str) -> list[int]:
    code = (
        "from strata.engine.block_hash import prefix_hashes;"
        f"print(prefix_hashes({TOKENS * 3!r}, 16))"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return [int(h) for h in done.stdout.strip().strip("[]").split(",")]


def test_two_processes_with_different_hash_seeds_agree() -> None:
    here = prefix_hashes(TOKENS * 3, 16)
    assert _hashes_in_a_fresh_interpreter("1") == here
    assert _hashes_in_a_fresh_interpreter("2") == here
    assert chain_hash(None, TOKENS) == PINNED


def test_a_hash_covers_its_tokens_and_every_block_before_it() -> None:
    first = chain_hash(None, TOKENS)
    assert chain_hash(ROOT_HASH, TOKENS) == first
    assert chain_hash(first, TOKENS) != first
    assert chain_hash(None, [*TOKENS[:-1], TOKENS[-1] + 1]) != first
    a, b = prefix_hashes([*TOKENS, *TOKENS], 16), prefix_hashes([*TOKENS[::-1], *TOKENS], 16)
    assert a[1] != b[1]  # same second block, different first: different chain
    assert all(0 <= h < 2**64 for h in a)


def test_only_full_blocks_are_hashed() -> None:
    assert prefix_hashes(TOKENS[:15], 16) == []
    assert prefix_hashes(TOKENS * 2 + [5], 16) == prefix_hashes(TOKENS * 2, 16)
    assert len(prefix_hashes(list(range(100)), 8)) == 12


def test_token_ids_outside_int32_cannot_be_hashed() -> None:
    with pytest.raises(struct.error):
        chain_hash(None, [2**31])
    with pytest.raises(struct.error):
        chain_hash(None, [-(2**31) - 1])
