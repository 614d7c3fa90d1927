from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from strata.bench.gateway import GatewayBenchError
from strata.bench.gateway.mock import Mock
from strata.bench.gateway.modes import PLAIN, STREAM
from strata.bench.gateway.wrk import (
    lua_quote,
    lua_script,
    parse_wrk,
    run_wrk,
    wrk_command,
)
from tests.bench.gateway.conftest import needs_wrk

# Captured from `wrk -t1 -c32 -d3s --timeout=10s --latency -s plain.lua <mock>` on this machine.
CAPTURED = """\
Running 3s test @ http://127.0.0.1:39779/plain/v1/chat/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   250.19us   84.86us   1.62ms   78.53%
    Req/Sec   104.09k    16.98k  117.00k    80.00%
  Latency Distribution
     50%  238.00us
     75%  260.00us
     90%  365.00us
     99%  462.00us
  310600 requests in 3.00s, 159.07MB read
Requests/sec: 103507.94
Transfer/sec:     53.01MB
STRATA_WRK {"requests":310600,"duration_us":3000736,"bytes":166792200,"connect":0,"read":0,\
"write":0,"status":0,"timeout":0,"mean_us":250.2,"max_us":1619,"p50_us":238,"p90_us":365,\
"p95_us":398,"p99_us":462}
"""


def test_parse_captured_output() -> None:
    result = parse_wrk(CAPTURED)
    assert result.requests == 310600
    assert result.duration_s == pytest.approx(3.000736)
    assert result.requests_per_s == pytest.approx(103507.9, abs=0.1)  # wrk's own figure
    assert (result.p50_ms, result.p95_ms, result.p99_ms) == (0.238, 0.398, 0.462)
    assert result.max_ms == pytest.approx(1.619)
    assert result.errors.total == 0


def test_parse_counts_every_kind_of_error() -> None:
    text = CAPTURED.replace('"connect":0,"read":0', '"connect":1,"read":2').replace(
        '"status":0,"timeout":0', '"status":40,"timeout":3'
    )
    errors = parse_wrk(text).errors
    assert (errors.connect, errors.read, errors.status, errors.timeout) == (1, 2, 40, 3)
    assert errors.total == 46


def test_parse_without_the_done_line_says_so() -> None:
    with pytest.raises(GatewayBenchError, match="STRATA_WRK"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_lua_quote_picks_a_level_the_text_cannot_close() -> None:
    assert lua_quote('{"a":1}') == '[[{"a":1}]]'
    assert lua_quote("x]]y") == "[=[x]]y]=]"
    assert lua_quote("x]]y]=]") == "[==[x]]y]=]]==]"


def test_lua_script_posts_the_body_with_the_key() -> None:
    script = lua_script(PLAIN.request_body(), "sk-1")
    assert 'wrk.method = "POST"' in script
    assert f"wrk.body = [[{PLAIN.request_body()}]]" in script
    assert 'wrk.headers["Authorization"] = [[Bearer sk-1]]' in script
    assert "latency:percentile(95)" in script and "done = function" in script


def test_lua_script_without_a_key_sends_no_authorization() -> None:
    assert "Authorization" not in lua_script(PLAIN.request_body(), None)


def test_wrk_command() -> None:
    cmd = wrk_command("http://h/x", Path("s.lua"), connections=8, duration_s=9.6)
    assert cmd == ["wrk", "-t1", "-c8", "-d10s", "--timeout=30s", "--latency", "-s", "s.lua",
                   "http://h/x"]  # fmt: skip


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.command, self.headers["Authorization"], body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1/chat/completions"
    server.shutdown()


@needs_wrk
def test_real_wrk_sends_what_the_script_says(recorder: str, tmp_path: Path) -> None:
    script = tmp_path / "s.lua"
    script.write_text(lua_script(STREAM.request_body(), "sk-bench"))
    result = run_wrk(recorder, script, connections=1, duration_s=1)
    method, auth, body = _Recorder.seen[0]
    assert (method, auth, body.decode()) == ("POST", "Bearer sk-bench", STREAM.request_body())
    assert result.requests >= 1 and result.errors.total == 0


@needs_wrk
def test_real_wrk_against_the_mock(mock: Mock, tmp_path: Path) -> None:
    script = tmp_path / "s.lua"
    script.write_text(lua_script(STREAM.request_body(), None))
    result = run_wrk(mock.chat_url(STREAM), script, connections=2, duration_s=1)
    assert result.requests > 100 and result.errors.total == 0
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
