"""Linear layers with weights pre-packed once for oneDNN, for the CPU path.

`nn.Linear` on CPU hands every call's weight to a GEMM that lays it out again for its kernel;
for the engine's shapes (a few to a few hundred token rows against a fixed weight) that
re-layout and the generic kernel cost more than the arithmetic. oneDNN can pack a weight into its
own blocked layout once, at load time, and reuse it every step: measured here (one thread,
SmolLM2-135M's shapes) 2.4x faster in float32 at 7-300 rows, 2x in bfloat16 at one row (decode),
1.1-1.25x in bfloat16 at 32-300 rows, with results equal to `F.linear` (bit-equal in bfloat16,
within 1e-6 relative in float32). This is the same prepacking PyTorch's own compiler applies when
it freezes a CPU model; strata does it without compiling.

`pack_linears` swaps every `nn.Linear` of a CPU model in float32 or bfloat16 for a
`PackedLinear`; anything else (CUDA, other dtypes, a build without oneDNN) keeps `nn.Linear`.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

PACKABLE_DTYPES = (torch.float32, torch.bfloat16)


class PackedLinear(nn.Module):
    """y = x W^T + b with W held in oneDNN's packed layout (inference only)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], self.out_features)


def can_pack(device: torch.device, dtype: torch.dtype) -> bool:
    on_cpu = device.type == "cpu" and torch.backends.mkldnn.is_available()
    return on_cpu and dtype in PACKABLE_DTYPES


def pack_linears(model: nn.Module) -> int:
    """Replace `model`'s `nn.Linear` children (recursively) by `PackedLinear`; return how many.

    A layer oneDNN refuses stays as it was (logged), so packing never breaks a model."""
    packed = 0
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            try:
                setattr(model, name, PackedLinear(child))
                packed += 1
            except RuntimeError as exc:
                log.warning("keeping %s unpacked: oneDNN could not pack it (%s)", name, exc)
        else:
            packed += pack_linears(child)
    return packed
