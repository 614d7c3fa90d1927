"""`strata plan capacity` as a user runs it (through the `strata plan` app)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from strata.compute.commands import plan_app
from strata.gateway.ledger import LedgerWriter, UsageRecord
from strata.store.database import Database

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [key for key in os.environ if key.startswith("STRATA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STRATA_CONFIG", "")
    monkeypatch.chdir(tmp_path)


def config(tmp_path: Path, settings: dict[str, object]) -> str:
    path = tmp_path / "strata.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def week_csv(tmp_path: Path) -> Path:
    day = [1, 1, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 6, 6, 5, 4, 3, 3, 2, 2, 1, 1, 1]
    path = tmp_path / "week.csv"
    path.write_text("hour,requests\n" + "".join(f"{h},{day[h % 24] * 3600}\n" for h in range(168)))
    return path


def test_capacity_from_a_csv(tmp_path: Path) -> None:
    args = ["capacity", "--csv", str(week_csv(tmp_path)), "--replica-rps", "1"]
    result = runner.invoke(plan_app, args)
    assert result.exit_code == 0, result.output
    for text in ("Replicas needed per hour (peak 6)", "reserved + on-demand", "Decision:",
                 "Peak-to-average", "On-demand costs 50% more than a 12-month reservation",
                 "within 90 s", "Recommended:"):  # fmt: skip
        assert text in result.output


def test_capacity_json_uses_the_configured_prices(tmp_path: Path) -> None:
    path = config(tmp_path, {"pricing": {"gpu_hour_usd": {"a100-80gb": {"on_demand": 10.0}},
                                         "reserved_term_months": 36}})  # fmt: skip
    args = ["capacity", "--csv", str(week_csv(tmp_path)), "--replica-rps", "1", "--json",
            "--config", path]  # fmt: skip
    document = json.loads(runner.invoke(plan_app, args).output)
    assert document["prices"]["on_demand"] == 10.0 and document["prices"]["reserved"] == 3.41
    assert document["prices"]["reserved_term_months"] == 36
    assert len(document["replicas_per_hour"]) == 168


def test_capacity_replica_rate_from_a_sweep_report(tmp_path: Path) -> None:
    report = tmp_path / "sweep.json"
    report.write_text(json.dumps({"best_rate": 2.5, "probes": []}))
    args = ["capacity", "--peak-to-average", "3", "--mean-rps", "5", "--bench-report",
            str(report), "--json"]  # fmt: skip
    document = json.loads(runner.invoke(plan_app, args).output)
    assert document["replica"]["rps"] == 2.5


def test_capacity_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "plan.png"
    args = ["capacity", "--peak-to-average", "4", "--mean-rps", "3", "--replica-rps", "1",
            "--plot", str(out)]  # fmt: skip
    result = runner.invoke(plan_app, args)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replica-rps", "1"], "exactly one traffic source"),
        (["--peak-to-average", "2", "--replica-rps", "1"], "needs --mean-rps"),
        (["--peak-to-average", "2", "--mean-rps", "1"], "give one of --replica-rps"),
        (["--peak-to-average", "2", "--mean-rps", "1", "--replica-rps", "1", "--gpu", "tpu"],
         "pricing.gpu_hour_usd has no entry for 'tpu'"),
        (["--peak-to-average", "2", "--mean-rps", "1", "--replica-rps", "1",
          "--reserved-usd", "9"], "prices for a100-80gb: Value error, reserved (9.0) costs more"),
        (["--peak-to-average", "2", "--mean-rps", "1", "--replica-rps", "1", "--model", "x"],
         "--model filters the usage ledger"),
    ],
)  # fmt: skip
def test_capacity_errors_exit_2_naming_the_option(args: list[str], message: str) -> None:
    result = runner.invoke(plan_app, ["capacity", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_capacity_bad_csv_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("hour,requests\n0,5\n1,five\n")
    result = runner.invoke(plan_app, ["capacity", "--csv", str(path), "--replica-rps", "1"])
    assert result.exit_code == 2 and "line 3: 'five'" in result.output


def test_capacity_for_a_gpu_without_a_price_takes_them_from_options() -> None:
    args = ["capacity", "--peak-to-average", "2", "--mean-rps", "1", "--replica-rps", "1",
            "--gpu", "mi300x", "--reserved-usd", "2", "--on-demand-usd", "3", "--json"]  # fmt: skip
    document = json.loads(runner.invoke(plan_app, args).output)
    assert document["prices"]["spot"] is None
    assert [s["name"] for s in document["strategies"]][-1] == "reserved + on-demand"


async def test_capacity_from_the_ledger(
    pg_database: Database, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    writer = LedgerWriter(pg_database.pool, flush_interval_s=60)
    for n in range(30):  # 30 requests 3 hours ago, 10 requests 5 hours ago
        at = hour - timedelta(hours=3 if n < 20 else 5, minutes=-n)
        writer.record(UsageRecord(request_id=f"r{n}", at=at, tenant="t", user="u",
                                  key_id="k", model="m", upstream="engine"))  # fmt: skip
    await writer.flush()
    monkeypatch.setenv("STRATA_STORE__DSN", pg_dsn)
    args = ["capacity", "--from-ledger", "--days", "1", "--replica-rps", "0.001", "--json"]
    document = json.loads(runner.invoke(plan_app, args).output)
    assert document["traffic"]["hours"] == 24 and document["traffic"]["peak_rph"] == 20
    assert document["traffic"]["peak_to_average"] == pytest.approx(20 / (30 / 24))
