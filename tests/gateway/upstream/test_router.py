"""The router over real HTTP: mock upstreams that fail, stall, die midway and go down."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from strata.config import RoutingSettings, Settings, UpstreamSettings
from strata.errors import (
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    UpstreamError,
)
from strata.gateway.upstream import EngineBinding, Router, UpstreamCall, UpstreamReply
from strata.gateway.upstream.upstreams import HttpUpstream, Upstream
from tests.support.mock_upstream import MockUpstream

MODEL = "mock-model"
FAST = {"backoff_ms": 1, "health_interval_s": 60}


@pytest.fixture(scope="module")
def trio() -> Iterator[tuple[MockUpstream, MockUpstream, MockUpstream]]:
    with MockUpstream("a") as a, MockUpstream("b") as b, MockUpstream("c") as c:
        yield a, b, c


@pytest.fixture
def a(trio: tuple[MockUpstream, ...]) -> MockUpstream:
    return trio[0]


@pytest.fixture
def b(trio: tuple[MockUpstream, ...]) -> MockUpstream:
    return trio[1]


@pytest.fixture(autouse=True)
def fresh_mocks(trio: tuple[MockUpstream, ...]) -> None:
    for mock in trio:
        mock.reset()


def upstream(mock: MockUpstream, **fields: Any) -> HttpUpstream:
    return HttpUpstream(UpstreamSettings(name=mock.name, url=mock.url, models=[MODEL], **fields))


def dead_upstream(name: str = "dead") -> HttpUpstream:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return HttpUpstream(
        UpstreamSettings(name=name, url=f"http://127.0.0.1:{port}/v1", models=[MODEL])
    )


@pytest.fixture
async def routers() -> AsyncIterator[list[Router]]:
    made: list[Router] = []
    yield made
    for router in made:
        await router.aclose()


def make(routers: list[Router], *upstreams: Upstream, **routing: Any) -> Router:
    router = Router(upstreams, RoutingSettings.model_validate({**FAST, **routing}))
    routers.append(router)
    return router


def chat(*, stream: bool = False, deadline_s: float = 10.0, **fields: Any) -> UpstreamCall:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    deadline = asyncio.get_running_loop().time() + deadline_s
    return UpstreamCall("/chat/completions", {**body, **fields}, stream, "req-1", deadline)


async def text_of(reply: UpstreamReply) -> str:
    """The answer's text, streamed or not (the reply is closed)."""
    try:
        if reply.events is None:
            assert reply.body is not None
            return str(json.loads(reply.body)["choices"][0]["message"]["content"])
        events = [json.loads(e) async for e in reply.events if e != b"[DONE]"]
        return "".join(c["delta"].get("content", "") for e in events for c in e["choices"])
    finally:
        await reply.aclose()


async def streamed_until_error(reply: UpstreamReply) -> tuple[str, UpstreamError]:
    text = []
    assert reply.events is not None
    with pytest.raises(UpstreamError) as caught:
        async for event in reply.events:
            for choice in json.loads(event)["choices"]:
                text.append(choice["delta"].get("content", ""))
    await reply.aclose()
    return "".join(text), caught.value


# -- names -----------------------------------------------------------------------------------


async def test_models_aliases_and_unknown_names(routers: list[Router], a: MockUpstream) -> None:
    router = make(routers, upstream(a), aliases={"fast": MODEL})
    assert router.models() == [MODEL, "fast"]
    assert router.resolve("fast") == router.resolve(MODEL) == MODEL
    assert await text_of(await router.dispatch("fast", chat())) == a.text
    with pytest.raises(NotFoundError) as caught:
        router.resolve("gpt-9")
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    with pytest.raises(NotFoundError):
        await router.dispatch("gpt-9", chat())


def test_bad_routing_configs_are_refused(a: MockUpstream, b: MockUpstream) -> None:
    with pytest.raises(ConfigError, match=r"routing.aliases.fast points at 'nope'"):
        Router([upstream(a)], RoutingSettings(aliases={"fast": "nope"}))
    with pytest.raises(ConfigError, match=r"routing.aliases.mock-model"):
        Router([upstream(a)], RoutingSettings(aliases={MODEL: MODEL}))
    with pytest.raises(ConfigError, match="used twice"):
        Router([upstream(a), upstream(a)], RoutingSettings())


async def test_the_engine_upstream_serves_its_own_model_name_first(a: MockUpstream) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not called")

    settings = Settings(
        upstreams=[UpstreamSettings(name="a", url=a.url, models=[MODEL])],
        routing=RoutingSettings(aliases={"house": "tiny"}),
    )
    router = Router.from_settings(settings, EngineBinding(app, "token", "tiny"))
    assert router.models() == ["tiny", MODEL, "house"]
    assert [h.name for h in router.health_snapshot()] == ["engine", "a"]
    await router.aclose()


# -- failover and retries --------------------------------------------------------------------


async def test_a_failing_upstream_fails_over_to_the_next_in_order(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    a.fail_next(1, 503)
    router = make(routers, upstream(a), upstream(b))
    reply = await router.dispatch(MODEL, chat())
    assert reply.upstream == "b" and await text_of(reply) == b.text
    assert (a.count(), b.count()) == (1, 1)
    assert await text_of(await router.dispatch(MODEL, chat())) == a.text  # order unchanged


async def test_connect_errors_fail_over(routers: list[Router], a: MockUpstream) -> None:
    router = make(routers, dead_upstream(), upstream(a))
    assert (await router.dispatch(MODEL, chat(stream=True))).upstream == "a"
    assert "cannot connect" in (router.health_snapshot()[0].last_error or "")


async def test_retries_back_off_exponentially_on_the_same_upstream(
    routers: list[Router], a: MockUpstream
) -> None:
    a.fail_next(2, 502)
    router = make(routers, upstream(a), retries=2, backoff_ms=60, breaker_failures=5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await text_of(await router.dispatch(MODEL, chat())) == a.text
    assert loop.time() - started >= 0.06 + 0.12
    assert a.count() == 3


async def test_retries_run_out(routers: list[Router], a: MockUpstream, b: MockUpstream) -> None:
    a.fail_next(5, 500)
    b.fail_next(5, 504)
    router = make(routers, upstream(a), upstream(b), retries=2, breaker_failures=10)
    match = "a: answered HTTP 500; b: answered HTTP 504; a: answered HTTP 500"
    with pytest.raises(UpstreamError, match=match) as e:
        await router.dispatch(MODEL, chat())
    assert e.value.code == "upstream_failed"
    assert (a.count(), b.count()) == (2, 1)


async def test_overloaded_everywhere_is_a_503_with_the_upstreams_retry_after(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    a.fail_next(1, 429, headers={"retry-after": "3"})
    b.fail_next(1, 503, headers={"retry-after": "5"})
    router = make(routers, upstream(a), upstream(b), retries=1)
    with pytest.raises(OverloadedError) as caught:
        await router.dispatch(MODEL, chat())
    assert caught.value.retry_after_s == 3.0


async def test_a_client_error_comes_back_as_is_and_is_not_retried(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    a.fail_next(1, 400, body={"error": {"message": "bad temperature", "param": "temperature"}})
    router = make(routers, upstream(a), upstream(b))
    reply = await router.dispatch(MODEL, chat(stream=True))
    assert (reply.status, reply.upstream, reply.events) == (400, "a", None)
    assert reply.body is not None and b"bad temperature" in reply.body
    await reply.aclose()
    assert b.count() == 0
    assert router.health_snapshot()[0].breaker == "closed"


async def test_the_deadline_ends_the_call_and_its_retries(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    a.stall_s = b.stall_s = 5.0
    router = make(routers, upstream(a), upstream(b), retries=5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UpstreamError, match="did not answer in time") as caught:
        await router.dispatch(MODEL, chat(deadline_s=0.3))
    assert caught.value.code == "upstream_timeout"
    assert loop.time() - started < 2.0
    assert b.count() == 0


async def test_an_upstreams_own_timeout_fails_over(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    a.stall_s = 5.0
    router = make(routers, upstream(a, timeout_s=0.2), upstream(b))
    assert (await router.dispatch(MODEL, chat())).upstream == "b"
    assert "deadline" in (router.health_snapshot()[0].last_error or "")


async def test_a_cancelled_dispatch_aborts_upstream_and_judges_nobody(
    routers: list[Router], a: MockUpstream
) -> None:
    a.stall_s = 5.0
    router = make(routers, upstream(a), breaker_failures=1)
    task = asyncio.create_task(router.dispatch(MODEL, chat()))
    await asyncio.to_thread(a.wait_until, lambda: a.count() == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(a.wait_until, lambda: a.aborted == 1)
    assert router.health_snapshot()[0].breaker == "closed"


# -- streams ---------------------------------------------------------------------------------


async def test_a_stream_that_dies_before_content_fails_over_without_duplicates(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    a.die_after_events = 1  # only the role chunk got out
    router = make(routers, upstream(a), upstream(b))
    reply = await router.dispatch(MODEL, chat(stream=True))
    assert reply.upstream == "b"
    assert await text_of(reply) == b.text


async def test_an_error_event_before_content_fails_over(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    a.text = ""  # the mock's first content event is then its finish chunk
    router = make(routers, upstream(a), upstream(b))
    reply = await router.dispatch(MODEL, chat(stream=True))
    assert reply.upstream == "a"  # a finish_reason is content: nothing to fail over
    await reply.aclose()


async def test_a_stream_that_dies_after_content_ends_with_an_error_and_no_retry(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    a.die_after_events = 3  # role, "Hello", " from"
    router = make(routers, upstream(a), upstream(b))
    reply = await router.dispatch(MODEL, chat(stream=True))
    text, error = await streamed_until_error(reply)
    assert text == "Hello from"
    assert error.code == "upstream_stream_failed" and "'a'" in error.message
    assert b.count() == 0
    assert "mid-stream" in (router.health_snapshot()[0].last_error or "")


async def test_a_closed_stream_aborts_the_upstream(routers: list[Router], a: MockUpstream) -> None:
    a.text = " ".join(["word"] * 200)
    a.event_delay_s = 0.01
    router = make(routers, upstream(a))
    reply = await router.dispatch(MODEL, chat(stream=True))
    assert reply.events is not None
    await reply.events.__anext__()
    await reply.aclose()
    await asyncio.to_thread(a.wait_until, lambda: a.aborted == 1)


# -- circuit breaker and health --------------------------------------------------------------


async def test_the_breaker_opens_half_opens_and_closes(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    router = make(
        routers, upstream(a), upstream(b), breaker_failures=2, breaker_reset_s=0.3, retries=1
    )
    a.fail_next(3, 503)
    for _ in range(2):
        assert (await router.dispatch(MODEL, chat())).upstream == "b"
    assert router.health_snapshot()[0].breaker == "open"
    assert (await router.dispatch(MODEL, chat())).upstream == "b"
    assert a.count() == 2  # skipped while open
    await asyncio.sleep(0.3)
    assert router.health_snapshot()[0].breaker == "half_open"
    assert (await router.dispatch(MODEL, chat())).upstream == "b"  # the trial failed
    assert router.health_snapshot()[0].breaker == "open"
    await asyncio.sleep(0.3)
    assert (await router.dispatch(MODEL, chat())).upstream == "a"  # the trial succeeded
    assert router.health_snapshot()[0].breaker == "closed"


async def test_429s_do_not_open_the_breaker(routers: list[Router], a: MockUpstream) -> None:
    router = make(routers, upstream(a), breaker_failures=1, retries=0)
    a.fail_next(1, 429)
    with pytest.raises(OverloadedError):
        await router.dispatch(MODEL, chat())
    assert router.health_snapshot()[0].breaker == "closed"


async def test_nothing_available_is_a_503_until_the_breaker_lets_a_trial_through(
    routers: list[Router], a: MockUpstream
) -> None:
    router = make(routers, upstream(a), breaker_failures=1, breaker_reset_s=5, retries=0)
    a.fail_next(1, 500)
    with pytest.raises(UpstreamError):
        await router.dispatch(MODEL, chat())
    with pytest.raises(OverloadedError) as caught:
        await router.dispatch(MODEL, chat())
    assert caught.value.code == "upstream_unavailable"
    assert 4.0 < caught.value.retry_after_s <= 5.0  # type: ignore[operator]


async def test_health_checks_mark_an_upstream_down_and_back_up(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    router = make(routers, upstream(a, tier="spot"), upstream(b), health_interval_s=0.05)
    await router.start()
    a.health_status = 503
    await wait_for(lambda: not router.health_snapshot()[0].healthy)
    snapshot = router.health_snapshot()[0]
    assert (snapshot.tier, snapshot.available) == ("spot", False)
    assert "503" in (snapshot.last_error or "")
    assert (await router.dispatch(MODEL, chat())).upstream == "b"
    a.health_status = 200
    await wait_for(lambda: router.health_snapshot()[0].healthy)
    assert (await router.dispatch(MODEL, chat())).upstream == "a"


async def wait_for(condition: Any, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


# -- eligibility -----------------------------------------------------------------------------


async def test_dpa_calls_go_only_to_upstreams_with_a_dpa(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    router = make(routers, upstream(a), upstream(b, dpa=True))
    dpa_call = dataclasses.replace(chat(), require_dpa=True)
    assert (await router.dispatch(MODEL, dpa_call)).upstream == "b"
    b.fail_next(3, 503)
    with pytest.raises(OverloadedError):  # never falls back to a
        await router.dispatch(MODEL, dpa_call)
    assert a.count() == 0
    only_a = make(routers, upstream(a))
    with pytest.raises(PermissionDeniedError, match=f"'{MODEL}'.*dpa: true"):
        await only_a.dispatch(MODEL, dpa_call)


async def test_optional_fields_go_to_upstreams_that_support_them(
    routers: list[Router], a: MockUpstream, b: MockUpstream
) -> None:
    router = make(routers, upstream(a, supports=[]), upstream(b, supports=["tools", "n"]))
    tools = [{"type": "function", "function": {"name": "f"}}]
    plain = chat(n=1, tools=[], presence_penalty=0.0, response_format={"type": "text"})
    assert (await router.dispatch(MODEL, plain)).upstream == "a"
    call = chat(tools=tools, tool_choice="auto", parallel_tool_calls=False)
    assert (await router.dispatch(MODEL, call)).upstream == "b"
    with pytest.raises(InvalidRequestError) as caught:
        await router.dispatch(MODEL, chat(logprobs=True))
    assert caught.value.param == "logprobs"
    assert "a supports no optional field; b supports n, tools" in caught.value.message
