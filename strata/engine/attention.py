"""Attention over the paged KV cache, and the per-step metadata that addresses it.

Each layer's cache is one preallocated pool per K and V, shaped (num_blocks * block_size,
num_kv_heads, head_dim): a token's *slot* is `block_id * block_size + offset`. A step's tokens
are laid out decodes first (one token each), then prefill chunks. New K/V are scattered into
their slots; attention gathers each sequence's slots through its block table.
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
    decode_slots: torch.Tensor | None  # (B * L,) gathered context slots per decode, padded
    decode_mask: torch.Tensor | None  # (B, 1, 1, L) bool, True = real context position
    prefills: tuple[PrefillChunk, ...]


@dataclass
class LayerCache:
    k: torch.Tensor  # (S, Hkv, D), S = num_blocks * block_size
    v: torch.Tensor  # (S, Hkv, D)


def paged_attention(
    q: torch.Tensor,  # (T, H, D)
    k: torch.Tensor,  # (T, Hkv, D) new keys
    v: torch.Tensor,  # (T, Hkv, D)
    cache: LayerCache,
    meta: AttentionMetadata,
) -> torch.Tensor:  # (T, H, D)
    cache.k.index_copy_(0, meta.slot_mapping, k)
    cache.v.index_copy_(0, meta.slot_mapping, v)
    if not meta.prefills:  # the common steady state: decodes only, no copy into `out`
        return _decode(q, cache, meta)
    out = torch.empty_like(q)
    if meta.num_decodes:
        out[: meta.num_decodes] = _decode(q[: meta.num_decodes], cache, meta)
    for chunk in meta.prefills:
        out[chunk.begin : chunk.end] = _prefill(q, k, v, cache, chunk)
    return out


def _decode(q: torch.Tensor, cache: LayerCache, meta: AttentionMetadata) -> torch.Tensor:
    assert meta.decode_slots is not None and meta.decode_mask is not None
    batch, heads, dim = q.shape
    kv_heads = cache.k.shape[1]
    k = cache.k.index_select(0, meta.decode_slots).view(batch, -1, kv_heads, dim)
    v = cache.v.index_select(0, meta.decode_slots).view(batch, -1, kv_heads, dim)
    out = F.scaled_dot_product_attention(
        q.unsqueeze(2),  # (B, H, 1, D)
        k.transpose(1, 2),  # (B, Hkv, L, D)
        v.transpose(1, 2),
        attn_mask=meta.decode_mask,
        enable_gqa=True,
    )
    return out.view(batch, heads, dim)


def _prefill(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: LayerCache, chunk: PrefillChunk
) -> torch.Tensor:
    qc = q[chunk.begin : chunk.end].transpose(0, 1).unsqueeze(0)  # (1, H, n, D)
    if chunk.context_slots is None:  # no cached past: attend to the fresh keys, causally
        kc = k[chunk.begin : chunk.end].transpose(0, 1).unsqueeze(0)  # (1, Hkv, n, D)
        vc = v[chunk.begin : chunk.end].transpose(0, 1).unsqueeze(0)
        out = F.scaled_dot_product_attention(qc, kc, vc, is_causal=True, enable_gqa=True)
    else:
        kc = cache.k.index_select(0, chunk.context_slots).transpose(0, 1).unsqueeze(0)
        vc = cache.v.index_select(0, chunk.context_slots).transpose(0, 1).unsqueeze(0)
        out = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=chunk.mask, enable_gqa=True)
    return out.squeeze(0).transpose(0, 1)  # (n, H, D)
