"""strata's own engine as a benchmark peer: the same `run(requests) -> records` shape as the
transformers peers in `strata.bench.peers`, driving the async `Engine` in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from strata.bench.records import BenchRequest, RequestRecord
from strata.config import EngineSettings
from strata.engine.engine import Engine
from strata.engine.sampling_params import SamplingParams


class StrataPeer:
    """The engine is loaded once; each `run` starts it, replays the workload, stops it."""

    name = "strata"

    def __init__(self, folder: Path, dtype: str = "float32", **engine: Any) -> None:
        engine.setdefault("max_num_seqs", 64)
        engine.setdefault("kv_cache_memory", 2 * 1024**3)
        settings = EngineSettings(model=str(folder), dtype=dtype, **engine)
        self.engine = Engine.from_settings(settings, Path(folder).parent)

    def available(self) -> bool:
        return True

    def run(self, requests: Sequence[BenchRequest]) -> list[RequestRecord]:
        return asyncio.run(self._replay(list(requests)))

    async def _replay(self, requests: list[BenchRequest]) -> list[RequestRecord]:
        await self.engine.start()
        try:
            start = time.perf_counter()
            return list(await asyncio.gather(*(self._one(r, start) for r in requests)))
        finally:
            await self.engine.stop()

    async def _one(self, request: BenchRequest, start: float) -> RequestRecord:
        sent = start + request.arrival_s
        await asyncio.sleep(max(0.0, sent - time.perf_counter()))
        return await self.serve(request, sent)

    async def serve(self, request: BenchRequest, sent: float) -> RequestRecord:
        """Generate `request` greedily now (the engine must be started); time it from `sent`."""
        record = RequestRecord(sent=sent, prompt_tokens=len(request.prompt_token_ids))
        params = SamplingParams(max_tokens=request.output_len, temperature=0.0, ignore_eos=True)
        async for delta in self.engine.generate(request.prompt_token_ids, params):
            now = time.perf_counter()
            record.first_token = record.first_token or now
            record.token_times += [now] * len(delta.token_ids)
            record.token_ids += delta.token_ids
        record.finished = time.perf_counter()
        record.output_tokens = len(record.token_ids)
        return record
