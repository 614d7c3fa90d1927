"""Attention over the paged KV cache, and the per-step metadata that addresses it.

Each layer's cache is one preallocated pool per K and V, shaped (num_kv_heads,
num_blocks * block_size, head_dim): a token's *slot* is `block_id * block_size + offset`. A
step's tokens are laid out decodes first (one token each), then prefill chunks. New K/V are
scattered into their slots; attention gathers each sequence's slots through its block table.

The pool is head-major so that a decode batch's gathered context, (kv_heads, batch, L,
head_dim), is already the contiguous batch of matrices the score and value matmuls want. Decode
attention is two batched matmuls and a float32 softmax rather than `scaled_dot_product_attention`:
with one query per sequence and a padding mask, the CPU kernel behind SDPA measured 4-15x slower
in bfloat16 and ~1.2x in float32 at batch 32 (one thread, SmolLM2-135M shapes). Prefill keeps SDPA,
which is fast for many queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PrefillChunk:
    """One request's prefill chunk: token rows [begin, end) of the step's batch."""

    begin: int
    end: int
    context_slots: torch.Tensor | None  # (C,) slots of all C tokens it attends; None: no past
    mask: torch.Tensor | None  # (n, C) bool, True = may attend; None when no past


@dataclass(frozen=True)
class AttentionMetadata:
    slot_mapping: torch.Tensor  # (T,) where each new token's K/V is written
    num_decodes: int  # the first num_decodes rows are single-token decodes
    block_size: int
    decode_blocks: torch.Tensor | None  # (B * W,) each decode's block table, padded to W blocks
    decode_bias: torch.Tensor | None  # (1, B, 1, L) float32: 0 at real positions, -inf at padding
    prefills: tuple[PrefillChunk, ...]


@dataclass
class LayerCache:
    k: torch.Tensor  # (Hkv, S, D), S = num_blocks * block_size
    v: torch.Tensor  # (Hkv, S, D)


def paged_attention(
    q: torch.Tensor,  # (T, H, D)
    k: torch.Tensor,  # (T, Hkv, D) new keys
    v: torch.Tensor,  # (T, Hkv, D)
    cache: LayerCache,
    meta: AttentionMetadata,
) -> torch.Tensor:  # (T, H, D)
    cache.k.index_copy_(1, meta.slot_mapping, k.transpose(0, 1))
    cache.v.index_copy_(1, meta.slot_mapping, v.transpose(0, 1))
    if not meta.prefills:  # the common steady state: decodes only, no copy into `out`
        return _decode(q, cache, meta)
    out = torch.empty_like(q)
    if meta.num_decodes:
        out[: meta.num_decodes] = _decode(q[: meta.num_decodes], cache, meta)
    for chunk in meta.prefills:
        out[chunk.begin : chunk.end] = _prefill(q, k, v, cache, chunk)
    return out


def _decode(q: torch.Tensor, cache: LayerCache, meta: AttentionMetadata) -> torch.Tensor:
    assert meta.decode_blocks is not None and meta.decode_bias is not None
    batch, heads, dim = q.shape
    kv_heads = cache.k.shape[0]
    group = heads // kv_heads  # query heads sharing one kv head (GQA), adjacent in q
    k = _gather_blocks(cache.k, meta).view(kv_heads, batch, -1, dim)  # (Hkv, B, L, D)
    v = _gather_blocks(cache.v, meta).view(kv_heads, batch, -1, dim)
    qg = q.view(batch, kv_heads, group, dim).transpose(0, 1)  # (Hkv, B, G, D)
    scores = torch.matmul(qg, k.transpose(-1, -2)).float()  # (Hkv, B, G, L)
    scores = scores.mul_(dim**-0.5).add_(meta.decode_bias)
    probs = torch.softmax(scores, dim=-1).to(q.dtype)
    out = torch.matmul(probs, v)  # (Hkv, B, G, D)
    return out.transpose(0, 1).reshape(batch, heads, dim)


def _gather_blocks(pool: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
    """Whole blocks, (Hkv, B * W, block_size, D): one contiguous copy per block and head."""
    assert meta.decode_blocks is not None
    kv_heads, slots, dim = pool.shape
    blocks = pool.view(kv_heads, slots // meta.block_size, meta.block_size, dim)
    return blocks.index_select(1, meta.decode_blocks)


def _prefill(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: LayerCache, chunk: PrefillChunk
) -> torch.Tensor:
    qc = q[chunk.begin : chunk.end].transpose(0, 1).unsqueeze(0)  # (1, H, n, D)
    if chunk.context_slots is None:  # no cached past: attend to the fresh keys, causally
        kc = k[chunk.begin : chunk.end].transpose(0, 1).unsqueeze(0)  # (1, Hkv, n, D)
        vc = v[chunk.begin : chunk.end].transpose(0, 1).unsqueeze(0)
        out = F.scaled_dot_product_attention(qc, kc, vc, is_causal=True, enable_gqa=True)
    else:
        kc = cache.k.index_select(1, chunk.context_slots).unsqueeze(0)  # (1, Hkv, C, D)
        vc = cache.v.index_select(1, chunk.context_slots).unsqueeze(0)
        out = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=chunk.mask, enable_gqa=True)
    return out.squeeze(0).transpose(0, 1)  # (n, H, D)
