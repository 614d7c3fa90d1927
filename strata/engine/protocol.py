"""OpenAI-compatible request and response models for `/v1/chat/completions` and `/v1/completions`.

Requests accept and ignore unknown fields (the OpenAI SDK sends some) but reject wrong types
and features this server cannot honour (n > 1, logprobs, penalties, tools, ...) with a 400
that names the field. `to_sampling_params` turns a request into the engine's `SamplingParams`.
Responses are the OpenAI objects plus `token_ids` on each choice when `return_token_ids` is set.
This module knows nothing of HTTP routing or of how the engine runs.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from strata.engine.generation_config import SamplingDefaults
from strata.engine.outputs import Delta, FinishReason
from strata.engine.sampling_params import SamplingParams

MAX_MESSAGES = 2048
MAX_TEXT_CHARS = 4_000_000
MAX_PROMPT_TOKENS = 1_000_000
MAX_NAME_CHARS = 256
MAX_INT32 = 2**31 - 1  # ids and counts the engine puts into int tensors
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions

SSE_DONE = "data: [DONE]\n\n"


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------------------------- requests


class TextPart(_Request):
    type: Literal["text"]
    text: str = Field(max_length=MAX_TEXT_CHARS)

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, value: object) -> object:
        if isinstance(value, dict) and value.get("type") != "text":
            kind = value.get("type")
            raise ValueError(f"only text content parts are supported, not type {kind!r}")
        return value


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: list[TextPart] = Field(max_length=MAX_MESSAGES)
    name: str | None = Field(None, max_length=MAX_NAME_CHARS)

    @field_validator("content", mode="before")
    @classmethod
    def _text_as_parts(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        if isinstance(value, list):
            return value
        raise ValueError("must be a string or a list of text parts")

    @property
    def text(self) -> str:
        return "\n".join(part.text for part in self.content)

    def for_template(self) -> dict[str, str]:
        """The plain `{"role", "content"}` dict chat templates expect."""
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.text}


class StreamOptions(_Request):
    include_usage: bool = False


UNSET: tuple[object, ...] = (None, False, 0, "", [], {})  # absent, or present but empty
UNSUPPORTED_FIELDS = (
    "n", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
    "tools", "echo", "best_of", "suffix",
)  # fmt: skip


class _GenerationRequest(_Request):
    """Fields shared by both endpoints; `None` means the OpenAI default."""

    default_max_tokens: ClassVar[int | None] = None  # None: the rest of the context window
    model: str | None = Field(None, max_length=MAX_NAME_CHARS)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, le=MAX_INT32, description="-1 or 0 means off.")
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)  # torch.Generator's range
    stop: list[str] | None = None
    stop_token_ids: list[Annotated[int, Field(ge=0, le=MAX_INT32)]] | None = None
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    min_tokens: int = Field(0, ge=0)
    return_token_ids: bool = False
    priority: int = 0
    user: str | None = Field(None, max_length=MAX_NAME_CHARS)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    # Fields accepted only at a neutral value: field -> (neutral values, why not otherwise).
    UNSUPPORTED: ClassVar[dict[str, tuple[tuple[object, ...], str]]] = {
        "n": ((None, 1), "only n=1 is supported; send several requests instead"),
        "presence_penalty": ((None, 0), "penalties are not supported; only 0 is accepted"),
        "frequency_penalty": ((None, 0), "penalties are not supported; only 0 is accepted"),
        "logit_bias": (UNSET, "logit_bias is not supported"),
    }

    @field_validator(*UNSUPPORTED_FIELDS, check_fields=False)
    @classmethod
    def _neutral_only(cls, value: object, info: ValidationInfo) -> object:
        neutral, why = cls.UNSUPPORTED[str(info.field_name)]
        if value not in neutral:
            raise ValueError(why)
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def max_tokens_within(self, room: int) -> int:
        """The output budget: what the caller asked for, else the endpoint default capped
        by `room` (tokens left in the context window). An explicit value is not capped:
        the engine rejects one that does not fit, naming the field."""
        requested = self.requested_max_tokens()
        if requested is not None:
            return requested
        default = self.default_max_tokens
        return max(1, room if default is None else min(room, default))

    def to_sampling_params(
        self, room: int, defaults: SamplingDefaults | None = None
    ) -> SamplingParams:
        """Raises `InvalidRequestError` (param named) for values the engine cannot use.
        Unset temperature/top_p/top_k take the model's `defaults`."""
        defaults = defaults or SamplingDefaults()
        return SamplingParams(
            max_tokens=self.max_tokens_within(room),
            temperature=defaults.temperature if self.temperature is None else self.temperature,
            top_p=defaults.top_p if self.top_p is None else self.top_p,
            top_k=defaults.top_k if self.top_k is None else max(0, self.top_k),
            seed=self.seed,
            stop=tuple(self.stop or ()),
            stop_token_ids=tuple(self.stop_token_ids or ()),
            ignore_eos=self.ignore_eos,
            min_tokens=self.min_tokens,
        )


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    UNSUPPORTED: ClassVar[dict[str, tuple[tuple[object, ...], str]]] = {
        **_GenerationRequest.UNSUPPORTED,
        "logprobs": (UNSET, "logprobs are not supported by this server"),
        "top_logprobs": (UNSET, "top_logprobs is not supported by this server"),
        "tools": (UNSET, "tool calling is not supported by this server"),
    }

    @field_validator("response_format")
    @classmethod
    def _text_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type", "text") != "text":
            raise ValueError("only the 'text' response format is supported")
        return value

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def template_messages(self) -> list[dict[str, str]]:
        return [message.for_template() for message in self.messages]


class CompletionRequest(_GenerationRequest):
    prompt: str | list[int]
    logprobs: int | None = None
    echo: bool | None = False
    best_of: int | None = None
    suffix: str | None = None

    UNSUPPORTED: ClassVar[dict[str, tuple[tuple[object, ...], str]]] = {
        **_GenerationRequest.UNSUPPORTED,
        "logprobs": ((None,), "logprobs are not supported by this server"),
        "echo": (UNSET, "echo is not supported by this server"),
        "best_of": ((None, 1), "only best_of=1 is supported"),
        "suffix": (UNSET, "suffix is not supported by this server"),
    }

    default_max_tokens: ClassVar[int | None] = COMPLETIONS_DEFAULT_MAX_TOKENS

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, value: object) -> object:
        return check_prompt(value)


def check_prompt(value: object) -> str | list[int]:
    """A string, a list holding one string or one token-id list, or a list of token ids."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str | list):
        value = value[0]
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"at most {MAX_TEXT_CHARS} characters")
        return value
    if not isinstance(value, list):
        raise ValueError("must be a string or a list of token ids")
    if value and all(isinstance(item, str) for item in value):
        raise ValueError("only one prompt per request is supported")
    if not all(type(item) is int and item >= 0 for item in value):
        raise ValueError("a token-id prompt must be a list of non-negative integers")
    if len(value) > MAX_PROMPT_TOKENS:
        raise ValueError(f"at most {MAX_PROMPT_TOKENS} token ids")
    return value


# --------------------------------------------------------------------------------- responses


def _absent_if_none(value: object) -> bool:
    return value is None


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    """OpenAI's usage object plus one strata extension: `strata_replica_seconds`, the
    request's share of replica time (`strata.engine.accounting`), on a finished request's usage
    only. The gateway prices self-hosted upstreams by it."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    strata_replica_seconds: float | None = Field(None, exclude_if=_absent_if_none)

    @classmethod
    def from_delta(cls, last: Delta) -> Usage:
        """Usage as of `last`, the newest delta of a request (counts are cumulative)."""
        return cls(
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            total_tokens=last.prompt_tokens + last.completion_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=last.cached_tokens),
            strata_replica_seconds=last.replica_seconds,
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason | None
    logprobs: None = None
    token_ids: list[int] | None = Field(None, exclude_if=_absent_if_none)


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = Field(None, exclude_if=_absent_if_none)
    content: str | None = Field(None, exclude_if=_absent_if_none)


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: FinishReason | None = None
    logprobs: None = None
    token_ids: list[int] | None = Field(None, exclude_if=_absent_if_none)


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(None, exclude_if=_absent_if_none)


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReason | None = None
    logprobs: None = None
    token_ids: list[int] | None = Field(None, exclude_if=_absent_if_none)


class CompletionResponse(BaseModel):
    """Both the whole `text_completion` and each streamed chunk of one (same object name)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = Field(None, exclude_if=_absent_if_none)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "strata"
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def sse_event(payload: BaseModel | dict[str, Any]) -> str:
    """One server-sent event: `data: {json}` and a blank line."""
    if isinstance(payload, BaseModel):
        return f"data: {payload.model_dump_json()}\n\n"
    return f"data: {json.dumps(payload)}\n\n"
