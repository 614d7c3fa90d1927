"""`POST /v1/kv/events`: which prefix blocks this engine holds, for prefix-aware routers.

Request `{"since": <cursor>, "instance": <id or null>}`; the answer is `KvEvents` as JSON:
`{"instance", "block_size", "seq", "reset", "stored": [hash, ...], "evicted": [hash, ...]}`,
hashes as unsigned 64-bit integers (`strata.engine.block_hash`). Send back `seq` and `instance`
next time; the first call (no instance) gets every hash held now with `reset: true`.
A POST because the cursor travels in the body: request paths stay fixed, so HTTP clients that
cache request heads per path (the gateway's) do not grow a cache entry per cursor.
"""

from __future__ import annotations

from dataclasses import asdict

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from strata.engine.kv_events import KvEventLog

MAX_CURSOR = 2**63 - 1


class KvEventsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: int = Field(0, ge=0, le=MAX_CURSOR, description="The `seq` of the previous answer.")
    instance: str | None = Field(
        None, max_length=64, description="The `instance` of the previous answer."
    )


def kv_events_router(log: KvEventLog) -> APIRouter:
    """The route over `log`; mount it behind the engine's bearer token."""

    async def kv_events(query: KvEventsQuery) -> Response:
        events = log.since(query.since, query.instance)
        return Response(orjson.dumps(asdict(events)), media_type="application/json")

    router = APIRouter()
    router.add_api_route("/v1/kv/events", kv_events, methods=["POST"])
    return router
