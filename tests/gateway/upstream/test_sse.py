from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strata.gateway.upstream.errors import ConnectionClosed
from strata.gateway.upstream.sse import MAX_EVENT_BYTES, SseEvents, SseSplitter


def split_all(stream: bytes, cuts: list[int]) -> list[bytes]:
    splitter = SseSplitter()
    events: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        events += splitter.feed(stream[start:cut])
        start = cut
    return events + splitter.close()


def test_openai_style_events_give_their_data_bytes() -> None:
    stream = b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n'
    assert SseSplitter().feed(stream) == [b'{"a":1}', b'{"b":2}', b"[DONE]"]


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(end: bytes) -> None:
    stream = b"data: one" + end + end + b"data: two" + end + end
    assert split_all(stream, []) == [b"one", b"two"]


def test_multi_line_data_comments_and_other_fields() -> None:
    stream = (
        b": keep-alive\nevent: x\nid: 7\ndata: first\ndata:second\nretry: 5\n\n:only a comment\n\n"
    )
    assert split_all(stream, []) == [b"first\nsecond"]


def test_a_crlf_split_between_reads_is_one_line_end() -> None:
    splitter = SseSplitter()
    assert splitter.feed(b"data: x\r\n\r") == []
    assert splitter.feed(b"\ndata: y\r\n\r\n") == [b"x", b"y"]


def test_an_event_without_the_final_blank_line_comes_out_at_close() -> None:
    splitter = SseSplitter()
    assert splitter.feed(b"data: a\n\ndata: last\n") == [b"a"]
    assert splitter.close() == [b"last"]


def test_data_without_a_space_or_value() -> None:
    assert split_all(b"data:x\n\ndata\n\n", []) == [b"x", b""]


def test_an_unterminated_huge_event_is_refused() -> None:
    splitter = SseSplitter()
    with pytest.raises(ConnectionClosed):
        splitter.feed(b"data: " + b"x" * (MAX_EVENT_BYTES + 1))


@given(
    payloads=st.lists(
        st.binary(min_size=0, max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b),
        max_size=6,
    ),
    end=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_any_split_of_the_stream_gives_the_same_events(
    payloads: list[bytes], end: bytes, cuts: list[int]
) -> None:
    stream = b"".join(b": c" + end + b"data: " + p + end + end for p in payloads)
    cuts = [c for c in cuts if c <= len(stream)]
    assert split_all(stream, cuts) == payloads


class _Body:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.closed = False

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        if not self.chunks:
            raise StopAsyncIteration
        return self.chunks.pop(0)

    async def aclose(self) -> None:
        self.closed = True


async def test_sse_events_iterates_payloads_across_chunks_and_closes_the_body() -> None:
    body = _Body([b"data: a\n\nda", b"ta: b\n", b"\ndata: [DONE]\n\n"])
    events = SseEvents(body)
    assert [event async for event in events] == [b"a", b"b", b"[DONE]"]
    await events.aclose()
    assert body.closed
