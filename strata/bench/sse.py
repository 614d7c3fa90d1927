"""An incremental parser for server-sent events, fed raw bytes as they come off the socket.

It follows the SSE line rules a streaming client meets in practice: `\\n`, `\\r\\n` or `\\r` line
ends (a `\\r\\n` may be split across two reads), lines split anywhere (even inside a UTF-8
character), `:` comments, several `data:` lines joined by `\\n`, and a blank line ending each
event. It returns each event's data and ignores `event:`, `id:` and `retry:`, which OpenAI-style
streams do not use.
"""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")


class SseDecoder:
    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        """The data of every event completed by `chunk`."""
        self._buffer += chunk
        events: list[str] = []
        while (end := _LINE_END.search(self._buffer)) is not None:
            if end.group() == b"\r" and end.end() == len(self._buffer):
                break  # maybe the first half of a \r\n: wait for the next read
            line, self._buffer = self._buffer[: end.start()], self._buffer[end.end() :]
            if (event := self._line(line.decode("utf-8", errors="replace"))) is not None:
                events.append(event)
        return events

    def close(self) -> list[str]:
        """The data of a last event the stream ended without a blank line after."""
        events = self.feed(b"\n") if self._buffer else []
        if self._data:
            events.append(self._dispatch())
        return events

    def _line(self, line: str) -> str | None:
        if not line:
            return self._dispatch() if self._data else None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))
        return None  # comments (empty field) and other fields carry nothing we need

    def _dispatch(self) -> str:
        data, self._data = "\n".join(self._data), []
        return data
