"""`POST /v1/embeddings` and `POST /v1/retrieve`: the pipeline's embedder and index behind the
same keys, limits and ledger as generation.

The embedding model loads on first use (a few seconds), so a gateway that never embeds never
pays for it. Retrieval is always scoped to the caller's tenant (the index query enforces it)
and to the collections its key may read.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from strata.config import Settings
from strata.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from strata.gateway.body import parse_json
from strata.gateway.call import Call, TokenUsage
from strata.gateway.hot_routes import read_body
from strata.gateway.pipeline import Gateway
from strata.gateway.principal import Principal
from strata.gateway.rag import Collection, MetadataFilter, Search
from strata.gateway.request_id import HEADER as REQUEST_ID_HEADER
from strata.gateway.request_id import request_id
from strata.http_errors import describe_validation_errors
from strata.pipeline import Embedder, Hit, Retriever, build_embedder
from strata.pipeline.embedder import count_tokens
from strata.store.database import Pool

MAX_INPUTS = 2048
MAX_INPUT_CHARS = 100_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EmbeddingsBody(_Body):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"  # base64: float32, little-endian
    dimensions: int | None = Field(None, ge=1)
    user: str | None = Field(None, max_length=256)

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else self.input
        if len(texts) > MAX_INPUTS:
            raise InvalidRequestError(
                f"input: at most {MAX_INPUTS} texts per request.", param="input"
            )
        for i, text in enumerate(texts):
            if not text or len(text) > MAX_INPUT_CHARS:
                raise InvalidRequestError(
                    f"input.{i}: each text must have 1 to {MAX_INPUT_CHARS} characters.",
                    param=f"input.{i}",
                )
        return texts


class RetrieveBody(_Body):
    query: str = Field(min_length=1, max_length=MAX_INPUT_CHARS)
    collection: Collection
    k: int = Field(5, ge=1, le=100)
    filter: MetadataFilter | None = None


class LazyEmbedder:
    """The configured embedder, loaded (in a thread) on the first call that needs it."""

    def __init__(self, factory: Callable[[], Embedder]) -> None:
        self._factory = factory
        self._embedder: Embedder | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Embedder:
        async with self._lock:
            if self._embedder is None:
                self._embedder = await asyncio.to_thread(self._factory)
        return self._embedder


def search_for(settings: Settings, pool: Pool, embedder: LazyEmbedder) -> Search:
    """Tenant-scoped search over strata's index, for /v1/retrieve and RAG chat."""

    async def search(
        principal: Principal, collection: str, query: str, k: int, where: dict[str, Any] | None
    ) -> Sequence[Hit]:
        retriever = Retriever.from_settings(settings, pool, await embedder.get())
        return await retriever.search(principal.tenant, collection, query, k, where)

    return search


def lazy_embedder(settings: Settings) -> LazyEmbedder:
    return LazyEmbedder(lambda: build_embedder(settings.pipeline.embedder))


class RetrievalRoutes:
    """Handlers for the two routes; each reads: auth → validate → reserve → work → settle."""

    def __init__(
        self, settings: Settings, gateway: Gateway, pool: Pool, embedder: LazyEmbedder
    ) -> None:
        self._settings = settings
        self._gateway = gateway
        self._pool = pool
        self.embedder = embedder

    async def embeddings(self, request: Request) -> Response:
        principal = await self._gateway.authenticate(request)
        body = _parse(EmbeddingsBody, await self._json(request))
        embedder = await self.embedder.get()
        _check_model(body, embedder)
        texts = body.texts()
        tokens = sum(count_tokens(texts))
        rid = request_id(request.headers.get(REQUEST_ID_HEADER))
        call = Call(rid, principal, embedder.model, tokens, 0, upstream="embedder",
                    route="/v1/embeddings")  # fmt: skip
        finish = await self._gateway.admit(call, tokens)
        try:
            vectors = await embedder.embed(texts)
        except BaseException as exc:
            await finish.failed(call, exc)
            raise
        call.usage = TokenUsage(tokens, 0, 0, True)
        await finish(call)
        data = _embeddings_json(embedder.model, vectors, tokens, body.encoding_format)
        return JSONResponse(data, headers={REQUEST_ID_HEADER: call.request_id})

    async def retrieve(self, request: Request) -> Response:
        principal = await self._gateway.authenticate(request)
        body = _parse(RetrieveBody, await self._json(request))
        if not principal.may_use_collection(body.collection):
            raise PermissionDeniedError(
                f"This API key may not read the collection '{body.collection}'.",
                code="collection_not_allowed",
                param="collection",
            )
        hits = await search_for(self._settings, self._pool, self.embedder)(
            principal, body.collection, body.query, body.k, body.filter
        )
        return JSONResponse({"object": "list", "data": [_hit_json(h) for h in hits]})

    async def _json(self, request: Request) -> dict[str, Any]:
        max_bytes = int(self._settings.gateway.max_body_bytes)
        return parse_json(await read_body(request, max_bytes))


def _parse(model: type[_Body], raw: dict[str, Any]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        message, param, code = describe_validation_errors(exc.errors())
        raise InvalidRequestError(message, code=code, param=param) from exc


def _check_model(body: EmbeddingsBody, embedder: Embedder) -> None:
    short = embedder.model.rsplit("/", 1)[-1]
    if body.model not in (embedder.model, short):
        raise NotFoundError(
            f"The embedding model '{body.model}' does not exist; this gateway embeds with "
            f"'{embedder.model}'.",
            code="model_not_found",
            param="model",
        )
    if body.dimensions is not None and body.dimensions != embedder.dims:
        raise InvalidRequestError(
            f"dimensions: '{embedder.model}' makes {embedder.dims}-dimensional vectors only.",
            param="dimensions",
        )


def _embeddings_json(
    model: str, vectors: list[list[float]], tokens: int, encoding: str
) -> dict[str, Any]:
    encode = _base64 if encoding == "base64" else (lambda v: v)
    data = [
        {"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: the float32 little-endian bytes of the vector."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def _hit_json(hit: Hit) -> dict[str, Any]:
    return {
        "content": hit.content,
        "score": hit.score,
        "collection": hit.collection,
        "source": hit.source,
        "key": hit.key,
        "chunk": hit.chunk_no,
        "metadata": hit.metadata,
        "flagged": list(hit.flagged),  # the guard's injection categories; [] when clean
    }
