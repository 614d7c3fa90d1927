"""The request pipeline's promises, over real HTTP: limits that hold under concurrency,
reservations settled or released, the ledger row, disconnects, failover and DPA routing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import openai
import psycopg
import pytest

from tests.gateway.conftest import gateway_settings
from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
PER_REQUEST = 13 + 100  # estimate for "hi" (1 + 4 per message + 8 per chat) + max_tokens


async def _burst(url: str, key: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {key}"}
        return await asyncio.gather(
            *(http.post("/v1/chat/completions", json=CHAT, headers=headers) for _ in range(n))
        )


def test_twenty_concurrent_requests_against_room_for_five_admit_exactly_five(
    gateway: LiveGateway, upstream: MockUpstream
) -> None:
    upstream.stall_s = 1.0  # nobody settles before everyone has asked
    key = gateway.create_key(monthly_tokens=5 * PER_REQUEST)
    replies = asyncio.run(_burst(gateway.url, key, 20))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] * 5 + [429] * 15
    refused = next(r for r in replies if r.status_code == 429)
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and "monthly" in error["message"]
    assert int(refused.headers["retry-after"]) > 0


def test_rpm_and_concurrency_limits(gateway: LiveGateway, upstream: MockUpstream) -> None:
    upstream.stall_s = 0.5
    key = gateway.create_key(concurrent=2)
    statuses = sorted(r.status_code for r in asyncio.run(_burst(gateway.url, key, 6)))
    assert statuses == [200] * 2 + [429] * 4
    upstream.stall_s = 0.0
    rpm_key = gateway.create_key(user="bob", rpm=3)
    statuses = [r.status_code for r in asyncio.run(_burst(gateway.url, rpm_key, 5))]
    assert sorted(statuses) == [200] * 3 + [429] * 2


def test_settled_usage_frees_the_unused_reservation(
    gateway: LiveGateway, upstream: MockUpstream
) -> None:
    # Room for one reservation at a time; real usage is far smaller, so requests one after
    # another keep fitting: the reservation is corrected down at the end of each.
    key = gateway.create_key(monthly_tokens=PER_REQUEST + 40)
    client = gateway.client(key)
    for _ in range(3):
        client.chat.completions.create(**CHAT)


def test_a_failed_upstream_call_costs_nothing(gateway: LiveGateway, upstream: MockUpstream) -> None:
    key = gateway.create_key(monthly_tokens=PER_REQUEST)
    upstream.fail_next(1, status=400)
    with pytest.raises(openai.BadRequestError):
        gateway.client(key).chat.completions.create(**CHAT)
    gateway.client(key).chat.completions.create(**CHAT)  # the reservation was released


def _ledger(gateway: LiveGateway) -> list[tuple[object, ...]]:
    with psycopg.connect(gateway.runtime.database.conninfo) as conn:
        return conn.execute(
            "SELECT request_id, tenant, user_name, model, upstream, prompt_tokens, "
            "completion_tokens, status, error_code FROM usage_ledger ORDER BY at"
        ).fetchall()


def _wait_for_rows(gateway: LiveGateway, n: int) -> list[tuple[object, ...]]:
    deadline = time.monotonic() + 5
    while len(rows := _ledger(gateway)) < n:
        assert time.monotonic() < deadline, f"ledger has {len(rows)} rows, expected {n}"
        time.sleep(0.05)
    return rows


def test_every_request_gets_a_ledger_row(gateway: LiveGateway, upstream: MockUpstream) -> None:
    client = gateway.client(gateway.create_key(tenant="acme", user="carol"))
    reply = client.chat.completions.create(**CHAT, extra_headers={"x-request-id": "led-1"})
    list(client.chat.completions.create(**CHAT, stream=True))
    upstream.fail_next(1, status=400)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(**CHAT)
    rows = _wait_for_rows(gateway, 3)
    first = rows[0]
    assert first[:5] == ("led-1", "acme", "carol", "mock-model", "mock")
    assert reply.usage is not None
    assert (first[5], first[6], first[7]) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
        200,
    )
    assert rows[1][6] > 0 and rows[1][7] == 200  # the stream's usage came from its usage chunk
    assert rows[2][7] == 400
    with gateway.http(gateway.admin_key) as http:
        usage = http.get("/admin/usage", params={"by": "user"}).json()
    assert usage["data"][0]["key"] == "acme/carol" and usage["data"][0]["requests"] == 3
    assert usage["concentration"]["scopes"] == 1


def test_a_client_leaving_mid_stream_aborts_the_upstream(
    gateway: LiveGateway, upstream: MockUpstream
) -> None:
    upstream.event_delay_s = 0.2
    client = gateway.client(gateway.create_key())
    stream = client.chat.completions.create(**CHAT, stream=True)
    next(iter(stream))
    stream.close()
    upstream.wait_until(lambda: upstream.aborted == 1, timeout=5)
    rows = _wait_for_rows(gateway, 1)
    assert rows[0][7] == 499 and rows[0][8] == "client_closed"


def test_a_client_leaving_before_the_answer_aborts_the_upstream(
    gateway: LiveGateway, upstream: MockUpstream
) -> None:
    upstream.stall_s = 5.0
    key = gateway.create_key()
    with pytest.raises(httpx.ReadTimeout), gateway.http(key) as http:
        http.post("/v1/chat/completions", json=CHAT, timeout=0.5)
    upstream.wait_until(lambda: upstream.aborted == 1, timeout=5)


def test_failover_to_the_next_upstream_before_any_byte(pg_dsn: str, tmp_path: Path) -> None:
    with MockUpstream("a") as a, MockUpstream("b") as b:
        settings = gateway_settings(pg_dsn, tmp_path, a, b, routing={"backoff_ms": 1})
        with LiveGateway(settings) as gw:
            client = gw.client(gw.create_key())
            a.fail_next(1, status=503)
            assert client.chat.completions.create(**CHAT).choices[0].message.content == b.text
            a.die_after_events = 0  # dies before the first event: a stream can still move
            text = "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(**CHAT, stream=True)
                if c.choices
            )
            assert text == b.text


def test_mid_stream_failure_ends_with_an_error_and_no_repeated_text(
    pg_dsn: str, tmp_path: Path
) -> None:
    with MockUpstream("a") as a, MockUpstream("b") as b:
        settings = gateway_settings(pg_dsn, tmp_path, a, b)
        with LiveGateway(settings) as gw:
            a.die_after_events = 3
            seen = []
            with pytest.raises(openai.APIError):
                for chunk in gw.client(gw.create_key()).chat.completions.create(
                    **CHAT, stream=True
                ):
                    seen += [c.delta.content or "" for c in chunk.choices]
            assert a.text.startswith("".join(seen)) and b.count() == 0


def test_tenants_requiring_a_dpa_only_reach_dpa_upstreams(pg_dsn: str, tmp_path: Path) -> None:
    with MockUpstream("cheap") as cheap, MockUpstream("safe") as safe:
        listed = [
            {"name": "cheap", "url": cheap.url, "models": ["mock-model"]},
            {"name": "safe", "url": safe.url, "models": ["mock-model"], "dpa": True},
        ]
        settings = gateway_settings(pg_dsn, tmp_path, *listed)
        with LiveGateway(settings) as gw:
            assert gw.admin("POST", "/tenants", json={"name": "bank", "require_dpa": True})
            bank = gw.client(gw.create_key(tenant="bank", user="teller"))
            other = gw.client(gw.create_key(tenant="shop", user="clerk"))
            assert bank.chat.completions.create(**CHAT).choices[0].message.content == safe.text
            assert other.chat.completions.create(**CHAT).choices[0].message.content == cheap.text
