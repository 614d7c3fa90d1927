"""A Llama-family decoder (Llama 2/3, SmolLM2, Mistral, Qwen2) over a paged KV cache.

Rows are tokens, not sequences: the step's tokens from every request are one flat batch of
T rows, and only attention (strata.engine.attention) knows which rows belong together.
q/k/v and gate/up projections are fused into single matmuls at load time.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from strata.engine.attention import AttentionMetadata, LayerCache, paged_attention
from strata.engine.model_config import ModelConfig


class RotaryEmbedding(nn.Module):
    """Rotations for every position as unit complex numbers, (P, D/2) complex64.

    q and k rows are stored *interleaved* (pairs (2i, 2i+1) rotate together; the loader
    permutes the checkpoint's rotate-half rows, see `interleave_rotary_rows`), so applying the
    rotation is one complex multiply instead of the slices, negation and concatenation of
    rotate-half. q·k is unchanged: both are permuted the same way.
    """

    def __init__(self, config: ModelConfig, max_positions: int):
        super().__init__()
        positions = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.outer(positions, rope_inv_freq(config)).float()  # (P, D/2)
        self.table: torch.Tensor
        self.register_buffer("table", torch.polar(torch.ones_like(freqs), freqs), persistent=False)

    def forward(self, positions: torch.Tensor) -> Rotation:
        """The step's rotation, looked up once and shared by every layer."""
        return Rotation(self.table[positions].unsqueeze(1))  # (T, 1, D/2)


class Rotation(NamedTuple):
    turns: torch.Tensor  # (T, 1, D/2) complex64

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate (T, heads, D) with interleaved pairs; returns a new (T, heads, D) tensor."""
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (T, heads, D/2)
        return torch.view_as_real(pairs * self.turns).flatten(-2).to(x.dtype)


def interleave_rotary_rows(weight: torch.Tensor, num_heads: int, head_dim: int) -> torch.Tensor:
    """Reorder each head's output rows from rotate-half (i, i + D/2) to interleaved (2i, 2i+1)."""
    half = torch.arange(head_dim // 2)
    order = torch.stack([half, half + head_dim // 2], dim=1).flatten()  # (D,)
    rows = weight.unflatten(0, (num_heads, head_dim))
    return rows[:, order].flatten(0, 1)


def rope_inv_freq(config: ModelConfig) -> torch.Tensor:
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    scaling = config.rope_scaling or {}
    kind = scaling.get("rope_type", "default")
    if kind == "linear":
        return inv_freq / float(scaling["factor"])
    if kind == "llama3":
        return _llama3_inv_freq(inv_freq, scaling)
    return inv_freq


def _llama3_inv_freq(inv_freq: torch.Tensor, s: dict[str, float]) -> torch.Tensor:
    """Llama 3.1 frequency scaling: long wavelengths slowed by `factor`, short ones kept,
    and a smooth blend in between."""
    factor, low, high = (
        float(s["factor"]),
        float(s["low_freq_factor"]),
        float(s["high_freq_factor"]),
    )
    old_len = float(s["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    middle = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(middle, blended, out)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads = config.num_heads, config.num_kv_heads
        self.head_dim = config.head_dim
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.sizes = (q_size, kv_size, kv_size)
        self.qkv_proj = nn.Linear(config.hidden_size, sum(self.sizes), bias=config.attention_bias)
        self.o_proj = nn.Linear(q_size, config.hidden_size, bias=False)

    def forward(
        self,
        x: torch.Tensor,  # (T, hidden)
        rotation: Rotation,
        cache: LayerCache,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        qkv = self.qkv_proj(x)
        num_qk = self.num_heads + self.num_kv_heads
        qk = qkv[:, : num_qk * self.head_dim].unflatten(-1, (num_qk, self.head_dim))
        q, k = rotation.apply(qk).split([self.num_heads, self.num_kv_heads], dim=1)
        v = qkv[:, num_qk * self.head_dim :].unflatten(-1, (self.num_kv_heads, self.head_dim))
        out = paged_attention(q, k, v, cache, meta)  # (T, H, D)
        return self.o_proj(out.reshape(x.shape[0], -1))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        rotation: Rotation,
        cache: LayerCache,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rotation, cache, meta)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, config: ModelConfig, max_positions: int):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.rotary = RotaryEmbedding(config, max_positions)

    def forward(
        self,
        input_ids: torch.Tensor,  # (T,)
        positions: torch.Tensor,  # (T,)
        caches: list[LayerCache],
        meta: AttentionMetadata,
    ) -> torch.Tensor:  # (T, hidden)
        x = self.embed_tokens(input_ids)
        rotation = self.rotary(positions)
        for layer, cache in zip(self.layers, caches, strict=True):
            x = layer(x, rotation, cache, meta)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (N, hidden) -> (N, V) float32
        return self.lm_head(hidden).float()

    def load_hf_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Load a Hugging Face Llama-style state dict, fusing q/k/v and gate/up."""
        with torch.no_grad():
            self.load_state_dict(fuse_hf_weights(weights, self.config), strict=True)
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight


def fuse_hf_weights(
    weights: dict[str, torch.Tensor], config: ModelConfig
) -> dict[str, torch.Tensor]:
    out = {k.removeprefix("model."): v for k, v in weights.items() if "rotary_emb" not in k}
    for i in range(config.num_layers):
        attn, mlp = f"layers.{i}.self_attn.", f"layers.{i}.mlp."
        for kind in ("weight", "bias") if config.attention_bias else ("weight",):
            q, k, v = (out.pop(f"{attn}{p}_proj.{kind}") for p in "qkv")
            q = interleave_rotary_rows(q, config.num_heads, config.head_dim)
            k = interleave_rotary_rows(k, config.num_kv_heads, config.head_dim)
            out[f"{attn}qkv_proj.{kind}"] = torch.cat([q, k, v], dim=0)
        out[f"{mlp}gate_up_proj.weight"] = torch.cat(
            [out.pop(f"{mlp}gate_proj.weight"), out.pop(f"{mlp}up_proj.weight")], dim=0
        )
    if config.tie_word_embeddings:
        out.pop("lm_head.weight", None)
        out["lm_head.weight"] = out["embed_tokens.weight"]
    return out
