"""One streamed request: the SSE reader on real server bytes and on broken streams; errors as
records, never exceptions."""

from __future__ import annotations

import socket
from dataclasses import replace

import httpx
import pytest

from strata.bench.client import (
    ENDPOINTS,
    RequestFailed,
    StreamReader,
    Target,
    http_client,
    request_body,
    send_request,
    with_model,
)
from strata.bench.records import RequestRecord
from strata.bench.workload import Fixed, Workload
from strata.errors import BenchTargetError, ConfigError
from tests.support.live_server import MODEL, LiveServer

SPEC = Workload(Fixed(12), Fixed(6), shared_prefix_tokens=5, seed=2).request(0)


def read(chunks: list[bytes], endpoint: str = "chat") -> RequestRecord:
    record = RequestRecord(sent=0.0)
    reader = StreamReader(record, ENDPOINTS[endpoint])
    for number, chunk in enumerate(chunks, start=1):
        reader.feed(chunk, now=float(number))
    reader.close(now=float(len(chunks) + 1))
    return record


def chat_chunk(text: str) -> bytes:
    return b'data: {"choices": [{"delta": {"content": "%s"}}]}\n\n' % text.encode()


def test_request_body_asks_for_the_exact_length_and_usage() -> None:
    target = Target("http://x/v1", model="m")
    body = request_body(target, SPEC)
    assert body["max_tokens"] == body["min_tokens"] == 6 and body["ignore_eos"] is True
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": SPEC.prefix},
        {"role": "user", "content": SPEC.prompt},
    ]
    plain = request_body(replace(target, ignore_eos=False, endpoint=ENDPOINTS["completions"]), SPEC)
    assert "ignore_eos" not in plain and "min_tokens" not in plain
    assert plain["prompt"] == f"{SPEC.prefix} {SPEC.prompt}"


def test_ttft_and_token_times_come_from_content_chunks_only() -> None:
    record = read(
        [
            b'data: {"choices": [{"delta": {"role": "assistant", "content": ""}}]}\n\n',
            chat_chunk("Hel"),
            chat_chunk("lo"),
            b'data: {"choices": [{"delta": {}, "finish_reason": "length"}]}\n\n',
            b'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 5}}\n\n',
            b"data: [DONE]\n\n",
        ]
    )
    assert record.ok and record.first_token == 2.0 and record.token_times == [2.0, 3.0]
    assert (record.prompt_tokens, record.output_tokens) == (9, 5)  # a chunk held several tokens
    assert record.finished == 6.0


def test_without_usage_the_chunks_are_counted() -> None:
    record = read(
        [b'data: {"choices": [{"text": "a"}]}\n\n'] * 3 + [b"data: [DONE]\n\n"], "completions"
    )
    assert record.output_tokens == 3 and record.prompt_tokens == 0


@pytest.mark.parametrize(
    ("chunks", "kind"),
    [
        (
            [chat_chunk("a"), b'data: {"error": {"message": "boom"}}\n\n', b"data: [DONE]\n\n"],
            "stream_error",
        ),
        ([chat_chunk("a"), b"data: {not json\n\n"], "bad_response"),
        ([chat_chunk("a"), b"data: [1, 2]\n\n"], "bad_response"),
        ([b'data: {"choices": ["a"]}\n\n'], "bad_response"),
        ([b'data: {"choices": [], "usage": {"completion_tokens": "many"}}\n\n'], "bad_response"),
        ([chat_chunk("a"), chat_chunk("b")], "incomplete"),
    ],
)
def test_broken_streams_fail_the_request(chunks: list[bytes], kind: str) -> None:
    with pytest.raises(RequestFailed) as info:
        read(chunks)
    assert info.value.kind == kind


async def test_real_server_bytes_read_the_same_in_any_split(target: Target) -> None:
    async with http_client(target, 1) as http:
        named = await with_model(http, target)
        body = request_body(named, SPEC)
        raw = (await http.post("/chat/completions", json=body)).content
    whole = read([raw])
    assert whole.ok and whole.output_tokens == 6 and whole.prompt_tokens > 12 + 5
    for size in (1, 3, 10, 64):
        record = read([raw[i : i + size] for i in range(0, len(raw), size)])
        assert (record.output_tokens, record.prompt_tokens) == (6, whole.prompt_tokens)
        assert len(record.token_times) == len(whole.token_times)


async def test_send_request_measures_a_real_stream(target: Target) -> None:
    async with http_client(target, 1) as http:
        record = await send_request(http, replace(target, model=MODEL), SPEC)
    assert record.ok, record.error_detail
    assert record.output_tokens == 6 and record.token_times
    assert record.sent < record.first_token == record.token_times[0] <= record.finished  # type: ignore[operator]


async def test_an_http_error_status_is_recorded_with_the_server_message(target: Target) -> None:
    async with http_client(target, 1) as http:
        record = await send_request(http, replace(target, model="no-such-model"), SPEC)
    assert record.error == "404" and "no-such-model" in (record.error_detail or "")


async def test_a_timeout_is_recorded(target: Target, bench_server: LiveServer) -> None:
    slow = Workload(Fixed(8), Fixed(200)).request(0)
    quick = replace(target, model=MODEL, timeout_s=0.05)
    async with http_client(quick, 1) as http:
        record = await send_request(http, quick, slow)
    assert record.error == "timeout" and not record.ok
    bench_server.wait_idle()  # the server aborted the abandoned request


async def test_a_refused_connection_is_recorded() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    target = Target(f"http://127.0.0.1:{port}/v1", model=MODEL)
    async with http_client(target, 1) as http:
        record = await send_request(http, target, SPEC)
    assert record.error == "connect"
    with pytest.raises(BenchTargetError, match=str(port)):
        async with http_client(target, 1) as http:
            await with_model(http, replace(target, model=None))


async def test_the_model_defaults_to_the_first_listed(target: Target) -> None:
    async with http_client(target, 1) as http:
        assert (await with_model(http, target)).model == MODEL
        wrong_key = replace(target, api_key="wrong")
    async with http_client(wrong_key, 1) as http:
        with pytest.raises(BenchTargetError, match="401"):
            await with_model(http, wrong_key)


def test_the_key_stays_out_of_the_repr() -> None:
    assert "s3cret" not in repr(Target("http://x/v1", api_key="s3cret"))


@pytest.mark.parametrize("kwargs", [{"base_url": "localhost:8400"}, {"timeout_s": 0}])
def test_bad_targets_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Target(**{"base_url": "http://x/v1", **kwargs})  # type: ignore[arg-type]


async def test_the_servers_request_id_is_kept_with_the_record() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        stream = chat_chunk("hi") + b"data: [DONE]\n\n"
        return httpx.Response(200, headers={"x-request-id": "req-42"}, content=stream)

    target = Target("http://gw/v1", model=MODEL)
    mock = httpx.MockTransport(answer)
    async with httpx.AsyncClient(transport=mock, base_url="http://gw/v1") as http:
        record = await send_request(http, target, SPEC)
    assert record.ok and record.request_id == "req-42"
