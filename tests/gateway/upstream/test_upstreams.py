"""Both kinds of upstream for real: HTTP to the mock upstream, and the built-in engine (a tiny
random-weight model) called in-process through its ASGI app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from strata.config import Settings, UpstreamSettings
from strata.engine.engine import Engine
from strata.engine.server import build_engine_app
from strata.errors import ConfigError
from strata.gateway.upstream import Router
from strata.gateway.upstream.errors import ConnectionClosed, DeadlineExceeded
from strata.gateway.upstream.upstreams import (
    EngineBinding,
    EngineUpstream,
    HttpUpstream,
    UpstreamCall,
    UpstreamReply,
    build_upstream,
)
from tests.support.live_server import MODEL, TOKEN, make_engine
from tests.support.mock_upstream import MockUpstream

MESSAGES = [{"role": "user", "content": "Say hello."}]


def soon(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


def chat(model: str = "mock-model", *, stream: bool = False, **fields: Any) -> UpstreamCall:
    body = {"model": model, "messages": MESSAGES, "stream": stream, **fields}
    return UpstreamCall("/chat/completions", body, stream, "req-42", soon())


def completion(model: str, max_tokens: int, *, stream: bool = True) -> UpstreamCall:
    body = {"model": model, "prompt": "a", "max_tokens": max_tokens, "stream": stream,
            "ignore_eos": True}  # fmt: skip
    return UpstreamCall("/completions", body, stream, "req-7", soon())


def http_upstream(mock: MockUpstream, **fields: Any) -> HttpUpstream:
    settings = UpstreamSettings(name=mock.name, url=mock.url, models=list(mock.models), **fields)
    return HttpUpstream(settings)


async def drain(reply: UpstreamReply) -> list[bytes]:
    assert reply.events is not None
    try:
        return [event async for event in reply.events]
    finally:
        await reply.aclose()


# -- HttpUpstream ----------------------------------------------------------------------------


async def test_a_plain_answer_with_credential_and_request_id(
    mock: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock.api_key = "sk-secret"
    monkeypatch.setenv("MOCK_KEY", "sk-secret")
    upstream = http_upstream(mock, api_key_env="MOCK_KEY", tier="spot")
    reply = await upstream.send(chat(), soon())
    await reply.aclose()
    assert (reply.upstream, reply.tier, reply.status) == ("mock", "spot", 200)
    assert reply.headers == {"content-type": "application/json"}
    assert reply.body is not None and json.loads(reply.body)["choices"][0]["message"]["content"]
    assert reply.events is None
    seen = mock.requests[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-secret"
    assert seen.headers["x-request-id"] == "req-42"
    assert seen.body["messages"] == MESSAGES
    await upstream.aclose()


async def test_a_stream_yields_each_data_payload(mock: MockUpstream) -> None:
    mock.line_end, mock.comments = "\r\n", True
    upstream = http_upstream(mock)
    reply = await upstream.send(chat(stream=True), soon())
    events = await drain(reply)
    assert reply.status == 200 and reply.body is None
    assert events[-1] == b"[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == mock.text
    await upstream.aclose()


async def test_an_error_status_comes_back_with_its_body_even_for_a_stream(
    mock: MockUpstream,
) -> None:
    mock.fail_next(1, 429, headers={"retry-after": "7"})
    upstream = http_upstream(mock)
    reply = await upstream.send(chat(stream=True), soon())
    assert reply.status == 429 and reply.events is None
    assert reply.body is not None and b"mock failure 429" in reply.body
    assert reply.retry_after_s == 7.0
    await reply.aclose()
    await upstream.aclose()


async def test_health_is_a_get_of_models_with_the_credential(
    mock: MockUpstream, tmp_path: Path
) -> None:
    mock.api_key = "sk-file"
    key = tmp_path / "key"
    key.write_text("sk-file\n")
    upstream = http_upstream(mock, api_key_file=key)
    await upstream.check_health(soon())
    assert mock.requests[-1].path == "/v1/models"
    mock.health_status = 503
    with pytest.raises(ConnectionClosed, match="503"):
        await upstream.check_health(soon())
    await upstream.aclose()


def test_credentials_that_cannot_be_read_are_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    base = {"name": "x", "url": "http://127.0.0.1:9/v1"}
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"api_key_env": "NOT_SET_ANYWHERE"}, r"upstreams\[x\].api_key_env names NOT_SET_ANYWHERE"),
        ({"api_key_file": tmp_path / "missing"}, r"upstreams\[x\].api_key_file: cannot read"),
        ({"api_key_file": tmp_path}, r"upstreams\[x\].api_key_file: cannot read"),
        ({"api_key_file": empty}, r"upstreams\[x\].api_key_file: .* is empty"),
    ]
    for fields, message in cases:
        with pytest.raises(ConfigError, match=message):
            HttpUpstream(UpstreamSettings.model_validate({**base, **fields}))


def test_an_engine_upstream_needs_the_engine() -> None:
    with pytest.raises(ConfigError, match=r"gateway\.engine"):
        build_upstream(UpstreamSettings(name="engine", kind="engine"))


# -- EngineUpstream --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_engine(tiny_llama_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return make_engine(tiny_llama_folder, tmp_path_factory.mktemp("cache"))


@pytest.fixture
async def engine(tiny_engine: Engine) -> AsyncIterator[Engine]:
    await tiny_engine.start()
    yield tiny_engine
    await tiny_engine.stop()


@pytest.fixture
def binding(engine: Engine) -> Iterator[EngineBinding]:
    yield EngineBinding(build_engine_app(engine, TOKEN, manage_engine=False), TOKEN, MODEL)


async def wait_idle(engine: Engine) -> None:
    for _ in range(500):
        stats = engine.stats()
        if stats.num_running == 0 and stats.num_waiting == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"engine still busy: {engine.stats()}")


async def test_the_engine_answers_in_process(binding: EngineBinding) -> None:
    upstream = build_upstream(UpstreamSettings(name="engine", kind="engine"), binding)
    assert isinstance(upstream, EngineUpstream) and upstream.models == (MODEL,)
    reply = await upstream.send(chat(MODEL, max_tokens=4), soon())
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    assert reply.body is not None
    assert json.loads(reply.body)["usage"]["completion_tokens"] <= 4
    events = await drain(await upstream.send(completion(MODEL, 5), soon()))
    assert events[-1] == b"[DONE]" and len(events) >= 3
    await upstream.check_health(soon())
    await upstream.aclose()


async def test_an_abandoned_engine_stream_aborts_its_request(
    engine: Engine, binding: EngineBinding
) -> None:
    upstream = EngineUpstream(UpstreamSettings(name="engine", kind="engine"), binding)
    await wait_idle(engine)
    before = engine.stats().generation_tokens
    reply = await upstream.send(completion(MODEL, 240), soon())
    assert reply.events is not None
    await reply.events.__anext__()
    await reply.aclose()
    await wait_idle(engine)
    stats = engine.stats()
    assert stats.generation_tokens - before < 240
    assert stats.kv_blocks_used == 0
    await upstream.aclose()


async def test_the_engine_deadline_aborts_the_request(
    engine: Engine, binding: EngineBinding
) -> None:
    upstream = EngineUpstream(UpstreamSettings(name="engine", kind="engine"), binding)
    await wait_idle(engine)
    before = engine.stats().generation_tokens
    with pytest.raises(DeadlineExceeded):  # at the head or mid-body: a loaded machine decides
        await drain(await upstream.send(completion(MODEL, 240), soon(0.05)))
    await wait_idle(engine)
    assert engine.stats().generation_tokens - before < 240
    await upstream.aclose()


async def test_the_engine_checks_the_token_and_reports_a_stopped_loop(
    engine: Engine, binding: EngineBinding
) -> None:
    wrong = EngineBinding(binding.app, "wrong-token", MODEL)
    upstream = EngineUpstream(UpstreamSettings(name="engine", kind="engine"), wrong)
    reply = await upstream.send(chat(MODEL), soon())
    assert reply.status == 401 and reply.body is not None and b"invalid_api_key" in reply.body
    await engine.stop()
    with pytest.raises(ConnectionClosed, match="503"):
        await upstream.check_health(soon())
    await upstream.aclose()


async def test_the_router_streams_from_the_engine_and_a_closed_stream_aborts_it(
    engine: Engine, binding: EngineBinding
) -> None:
    router = Router.from_settings(Settings(), binding)
    assert router.models() == [MODEL]
    await wait_idle(engine)
    before = engine.stats().generation_tokens
    reply = await router.dispatch(MODEL, completion(MODEL, 240))
    assert reply.upstream == "engine" and reply.events is not None
    first = json.loads(await reply.events.__anext__())
    assert first["choices"][0]["text"] or first["choices"][0]["finish_reason"]
    await reply.aclose()
    await wait_idle(engine)
    assert engine.stats().generation_tokens - before < 240
    assert engine.stats().kv_blocks_used == 0
    await router.aclose()
