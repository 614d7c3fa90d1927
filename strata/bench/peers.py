"""Hugging Face transformers peers for `strata bench engine`: the same workload served the ways
one would serve it without strata.

Every peer loads the model folder itself (transformers, sdpa attention, the given dtype), replays
a list of `BenchRequest`s against the time.perf_counter clock, and returns one `RequestRecord`
per request, in input order, with exactly `output_len` greedy tokens, their ids, and the time each
token was produced. The clock starts after the model is loaded and warmed up; a request is `sent`
at start + arrival_s and no peer begins it earlier. `finished` is when the peer hands the request
back: right after its last token for one-at-a-time and continuous batching, at the end of its
whole batch for static batching (a padded batch returns together).

Peers know nothing about text (prompts are token ids) and use whatever thread count torch has.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    PretrainedConfig,
    StoppingCriteria,
    StoppingCriteriaList,
)

from strata.bench.records import BenchRequest, RequestRecord

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# A warm-up prompt no workload shares a prefix with, so it leaves nothing useful in any cache.
WARMUP_PROMPT = list(range(100, 116))
WARMUP_TOKENS = 2


class CausalLM(Protocol):
    """What the peers use of a transformers causal language model."""

    config: PretrainedConfig
    generation_config: GenerationConfig

    @property
    def device(self) -> torch.device: ...

    def generate(self, *args: Any, **kwargs: Any) -> Any: ...

    def init_continuous_batching(self, *args: Any, **kwargs: Any) -> Any: ...


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
    return DTYPES[dtype]


def arrival_order(requests: Sequence[BenchRequest]) -> list[int]:
    """Request indices by arrival time; ties keep their input order."""
    return sorted(range(len(requests)), key=lambda i: requests[i].arrival_s)


def wait_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


class TokenClock(StoppingCriteria):
    """A stopping criterion that never stops: `generate` calls it right after appending each
    step's tokens, so it records when every step's tokens exist, and which they are."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tokens: list[list[int]] = []  # per step: one token id per batch row

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        self.tokens.append(input_ids[:, -1].tolist())  # .tolist() waits for the step to finish
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def record(
        self, row: int, request: BenchRequest, sent: float, finished: float
    ) -> RequestRecord:
        """Batch row `row`'s first `output_len` tokens as a record."""
        n = request.output_len
        times = self.times[:n]
        return RequestRecord(
            sent=sent,
            first_token=times[0] if times else None,
            finished=finished,
            token_times=times,
            prompt_tokens=len(request.prompt_token_ids),
            output_tokens=len(times),
            token_ids=[step[row] for step in self.tokens[:n]],
        )


def left_padded(prompts: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, both (B, T), prompts aligned to the right."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def pad_token_id(model: CausalLM) -> int:
    for source in (model.generation_config, model.config):
        for name in ("pad_token_id", "eos_token_id"):
            value = getattr(source, name, None)
            value = value[0] if isinstance(value, list) and value else value
            if isinstance(value, int) and value >= 0:
                return value
    return 0


def generate_timed(model: CausalLM, prompts: Sequence[list[int]], new_tokens: int) -> TokenClock:
    """Greedy `generate` of exactly `new_tokens` tokens for every prompt, timed step by step.

    An empty `eos_token_id` list means no end-of-sequence: generation neither stops at one nor
    suppresses it (like vLLM's ignore_eos and the continuous-batching peer's -1);
    `min_new_tokens` keeps the length exact even if a transformers version reads the empty list
    as "unset" and falls back to the model's end-of-sequence token."""
    pad_id = pad_token_id(model)
    ids, mask = left_padded(prompts, pad_id)
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        pad_token_id=pad_id,
        eos_token_id=[],
    )
    clock = TokenClock()
    model.generate(
        input_ids=ids.to(model.device),
        attention_mask=mask.to(model.device),
        generation_config=config,
        stopping_criteria=StoppingCriteriaList([clock]),
    )
    return clock


def load_model(folder: Path, dtype: torch.dtype) -> CausalLM:
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    return model


class HFPeer(ABC):
    """One way to serve a workload with transformers. `run` may be called more than once; the
    model is loaded on first use."""

    name: str

    def __init__(self, folder: Path, dtype: str | torch.dtype = "float32") -> None:
        self.folder = Path(folder)
        self.dtype = parse_dtype(dtype)
        self._model: CausalLM | None = None

    def unavailable_reason(self) -> str | None:
        """Why this peer cannot run with the installed packages; None when it can."""
        return None

    def available(self) -> bool:
        return self.unavailable_reason() is None

    @property
    def model(self) -> CausalLM:
        if self._model is None:
            self._model = load_model(self.folder, self.dtype)
        return self._model

    def run(self, requests: Sequence[BenchRequest]) -> list[RequestRecord]:
        """Replay `requests`; one record per request, in input order."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"{self.name} is unavailable: {reason}")
        if not requests:
            return []
        with torch.inference_mode():
            return self._replay(list(requests))

    @abstractmethod
    def _replay(self, requests: list[BenchRequest]) -> list[RequestRecord]: ...


class GenerateOneAtATime(HFPeer):
    """`model.generate` on one request at a time, in arrival order."""

    name = "hf-generate"

    def _replay(self, requests: list[BenchRequest]) -> list[RequestRecord]:
        generate_timed(self.model, [WARMUP_PROMPT], WARMUP_TOKENS)
        records: dict[int, RequestRecord] = {}
        start = time.perf_counter()
        for i in arrival_order(requests):
            request = requests[i]
            sent = start + request.arrival_s
            wait_until(sent)
            clock = generate_timed(self.model, [request.prompt_token_ids], request.output_len)
            records[i] = clock.record(0, request, sent, finished=time.perf_counter())
        return [records[i] for i in range(len(requests))]


class StaticBatching(HFPeer):
    """Padded batches of `batch_size` requests in arrival order. A batch starts once all its
    requests have arrived and the previous batch is done, and runs to its longest output."""

    def __init__(
        self, folder: Path, dtype: str | torch.dtype = "float32", batch_size: int = 8
    ) -> None:
        super().__init__(folder, dtype)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.batch_size = batch_size
        self.name = f"hf-static-batch-{batch_size}"

    def _replay(self, requests: list[BenchRequest]) -> list[RequestRecord]:
        generate_timed(self.model, [WARMUP_PROMPT] * self.batch_size, WARMUP_TOKENS)
        records: dict[int, RequestRecord] = {}
        start = time.perf_counter()
        order = arrival_order(requests)
        for first in range(0, len(order), self.batch_size):
            indices = order[first : first + self.batch_size]
            batch_records = self._run_batch([requests[i] for i in indices], start)
            records.update(zip(indices, batch_records, strict=True))
        return [records[i] for i in range(len(requests))]

    def _run_batch(self, batch: list[BenchRequest], start: float) -> list[RequestRecord]:
        wait_until(start + max(r.arrival_s for r in batch))
        longest = max(r.output_len for r in batch)
        clock = generate_timed(self.model, [r.prompt_token_ids for r in batch], longest)
        finished = time.perf_counter()
        return [clock.record(row, r, start + r.arrival_s, finished) for row, r in enumerate(batch)]


class TransformersContinuousBatching(HFPeer):
    """transformers' own continuous batching (`ContinuousBatchingManager`): requests are added
    as they arrive, each with its own `max_new_tokens`; `eos_token_id=-1` disables stopping at
    end-of-sequence (the manager ignores `min_new_tokens`).

    The paged KV cache is sized to hold the whole workload at once (`page_size` tokens per
    block): left to itself, transformers on CPU takes 60% of RAM for it. `max_batch_tokens`
    None keeps transformers' default token budget per step.
    """

    name = "hf-continuous-batching"

    def __init__(
        self,
        folder: Path,
        dtype: str | torch.dtype = "float32",
        max_batch_tokens: int | None = None,
        page_size: int = 256,
        timeout_s: float = 3600.0,
    ) -> None:
        super().__init__(folder, dtype)
        self.max_batch_tokens = max_batch_tokens
        self.page_size = page_size
        self.timeout_s = timeout_s

    def unavailable_reason(self) -> str | None:
        try:
            from transformers import ContinuousBatchingConfig, GenerationMixin
        except ImportError as exc:
            return f"this transformers has no continuous batching ({exc})"
        del ContinuousBatchingConfig
        if not hasattr(GenerationMixin, "init_continuous_batching"):
            return "this transformers' GenerationMixin has no init_continuous_batching"
        return None

    def _replay(self, requests: list[BenchRequest]) -> list[RequestRecord]:
        with self._running_manager(requests) as manager:
            self._add(manager, WARMUP_PROMPT, WARMUP_TOKENS, "warmup")
            self._collect(manager, 1)
            start = time.perf_counter()
            for i in arrival_order(requests):
                wait_until(start + requests[i].arrival_s)
                self._add(manager, requests[i].prompt_token_ids, requests[i].output_len, str(i))
            outputs = self._collect(manager, len(requests))
        return [
            cb_record(request, start + request.arrival_s, outputs.get(str(i)))
            for i, request in enumerate(requests)
        ]

    @contextmanager
    def _running_manager(self, requests: list[BenchRequest]) -> Iterator[Any]:
        from transformers import ContinuousBatchingConfig
        from transformers.generation.continuous_batching.utils import WorkloadHints

        longest = max(r.output_len for r in requests)
        config = GenerationConfig(do_sample=False, max_new_tokens=longest, eos_token_id=-1)
        cb_config = ContinuousBatchingConfig(
            page_size=self.page_size,
            num_blocks=self._blocks_needed(requests),
            max_batch_tokens=self.max_batch_tokens,
        )
        hints = WorkloadHints(
            max_prompt_length=max(len(r.prompt_token_ids) for r in requests),
            max_generated_length=longest,
            num_requests=len(requests),
        )
        manager = self.model.init_continuous_batching(config, cb_config, hints)
        manager.start()
        try:
            yield manager
        finally:
            manager.stop(block=True)
            manager.destroy()

    def _blocks_needed(self, requests: list[BenchRequest]) -> int:
        lengths = [len(r.prompt_token_ids) + r.output_len for r in requests]
        lengths.append(len(WARMUP_PROMPT) + WARMUP_TOKENS)
        return sum(math.ceil((n + 1) / self.page_size) for n in lengths)

    @staticmethod
    def _add(manager: Any, prompt: list[int], new_tokens: int, request_id: str) -> None:
        added = manager.add_request(
            prompt,
            request_id=request_id,
            max_new_tokens=new_tokens,
            record_timestamps=True,
            eos_token_id=-1,
        )
        if added is None:
            raise RuntimeError(f"transformers' continuous batching refused request {request_id}.")

    def _collect(self, manager: Any, count: int) -> dict[str, Any]:
        """Wait for `count` finished outputs, by request id."""
        outputs: dict[str, Any] = {}
        deadline = time.perf_counter() + self.timeout_s
        while len(outputs) < count and time.perf_counter() < deadline:
            output = manager.get_result(timeout=0.1)
            if output is not None and output.is_finished():
                outputs[output.request_id] = output
            elif output is None and not manager.is_running():
                break
        return outputs


def cb_record(request: BenchRequest, sent: float, output: Any) -> RequestRecord:
    """A record from a continuous-batching `GenerationOutput` (None: it never came back)."""
    prompt_tokens = len(request.prompt_token_ids)
    if output is None or output.error is not None:
        error = "missing" if output is None else str(output.error)
        return RequestRecord(sent=sent, prompt_tokens=prompt_tokens, error=error)
    times = list(output.timestamps or [])
    return RequestRecord(
        sent=sent,
        first_token=times[0] if times else None,
        finished=output.lifespan[1],
        token_times=times,
        prompt_tokens=prompt_tokens,
        output_tokens=len(output.generated_tokens),
        token_ids=list(output.generated_tokens),
    )
