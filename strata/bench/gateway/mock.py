"""The mock upstream: nginx answering every POST with a canned OpenAI response.

`return 200 '...'` answers any method (nginx's static file handler would refuse POST with 405),
and `default_type` sets the content type. Per mode: `<prefix>/v1/chat/completions` answers a
`chat.completion` with usage, or a `text/event-stream` of `chunks` `chat.completion.chunk`
events, a usage chunk and `data: [DONE]`, all in one write; `<prefix>/v1/models` lists the
mode's model (gateways health-check upstreams with it). `/healthz` answers `ok`.
The mock knows nothing about the requests it answers; it never reads the body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.bench.gateway.modes import MODES, Mode
from strata.bench.gateway.process import CLIENT_CORE, pinned
from strata.bench.server_process import free_port, launched, wait_healthy

CREATED = 1_700_000_000
PROMPT_TOKENS = 14


@dataclass(frozen=True)
class Mock:
    url: str  # http://127.0.0.1:<port>
    pid: int  # the nginx master; its workers are its children

    def base_url(self, mode: Mode) -> str:
        """What a gateway is configured with as the upstream's OpenAI base URL."""
        return f"{self.url}{mode.prefix}/v1"

    def chat_url(self, mode: Mode) -> str:
        return f"{self.base_url(mode)}/chat/completions"


def _words(chunks: int) -> list[str]:
    return [f"word{i} " for i in range(chunks)]


def _usage(chunks: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": chunks,
        "total_tokens": PROMPT_TOKENS + chunks,
    }


def completion_body(model: str, chunks: int) -> str:
    """A non-streaming `chat.completion` whose content is `chunks` words, with usage."""
    message = {"role": "assistant", "content": "".join(_words(chunks))}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return _json({**_head(model, "chat.completion"), "choices": [choice], "usage": _usage(chunks)})


def stream_body(model: str, chunks: int) -> str:
    """`chunks` content events (one word each; the first carries the role, the last the finish
    reason), then a usage event with no choices, then `data: [DONE]`."""
    events = [_chunk(model, i, word, chunks) for i, word in enumerate(_words(chunks))]
    events.append({**_head(model, "chat.completion.chunk"), "choices": [], "usage": _usage(chunks)})
    return "".join(f"data: {_json(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def _chunk(model: str, i: int, word: str, chunks: int) -> dict[str, Any]:
    delta = {"role": "assistant", "content": word} if i == 0 else {"content": word}
    finish = "stop" if i == chunks - 1 else None
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {**_head(model, "chat.completion.chunk"), "choices": [choice]}


def _head(model: str, kind: str) -> dict[str, Any]:
    return {"id": "chatcmpl-mock", "object": kind, "created": CREATED, "model": model}


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def nginx_quote(text: str) -> str:
    """`text` as a single-quoted nginx string. nginx expands `$name` in `return` text and has
    no escape for `$`, so text holding one is refused."""
    if "$" in text:
        raise ValueError("nginx return text cannot hold '$'")
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def nginx_conf(port: int, workdir: Path, chunks: int) -> str:
    """A complete nginx.conf: one worker, no access log, every path under `workdir`."""
    locations = "\n".join(_location(mode, chunks) for mode in MODES)
    temp = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
{temp}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 404; }}
        location = /healthz {{ default_type text/plain; return 200 'ok'; }}
{locations}
    }}
}}
"""


def models_body(model: str) -> str:
    """`GET /v1/models`, which gateways use as an upstream's health check."""
    entry = {"id": model, "object": "model", "created": CREATED, "owned_by": "mock"}
    return _json({"object": "list", "data": [entry]})


def _location(mode: Mode, chunks: int) -> str:
    if mode.stream:
        kind, body = "text/event-stream", stream_body(mode.model, chunks)
    else:
        kind, body = "application/json", completion_body(mode.model, chunks)
    base = f"{mode.prefix}/v1"
    return "\n".join(
        [
            _answer(f"{base}/chat/completions", kind, body),
            _answer(f"{base}/models", "application/json", models_body(mode.model)),
        ]
    )


def _answer(path: str, kind: str, body: str) -> str:
    return (
        f"        location = {path} {{\n"
        f"            default_type {kind};\n"
        f"            return 200 {nginx_quote(body)};\n"
        "        }"
    )


@contextmanager
def run_mock(workdir: Path, chunks: int, core: int = CLIENT_CORE) -> Iterator[Mock]:
    """nginx serving the mock on a free loopback port, pinned to `core`, until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(port, workdir, chunks))
    cmd = ["nginx", "-p", str(workdir), "-e", str(workdir / "nginx-error.log"), "-c", str(conf)]
    with launched(pinned(core, cmd), workdir / "nginx.log") as proc:
        mock = Mock(f"http://127.0.0.1:{port}", proc.pid)
        wait_healthy(mock.url, proc, timeout_s=15)
        yield mock
