"""/admin/pipeline/...: deleting a tenant's indexed data over HTTP, admin keys only."""

from __future__ import annotations

import psycopg

from strata.pipeline.index import vector_text
from tests.support.live_gateway import LiveGateway

ROWS = [("acme", "1"), ("acme", "2"), ("globex", "3")]


def _index(gateway: LiveGateway) -> None:
    """Three indexed documents of source 't', one chunk each, as the pipeline writes them."""
    vector = vector_text([1.0] + [0.0] * 383)
    with psycopg.connect(gateway.runtime.database.conninfo) as conn:
        conn.execute("INSERT INTO pipeline_sources (name, slot_name) VALUES ('t', 'x')")
        for tenant, key in ROWS:
            conn.execute(
                "INSERT INTO pipeline_documents (source, key, tenant, collection, epoch) "
                "VALUES ('t', %s, %s, 'kb', 0)",
                (key, tenant),
            )
            conn.execute(
                "INSERT INTO pipeline_chunks (source, key, chunk_no, tenant, collection, "
                "content, content_hash, model, dims, embedding) "
                "VALUES ('t', %s, 0, %s, 'kb', 'text', '', 'm', 384, %s)",
                (key, tenant, vector),
            )


def _left(gateway: LiveGateway) -> list[tuple[str, str]]:
    with psycopg.connect(gateway.runtime.database.conninfo) as conn:
        rows = conn.execute("SELECT tenant, key FROM pipeline_chunks ORDER BY key").fetchall()
    return [(tenant, key) for tenant, key in rows]


def test_delete_a_tenants_pipeline_data(gateway: LiveGateway) -> None:
    _index(gateway)
    with gateway.http(gateway.create_key(tenant="acme")) as http:
        assert http.delete("/admin/pipeline/tenants/acme").status_code == 403
    unknown = gateway.admin("DELETE", "/pipeline/tenants/acme", params={"source": "nope"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "source"
    assert _left(gateway) == ROWS

    reply = gateway.admin("DELETE", "/pipeline/tenants/acme")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    counts = (body["documents"], body["chunks"], body["dead_letters"])
    assert body["sources"] == ["t"] and counts == (2, 2, 0)
    assert body["excluded"] is True and "not indexed again" in body["note"]
    assert _left(gateway) == [("globex", "3")]

    listed = gateway.admin("GET", "/pipeline/exclusions").json()["data"]
    assert [(e["source"], e["tenant"]) for e in listed] == [("*", "acme")]
    lifted = gateway.admin("DELETE", "/pipeline/exclusions/acme")
    assert lifted.status_code == 200 and lifted.json() == {"tenant": "acme", "lifted": 1}
    assert gateway.admin("GET", "/pipeline/exclusions").json()["data"] == []
    blank = gateway.admin("DELETE", "/pipeline/tenants/%20")
    assert blank.status_code == 400 and blank.json()["error"]["param"] == "tenant"
