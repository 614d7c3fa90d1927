"""Turns the last-position logits of a batch into next tokens, vectorised over the batch.

Greedy rows take the argmax. Other rows apply temperature, top-k and top-p on one sorted
copy of the logits and pick by inverse CDF from a uniform draw; a request with a seed draws
its uniforms from its own generator, so its output does not depend on its batch neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingBatch:
    temperatures: torch.Tensor  # (N,) float32; 1.0 on greedy rows
    top_ks: torch.Tensor  # (N,) int64; vocab size where off
    top_ps: torch.Tensor  # (N,) float32
    greedy: torch.Tensor  # (N,) bool
    all_greedy: bool
    generators: Sequence[torch.Generator | None]  # per row; None = the global generator
    banned: Sequence[tuple[int, Sequence[int]]]  # (row, token ids that may not be sampled)


def sample(logits: torch.Tensor, batch: SamplingBatch) -> torch.Tensor:
    """logits (N, V) float32 -> token ids (N,) int64."""
    for row, token_ids in batch.banned:
        logits[row, list(token_ids)] = -float("inf")
    greedy = logits.argmax(dim=-1)
    if batch.all_greedy:
        return greedy
    scaled = logits / batch.temperatures.unsqueeze(1)
    sorted_logits, order = scaled.sort(dim=-1, descending=True)  # (N, V)
    ranks = torch.arange(logits.shape[1], device=logits.device)
    sorted_logits.masked_fill_(ranks.unsqueeze(0) >= batch.top_ks.unsqueeze(1), -float("inf"))
    probs = sorted_logits.softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)
    outside_top_p = (cdf - probs) > batch.top_ps.unsqueeze(1)  # mass before this token
    probs.masked_fill_(outside_top_p, 0.0)
    cdf = probs.cumsum(dim=-1)
    uniforms = _uniforms(batch.generators).to(logits.device) * cdf[:, -1]
    picked = torch.searchsorted(cdf, uniforms.unsqueeze(1)).clamp_(max=logits.shape[1] - 1)
    sampled = order.gather(1, picked).squeeze(1)
    return torch.where(batch.greedy, greedy, sampled)


def _uniforms(generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    draws = [torch.rand(1, generator=g) for g in generators]
    return torch.cat(draws)
