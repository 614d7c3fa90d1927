"""docs/metrics.md documents every metric strata exports, and only those: the names come from
a live gateway's `/metrics` (gateway, pipeline, alerts, replica cost) and the engine's
collectors, so a metric added or renamed in code fails here until the page says so."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from strata.telemetry.otel import genai
from tests.support.metrics_scrape import exported_scrapes

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
_TABLE_NAME = re.compile(r"^\| `(strata:[a-z_]+)` \|", re.MULTILINE)


def _names(scrape: str) -> set[str]:
    """Every metric a `/metrics` body declares, as PromQL reads it (counters with `_total`,
    histograms by their base name); the `_created` timestamps are left out."""
    names = set()
    for line in scrape.splitlines():
        if line.startswith("# TYPE "):
            name = line.split(" ")[2]
            if not name.endswith("_created"):
                names.add(name)
    return names


@pytest.fixture
def exported(pg_dsn: str, tmp_path: Path) -> Iterator[set[str]]:
    gateway, engine = exported_scrapes(pg_dsn, tmp_path)
    yield _names(gateway) | _names(engine)


def test_the_page_lists_exactly_the_exported_metrics(exported: set[str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = sorted(name for name in exported if f"`{name}`" not in text)
    assert not missing, f"docs/metrics.md lacks {missing}"
    documented = set(_TABLE_NAME.findall(text))
    assert not documented - exported, "docs/metrics.md lists metrics strata does not export"
    assert {"strata:time_to_first_token_seconds", "strata:gateway_requests_total",
            "strata:pipeline_freshness_seconds", "strata:alerts_firing",
            "strata:upstream_idle_cost_usd_total"} <= exported  # fmt: skip


def test_the_opentelemetry_instruments_are_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    instruments = (genai.TIME_TO_FIRST_TOKEN, genai.TIME_PER_OUTPUT_TOKEN,
                   genai.REQUEST_DURATION, genai.TOKEN_USAGE, genai.OPERATION_DURATION)  # fmt: skip
    assert all(f"`{name}`" in text for name in instruments)
