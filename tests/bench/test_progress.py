"""The progress bar counts finished requests and failures on stderr."""

from __future__ import annotations

import pytest

from strata.bench.progress import ProgressBars
from strata.bench.records import RequestRecord


def test_bars_count_requests_and_failures(capsys: pytest.CaptureFixture[str]) -> None:
    bars = ProgressBars(enabled=True).start("probe 2 req/s", total=3)
    bars(RequestRecord(0.0, 0.1, 0.2))
    bars(RequestRecord(0.0, error="503"))
    bars.close()
    err = capsys.readouterr().err
    assert "probe 2 req/s" in err and "2/3" in err and "failed=1" in err


def test_disabled_bars_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    bars = ProgressBars(enabled=False).start("x", total=None)
    bars(RequestRecord(0.0, 0.1, 0.2))
    bars.close()
    bars(RequestRecord(0.0, 0.1, 0.2))  # after close: ignored
    assert capsys.readouterr().err == ""
