"""OpenAI response objects and server-sent events built from engine deltas.

`ChatFormat` speaks `chat.completion` / `chat.completion.chunk`, `TextFormat` speaks
`text_completion`. Each instance belongs to one request (its id, model and creation time are
the same on every chunk). Pure: no I/O, no engine.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

from strata.engine.outputs import Delta
from strata.engine.protocol import (
    SSE_DONE,
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionResponse,
    DeltaMessage,
    Usage,
    sse_event,
)


class ResponseFormat(ABC):
    """What both endpoints share: identity, token ids on request, the closing `[DONE]`."""

    def __init__(self, request_id: str, model: str, with_token_ids: bool) -> None:
        self.request_id = request_id
        self.model = model
        self.with_token_ids = with_token_ids
        self.created = int(time.time())

    def opening(self) -> list[str]:
        """Events sent before the first delta."""
        return []

    def chunk(self, delta: Delta) -> str | None:
        """The event for `delta`, or None when it carries nothing the client would see."""
        if not self._worth_sending(delta):
            return None
        return self._chunk(delta)

    @abstractmethod
    def usage(self, last: Delta) -> str: ...

    @abstractmethod
    def response(self, deltas: list[Delta]) -> ChatCompletionResponse | CompletionResponse: ...

    def done(self) -> str:
        return SSE_DONE

    @abstractmethod
    def _chunk(self, delta: Delta) -> str: ...

    def _ids(self, token_ids: tuple[int, ...]) -> list[int] | None:
        return list(token_ids) if self.with_token_ids else None

    def _worth_sending(self, delta: Delta) -> bool:
        has_ids = self.with_token_ids and bool(delta.token_ids)
        return bool(delta.text) or delta.finish_reason is not None or has_ids


class ChatFormat(ResponseFormat):
    def opening(self) -> list[str]:
        role = ChatChunkChoice(delta=DeltaMessage(role="assistant", content=""))
        return [sse_event(self._envelope([role]))]

    def usage(self, last: Delta) -> str:
        return sse_event(self._envelope([], Usage.from_delta(last)))

    def response(self, deltas: list[Delta]) -> ChatCompletionResponse:
        text, token_ids = joined(deltas)
        choice = ChatChoice(
            message=AssistantMessage(content=text),
            finish_reason=deltas[-1].finish_reason,
            token_ids=self._ids(token_ids),
        )
        return ChatCompletionResponse(
            id=self.request_id,
            created=self.created,
            model=self.model,
            choices=[choice],
            usage=Usage.from_delta(deltas[-1]),
        )

    def _chunk(self, delta: Delta) -> str:
        choice = ChatChunkChoice(
            delta=DeltaMessage(content=delta.text),
            finish_reason=delta.finish_reason,
            token_ids=self._ids(delta.token_ids),
        )
        return sse_event(self._envelope([choice]))

    def _envelope(
        self, choices: list[ChatChunkChoice], usage: Usage | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.request_id, created=self.created, model=self.model, choices=choices, usage=usage
        )


class TextFormat(ResponseFormat):
    def usage(self, last: Delta) -> str:
        return sse_event(self._envelope([], Usage.from_delta(last)))

    def response(self, deltas: list[Delta]) -> CompletionResponse:
        text, token_ids = joined(deltas)
        choice = CompletionChoice(
            text=text, finish_reason=deltas[-1].finish_reason, token_ids=self._ids(token_ids)
        )
        return self._envelope([choice], Usage.from_delta(deltas[-1]))

    def _chunk(self, delta: Delta) -> str:
        choice = CompletionChoice(
            text=delta.text,
            finish_reason=delta.finish_reason,
            token_ids=self._ids(delta.token_ids),
        )
        return sse_event(self._envelope([choice]))

    def _envelope(
        self, choices: list[CompletionChoice], usage: Usage | None = None
    ) -> CompletionResponse:
        return CompletionResponse(
            id=self.request_id, created=self.created, model=self.model, choices=choices, usage=usage
        )


def joined(deltas: list[Delta]) -> tuple[str, tuple[int, ...]]:
    """The whole text and token ids of a finished request."""
    text = "".join(delta.text for delta in deltas)
    token_ids = tuple(token for delta in deltas for token in delta.token_ids)
    return text, token_ids
