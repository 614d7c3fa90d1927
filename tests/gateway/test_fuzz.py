"""Whatever a caller sends, the gateway answers with a 4xx in the OpenAI error shape (or a 2xx),
never a 500: random JSON, and valid requests with fields replaced by random JSON."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
FIELDS = ["model", "messages", "max_tokens", "stream", "stream_options", "user", "prompt", "n"]
ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/admin/keys"]


def _mutated() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda field, value: {**CHAT, field: value}, st.sampled_from(FIELDS), JSON)


def _check(reply: httpx.Response) -> None:
    assert reply.status_code < 500, (reply.status_code, reply.text)
    if reply.status_code >= 400:
        error = reply.json()["error"]
        assert isinstance(error["message"], str) and error["type"]


def test_no_request_body_causes_a_500(gateway: LiveGateway, upstream: MockUpstream) -> None:
    key = gateway.admin_key  # admin: reaches /admin handlers too
    with gateway.http(key) as http:

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(route=st.sampled_from(ROUTES), body=JSON | _mutated())
        def check(route: str, body: Any) -> None:
            _check(http.post(route, json=body))

        check()


def test_raw_bytes_never_cause_a_500(gateway: LiveGateway) -> None:
    with gateway.http(gateway.admin_key) as http:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            raw=st.binary(max_size=200),
            ctype=st.sampled_from(["application/json", "", "text/plain"]),
        )
        def check(raw: bytes, ctype: str) -> None:
            headers = {"content-type": ctype} if ctype else {}
            _check(http.post("/v1/chat/completions", content=raw, headers=headers))

        check()
