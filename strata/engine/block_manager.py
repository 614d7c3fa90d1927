"""Paged KV-cache bookkeeping: a fixed pool of blocks, per-request block tables, and a
prefix cache keyed by chained block hashes.

The block manager never touches tensors; it hands out block ids that index the model
runner's per-layer pools. A full block's hash covers its tokens *and* every token before it
(the parent's hash), so equal hashes mean equal prefixes. Blocks whose reference count drops
to zero stay hashed in the free list and can be revived by a later request until they are
reused, oldest first (LRU).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from strata.engine.block_hash import chain_hash
from strata.engine.request import Request

__all__ = ["Block", "BlockManager", "CacheListener", "chain_hash"]


@dataclass(eq=False)
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None
    token_ids: tuple[int, ...] = ()  # set when hashed; guards against hash collisions


class CacheListener(Protocol):
    """Told each hash that enters or leaves the prefix cache (`strata.engine.kv_events`)."""

    def stored(self, block_hash: int) -> None: ...

    def evicted(self, block_hash: int) -> None: ...


class BlockManager:
    """Allocates and frees KV blocks; counts prefix-cache queries and hits (in tokens)."""

    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        enable_prefix_caching: bool = True,
        listener: CacheListener | None = None,
    ):
        assert num_blocks > 0 and block_size > 0
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.listener = listener
        self.blocks = [Block(i) for i in range(num_blocks)]
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self._cached: dict[int, int] = {}  # hash -> block id
        self.prefix_queries = 0
        self.prefix_hits = 0

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    # -- admission: prefix lookup -------------------------------------------------------

    def find_prefix(self, request: Request) -> list[int]:
        """Block ids of the longest cached prefix of `request`'s tokens (no side effects).

        At least one token is always left to compute, so the last token's logits exist.
        """
        if not self.enable_prefix_caching:
            return []
        hits: list[int] = []
        parent: int | None = None
        max_blocks = (request.num_tokens - 1) // self.block_size
        for i in range(max_blocks):
            tokens = request.token_ids[i * self.block_size : (i + 1) * self.block_size]
            parent = chain_hash(parent, tokens)
            block_id = self._cached.get(parent)
            if block_id is None or self.blocks[block_id].token_ids != tuple(tokens):
                break
            hits.append(block_id)
        return hits

    def can_admit(self, request: Request, hits: list[int], num_new_tokens: int) -> bool:
        revived = sum(1 for b in hits if self.blocks[b].ref_count == 0)
        total = len(hits) * self.block_size + num_new_tokens
        fresh = self.blocks_needed(total) - len(hits)
        return fresh + revived <= self.num_free_blocks

    def admit(self, request: Request, hits: list[int]) -> None:
        """Give a waiting request its cached prefix blocks and count the lookup."""
        assert not request.block_table
        for block_id in hits:
            self._take(block_id)
        request.block_table = list(hits)
        request.block_hashes = [self.blocks[b].hash for b in hits]  # type: ignore[misc]
        request.num_computed_tokens = len(hits) * self.block_size
        if self.enable_prefix_caching:
            self.prefix_queries += request.num_tokens
            self.prefix_hits += request.num_computed_tokens

    # -- growth ---------------------------------------------------------------------------

    def can_append(self, request: Request, num_new_tokens: int) -> bool:
        needed = self.blocks_needed(request.num_computed_tokens + num_new_tokens)
        return needed - len(request.block_table) <= self.num_free_blocks

    def append(self, request: Request, num_new_tokens: int) -> None:
        """Make room in `request`'s block table for `num_new_tokens` more tokens."""
        needed = self.blocks_needed(request.num_computed_tokens + num_new_tokens)
        while len(request.block_table) < needed:
            block_id = self._pop_free()
            self.blocks[block_id].ref_count = 1
            request.block_table.append(block_id)

    def cache_full_blocks(self, request: Request) -> None:
        """Hash and publish every block of `request` that is now full of computed tokens."""
        if not self.enable_prefix_caching:
            return
        num_full = request.num_computed_tokens // self.block_size
        for i in range(len(request.block_hashes), num_full):
            tokens = tuple(request.token_ids[i * self.block_size : (i + 1) * self.block_size])
            parent = request.block_hashes[-1] if request.block_hashes else None
            block_hash = chain_hash(parent, tokens)
            request.block_hashes.append(block_hash)
            block = self.blocks[request.block_table[i]]
            if block.hash is None and block_hash not in self._cached:
                block.hash, block.token_ids = block_hash, tokens
                self._cached[block_hash] = block.block_id
                if self.listener is not None:
                    self.listener.stored(block_hash)

    # -- release --------------------------------------------------------------------------

    def free(self, request: Request) -> None:
        """Drop `request`'s references; tail blocks go first in the eviction order."""
        for block_id in reversed(request.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            assert block.ref_count >= 0
            if block.ref_count == 0:
                self._free[block_id] = None
        request.block_table = []
        request.block_hashes = []
        request.num_computed_tokens = 0

    def _pop_free(self) -> int:
        block_id, _ = self._free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None:  # evict a cached block: its contents are about to change
            del self._cached[block.hash]
            if self.listener is not None:
                self.listener.evicted(block.hash)
            block.hash, block.token_ids = None, ()
        return block_id

    def _take(self, block_id: int) -> int:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self._free[block_id]
        block.ref_count += 1
        return block_id
