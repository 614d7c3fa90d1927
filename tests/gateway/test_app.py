"""The gateway end to end over real HTTP with the official `openai` SDK: a real PostgreSQL
store, a real (mock) OpenAI-compatible upstream, keys made through /admin."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest

from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}


def test_sdk_chat_streamed_and_not(gateway: LiveGateway, upstream: MockUpstream) -> None:
    client = gateway.client(gateway.create_key())
    reply = client.chat.completions.create(**CHAT, max_tokens=30)
    assert reply.choices[0].message.content == upstream.text
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(**CHAT, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == upstream.text
    assert all(c.usage is None for c in chunks)  # the caller did not ask for usage
    with_usage = list(
        client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True})
    )
    assert with_usage[-1].usage is not None and not with_usage[-1].choices


def test_sdk_completions_and_async_client(gateway: LiveGateway, upstream: MockUpstream) -> None:
    key = gateway.create_key()
    text = gateway.client(key).completions.create(model="mock-model", prompt="say hi")
    assert text.choices[0].text == upstream.text

    async def both() -> list[str]:
        client = gateway.async_client(key)
        replies = await asyncio.gather(*(client.chat.completions.create(**CHAT) for _ in range(4)))
        return [r.choices[0].message.content or "" for r in replies]

    assert asyncio.run(both()) == [upstream.text] * 4


def test_models_lists_what_the_key_may_use(gateway: LiveGateway) -> None:
    assert [m.id for m in gateway.client(gateway.create_key()).models.list()] == ["mock-model"]
    scoped = gateway.create_key(models=["other-model"])
    assert [m.id for m in gateway.client(scoped).models.list()] == []
    with pytest.raises(openai.PermissionDeniedError, match="may not use the model"):
        gateway.client(scoped).chat.completions.create(**CHAT)


def test_request_id_is_carried_upstream_and_echoed(
    gateway: LiveGateway, upstream: MockUpstream
) -> None:
    with gateway.http(gateway.create_key()) as http:
        reply = http.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "trace-42"})
        generated = http.post("/v1/chat/completions", json=CHAT)
    assert reply.headers["x-request-id"] == "trace-42"
    assert upstream.requests[-2].headers["x-request-id"] == "trace-42"
    assert generated.headers["x-request-id"].startswith("req-")


def test_max_tokens_is_clamped_to_the_reservation(
    gateway: LiveGateway, upstream: MockUpstream
) -> None:
    client = gateway.client(gateway.create_key())
    client.chat.completions.create(**CHAT)
    assert upstream.requests[-1].body["max_tokens"] == 1024  # limits.default_max_tokens
    client.chat.completions.create(**CHAT, max_completion_tokens=7, stream=True).close()
    sent = upstream.requests[-1].body
    assert sent["max_completion_tokens"] == 7 and sent["stream_options"]["include_usage"]


def test_unknown_and_optional_fields_reach_the_upstream(
    gateway: LiveGateway, upstream: MockUpstream
) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    gateway.client(gateway.create_key()).chat.completions.create(
        **CHAT, tools=tools, user="end-user-7", extra_body={"vendor_knob": 3}
    )
    sent = upstream.requests[-1].body
    assert sent["tools"] == tools and sent["user"] == "end-user-7" and sent["vendor_knob"] == 3


def test_auth_failures(gateway: LiveGateway) -> None:
    for key in ("", "sk-nope", "sk-strata-abcdefghijkl_wrongsecretwrongsecretwrongsecret00"):
        with pytest.raises(openai.AuthenticationError):
            gateway.client(key or "x").chat.completions.create(**CHAT)
    user_key = gateway.create_key()
    with gateway.http(user_key) as http:
        assert http.get("/admin/keys").status_code == 403
        assert http.get("/metrics").status_code == 403
    with gateway.http() as http:
        assert http.get("/admin/keys").status_code == 401


def test_revoked_and_rotated_keys_stop_working_at_once(gateway: LiveGateway) -> None:
    key = gateway.create_key()
    key_id = key.removeprefix("sk-strata-").split("_")[0]
    gateway.client(key).chat.completions.create(**CHAT)  # now cached
    assert gateway.admin("POST", f"/keys/{key_id}/revoke").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key).chat.completions.create(**CHAT)
    other = gateway.create_key(user="bob")
    other_id = other.removeprefix("sk-strata-").split("_")[0]
    rotated = gateway.admin("POST", f"/keys/{other_id}/rotate").json()["key"]
    with pytest.raises(openai.AuthenticationError):
        gateway.client(other).chat.completions.create(**CHAT)
    gateway.client(rotated).chat.completions.create(**CHAT)


def test_expired_key_is_401(gateway: LiveGateway) -> None:
    key = gateway.create_key(expires_in_days=0.5 / 86400)  # half a second
    time.sleep(0.8)
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key).chat.completions.create(**CHAT)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b'{"model": "mock-model"}', 400, "messages"),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
        (
            b'{"model": "mock-model", "messages": [{"role": "user", "content": "a\\u202eb"}]}',
            400,
            "messages.0.content",
        ),
        (b'{"model": "mock-model", "messages": [], "max_tokens": -1}', 400, "max_tokens"),
    ],
)
def test_bad_requests_get_openai_errors_naming_the_field(
    gateway: LiveGateway, body: bytes, status: int, param: str | None
) -> None:
    with gateway.http(gateway.create_key()) as http:
        reply = http.post("/v1/chat/completions", content=body)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["param"] == param


def test_oversized_body_is_413(gateway: LiveGateway) -> None:
    big = "x" * (5 * 1024 * 1024)
    with gateway.http(gateway.create_key()) as http:
        reply = http.post(
            "/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": big}]}
        )
    assert reply.status_code == 413


def test_health_and_readiness(gateway: LiveGateway) -> None:
    with gateway.http() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz").json()
    assert ready["ready"] and ready["store"] and ready["upstreams"][0]["name"] == "mock"


def test_metrics_need_an_admin_key_and_carry_the_pipelines(gateway: LiveGateway) -> None:
    gateway.client(gateway.create_key()).chat.completions.create(**CHAT)
    with gateway.http(gateway.admin_key) as http:
        scrape = http.get("/metrics")
    assert scrape.status_code == 200 and "strata:pipeline" in scrape.text
    assert 'strata:gateway_requests_total{route="/v1/chat/completions",status="200"} 1.0' in (
        scrape.text
    )
    assert 'strata:upstream_available{tier="on-demand",upstream="mock"} 1.0' in scrape.text
    with gateway.http() as http:
        assert http.get("/metrics").status_code == 401
