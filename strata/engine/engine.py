"""The async engine: an `EngineCore` stepping on a background thread, streaming deltas.

The model forward runs on its own thread so the event loop (HTTP, the gateway) stays
responsive; torch releases the GIL inside its kernels. After each step the thread hands the
new tokens of every request to the event loop in one callback. Detokenization and stop
strings are handled on the event-loop side, per request, in `generate`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from strata.engine.builder import build_core
from strata.engine.core import EngineCore
from strata.engine.generation_config import SamplingDefaults
from strata.engine.loader import resolve_model_folder
from strata.engine.outputs import Delta, EngineStats, FinishReason
from strata.engine.request import Request
from strata.engine.sampling_params import SamplingParams
from strata.engine.tokenizer import Tokenizer
from strata.errors import EngineError

if TYPE_CHECKING:
    from strata.config import EngineSettings, SloSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


class TorchWorker:
    """The one thread that runs torch for an engine: it loads the model and runs the steps.

    Measured on the 2-core CPU host: a forward run from a thread other than the one that
    loaded the model (while that one holds an OpenMP team) is ~20% slower, so loading and
    stepping share one long-lived thread and the event loop thread does no torch work.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="strata-engine")

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        return self._pool.submit(fn, *args).result()

    def submit(self, fn: Callable[[], None]) -> Future[None]:
        return self._pool.submit(fn)


@dataclass(eq=False)
class _Stream:
    request: Request
    queue: asyncio.Queue[_Update]
    sent: int = 0  # output tokens already handed over (touched by the engine thread only)


@dataclass(frozen=True)
class _Update:
    """What the engine thread hands one request's stream after a step."""

    token_ids: tuple[int, ...]
    finish_reason: FinishReason | None
    error: BaseException | None = None


class Engine:
    """Serve generations concurrently. Call `start()` inside a running event loop."""

    def __init__(
        self,
        core: EngineCore,
        tokenizer: Tokenizer,
        model_name: str,
        sampling_defaults: SamplingDefaults | None = None,
        worker: TorchWorker | None = None,
    ):
        self.core = core
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.sampling_defaults = sampling_defaults or SamplingDefaults()
        self._streams: dict[str, _Stream] = {}
        self._wake = threading.Event()
        self._stopping = False
        self._worker = worker or TorchWorker()
        self._loop_done: Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def max_model_len(self) -> int:
        return self.core.config.max_model_len

    @property
    def is_alive(self) -> bool:
        return self._loop_done is not None and not self._loop_done.done()

    @classmethod
    def from_settings(
        cls, settings: EngineSettings, model_cache_dir: Path, slo: SloSettings | None = None
    ) -> Engine:
        folder = resolve_model_folder(settings.model, model_cache_dir)
        worker = TorchWorker()
        core, tokenizer = worker.run(build_core, settings, folder, slo)
        name = settings.served_model_name or _default_name(settings.model, folder)
        defaults = SamplingDefaults.from_folder(folder)
        return cls(core, tokenizer, name, defaults, worker)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._loop_done = self._worker.submit(self._run)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._loop_done is not None:
            await asyncio.wrap_future(self._loop_done)
            self._loop_done = None

    # -- requests --------------------------------------------------------------------------

    async def generate(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        *,
        request_id: str | None = None,
        fairness_key: str | None = None,
        weight: float = 1.0,
        priority: int = 0,
    ) -> AsyncIterator[Delta]:
        """Stream a generation. Raises InvalidRequestError / OverloadedError on submission;
        closing the iterator early aborts the request and frees its blocks at once."""
        request = Request(
            request_id or f"req-{uuid.uuid4().hex}",
            list(prompt_token_ids),
            params,
            fairness_key=fairness_key,
            weight=weight,
            priority=priority,
        )
        queue: asyncio.Queue[_Update] = asyncio.Queue()
        self.core.add(request)
        self._streams[request.request_id] = _Stream(request, queue)
        self._wake.set()
        try:
            async for delta in self._deltas(request, queue):
                yield delta
        finally:
            self._streams.pop(request.request_id, None)
            if not request.is_finished:
                self.core.abort(request.request_id)

    async def _deltas(
        self, request: Request, queue: asyncio.Queue[_Update]
    ) -> AsyncIterator[Delta]:
        text = self.tokenizer.text_stream(request.params.stop)
        produced = 0
        while True:
            update = await queue.get()
            if update.error is not None:
                raise EngineError("the engine failed while running this request.") from update.error
            produced += len(update.token_ids)
            new_text = text.push(list(update.token_ids))
            reason = update.finish_reason
            if text.stopped:
                self.core.abort(request.request_id, "stop")
                reason = "stop"
            elif reason is not None:
                new_text += text.flush()
            yield self._delta(request, update.token_ids, new_text, reason, produced)
            if reason is not None:
                return

    def _delta(
        self,
        request: Request,
        token_ids: tuple[int, ...],
        text: str,
        reason: FinishReason | None,
        produced: int,
    ) -> Delta:
        return Delta(
            request_id=request.request_id,
            token_ids=token_ids,
            text=text,
            finish_reason=reason,
            prompt_tokens=request.num_prompt_tokens,
            completion_tokens=produced,
            cached_tokens=request.num_cached_tokens,
            timing=request.timing() if reason is not None else None,
            replica_seconds=request.replica_seconds if reason is not None else None,
        )

    def abort(self, request_id: str) -> None:
        self.core.abort(request_id)

    def stats(self) -> EngineStats:
        return self.core.stats()

    # -- the engine thread -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            if not self.core.has_work:
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            self._gather_batch()
            try:
                changed = self.core.step()
            except Exception as exc:  # a failed forward must not hang every client
                log.exception("engine step failed; aborting the running requests")
                self._fail_running(exc)
                continue
            if changed:
                self._publish(changed)
            elif self.core.has_work:
                self._wake.wait(timeout=0.005)  # blocked on KV blocks; let aborts land
                self._wake.clear()
        self._end_open_streams()

    def _end_open_streams(self) -> None:
        """On shutdown, finish every open stream with 'abort' so no client waits forever."""
        self._end_streams([s.request for s in list(self._streams.values())])

    def _gather_batch(self) -> None:
        """When idle, wait up to the batching window for more requests to arrive."""
        scheduler = self.core.scheduler
        with self.core.lock:  # a queue policy may update its accounting when peeked
            head = scheduler.waiting.peek()
        policy = self.core.batch_policy
        window = policy.batch_window_s
        if window <= 0 or scheduler.running or head is None:
            return
        deadline = head.arrival_time + window
        while len(scheduler.waiting) < policy.max_num_seqs and not self._stopping:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wake.wait(timeout=remaining)
            self._wake.clear()

    def _publish(self, changed: list[Request]) -> None:
        updates = []
        for request in changed:
            stream = self._streams.get(request.request_id)
            if stream is None:
                continue
            new = tuple(request.token_ids[request.num_prompt_tokens + stream.sent :])
            stream.sent += len(new)
            updates.append((stream.queue, _Update(new, request.finish_reason)))
        self._send(updates)

    def _fail_running(self, exc: BaseException) -> None:
        self._end_streams(list(self.core.scheduler.running), exc)

    def _end_streams(self, requests: list[Request], error: BaseException | None = None) -> None:
        """Abort `requests` and tell their streams (with `error`, if the engine failed)."""
        for request in requests:
            self.core.abort(request.request_id)
        self._send(
            [
                (stream.queue, _Update((), "abort", error))
                for r in requests
                if (stream := self._streams.get(r.request_id)) is not None
            ]
        )

    def _send(self, updates: list[tuple[asyncio.Queue[_Update], _Update]]) -> None:
        """Hand updates to the event loop in one callback (called from the engine thread)."""
        if updates and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(_deliver, updates)


def _deliver(updates: list[tuple[asyncio.Queue[_Update], _Update]]) -> None:
    for queue, update in updates:
        queue.put_nowait(update)


def _default_name(spec: str | None, folder: Path) -> str:
    if spec is None:
        return "SmolLM2-135M-Instruct"
    return Path(spec).stem if spec.endswith(".gguf") else Path(spec).name
