"""How `strata bench slo` judges a run: shed requests and late answers are not goodput."""

from __future__ import annotations

from strata.bench.records import RequestRecord
from strata.bench.slo_bench import fixed, outcome, steered


def test_outcome_counts_shed_requests_apart_and_goodput_by_the_slo() -> None:
    records = [
        RequestRecord(sent=0.0, first_token=0.2, finished=1.0, output_tokens=5),
        RequestRecord(sent=0.0, first_token=0.9, finished=2.0, output_tokens=5),  # late
        RequestRecord(sent=1.0, error="503"),
        RequestRecord(sent=1.0, error="timeout"),
    ]
    o = outcome(records, duration_s=2.0, slo_ms=500)
    assert (o["sent"], o["admitted_ok"], o["shed_503"], o["other_errors"]) == (4, 2, 1, 1)
    assert o["goodput_rps"] == 0.5  # one answer within 500 ms over 2 s
    assert o["ttft_p95_ms"] == 900.0


def test_configurations_are_expressed_as_strata_settings() -> None:
    assert fixed(8) == {"STRATA_ENGINE__MAX_NUM_SEQS": "8", "STRATA_SLO__ENABLED": "false"}
    assert steered(300.0)["STRATA_SLO__TTFT_P95_MS"] == "300.0"
