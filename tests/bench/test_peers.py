"""The transformers peers on the tiny random Llama: exact lengths, honest clocks, batch shapes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from strata.bench.peers import (
    GenerateOneAtATime,
    HFPeer,
    StaticBatching,
    TransformersContinuousBatching,
    arrival_order,
    left_padded,
    parse_dtype,
)
from strata.bench.records import BenchRequest, RequestRecord

PROMPT_LENGTHS = (5, 17, 3, 40, 9, 24)
OUTPUT_LENGTHS = (3, 8, 5, 4, 7, 6)
ARRIVALS = (0.0, 0.0, 0.02, 0.04, 0.06, 0.08)


def workload() -> list[BenchRequest]:
    return [
        BenchRequest(list(range(10 + i, 10 + i + n)), out, arrival)
        for i, (n, out, arrival) in enumerate(
            zip(PROMPT_LENGTHS, OUTPUT_LENGTHS, ARRIVALS, strict=True)
        )
    ]


@pytest.fixture(scope="module")
def generate_records(tiny_llama_folder: Path) -> list[RequestRecord]:
    return GenerateOneAtATime(tiny_llama_folder).run(workload())


@pytest.fixture(scope="module")
def static_records(tiny_llama_folder: Path) -> list[RequestRecord]:
    return StaticBatching(tiny_llama_folder, batch_size=3).run(workload())


@pytest.fixture(scope="module")
def cb_records(tiny_llama_folder: Path) -> list[RequestRecord]:
    peer = TransformersContinuousBatching(tiny_llama_folder)
    if not peer.available():
        pytest.skip(f"transformers continuous batching unavailable: {peer.unavailable_reason()}")
    return peer.run(workload())


@pytest.fixture(params=["generate_records", "static_records", "cb_records"])
def records(request: pytest.FixtureRequest) -> list[RequestRecord]:
    result: list[RequestRecord] = request.getfixturevalue(request.param)
    return result


def test_every_request_gets_exactly_its_output_length(records: list[RequestRecord]) -> None:
    for record, request in zip(records, workload(), strict=True):
        assert record.error is None
        assert record.output_tokens == request.output_len
        assert len(record.token_times) == request.output_len
        assert len(record.token_ids) == request.output_len
        assert record.prompt_tokens == len(request.prompt_token_ids)


def test_clock_is_consistent(records: list[RequestRecord]) -> None:
    for record in records:
        assert record.first_token is not None and record.finished is not None
        assert record.first_token >= record.sent
        assert record.first_token == record.token_times[0]
        assert record.token_times == sorted(record.token_times)
        assert record.finished >= record.token_times[-1]


def test_sent_follows_the_arrival_schedule(records: list[RequestRecord]) -> None:
    for record, arrival in zip(records, ARRIVALS, strict=True):
        assert record.sent - records[0].sent == pytest.approx(arrival, abs=1e-9)


def test_one_at_a_time_never_overlaps(generate_records: list[RequestRecord]) -> None:
    for before, after in itertools.pairwise(generate_records):
        assert before.finished is not None and after.first_token is not None
        assert after.first_token > before.finished


def test_static_batches_return_together(static_records: list[RequestRecord]) -> None:
    first, second = static_records[:3], static_records[3:]
    for batch in (first, second):
        finished = {r.finished for r in batch}
        assert len(finished) == 1
        longest = max(batch, key=lambda r: r.output_tokens)
        assert longest.token_times[-1] <= batch[0].finished  # type: ignore[operator]
        shortest = min(batch, key=lambda r: r.output_tokens)
        assert shortest.token_times[-1] < longest.token_times[-1]
    # tokens of one batch are produced together: its rows share step times
    assert first[0].token_times == first[1].token_times[: OUTPUT_LENGTHS[0]]
    assert second[0].first_token > first[0].finished  # type: ignore[operator]


def test_static_batching_is_greedy_like_generate(
    generate_records: list[RequestRecord], static_records: list[RequestRecord]
) -> None:
    assert [r.token_ids for r in static_records] == [r.token_ids for r in generate_records]


def test_continuous_batching_is_greedy_like_generate(
    generate_records: list[RequestRecord], cb_records: list[RequestRecord]
) -> None:
    assert [r.token_ids for r in cb_records] == [r.token_ids for r in generate_records]


def test_end_of_sequence_neither_stops_nor_is_suppressed(
    tiny_llama_folder: Path, generate_records: list[RequestRecord]
) -> None:
    expected = generate_records[0].token_ids
    peers: list[HFPeer] = [
        GenerateOneAtATime(tiny_llama_folder),
        StaticBatching(tiny_llama_folder, batch_size=2),
        TransformersContinuousBatching(tiny_llama_folder),
    ]
    for peer in peers:
        peer.model.generation_config.eos_token_id = expected[0]  # the first greedy token
        peer.model.config.eos_token_id = expected[0]
        assert peer.run(workload()[:2])[0].token_ids == expected


def test_continuous_batching_overlaps_requests(cb_records: list[RequestRecord]) -> None:
    # the first two requests arrive together and are decoded side by side
    a, b = cb_records[0], cb_records[1]
    assert b.first_token < a.finished  # type: ignore[operator]


def test_bfloat16_generate(tiny_llama_folder: Path) -> None:
    requests = workload()[:2]
    records = GenerateOneAtATime(tiny_llama_folder, "bfloat16").run(requests)
    assert [r.output_tokens for r in records] == [r.output_len for r in requests]


def test_unavailable_peer_refuses_to_run(tiny_llama_folder: Path) -> None:
    class Missing(GenerateOneAtATime):
        def unavailable_reason(self) -> str | None:
            return "not installed"

    peer: HFPeer = Missing(tiny_llama_folder)
    assert not peer.available()
    with pytest.raises(RuntimeError, match="not installed"):
        peer.run(workload())


def test_bad_settings_are_refused(tiny_llama_folder: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        StaticBatching(tiny_llama_folder, batch_size=0)
    with pytest.raises(ValueError, match="float16"):
        parse_dtype("float16")
    assert parse_dtype(torch.bfloat16) is torch.bfloat16


def test_left_padding_aligns_prompts_right() -> None:
    ids, mask = left_padded([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_arrival_order_is_stable() -> None:
    requests = [BenchRequest([1], 1, t) for t in (0.5, 0.0, 0.5, 0.1)]
    assert arrival_order(requests) == [1, 3, 0, 2]


def test_an_empty_workload_needs_no_model(tiny_llama_folder: Path) -> None:
    assert TransformersContinuousBatching(tiny_llama_folder).run([]) == []
