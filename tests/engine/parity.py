"""Checks strata's greedy outputs against Hugging Face transformers on the same weights.

Teacher forcing: one transformers forward over prompt + strata's output gives, at every
generated position, the token transformers' greedy decoding would pick after the same
prefix. Each must equal strata's token, except where transformers' top two log-probabilities
are within `TIE` (batch shape changes floating-point order): such a case is tolerated and
recorded in `DIVERGENCES`, which the test run reports at its end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TIE = 1e-4


@dataclass(frozen=True)
class Divergence:
    label: str
    position: int
    ours: int
    theirs: int
    gap: float


DIVERGENCES: list[Divergence] = []


def assert_greedy_matches(
    hf_model: torch.nn.Module, prompt: list[int], output: list[int], label: str
) -> None:
    assert output, f"{label}: no output tokens"
    ids = torch.tensor([prompt + output])
    with torch.no_grad():
        logits = hf_model(ids).logits[0].float()  # (L, V)
    logprobs = logits[len(prompt) - 1 : -1].log_softmax(-1)  # predicts each output token
    top2 = logprobs.topk(2, dim=-1)
    for i, token in enumerate(output):
        theirs = int(top2.indices[i, 0])
        if theirs == token:
            continue
        gap = float(top2.values[i, 0] - logprobs[i, token])
        assert gap < TIE, (
            f"{label}: output position {i}: strata chose {token}, transformers {theirs} "
            f"(log-prob gap {gap:.2e} >= {TIE})"
        )
        DIVERGENCES.append(Divergence(label, i, token, theirs, gap))
