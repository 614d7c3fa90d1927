from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from strata.bench.gateway.mock import (
    Mock,
    completion_body,
    nginx_conf,
    nginx_quote,
    stream_body,
)
from strata.bench.gateway.modes import MODES, PLAIN, STREAM
from tests.bench.gateway.conftest import needs_nginx


def _events(body: str) -> list[str]:
    assert body.endswith("\n\n")
    return [e.removeprefix("data: ") for e in body.strip().split("\n\n")]


def test_completion_body_is_a_chat_completion_with_usage() -> None:
    body = json.loads(completion_body("m", chunks=20))
    assert body["object"] == "chat.completion"
    assert body["model"] == "m"
    assert body["choices"][0]["message"]["content"].split() == [f"word{i}" for i in range(20)]
    assert body["usage"] == {"prompt_tokens": 14, "completion_tokens": 20, "total_tokens": 34}


def test_stream_body_has_chunks_then_usage_then_done() -> None:
    events = _events(stream_body("m", chunks=20))
    assert len(events) == 22 and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[19]["choices"][0]["finish_reason"] == "stop"
    assert chunks[18]["choices"][0]["finish_reason"] is None
    assert chunks[20]["choices"] == [] and chunks[20]["usage"]["completion_tokens"] == 20


def test_nginx_quote_escapes_what_nginx_would_read() -> None:
    assert nginx_quote("a'b\\c\nd") == "'a\\'b\\\\c\\nd'"
    with pytest.raises(ValueError, match=r"\$"):
        nginx_quote("costs $5")


def test_nginx_conf_answers_each_mode_with_return(tmp_path: Path) -> None:
    conf = nginx_conf(8123, tmp_path, chunks=3)
    assert "listen 127.0.0.1:8123" in conf
    assert f"pid {tmp_path / 'nginx.pid'};" in conf
    for mode in MODES:
        assert f"location = {mode.prefix}/v1/chat/completions" in conf
    assert conf.count("return 200 ") == 5  # healthz + two paths per mode
    assert "default_type text/event-stream;" in conf and "default_type application/json;" in conf


@needs_nginx
def test_nginx_accepts_the_rendered_conf(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf").write_text(nginx_conf(8123, tmp_path, chunks=20))
    cmd = ["nginx", "-t", "-p", str(tmp_path), "-e", str(tmp_path / "e.log")]
    done = subprocess.run([*cmd, "-c", str(tmp_path / "nginx.conf")], capture_output=True)
    assert done.returncode == 0, done.stderr


def test_mock_urls() -> None:
    mock = Mock("http://127.0.0.1:9", pid=1)
    assert mock.base_url(PLAIN) == "http://127.0.0.1:9/plain/v1"
    assert mock.chat_url(STREAM) == "http://127.0.0.1:9/stream/v1/chat/completions"


def test_real_mock_answers_post(mock: Mock) -> None:
    headers = {"Content-Type": "application/json"}
    plain = httpx.post(mock.chat_url(PLAIN), content=PLAIN.request_body(), headers=headers)
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "application/json"
    assert plain.json()["usage"]["completion_tokens"] == 20
    streamed = httpx.post(mock.chat_url(STREAM), content=STREAM.request_body(), headers=headers)
    assert streamed.status_code == 200
    assert streamed.headers["content-type"] == "text/event-stream"
    assert streamed.text == stream_body(STREAM.model, 20)


def test_real_mock_lists_each_modes_model(mock: Mock) -> None:
    for mode in MODES:
        listed = httpx.get(f"{mock.base_url(mode)}/models").json()
        assert [m["id"] for m in listed["data"]] == [mode.model]


def test_real_mock_refuses_other_paths(mock: Mock) -> None:
    assert httpx.post(f"{mock.url}/v1/chat/completions", content="{}").status_code == 404
