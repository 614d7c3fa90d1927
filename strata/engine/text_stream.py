"""Incremental detokenization: token ids in, stable text deltas out, cut at stop strings.

Decoding a token alone is wrong in general: SentencePiece tokenizers drop the leading space
of the first token they decode, a byte-level token can hold half of a UTF-8 character, and
byte-fallback tokens (`<0xE4>`) only form text together with their neighbours. So each push
decodes a short window (a few already-emitted context tokens plus the new ones) and emits what
the window's text gained. Text is held back while it may still change: a trailing
replacement character (an incomplete UTF-8 sequence), a trailing run of byte-fallback tokens,
or a tail that could be the start of a stop string.

The contract, tested on random token sequences: the concatenation of every `push` and the final
`flush` equals `decode(all_ids)`, cut before the first stop string when one occurs.

This module knows nothing about a particular tokenizer; it is handed a `decode` function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REPLACEMENT_CHAR = "\ufffd"

DecodeFn = Callable[[Sequence[int]], str]


class IncrementalDecoder:
    """Turns a growing token sequence into text deltas that never change afterwards.

    `decode` must decode a list of ids (with whatever special-token handling the caller wants);
    `skipped_ids` are ids it decodes to nothing (skipped special tokens), which must never start
    a window; `byte_ids` are byte-fallback tokens (`<0x..>`), whose text is unstable until a
    non-byte token closes their run.
    """

    def __init__(
        self,
        decode: DecodeFn,
        *,
        skipped_ids: frozenset[int] = frozenset(),
        byte_ids: frozenset[int] = frozenset(),
    ) -> None:
        self._decode = decode
        self._skipped = skipped_ids
        self._byte_ids = byte_ids
        self._ids: list[int] = []
        self._start = 0  # first token of the decoded window (its text is already emitted)
        self._anchor = 0  # end of the token run at the last clean push: the next window start
        self._emitted = 0  # characters of decode(ids[start:]) already emitted

    @property
    def token_ids(self) -> list[int]:
        return self._ids

    def push(self, token_ids: Sequence[int]) -> str:
        """Add tokens; return the text that became stable."""
        self._ids.extend(token_ids)
        end = self._stable_end()
        text = self._decode(self._ids[self._start : end])
        stable = text.rstrip(REPLACEMENT_CHAR)
        delta = stable[self._emitted :]
        self._emitted = max(self._emitted, len(stable))
        if end == len(self._ids) and len(stable) == len(text):
            self._move_window()
        return delta

    def flush(self) -> str:
        """Return everything not yet emitted, incomplete characters included."""
        text = self._decode(self._ids[self._start :])
        delta = text[self._emitted :]
        self._emitted = max(self._emitted, len(text))
        return delta

    def _stable_end(self) -> int:
        """Index after the last token whose text is final.

        A trailing run of byte tokens is not: the byte-fallback decoder turns a whole run into
        replacement characters when the run's bytes are not valid UTF-8, so a later byte can
        change earlier text. Skipped special tokens do not end a run (they vanish before the
        decoder sees the bytes), so they are part of it.
        """
        end = len(self._ids)
        if not self._byte_ids:
            return end
        while end > self._anchor and (
            self._ids[end - 1] in self._byte_ids or self._ids[end - 1] in self._skipped
        ):
            end -= 1
        return end

    def _move_window(self) -> None:
        # Called when decode(ids[start:]) ends cleanly, so len(ids) is a character boundary.
        # The window restarts at the previous clean boundary, keeping the tokens since then as
        # context; a skipped special token cannot be that context (it decodes to nothing, and
        # the next token's leading space would be stripped as if it came first).
        candidate, self._anchor = self._anchor, len(self._ids)
        if self._start < candidate < len(self._ids) and self._ids[candidate] not in self._skipped:
            self._start = candidate
            self._emitted = len(self._decode(self._ids[candidate:]))


class StopMatcher:
    """Cuts a stream of text before the first occurrence of any stop string.

    Text that could be the beginning of a stop string is held back until the following text
    shows whether it is; after a match every later call returns "".
    """

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._stop = tuple(s for s in stop if s)
        self._longest = max((len(s) for s in self._stop), default=0)
        self._held = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        if self.matched is not None:
            return ""
        buffer = self._held + text
        hit = self._first_stop(buffer)
        if hit is not None:
            position, self.matched = hit
            self._held = ""
            return buffer[:position]
        keep = self._partial_stop_len(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _first_stop(self, text: str) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for stop in self._stop:
            position = text.find(stop)
            if position >= 0 and (best is None or position < best[0]):
                best = (position, stop)
        return best

    def _partial_stop_len(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
        for size in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self._stop):
                return size
        return 0


class TextStream:
    """The text of one generation, delivered as it becomes stable.

    `push(token_ids)` returns newly stable text (possibly ""); `flush()` returns the rest once
    generation ends. When a stop string appears, the text before it is returned, `stopped`
    becomes True, `stop_reason` names the stop string, and every later call returns "".
    """

    def __init__(self, decoder: IncrementalDecoder, stop: Sequence[str] = ()) -> None:
        self._decoder = decoder
        self._matcher = StopMatcher(stop)
        self._text: list[str] = []

    @property
    def stopped(self) -> bool:
        return self._matcher.matched is not None

    @property
    def stop_reason(self) -> str | None:
        return self._matcher.matched

    @property
    def text(self) -> str:
        """All text emitted so far."""
        return "".join(self._text)

    @property
    def token_ids(self) -> list[int]:
        return self._decoder.token_ids

    def push(self, token_ids: Sequence[int]) -> str:
        if self.stopped:
            return ""
        return self._emit(self._matcher.feed(self._decoder.push(token_ids)))

    def flush(self) -> str:
        if self.stopped:
            return ""
        text = self._matcher.feed(self._decoder.flush())
        if not self.stopped:
            text += self._matcher.flush()
        return self._emit(text)

    def _emit(self, text: str) -> str:
        if text:
            self._text.append(text)
        return text
