"""One policy's run: the workload's conversations through a `Router` over the engines.

Every turn is a streamed chat completion (usage included): TTFT is the time from handing the
call to the router (tokenizing and choosing included) to the first text; the prefix-hit rate
comes from each reply's `usage.prompt_tokens_details.cached_tokens`, which the engine fills
from its own prefix cache. A turn's prompt holds the conversation so far, assistant replies
included, as a real chat client sends it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from strata.bench.routing.cluster import MODEL
from strata.bench.routing.workload import Conversation, Workload
from strata.config import RoutingSettings, UpstreamSettings
from strata.errors import StrataError
from strata.gateway.upstream import Router, UpstreamCall, UpstreamReply
from strata.gateway.upstream.policy import RoundRobin
from strata.gateway.upstream.prefix_routing import PrefixRouting, UpstreamPrefixStats
from strata.gateway.upstream.prompt_blocks import PromptHasher
from strata.gateway.upstream.upstreams import HttpUpstream

Policy = Literal["prefix", "round-robin", "least-loaded"]
POLICIES: tuple[Policy, ...] = ("prefix", "round-robin", "least-loaded")
DEADLINE_S = 600.0


@dataclass(frozen=True)
class Backends:
    """The engines a run routes to and how to reach them."""

    urls: Sequence[str]  # base URLs up to /v1
    token_file: Path  # their bearer token
    folder: Path  # the model they serve (its tokenizer hashes prompts for `prefix`)
    hasher: PromptHasher
    model: str = MODEL  # the name they serve it under


@dataclass(frozen=True)
class Turn:
    """One request and what came of it (times in seconds, from the run's start)."""

    conversation: int
    turn: int
    upstream: str
    started: float
    first_text: float | None
    ended: float
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class PolicyRun:
    policy: Policy
    salt: str
    turns: list[Turn] = field(default_factory=list)
    routing: list[UpstreamPrefixStats] = field(default_factory=list)  # `prefix` only
    wall_s: float = 0.0


async def run_policy(
    backends: Backends, policy: Policy, work: Workload, salt: str, routing: RoutingSettings
) -> PolicyRun:
    """Send `work` through a router ordering by `policy`; wait for every conversation."""
    router = _router(backends, policy, routing)
    await router.start()
    await router.prefix.refresh()  # start from what the engines hold, not from nothing
    result = PolicyRun(policy, salt)
    start = time.monotonic()
    try:
        await asyncio.gather(
            *(
                _converse(router, backends.model, work, i, c, start, result)
                for i, c in enumerate(work.conversations)
            )
        )
    finally:
        result.wall_s = time.monotonic() - start
        result.routing = router.prefix.snapshot()
        await router.aclose()
    return result


def _router(backends: Backends, policy: Policy, routing: RoutingSettings) -> Router:
    upstreams = [
        HttpUpstream(UpstreamSettings(name=f"engine-{i}", url=url, models=[backends.model],
                                      api_key_file=backends.token_file,
                                      engine_model=str(backends.folder)))
        for i, url in enumerate(backends.urls)
    ]  # fmt: skip
    if policy == "prefix":
        prefix = PrefixRouting(routing, {str(backends.folder): backends.hasher})
        return Router(upstreams, routing, prefix=prefix)
    return Router(upstreams, routing, order=RoundRobin() if policy == "round-robin" else None)


async def _converse(
    router: Router,
    model: str,
    work: Workload,
    index: int,
    conv: Conversation,
    start: float,
    out: PolicyRun,
) -> None:
    await asyncio.sleep(max(0.0, start + conv.start_s - time.monotonic()))
    messages = [{"role": "system", "content": work.contexts[conv.context]}]
    for turn, question in enumerate(conv.questions):
        if turn:
            await asyncio.sleep(conv.pauses_s[turn - 1])
        messages.append({"role": "user", "content": question})
        record, answer = await _ask(router, model, messages, work.shape.max_tokens, start)
        out.turns.append(Turn(index, turn, **record))
        if answer is None:
            return  # a failed turn ends its conversation: the next one would differ anyway
        messages.append({"role": "assistant", "content": answer})


async def _ask(
    router: Router, model: str, messages: list[dict[str, str]], max_tokens: int, start: float
) -> tuple[dict[str, Any], str | None]:
    """One streamed turn: its record fields, and the answer's text (None when it failed)."""
    body = {"model": model, "messages": list(messages), "max_tokens": max_tokens,
            "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    loop = asyncio.get_running_loop()
    call = UpstreamCall("/chat/completions", body, True, "bench", loop.time() + DEADLINE_S)
    started = time.monotonic() - start
    try:
        reply = await router.dispatch(model, call)
    except StrataError as exc:
        return _failed(started, start, "", exc.message), None
    try:
        return await _read(reply, started, start)
    except StrataError as exc:
        return _failed(started, start, reply.upstream, exc.message), None
    finally:
        await reply.aclose()


async def _read(
    reply: UpstreamReply, started: float, start: float
) -> tuple[dict[str, Any], str | None]:
    if reply.events is None:
        detail = (reply.body or b"")[:200].decode(errors="replace")
        return _failed(started, start, reply.upstream, f"HTTP {reply.status}: {detail}"), None
    text: list[str] = []
    first: float | None = None
    usage: dict[str, Any] = {}
    async for event in reply.events:
        if event == b"[DONE]":
            break
        chunk = orjson.loads(event)
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices", []):
            if content := choice.get("delta", {}).get("content"):
                first = first if first is not None else time.monotonic() - start
                text.append(content)
    record = {"upstream": reply.upstream, "started": started, "first_text": first,
              "ended": time.monotonic() - start, **_usage(usage)}  # fmt: skip
    return record, "".join(text)


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    details = usage.get("prompt_tokens_details") or {}
    return {
        "prompt_tokens": int(usage.get("prompt_tokens", 0)),
        "cached_tokens": int(details.get("cached_tokens", 0)),
        "completion_tokens": int(usage.get("completion_tokens", 0)),
    }


def _failed(started: float, start: float, upstream: str, error: str) -> dict[str, Any]:
    return {"upstream": upstream, "started": started, "first_text": None,
            "ended": time.monotonic() - start, "error": error or "failed"}  # fmt: skip
