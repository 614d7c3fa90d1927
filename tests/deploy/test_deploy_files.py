"""The Prometheus rules and the Grafana dashboard in deploy/: they parse, promtool accepts and
unit-tests the rules (when installed: Debian's `prometheus` package), and every metric they
read is one a live strata exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from strata.config import AlertSettings
from strata.pipeline.metrics import PipelineMetrics
from strata.telemetry.alerts import AlertService
from tests.support.metrics_scrape import exported_scrapes

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "strata-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "strata-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "strata-dashboard.json"
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NOT_NAMES = re.compile(r'"[^"]*"|\[[^\]]*\]')  # strings; ranges like [1h:1m]


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def _names(expr: str) -> set[str]:
    """The metric and recording-rule names an expression reads (names with a colon)."""
    return {n for n in _NAME.findall(_NOT_NAMES.sub("", expr)) if ":" in n}


def _exported(scrape: str) -> set[str]:
    """Every sample name a /metrics body can hold, from its `# TYPE` lines."""
    names = set()
    for line in scrape.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, name, kind = line.split(" ")
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "counter":
            names |= {name, name.removesuffix("_total") + "_created"}
        else:
            names.add(name)
    return names


@pytest.fixture
def exported(pg_dsn: str, tmp_path: Path) -> Iterator[set[str]]:
    """What a live gateway's /metrics (alerts on, pipeline included) and the engine export."""
    gateway, engine = exported_scrapes(pg_dsn, tmp_path)
    yield _exported(gateway) | _exported(engine)


def test_every_metric_the_files_read_is_exported(exported: set[str]) -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    rule_names = set().union(*(_names(rule["expr"]) for rule in _rules()))
    assert not rule_names - exported - recorded, "strata-alerts.yml reads unknown metrics"
    assert rule_names >= recorded, "a recording rule nothing uses"
    assert {n for n in rule_names if not n.startswith("strata:")} <= recorded
    board_names = set().union(*map(_names, _dashboard_exprs()))
    assert board_names and not board_names - exported, "the dashboard reads unknown metrics"
    assert "strata:alerts_firing" in exported


def test_the_prometheus_rules_are_strata_s_own_rules() -> None:
    alerts = [rule for rule in _rules() if "alert" in rule]
    own = AlertService.from_settings(AlertSettings(), PipelineMetrics().registry).rules
    assert sorted(a["labels"]["rule"] for a in alerts) == sorted(r.name for r in own)
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"]


def test_the_dashboard_is_importable() -> None:
    board = _dashboard()
    assert board["uid"] and board["title"] == "strata"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'job=~"$job"' in target["expr"], target["expr"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    for args in (["check", "rules", RULES.name], ["test", "rules", RULE_TESTS.name]):
        done = subprocess.run(["promtool", *args], cwd=RULES.parent, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
