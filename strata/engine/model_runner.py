"""Runs one scheduled step through the model: build inputs, forward, sample.

Owns the model weights and the per-layer KV pools. It turns a `SchedulerOutput` into flat
token rows (decodes first, then prefill chunks), the slot mapping and gather indices the
paged attention needs, and the sampling tensors; it returns one token per sampling chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from strata.engine.attention import AttentionMetadata, LayerCache, PrefillChunk
from strata.engine.llama import LlamaModel, RotaryEmbedding
from strata.engine.model_config import ModelConfig
from strata.engine.packed_linear import can_pack, pack_linears
from strata.engine.request import Request
from strata.engine.sampler import SamplingBatch, sample
from strata.engine.scheduler import ScheduledChunk, SchedulerOutput
from strata.errors import ModelLoadError


@dataclass(frozen=True)
class StepInputs:
    input_ids: torch.Tensor  # (T,)
    positions: torch.Tensor  # (T,)
    meta: AttentionMetadata
    sample_rows: torch.Tensor  # (N,) row of each sampling chunk's last token, in chunk order
    sampling: SamplingBatch | None  # None when no chunk samples this step


class ModelRunner:
    def __init__(
        self,
        config: ModelConfig,
        weights: dict[str, torch.Tensor],
        *,
        num_blocks: int,
        block_size: int,
        max_model_len: int,
        device: torch.device,
        dtype: torch.dtype,
        eos_token_ids: Iterable[int] = (),
    ):
        self.config, self.device, self.dtype = config, device, dtype
        self.block_size = block_size
        self.eos_token_ids = tuple(eos_token_ids)
        self.model = build_model(config, weights, max_model_len, device, dtype)
        slots = num_blocks * block_size
        shape = (config.num_kv_heads, slots, config.head_dim)
        self.caches = [
            LayerCache(
                torch.zeros(shape, dtype=dtype, device=device),
                torch.zeros(shape, dtype=dtype, device=device),
            )
            for _ in range(config.num_layers)
        ]

    @torch.inference_mode()
    def run(self, inputs: StepInputs) -> list[int]:
        """Forward and sample; return the token of each sampling chunk, in chunk order.

        Reads only `inputs`, never the requests, so requests may be aborted meanwhile."""
        hidden = self.model(inputs.input_ids, inputs.positions, self.caches, inputs.meta)
        if inputs.sampling is None:
            return []
        logits = self.model.logits(hidden.index_select(0, inputs.sample_rows))  # (N, V)
        return sample(logits, inputs.sampling).tolist()

    # -- inputs ----------------------------------------------------------------------------

    def prepare(self, output: SchedulerOutput) -> StepInputs:
        """Snapshot everything the step needs from the requests (call under the engine lock)."""
        chunks = output.chunks
        decodes = [c for c in chunks if c.num_tokens == 1 and c.start > 0]
        prefills = [c for c in chunks if not (c.num_tokens == 1 and c.start > 0)]
        ids: list[int] = []
        positions: list[int] = []
        last_row: dict[int, int] = {}
        for chunk in decodes + prefills:
            ids += chunk.request.token_ids[chunk.start : chunk.start + chunk.num_tokens]
            positions += range(chunk.start, chunk.start + chunk.num_tokens)
            last_row[id(chunk)] = len(ids) - 1
        positions_t = self._tensor(positions)
        meta = AttentionMetadata(
            slot_mapping=self._slots_of(decodes + prefills, positions_t),
            num_decodes=len(decodes),
            block_size=self.block_size,
            decode_blocks=None,
            decode_bias=None,
            prefills=self._prefill_chunks(prefills, len(decodes)),
        )
        if decodes:
            meta = self._with_decode_context(meta, decodes)
        rows = [last_row[id(c)] for c in chunks if c.samples]
        requests = [c.request for c in chunks if c.samples]
        sampling = self._sampling_batch(requests) if requests else None
        return StepInputs(self._tensor(ids), positions_t, meta, self._tensor(rows), sampling)

    def _slots_of(self, chunks: list[ScheduledChunk], positions: torch.Tensor) -> torch.Tensor:
        tables = [self._block_row(c.request, c.start + c.num_tokens, c.num_tokens) for c in chunks]
        block_ids = torch.cat(tables) if tables else self._tensor([])
        return block_ids * self.block_size + positions % self.block_size

    def _block_row(self, request: Request, end: int, count: int) -> torch.Tensor:
        """Block id of each of the `count` positions ending at `end`."""
        table = self._tensor(request.block_table)
        positions = torch.arange(end - count, end, device=self.device)
        return table[positions // self.block_size]

    def _context_slots(self, request: Request, length: int) -> torch.Tensor:
        return (
            self._block_row(request, length, length) * self.block_size
            + torch.arange(length, device=self.device) % self.block_size
        )

    def _prefill_chunks(
        self, prefills: list[ScheduledChunk], first_row: int
    ) -> tuple[PrefillChunk, ...]:
        out = []
        row = first_row
        for c in prefills:
            begin, row = row, row + c.num_tokens
            if c.start == 0:
                out.append(PrefillChunk(begin, row, None, None))
                continue
            context = c.start + c.num_tokens
            mask = torch.ones(c.num_tokens, context, dtype=torch.bool, device=self.device)
            out.append(
                PrefillChunk(
                    begin, row, self._context_slots(c.request, context), mask.tril(c.start)
                )
            )
        return tuple(out)

    def _with_decode_context(
        self, meta: AttentionMetadata, decodes: list[ScheduledChunk]
    ) -> AttentionMetadata:
        bs = self.block_size
        lengths = [c.start + 1 for c in decodes]
        width = -(-max(lengths) // bs)  # blocks per row, padded
        table = torch.zeros(len(decodes), width, dtype=torch.long)
        for i, c in enumerate(decodes):
            n = -(-lengths[i] // bs)
            table[i, :n] = torch.tensor(c.request.block_table[:n])
        table = table.to(self.device)
        span = torch.arange(width * bs, device=self.device)
        padding = span.unsqueeze(0) >= self._tensor(lengths).unsqueeze(1)  # (B, L)
        bias = torch.zeros(padding.shape, device=self.device).masked_fill_(padding, -math.inf)
        return replace(meta, decode_blocks=table.reshape(-1), decode_bias=bias[None, :, None, :])

    def _tensor(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self.device)

    # -- sampling --------------------------------------------------------------------------

    def _sampling_batch(self, requests: list[Request]) -> SamplingBatch:
        vocab = self.config.vocab_size
        params = [r.params for r in requests]
        greedy = [p.greedy for p in params]
        return SamplingBatch(
            temperatures=self._floats(
                [1.0 if g else p.temperature for g, p in zip(greedy, params, strict=True)]
            ),
            top_ks=self._tensor([p.top_k or vocab for p in params]),
            top_ps=self._floats([p.top_p for p in params]),
            greedy=torch.tensor(greedy, dtype=torch.bool, device=self.device),
            all_greedy=all(greedy),
            generators=[_generator(r) for r in requests],
            banned=[(i, b) for i, r in enumerate(requests) if (b := self._banned(r))],
        )

    def _banned(self, request: Request) -> tuple[int, ...]:
        p = request.params
        if request.num_output_tokens >= p.min_tokens:
            return ()
        return p.stop_token_ids + (() if p.ignore_eos else self.eos_token_ids)

    def _floats(self, values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=self.device)


def _generator(request: Request) -> torch.Generator | None:
    if request.params.seed is None:
        return None
    if request.generator is None:
        request.generator = torch.Generator().manual_seed(request.params.seed)
    return request.generator


def build_model(
    config: ModelConfig,
    weights: dict[str, torch.Tensor],
    max_model_len: int,
    device: torch.device,
    dtype: torch.dtype,
) -> LlamaModel:
    with torch.device("meta"), _default_dtype(dtype):  # no time spent on random init
        model = LlamaModel(config, max_model_len)
    model.to_empty(device=device)
    try:
        model.load_hf_weights({k: v.to(device=device, dtype=dtype) for k, v in weights.items()})
    except (KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"weights do not match config.json: {exc}") from exc
    model.rotary = RotaryEmbedding(config, max_model_len).to(device)  # meta held no values
    if can_pack(device, dtype):
        pack_linears(model)
    return model.eval()


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
