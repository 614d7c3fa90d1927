"""The engine HTTP server, run for real: uvicorn on a loopback port, a real (tiny) model, and the
official `openai` SDK (sync and async, streaming and not) as the client."""

from __future__ import annotations

import asyncio
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from pydantic import SecretStr

from strata.config import Settings
from strata.engine.engine import Engine
from strata.engine.server import build_engine_app, chat_prompt_ids, load_or_create_engine_token
from strata.errors import ConfigError
from tests.support.live_server import MODEL, TOKEN, LiveServer, make_engine

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def live(tiny_llama_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    engine = make_engine(tiny_llama_folder, tmp_path_factory.mktemp("cache"))
    with LiveServer(engine) as server:
        yield server


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


# -- no model needed ------------------------------------------------------------------------


def test_token_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "state")
    token = load_or_create_engine_token(settings)
    assert len(token) >= 32
    assert stat.S_IMODE(settings.engine_token_file.stat().st_mode) == 0o600
    assert load_or_create_engine_token(settings) == token


def test_a_token_file_readable_by_others_is_reused_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.engine_token_file.write_text("from-file\n", encoding="utf-8")
    settings.engine_token_file.chmod(0o644)
    assert load_or_create_engine_token(settings) == "from-file"
    assert "chmod 600" in caplog.text


def test_configured_token_wins_and_must_not_be_empty(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.engine_server.token = SecretStr("configured")
    assert load_or_create_engine_token(settings) == "configured"
    assert not settings.engine_token_file.exists()
    settings.engine_server.token = SecretStr(" ")
    with pytest.raises(ConfigError):
        load_or_create_engine_token(settings)


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ConfigError):
        build_engine_app(cast(Engine, None), "")


# -- health, auth, routing ------------------------------------------------------------------


def test_healthz_needs_no_token(live: LiveServer) -> None:
    response = httpx.get(f"{live.url}/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
)
def test_missing_or_bad_token_is_401(live: LiveServer, headers: dict[str, str]) -> None:
    response = httpx.post(f"{live.url}/v1/completions", json={"prompt": "a"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{live.url}/v1/models", headers=headers).status_code == 401


def test_sdk_with_a_wrong_key_gets_authentication_error(live: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_models_lists_the_served_model(live: LiveServer) -> None:
    models = live.client().models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_unknown_route_is_404_in_openai_shape(live: LiveServer) -> None:
    response = httpx.get(f"{live.url}/v1/nothing", headers=auth())
    assert response.status_code == 404 and "error" in response.json()


# -- bad requests ---------------------------------------------------------------------------


def test_bad_json_is_400(live: LiveServer) -> None:
    response = httpx.post(
        f"{live.url}/v1/chat/completions",
        content=b'{"model": "tiny", "messages": [',
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_max_tokens_zero_is_400_naming_max_tokens(live: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        live.client().chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=0)  # type: ignore[arg-type]
    assert info.value.param == "max_tokens"


def test_a_prompt_longer_than_the_context_is_400(live: LiveServer) -> None:
    long_text = "hello there " * 300
    with pytest.raises(openai.BadRequestError) as info:
        live.client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": long_text}]
        )
    assert info.value.param == "messages" and info.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as info:
        live.client().completions.create(model=MODEL, prompt=long_text, stream=True)
    assert info.value.param == "prompt"


def test_max_tokens_past_the_context_is_400(live: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        live.client().completions.create(model=MODEL, prompt="hi", max_tokens=1000)
    assert info.value.param == "max_tokens"


def test_unknown_model_is_404(live: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        live.client().chat.completions.create(model="gpt-9", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found"


def test_n_above_one_is_400(live: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        live.client().chat.completions.create(model=MODEL, messages=MESSAGES, n=2)  # type: ignore[arg-type]
    assert info.value.param == "n"


def test_token_ids_outside_the_vocabulary_are_400(live: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        live.client().completions.create(model=MODEL, prompt=[1, 10**7])
    assert info.value.param == "prompt"


# -- generation -----------------------------------------------------------------------------


def greedy_chat(live: LiveServer, **kw: Any) -> Any:
    options: dict[str, Any] = {"max_tokens": 8, "temperature": 0, **kw}
    options["extra_body"] = {"ignore_eos": True, **options.get("extra_body", {})}
    return live.client().chat.completions.create(model=MODEL, messages=MESSAGES, **options)  # type: ignore[arg-type]


def test_chat_completion_counts_usage(live: LiveServer) -> None:
    response = greedy_chat(live)
    choice = response.choices[0]
    assert response.object == "chat.completion" and response.model == MODEL
    assert choice.finish_reason == "length" and choice.message.role == "assistant"
    prompt_ids = chat_prompt_ids(live.engine.tokenizer, MESSAGES)
    usage = response.usage
    assert usage.prompt_tokens == len(prompt_ids)
    assert usage.completion_tokens == 8
    assert usage.total_tokens == usage.prompt_tokens + 8
    assert usage.prompt_tokens_details.cached_tokens >= 0


def test_chat_stream_matches_the_whole_response(live: LiveServer) -> None:
    whole = greedy_chat(live)
    stream = greedy_chat(live, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    content_chunks = [c for c in chunks if c.choices]
    assert content_chunks[0].choices[0].delta.role == "assistant"
    assert content_chunks[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in content_chunks) == (
        whole.choices[0].message.content
    )
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def test_return_token_ids_gives_the_generated_ids(live: LiveServer) -> None:
    response = live.client().completions.create(
        model=MODEL,
        prompt="Once upon a time",
        max_tokens=6,
        temperature=0,
        extra_body={"ignore_eos": True, "return_token_ids": True},
    )
    choice = response.choices[0]
    token_ids = (choice.model_extra or {})["token_ids"]
    assert len(token_ids) == response.usage.completion_tokens == 6  # type: ignore[union-attr]
    assert choice.text == live.engine.tokenizer.decode(token_ids)
    assert choice.finish_reason == "length"


async def test_async_streaming_completion_with_token_ids(live: LiveServer) -> None:
    client = live.async_client()
    stream = await client.completions.create(
        model=MODEL,
        prompt=[1, 2, 3, 4],
        max_tokens=5,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True, "return_token_ids": True},
    )
    ids: list[int] = []
    reasons = []
    async for chunk in stream:
        for choice in chunk.choices:
            ids.extend((choice.model_extra or {}).get("token_ids", []))
            reasons.append(choice.finish_reason)
    await client.close()
    assert len(ids) == 5 and reasons[-1] == "length"


async def test_async_concurrent_chats(live: LiveServer) -> None:
    client = live.async_client()
    responses = await asyncio.gather(
        *(
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"count to {i}"}],
                max_tokens=4 + i,
                extra_body={"ignore_eos": True},
            )
            for i in range(4)
        )
    )
    await client.close()
    assert [r.usage.completion_tokens for r in responses if r.usage] == [4, 5, 6, 7]


def test_stop_string_ends_with_stop(live: LiveServer) -> None:
    whole = greedy_chat(live, max_tokens=12)
    text = whole.choices[0].message.content
    assert text, "the tiny model produced no text to cut"
    response = greedy_chat(live, max_tokens=12, stop=[text[len(text) // 2 :][:3]])
    assert response.choices[0].finish_reason == "stop"


# -- disconnects, metrics, overload ---------------------------------------------------------


def test_a_stream_closed_by_the_client_aborts_its_request(live: LiveServer) -> None:
    live.wait_idle()
    before = live.engine.stats().generation_tokens
    body = {"model": MODEL, "prompt": "a", "max_tokens": 240, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{live.url}/v1/completions", json=body, headers=auth()) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
    live.wait_idle()
    assert live.engine.stats().generation_tokens - before < 240


def test_a_non_streaming_client_that_gives_up_aborts_its_request(live: LiveServer) -> None:
    live.wait_idle()
    before = live.engine.stats().generation_tokens
    body = {"model": MODEL, "prompt": "a", "max_tokens": 240, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{live.url}/v1/completions", json=body, headers=auth(), timeout=0.1)
    live.wait_idle()
    assert live.engine.stats().generation_tokens - before < 240


def test_metrics_need_the_token_and_count_requests(live: LiveServer) -> None:
    greedy_chat(live, max_tokens=2)
    assert httpx.get(f"{live.url}/metrics").status_code == 401
    response = httpx.get(f"{live.url}/metrics", headers=auth())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = re.search(r"^strata:time_to_first_token_seconds_count (\S+)$", response.text, re.M)
    assert found is not None and float(found.group(1)) > 0
    assert "strata:num_requests_running" in response.text
    assert 'strata:request_success_total{finished_reason="length"}' in response.text


async def test_overload_is_503_with_retry_after(tiny_llama_folder: Path, tmp_path: Path) -> None:
    engine = make_engine(tiny_llama_folder, tmp_path, max_num_seqs=1, max_waiting=1)
    with LiveServer(engine) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=auth(), timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/v1/completions",
                        json={
                            "prompt": f"request {i}",
                            "max_tokens": 100,
                            "ignore_eos": True,
                            "stream": i % 2 == 1,
                        },
                    )
                    for i in range(6)
                )
            )
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses, statuses
    assert set(statuses) == {200, 503}
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"]["type"] == "overloaded_error"
