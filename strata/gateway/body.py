"""What the gateway reads from an OpenAI request body, and the body it sends upstream.

The gateway validates only what it acts on (model, stream, token limits, message and prompt
shapes, `user`) and forwards every other field untouched: an optional feature the chosen
upstream cannot honour is refused there with a 400 naming the field, never silently dropped.
Validation errors name the field by its dotted path (`messages.2.content`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from strata.errors import InvalidRequestError
from strata.http_errors import describe_validation_errors

Endpoint = Literal["chat", "completions"]
MAX_NAME_CHARS = 256
MAX_TEXT_CHARS = 4_000_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # JSON types, no coercion


class _StreamOptions(_Body):
    include_usage: bool = False


class _Part(_Body):
    type: str = Field(max_length=64)
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)


class _Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_Part] | None = Field(None, max_length=MAX_TEXT_CHARS)
    name: str | None = Field(None, max_length=MAX_NAME_CHARS)


class _Generation(_Body):
    model: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    user: str | None = Field(None, max_length=MAX_NAME_CHARS)


class _Chat(_Generation):
    messages: list[_Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class _Completion(_Generation):
    prompt: str | list[str] | list[int] | list[list[int]]


_MODELS: dict[Endpoint, type[_Generation]] = {"chat": _Chat, "completions": _Completion}


@dataclass(frozen=True)
class GenerationBody:
    """A validated generation request: what the gateway needs, plus the raw body to forward."""

    endpoint: Endpoint
    model: str
    stream: bool
    include_usage: bool  # the caller asked for the usage chunk
    max_tokens: int | None  # what the caller asked for (max_completion_tokens first)
    texts: tuple[tuple[str, str], ...]  # (field path, text) of every prompt text
    prompt_token_ids: int  # token ids given directly (completions with a token-id prompt)
    num_messages: int
    raw: dict[str, Any]
    trusted: frozenset[str] = frozenset()  # paths of system/developer text: the deployment's

    def upstream_body(self, served_model: str, max_tokens: int) -> dict[str, Any]:
        """The body to send upstream: served model name, `max_tokens` clamped to what was
        reserved, and usage always requested when streaming (the gateway settles from it)."""
        body = dict(self.raw)
        body["model"] = served_model
        token_field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        body[token_field] = max_tokens
        if self.stream:
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        return body


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    if not raw:
        raise InvalidRequestError(
            "Request body is required: send a JSON object.", code="invalid_json"
        )
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"Request body is not valid JSON: {exc}.", code="invalid_json"
        ) from exc
    if not isinstance(value, dict):
        raise InvalidRequestError(
            "Request body must be a JSON object sent with Content-Type: application/json.",
            code="invalid_json",
        )
    return value


def parse_generation(endpoint: Endpoint, raw: dict[str, Any], max_messages: int) -> GenerationBody:
    """Validate `raw` for `endpoint`; raise `InvalidRequestError` naming the first bad field."""
    try:
        parsed = _MODELS[endpoint].model_validate(raw)
    except ValidationError as exc:
        message, param, code = describe_validation_errors(exc.errors())
        raise InvalidRequestError(message, code=code, param=param) from exc
    if isinstance(parsed, _Chat):
        return _chat_body(parsed, raw, max_messages)
    assert isinstance(parsed, _Completion)
    return _completion_body(parsed, raw)


def _common(parsed: _Generation) -> dict[str, Any]:
    options = parsed.stream_options
    return {
        "model": parsed.model,
        "stream": bool(parsed.stream),
        "include_usage": options is not None and options.include_usage,
    }


def _chat_body(parsed: _Chat, raw: dict[str, Any], max_messages: int) -> GenerationBody:
    if len(parsed.messages) > max_messages:
        raise InvalidRequestError(
            f"messages: {len(parsed.messages)} messages is more than this gateway accepts "
            f"({max_messages}); shorten the conversation.",
            code="too_many_messages",
            param="messages",
        )
    texts = tuple(_message_texts(parsed.messages))
    return GenerationBody(
        endpoint="chat",
        max_tokens=parsed.max_completion_tokens or parsed.max_tokens,
        texts=texts,
        trusted=_trusted(parsed.messages, texts),
        prompt_token_ids=0,
        num_messages=len(parsed.messages),
        raw=raw,
        **_common(parsed),
    )


def _message_texts(messages: list[_Message]) -> list[tuple[str, str]]:
    texts = []
    for i, message in enumerate(messages):
        if isinstance(message.content, str):
            texts.append((f"messages.{i}.content", message.content))
        elif message.content is not None:
            texts += [
                (f"messages.{i}.content.{j}.text", part.text)
                for j, part in enumerate(message.content)
                if part.text is not None
            ]
        if message.name is not None:
            texts.append((f"messages.{i}.name", message.name))
    return texts


def _trusted(messages: list[_Message], texts: tuple[tuple[str, str], ...]) -> frozenset[str]:
    own = {str(i) for i, m in enumerate(messages) if m.role in ("system", "developer")}
    return frozenset(path for path, _ in texts if path.split(".")[1] in own)


def _completion_body(parsed: _Completion, raw: dict[str, Any]) -> GenerationBody:
    prompt = parsed.prompt
    texts: list[tuple[str, str]] = []
    ids = 0
    if isinstance(prompt, str):
        texts.append(("prompt", prompt))
    else:
        for i, item in enumerate(prompt):
            if isinstance(item, str):
                texts.append((f"prompt.{i}", item))
            elif isinstance(item, list):
                ids += len(item)
            else:
                ids += 1
    return GenerationBody(
        endpoint="completions",
        max_tokens=parsed.max_tokens,
        texts=tuple(texts),
        prompt_token_ids=ids,
        num_messages=0,
        raw=raw,
        **_common(parsed),
    )
