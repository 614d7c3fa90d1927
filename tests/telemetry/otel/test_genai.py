"""The GenAI instruments: which are recorded when, with what value, in the recommended buckets."""

from __future__ import annotations

import pytest
from opentelemetry.metrics import Meter

from strata.telemetry.otel import genai
from strata.telemetry.otel.genai import ClientMetrics, ServerMetrics
from tests.telemetry.otel.conftest import MemoryOtel, attributes

SERVED = {genai.OPERATION: genai.CHAT, genai.PROVIDER: genai.STRATA, genai.REQUEST_MODEL: "m"}


def meter(memory: MemoryOtel) -> Meter:
    assert memory.otel.meter is not None
    return memory.otel.meter


def test_a_successful_request_records_ttft_tpot_and_duration(memory: MemoryOtel) -> None:
    ServerMetrics(meter(memory)).record(SERVED, duration_s=1.0, ttft_s=0.2, output_tokens=5)
    (ttft,) = memory.points(genai.TIME_TO_FIRST_TOKEN)
    (tpot,) = memory.points(genai.TIME_PER_OUTPUT_TOKEN)
    (duration,) = memory.points(genai.REQUEST_DURATION)
    assert (ttft.sum, duration.sum) == (0.2, 1.0)
    assert tpot.sum == pytest.approx(0.8 / 4)  # decode time over the tokens after the first
    assert attributes(ttft) == attributes(tpot) == attributes(duration) == SERVED
    assert tuple(ttft.explicit_bounds) == genai.TTFT_BUCKETS_S
    assert tuple(tpot.explicit_bounds) == genai.TPOT_BUCKETS_S
    assert tuple(duration.explicit_bounds) == genai.DURATION_BUCKETS_S


def test_one_token_has_no_time_per_output_token(memory: MemoryOtel) -> None:
    ServerMetrics(meter(memory)).record(SERVED, duration_s=0.3, ttft_s=0.3, output_tokens=1)
    assert len(memory.points(genai.TIME_TO_FIRST_TOKEN)) == 1
    assert memory.points(genai.TIME_PER_OUTPUT_TOKEN) == []


def test_a_failed_request_records_only_its_duration_with_the_error_type(
    memory: MemoryOtel,
) -> None:
    ServerMetrics(meter(memory)).record(SERVED, 0.5, ttft_s=0.1, output_tokens=3,
                                        error_type="aborted")  # fmt: skip
    (duration,) = memory.points(genai.REQUEST_DURATION)
    assert attributes(duration) == {**SERVED, genai.ERROR_TYPE: "aborted"}
    assert memory.points(genai.TIME_TO_FIRST_TOKEN) == []


def test_client_usage_by_token_type_and_never_an_estimate(memory: MemoryOtel) -> None:
    metrics = ClientMetrics(meter(memory))
    metrics.record(SERVED, 0.4, usage=(12, 7))
    metrics.record(SERVED, 0.2, usage=None, error_type="upstream_error")  # not reported
    tokens = {attributes(p)[genai.TOKEN_TYPE]: p for p in memory.points(genai.TOKEN_USAGE)}
    assert (tokens["input"].sum, tokens["output"].sum) == (12, 7)
    assert tokens["input"].count == 1
    assert tuple(tokens["input"].explicit_bounds) == genai.TOKEN_BUCKETS
    by_error = {
        attributes(p).get(genai.ERROR_TYPE): p for p in memory.points(genai.OPERATION_DURATION)
    }
    assert by_error[None].sum == 0.4 and by_error["upstream_error"].sum == 0.2


def test_the_buckets_are_the_ones_the_conventions_recommend() -> None:
    assert genai.TOKEN_BUCKETS == (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144,
                                   1048576, 4194304, 16777216, 67108864)  # fmt: skip
    assert genai.DURATION_BUCKETS_S[0] == 0.01 and genai.DURATION_BUCKETS_S[-1] == 81.92
    assert len(genai.TTFT_BUCKETS_S) == 16 and len(genai.TPOT_BUCKETS_S) == 13
