"""No cross-tenant retrieval: whatever a key sends to `/v1/retrieve` or RAG chat (metadata
filters, tenant-looking fields in the body or headers, SQL-ish strings, collection names, k
values, look-alike tenant names), it gets its own tenant's chunks or a 4xx, never a chunk of
another tenant and never a 500. Hypothesis generates the attempts; the index, the gateway,
the embedder and the HTTP clients are the real ones."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam
from psycopg.types.json import Jsonb

from strata.gateway.rag import PREAMBLE
from strata.pipeline.index import vector_text
from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream

# Tenants in the index: the two with keys, and names an exact match must keep apart from them.
TENANTS = [
    "acme", "globex", "ACME", "acme ", "\u0430cme", "acme\u200b", "acm_", "acme%",
    "acme' OR '1'='1", "acme\\", "",
]  # fmt: skip
SQLISH = ["' OR 1=1 --", "'; DROP TABLE pipeline_chunks; --", "%", "_", "*", "\\", '"', "$1"]
BAIT_KEYS = ["tenant", "tenant_id", "org", "owner", "source", "collection", "key", "status"]
MARK = re.compile(r"zq\d\dx")


def _marker(i: int) -> str:
    return f"zq{i:02d}x"


def _docs() -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(tenant, key, collection, text, metadata): each tenant's text carries its marker, and
    its metadata names another tenant, to bait filters."""
    docs = []
    for i, tenant in enumerate(TENANTS):
        other = TENANTS[(i + 1) % len(TENANTS)]
        meta = {"tenant": other, "tenant_id": other, "org": "acme", "owner": "globex",
                "status": "open", "n": i}  # fmt: skip
        for n, collection in enumerate(("support", "support", "billing")):
            text = f"Refunds and invoices for this account are handled by desk {_marker(i)}."
            docs.append((tenant, f"{i}-{n}", collection, text, meta))
    return docs


DOCS = _docs()
OWNER = {key: tenant for tenant, key, *_ in DOCS}


def _index(gateway: LiveGateway) -> None:
    embedder = asyncio.run(gateway.runtime.retrieval.embedder.get())
    vectors = embedder.embed_sync([text for *_, text, _ in DOCS])
    with psycopg.connect(gateway.runtime.database.conninfo) as conn:
        conn.execute("INSERT INTO pipeline_sources (name, slot_name) VALUES ('t', 'x')")
        for (tenant, key, collection, text, meta), vector in zip(DOCS, vectors, strict=True):
            conn.execute(
                "INSERT INTO pipeline_documents (source, key, tenant, collection, metadata, "
                "epoch) VALUES ('t', %s, %s, %s, %s, 0)",
                (key, tenant, collection, Jsonb(meta)),
            )
            conn.execute(
                "INSERT INTO pipeline_chunks (source, key, chunk_no, tenant, collection, "
                "content, content_hash, metadata, model, dims, embedding) "
                "VALUES ('t', %s, 0, %s, %s, %s, '', %s, %s, 384, %s)",
                (key, tenant, collection, text, Jsonb(meta), embedder.model, vector_text(vector)),
            )


@pytest.fixture
def indexed(gateway: LiveGateway) -> Iterator[dict[str, str]]:
    """The gateway with DOCS indexed; keys by name: acme, globex, acme-support (a key that
    may read the support collection only)."""
    _index(gateway)
    yield {
        "acme": gateway.create_key(tenant="acme", user="a"),
        "globex": gateway.create_key(tenant="globex", user="g"),
        "acme-support": gateway.create_key(tenant="acme", user="s", collections=["support"]),
    }


TENANT_OF = {"acme": "acme", "globex": "globex", "acme-support": "acme"}
# A valid request, then at most one field replaced by something a hostile caller might send.
BAIT_FILTER = st.dictionaries(
    st.sampled_from([*BAIT_KEYS, "n"]), st.sampled_from([*TENANTS, "open", 0, 1]), max_size=2
)
SCALAR = st.one_of(
    st.sampled_from(TENANTS + SQLISH),
    st.text(max_size=24),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
)
_ABSENT = object()
WILD: dict[str, st.SearchStrategy[Any]] = {
    "query": st.one_of(
        st.just(_ABSENT),
        st.sampled_from(["zq01x", "globex", *SQLISH, "\x00", " ", ""]),
        st.text(max_size=40),
        st.integers(),
    ),
    "collection": st.one_of(
        st.just(_ABSENT),
        st.sampled_from(["Support", "support ", "*", "%", "support%", "support' OR 'a'='a"]),
        st.sampled_from(["support\x00", "", "s" * 129, "SUPPORT", "supp\u043ert"]),
        st.text(max_size=20),
        st.integers(),
    ),
    "k": st.one_of(
        st.just(_ABSENT),
        st.integers(min_value=-3, max_value=120),
        st.sampled_from([True, 1.5, "5", None, 2**63, -(2**63)]),
    ),
    "filter": st.one_of(
        st.dictionaries(st.sampled_from(BAIT_KEYS) | st.text(max_size=12), SCALAR, max_size=4),
        st.dictionaries(st.sampled_from(BAIT_KEYS), st.lists(SCALAR, max_size=2), max_size=2),
        st.sampled_from([{"tenant": {"$ne": "acme"}}, "tenant = 'globex'", [], {"": ""}]),
        st.just({"tenant\x00": "globex"}),
    ),
    "extra": st.dictionaries(
        st.sampled_from(["tenant", "tenant_id", "org", "user", "source", "owner", "namespace"]),
        st.sampled_from(TENANTS),
        min_size=1,
        max_size=2,
    ),
}
MUTATION = st.sampled_from([None, None, *WILD])
HEADERS = st.sampled_from(
    [{}, {"X-Tenant": "globex"}, {"OpenAI-Organization": "globex"}, {"X-Strata-Tenant": "ACME"}]
)


def _mutated(base: dict[str, Any], field: str | None, data: st.DataObject) -> dict[str, Any]:
    if field is None:
        return base
    value = data.draw(WILD[field], label=field)
    if field == "extra":
        return {**base, **value}
    return {k: v for k, v in {**base, field: value}.items() if v is not _ABSENT}


def _check_error(reply: httpx.Response) -> None:
    """A caller's mistake: a 4xx in the OpenAI shape, naming the field when one is at fault."""
    assert reply.status_code in (400, 403, 413), (reply.status_code, reply.text)
    error = reply.json()["error"]
    assert isinstance(error["message"], str) and error["message"] and error["type"]


def _own(markers: set[str], tenant: str) -> bool:
    allowed = {_marker(i) for i, t in enumerate(TENANTS) if t == tenant}
    return markers <= allowed


@pytest.mark.slow
def test_retrieve_never_returns_another_tenants_chunk(
    gateway: LiveGateway, indexed: dict[str, str]
) -> None:
    clients = {name: gateway.http(key) for name, key in indexed.items()}
    answered: list[int] = []  # hits per 200 answer
    valid = st.fixed_dictionaries({
        "query": st.sampled_from(["refund desk", "invoices", "zq01x", "globex", *SQLISH]),
        "collection": st.sampled_from(["support", "billing"]),
        "k": st.integers(min_value=1, max_value=100),
        "filter": st.none() | BAIT_FILTER,
    })  # fmt: skip

    @settings(
        max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(who=st.sampled_from(sorted(indexed)), base=valid, field=MUTATION, data=st.data(),
           headers=HEADERS)  # fmt: skip
    def attempt(who: str, base: dict[str, Any], field: str | None, data: st.DataObject,
                headers: dict[str, str]) -> None:  # fmt: skip
        body = _mutated(base, field, data)
        reply = clients[who].post("/v1/retrieve", json=body, headers=headers)
        if reply.status_code != 200:
            _check_error(reply)
            return
        hits = reply.json()["data"]
        answered.append(len(hits))
        assert all(OWNER[h["key"]] == TENANT_OF[who] for h in hits), hits
        assert _own({m for h in hits for m in MARK.findall(h["content"])}, TENANT_OF[who])
        if who == "acme-support":
            assert all(h["collection"] == "support" for h in hits)

    try:
        attempt()
    finally:
        for client in clients.values():
            client.close()
    assert sum(1 for n in answered if n) >= 40, answered  # enough attempts found chunks


@pytest.mark.slow
def test_rag_chat_never_puts_another_tenants_chunk_into_the_prompt(
    gateway: LiveGateway, indexed: dict[str, str], upstream: MockUpstream
) -> None:
    clients = {name: gateway.http(key) for name, key in indexed.items()}
    contexts: list[int] = []  # documents per prompt that went upstream
    valid = st.fixed_dictionaries({
        "collection": st.sampled_from(["support", "billing"]),
        "k": st.integers(min_value=1, max_value=20),
        "filter": st.none() | BAIT_FILTER,
    })  # fmt: skip

    @settings(
        max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(who=st.sampled_from(sorted(indexed)), base=valid, field=MUTATION, data=st.data(),
           question=st.sampled_from(["Who handles refunds?", "zq01x", "globex", *SQLISH]),
           top=st.sampled_from([{}, {"tenant": "globex"}, {"user": "acme"}]),
           headers=HEADERS)  # fmt: skip
    def attempt(who: str, base: dict[str, Any], field: str | None, data: st.DataObject,
                question: str, top: dict[str, str], headers: dict[str, str]) -> None:  # fmt: skip
        if field == "query":  # the retrieval query of RAG chat is the last user message
            field, question = None, data.draw(st.text(max_size=40), label="question")
        rag = _mutated(base, field, data)
        body = {"model": "mock-model", "max_tokens": 4, "rag": rag, **top,
                "messages": [{"role": "user", "content": question}]}  # fmt: skip
        before = upstream.count()
        reply = clients[who].post("/v1/chat/completions", json=body, headers=headers)
        if reply.status_code != 200:
            _check_error(reply)
            assert upstream.count() == before  # refused before anything went upstream
            return
        sent = upstream.requests[-1].body
        assert "rag" not in sent
        (context,) = [m["content"] for m in sent["messages"] if m["content"].startswith(PREAMBLE)]
        contexts.append(context.count("</document>"))
        assert _own(set(MARK.findall(context)), TENANT_OF[who]), context

    try:
        attempt()
    finally:
        for client in clients.values():
            client.close()
    assert sum(1 for n in contexts if n) >= 15, contexts


@pytest.mark.slow
def test_the_sdk_with_tenant_looking_fields_stays_in_its_tenant(
    gateway: LiveGateway, indexed: dict[str, str], upstream: MockUpstream
) -> None:
    client = gateway.client(indexed["globex"])
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Who handles refunds? Answer for tenant acme."}
    ]
    for extra_body in (
        {"rag": {"collection": "support", "k": 20, "filter": {"tenant": "acme"}}},
        {"rag": {"collection": "support", "k": 20}, "tenant": "acme", "user": "acme"},
        {"rag": {"collection": "support", "k": 20, "filter": {"org": "acme"}}},
    ):
        client.chat.completions.create(
            model="mock-model", messages=question, extra_body=extra_body, user="acme"
        )
        context = upstream.requests[-1].body["messages"][0]["content"]
        assert set(MARK.findall(context)) <= {_marker(TENANTS.index("globex"))}, context
    with pytest.raises(openai.BadRequestError, match="tenant"):
        client.chat.completions.create(
            model="mock-model",
            messages=question,
            extra_body={"rag": {"collection": "support", "tenant": "acme"}},
        )
    # The filter matches acme's own metadata baits, yet finds only acme's chunks.
    with gateway.http(indexed["acme"]) as http:
        body = {"query": "refund desk", "collection": "support", "k": 100,
                "filter": {"owner": "globex"}}  # fmt: skip
        hits = http.post("/v1/retrieve", json=body).json()["data"]
    assert hits and {OWNER[h["key"]] for h in hits} == {"acme"}
    assert len(hits) == 2  # acme's two support chunks, none of the look-alike tenants'
