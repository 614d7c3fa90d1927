"""The model's tokenizer: text to ids and back, chat prompts, and streaming detokenization.

Reads a Hugging Face tokenizer folder (tokenizer.json, tokenizer_config.json and optionally
chat_template.jinja, special_tokens_map.json, generation_config.json, config.json) with the
`tokenizers` library alone, and reproduces what `transformers.AutoTokenizer` does with it:
tokenizer.json's post-processor decides whether a BOS token is added, named special tokens
missing from tokenizer.json are added as special tokens, and truncation/padding settings
stored in tokenizer.json are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken
from tokenizers import Tokenizer as Backend

from strata.engine.chat_template import NO_TEMPLATE_MESSAGE, ChatTemplate
from strata.engine.text_stream import IncrementalDecoder, TextStream
from strata.errors import InvalidRequestError, ModelLoadError

__all__ = ["TextStream", "Tokenizer"]

SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
EXTRA_SPECIAL_TOKEN_KEYS = ("additional_special_tokens", "extra_special_tokens")
BYTE_TOKENS = tuple(f"<0x{byte:02X}>" for byte in range(256))


class Tokenizer:
    """A loaded tokenizer; build it with `Tokenizer.from_folder`."""

    def __init__(
        self,
        backend: Backend,
        *,
        special_tokens: dict[str, str],
        eos_token_ids: frozenset[int],
        bos_token_id: int | None,
        chat_templates: dict[str, ChatTemplate],
    ) -> None:
        self._backend = backend
        self.special_tokens = special_tokens
        self.eos_token_ids = eos_token_ids
        self.bos_token_id = bos_token_id
        self._chat_templates = chat_templates
        self._special_ids = frozenset(
            i for i, tok in backend.get_added_tokens_decoder().items() if tok.special
        )
        self._byte_ids = _byte_fallback_ids(backend)

    @classmethod
    def from_folder(cls, folder: Path | str) -> Tokenizer:
        folder = Path(folder)
        backend = _load_backend(folder / "tokenizer.json")
        config = read_json_object(folder / "tokenizer_config.json")
        special = _special_tokens(config, read_json_object(folder / "special_tokens_map.json"))
        _register_special_tokens(backend, [*special.values(), *_extra_special_tokens(config)])
        model_config = read_json_object(folder / "config.json")
        generation = read_json_object(folder / "generation_config.json")
        return cls(
            backend,
            special_tokens=special,
            eos_token_ids=_eos_token_ids(backend, special, model_config, generation),
            bos_token_id=_bos_token_id(backend, special, model_config),
            chat_templates=_chat_templates(folder, config, special),
        )

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer knows, added tokens included (`len(hf_tokenizer)`)."""
        return int(self._backend.get_vocab_size(with_added_tokens=True))

    @property
    def has_chat_template(self) -> bool:
        return bool(self._chat_templates)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`; special-token text (e.g. "<|im_start|>") maps to its id."""
        return list(self._backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self._backend.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        found = self._backend.token_to_id(token)
        return None if found is None else int(found)

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """The prompt text for a conversation, rendered by the model's own template."""
        template = self._pick_template(tools)
        return template.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)

    def text_stream(
        self, stop: Sequence[str] = (), *, skip_special_tokens: bool = True
    ) -> TextStream:
        """A fresh incremental detokenizer for one generation (see `TextStream`)."""
        decoder = IncrementalDecoder(
            lambda ids: self.decode(ids, skip_special_tokens=skip_special_tokens),
            skipped_ids=self._special_ids if skip_special_tokens else frozenset(),
            byte_ids=self._byte_ids,
        )
        return TextStream(decoder, stop)

    def _pick_template(self, tools: list[dict[str, Any]] | None) -> ChatTemplate:
        if tools and "tool_use" in self._chat_templates:
            return self._chat_templates["tool_use"]
        if "default" in self._chat_templates:
            return self._chat_templates["default"]
        raise InvalidRequestError(NO_TEMPLATE_MESSAGE)


def read_json_object(path: Path, *, required: bool = False) -> dict[str, Any]:
    """A JSON object from `path`; {} when the file is absent and not required."""
    if not path.is_file():
        if required:
            raise ModelLoadError(f"{path}: not found.")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not readable JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, found {type(data).__name__}.")
    return data


def _load_backend(path: Path) -> Backend:
    if not path.is_file():
        raise ModelLoadError(f"{path}: not found; a model folder needs tokenizer.json.")
    try:
        backend = Backend.from_file(str(path))
    except Exception as exc:  # the Rust bindings raise a bare Exception for any bad file
        raise ModelLoadError(f"{path}: not a valid tokenizer file ({exc}).") from exc
    backend.no_truncation()
    backend.no_padding()
    return backend


def _token_text(value: Any) -> str | None:
    """A special-token entry is either a string or an AddedToken dict with `content`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _special_tokens(config: dict[str, Any], fallback: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key in SPECIAL_TOKEN_KEYS:
        text = _token_text(config.get(key, fallback.get(key)))
        if text:
            found[key] = text
    return found


def _extra_special_tokens(config: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key in EXTRA_SPECIAL_TOKEN_KEYS:
        values = config.get(key) or []
        if isinstance(values, dict):
            values = list(values.values())
        found.extend(text for text in map(_token_text, values) if text)
    return found


def _register_special_tokens(backend: Backend, tokens: Iterable[str]) -> None:
    """Add named special tokens that tokenizer.json lacks, as transformers does on load."""
    known = {tok.content for tok in backend.get_added_tokens_decoder().values() if tok.special}
    missing = [t for t in dict.fromkeys(tokens) if t not in known]
    if missing:
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])


def _as_ids(value: Any) -> set[int]:
    if isinstance(value, int):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, int)}
    return set()


def _eos_token_ids(
    backend: Backend,
    special: dict[str, str],
    model_config: dict[str, Any],
    generation: dict[str, Any],
) -> frozenset[int]:
    ids = _as_ids(model_config.get("eos_token_id")) | _as_ids(generation.get("eos_token_id"))
    eos = special.get("eos_token")
    eos_id = backend.token_to_id(eos) if eos else None
    if eos_id is not None:
        ids.add(int(eos_id))
    return frozenset(ids)


def _bos_token_id(
    backend: Backend, special: dict[str, str], model_config: dict[str, Any]
) -> int | None:
    bos = special.get("bos_token")
    bos_id = backend.token_to_id(bos) if bos else None
    if bos_id is not None:
        return int(bos_id)
    fallback = model_config.get("bos_token_id")
    return fallback if isinstance(fallback, int) else None


def _chat_templates(
    folder: Path, config: dict[str, Any], special: dict[str, str]
) -> dict[str, ChatTemplate]:
    """Named templates; chat_template.jinja wins over tokenizer_config.json, as in transformers."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return {"default": ChatTemplate(jinja.read_text(encoding="utf-8"), str(jinja), special)}
    origin = str(folder / "tokenizer_config.json")
    raw = config.get("chat_template")
    if isinstance(raw, str):
        return {"default": ChatTemplate(raw, origin, special)}
    if isinstance(raw, list):
        return {
            str(item["name"]): ChatTemplate(str(item["template"]), origin, special)
            for item in raw
            if isinstance(item, dict) and "name" in item and "template" in item
        }
    return {}


def _byte_fallback_ids(backend: Backend) -> frozenset[int]:
    """Ids of the `<0x..>` byte tokens in the vocabulary (SentencePiece-style byte fallback).

    Taken from the vocabulary alone, whatever the model and decoder settings say: treating
    them as byte tokens when they are not only delays their text by a token.
    """
    ids = (backend.token_to_id(token) for token in BYTE_TOKENS)
    return frozenset(int(i) for i in ids if i is not None)
