"""The two kinds of request measured: a plain chat completion and a streamed one.

Each mode has its own model name and its own path prefix on the mock, so one gateway process
serves both: a gateway routes `model` to an upstream whose base URL ends in that prefix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

USER_MESSAGE = "Say hello in twenty words."  # every request's one message


@dataclass(frozen=True)
class Mode:
    name: str
    stream: bool
    model: str
    prefix: str  # on the mock: <mock>/<prefix>/v1/chat/completions

    def request_body(self) -> str:
        """The JSON body every benchmark request of this mode sends."""
        body: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "user", "content": USER_MESSAGE}],
            "max_tokens": 32,
            "stream": self.stream,
        }
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        return json.dumps(body, separators=(",", ":"))


PLAIN = Mode("non-streaming", stream=False, model="mock-model", prefix="/plain")
STREAM = Mode("streaming", stream=True, model="mock-model-stream", prefix="/stream")
MODES = (PLAIN, STREAM)
