"""`POST /v1/kv/events` on a real engine server: after a request, the engine reports exactly
the block hashes a router computes for that prompt from the request body alone; the route is
behind the token and names the field of a bad cursor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from strata.engine.block_hash import prefix_hashes
from strata.gateway.upstream.prompt_blocks import PromptHasher
from tests.support.live_server import MODEL, TOKEN, LiveServer, make_engine

MESSAGES = [
    {"role": "system", "content": "You answer questions about the Acme return policy. " * 6},
    {"role": "user", "content": "Can I return a used kettle?"},
]


@pytest.fixture(scope="module")
def live(tiny_llama_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    engine = make_engine(tiny_llama_folder, tmp_path_factory.mktemp("cache"))
    with LiveServer(engine) as server:
        yield server


def events(live: LiveServer, body: Any, token: str = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.post(f"{live.url}/v1/kv/events", json=body, headers=headers)


def test_the_engine_reports_the_blocks_a_router_computes_for_the_prompt(
    live: LiveServer, tiny_llama_folder: Path
) -> None:
    before = events(live, {"since": 0}).json()
    live.client().chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
    live.wait_idle()
    after = events(live, {"since": before["seq"], "instance": before["instance"]}).json()
    assert not after["reset"] and after["seq"] > before["seq"]
    assert after["block_size"] == live.engine.core.config.block_size == 16
    hasher = PromptHasher(live.engine.tokenizer)
    body = {"model": MODEL, "messages": MESSAGES}
    prompt = hasher.tokens("/chat/completions", body)
    assert prompt is not None and len(prompt.token_ids) > 64
    expected = prompt.hashes(16)
    assert expected and set(expected) <= set(after["stored"])
    # every full block of the prompt, the last token included, was computed and cached
    assert set(prefix_hashes(prompt.token_ids, 16)) <= set(after["stored"])
    again = events(live, {"since": after["seq"], "instance": after["instance"]}).json()
    assert again["stored"] == [] and again["evicted"] == [] and again["seq"] == after["seq"]


def test_a_first_read_or_a_foreign_cursor_gets_everything_held(live: LiveServer) -> None:
    first = events(live, {"since": 0}).json()
    assert first["reset"] and len(first["instance"]) == 32
    assert len(first["stored"]) == live.engine.core.kv_events.num_held
    stranger = events(live, {"since": first["seq"], "instance": "other-engine"}).json()
    assert stranger["reset"] and sorted(stranger["stored"]) == sorted(first["stored"])


@pytest.mark.parametrize(
    ("body", "param"),
    [({"since": -1}, "since"), ({"since": "soon"}, "since"), ({"instance": "x" * 65}, "instance"),
     ({"since": 0, "limit": 5}, "limit")],
)  # fmt: skip
def test_a_bad_cursor_is_400_naming_the_field(
    live: LiveServer, body: dict[str, Any], param: str
) -> None:
    reply = events(live, body)
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == param


def test_kv_events_need_the_token(live: LiveServer) -> None:
    assert events(live, {"since": 0}, token="wrong").status_code == 401
    assert httpx.post(f"{live.url}/v1/kv/events", json={"since": 0}).status_code == 401
