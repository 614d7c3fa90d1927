"""A request's prompt hashed into a strata engine's KV blocks, before the engine sees it.

The gateway turns the body into token ids with the engine's own code (its request models, its
chat template and tokenizer: `strata.engine.protocol`, `strata.engine.prompt`) and hashes them
with the engine's block hash (`strata.engine.block_hash`), so a hash here names the very block
an engine publishes in its KV events. Only blocks the engine could serve from its cache count:
it always computes the prompt's last token, so that token is left out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from strata.engine.block_hash import prefix_hashes
from strata.engine.prompt import chat_prompt_ids, text_prompt_ids
from strata.engine.protocol import ChatCompletionRequest, CompletionRequest
from strata.engine.tokenizer import Tokenizer
from strata.errors import ConfigError, StrataError

BUNDLED = "bundled"  # `engine_model` naming the bundled model (engine.model left empty)


class PromptTokens:
    """One prompt's token ids and, per block size, the hashes of its cacheable blocks."""

    def __init__(self, token_ids: list[int]) -> None:
        self.token_ids = token_ids
        self._hashes: dict[int, list[int] | None] = {}

    def hashes(self, block_size: int) -> list[int] | None:
        """The chained block hashes, or None if a token id cannot be hashed (out of range:
        the engine refuses such a prompt anyway)."""
        if block_size not in self._hashes:
            try:
                self._hashes[block_size] = prefix_hashes(self.token_ids[:-1], block_size)
            except struct.error:
                self._hashes[block_size] = None
        return self._hashes[block_size]


class PromptHasher:
    """A request body to `PromptTokens`, as the strata engine serving one model would."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def tokens(self, path: str, body: Mapping[str, Any]) -> PromptTokens | None:
        """The prompt of a call to `path` ("/chat/completions" or "/completions"); None for
        other paths and for bodies the engine would refuse (it answers those itself)."""
        try:
            ids = self._token_ids(path, body)
        except (ValidationError, StrataError):
            return None
        except (TypeError, ValueError):  # the tokenizer's bindings refuse, e.g., lone surrogates
            return None
        return None if ids is None else PromptTokens(ids)

    def _token_ids(self, path: str, body: Mapping[str, Any]) -> list[int] | None:
        if path == "/chat/completions":
            messages = ChatCompletionRequest.model_validate(body).template_messages()
            return chat_prompt_ids(self.tokenizer, messages)
        if path == "/completions":
            return text_prompt_ids(self.tokenizer, CompletionRequest.model_validate(body).prompt)
        return None


def spec_key(spec: str | None) -> str:
    """One name per model spec: '', None and 'bundled' all mean the bundled model."""
    return spec.strip() if spec and spec.strip() != BUNDLED else BUNDLED


def load_hashers(specs: Iterable[str], model_cache_dir: Path) -> dict[str, PromptHasher]:
    """A hasher per distinct spec (`spec_key`); `ConfigError` naming one that cannot load."""
    return {key: _load(key, model_cache_dir) for key in dict.fromkeys(map(spec_key, specs))}


def _load(spec: str, model_cache_dir: Path) -> PromptHasher:
    try:
        return PromptHasher(Tokenizer.from_folder(_tokenizer_folder(spec, model_cache_dir)))
    except StrataError as exc:
        raise ConfigError(
            f"upstreams[].engine_model {spec!r}: cannot load its tokenizer for prefix-aware "
            f"routing ({exc.message}); name the engine's model folder, or set "
            "routing.prefix_affinity: false."
        ) from exc


def _tokenizer_folder(spec: str, model_cache_dir: Path) -> Path:
    """A folder holding the tokenizer files: `spec` itself when it is a folder (weights are
    not needed), else the engine's own resolution (the bundled model, a .gguf converted)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    from strata.engine.loader import resolve_model_folder  # torch: only for these specs

    return resolve_model_folder(None if spec == BUNDLED else spec, model_cache_dir)
