"""/v1/embeddings and /v1/retrieve through the gateway: the bundled embedder behind keys,
limits and the ledger; retrieval confined to the caller's tenant and the key's collections."""

from __future__ import annotations

import asyncio
import math

import openai
import psycopg
import pytest

from strata.pipeline.index import vector_text
from tests.support.live_gateway import LiveGateway

DOCS = [
    ("acme", "1", "Refunds are paid back to the card within five days."),
    ("acme", "2", "Reset your password from the login page."),
    ("globex", "3", "Refunds for globex invoices go through finance."),
]


def _index(gateway: LiveGateway) -> None:
    """Put DOCS into the gateway's own index, embedded by the gateway's embedder."""
    embedder = asyncio.run(gateway.runtime.retrieval.embedder.get())
    vectors = embedder.embed_sync([text for _, _, text in DOCS])
    with psycopg.connect(gateway.runtime.database.conninfo) as conn:
        conn.execute("INSERT INTO pipeline_sources (name, slot_name) VALUES ('t', 'x')")
        for (tenant, key, text), vector in zip(DOCS, vectors, strict=True):
            conn.execute(
                "INSERT INTO pipeline_documents (source, key, tenant, collection, epoch) "
                "VALUES ('t', %s, %s, 'support', 0)",
                (key, tenant),
            )
            conn.execute(
                "INSERT INTO pipeline_chunks (source, key, chunk_no, tenant, collection, "
                "content, content_hash, model, dims, embedding) "
                "VALUES ('t', %s, 0, %s, 'support', %s, '', %s, 384, %s)",
                (key, tenant, text, embedder.model, vector_text(vector)),
            )


@pytest.mark.slow
def test_embeddings_through_the_sdk(gateway: LiveGateway) -> None:
    client = gateway.client(gateway.create_key())
    reply = client.embeddings.create(model="all-MiniLM-L6-v2", input=["hello", "refund please"])
    assert [len(d.embedding) for d in reply.data] == [384, 384]
    assert math.isclose(sum(x * x for x in reply.data[0].embedding), 1.0, rel_tol=1e-4)
    assert reply.usage.prompt_tokens > 0
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.BadRequestError, match="384"):
        client.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=256)


@pytest.mark.slow
def test_retrieval_is_confined_to_the_tenant_and_the_keys_collections(
    gateway: LiveGateway,
) -> None:
    _index(gateway)
    acme = gateway.create_key(tenant="acme", user="a")
    globex = gateway.create_key(tenant="globex", user="g")
    scoped = gateway.create_key(tenant="acme", user="s", collections=["other"])
    query = {"query": "how do refunds work", "collection": "support", "k": 10}
    with gateway.http(acme) as http:
        keys = [h["key"] for h in http.post("/v1/retrieve", json=query).json()["data"]]
        assert keys[0] == "1" and set(keys) == {"1", "2"}
        for attempt in ({"tenant": "globex"}, {"key": "3"}):  # filters cannot widen the scope
            found = http.post("/v1/retrieve", json={**query, "filter": attempt}).json()["data"]
            assert all(h["key"] != "3" for h in found)
    with gateway.http(globex) as http:
        assert [h["key"] for h in http.post("/v1/retrieve", json=query).json()["data"]] == ["3"]
    with gateway.http(scoped) as http:
        assert http.post("/v1/retrieve", json=query).status_code == 403
        assert http.post("/v1/retrieve", json={"query": ""}).status_code == 400
