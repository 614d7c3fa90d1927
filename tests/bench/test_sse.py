"""The SSE decoder on byte streams cut at every possible place."""

from __future__ import annotations

import pytest

from strata.bench.sse import SseDecoder

STREAM = (
    b": keep-alive comment\n\n"
    b'data: {"text": "caf\xc3\xa9"}\r\n\r\n'
    b"event: message\nid: 7\ndata: first line\ndata:second line\n\n"
    b"retry: 100\rdata: cr only\r\r"
    b"data: [DONE]\n\n"
)
EVENTS = ['{"text": "café"}', "first line\nsecond line", "cr only", "[DONE]"]


def decode(chunks: list[bytes]) -> list[str]:
    decoder = SseDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close()


def test_a_whole_stream_in_one_read() -> None:
    assert decode([STREAM]) == EVENTS


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13])
def test_reads_of_any_size(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert decode(chunks) == EVENTS


def test_every_single_cut_point() -> None:
    for cut in range(len(STREAM) + 1):
        assert decode([STREAM[:cut], STREAM[cut:]]) == EVENTS, cut


def test_a_crlf_split_between_reads_is_one_line_end() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r\n") == []  # still one event: no blank line yet
    assert decoder.feed(b"\r\n") == ["a\nb"]


def test_events_come_out_as_soon_as_their_blank_line_arrives() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: 1\n") == []
    assert decoder.feed(b"\ndata: 2\n\nda") == ["1", "2"]
    assert decoder.feed(b"ta: 3\n\n") == ["3"]


def test_a_last_event_without_its_blank_line_is_kept_at_close() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: [DONE]") == []
    assert decoder.close() == ["[DONE]"]
