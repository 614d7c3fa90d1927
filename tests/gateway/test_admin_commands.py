from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
import yaml
from typer.testing import CliRunner, Result

from strata.config import Settings
from strata.gateway.admin_commands import keys_app, tenants_app, usage_app
from strata.gateway.identity import hash_key
from strata.gateway.ledger import LedgerWriter, UsageRecord
from strata.store.database import Database, EmbeddedServer
from tests.support.cli import ok, store_cli

app = typer.Typer()  # registered the way strata.cli registers them
app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")
app.add_typer(usage_app, name="usage")


@pytest.fixture
def cli(pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.chdir(tmp_path)  # no ./strata.yaml
    return store_cli(app, pg_dsn, tmp_path)


def _json(result: Result) -> Any:
    return json.loads(ok(result))


def _stored_hash(dsn: str, key_id: str) -> bytes:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT key_hash FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()
    assert row is not None
    return bytes(row[0])


def test_keys_create_json_prints_the_key_once(cli: Any, pg_dsn: str) -> None:
    made = _json(cli("keys", "create", "--tenant", "acme", "--user", "alice", "--json"))
    assert made["key"].startswith(f"sk-strata-{made['key_id']}_")
    assert (made["tenant"], made["user"], made["role"], made["status"]) == (
        "acme", "alice", "user", "active",
    )  # fmt: skip
    assert made["models"] is None and made["limits"]["rpm"] is None
    assert _stored_hash(pg_dsn, made["key_id"]) == hash_key(made["key"])


def test_keys_create_sets_role_limits_scopes_and_expiry(cli: Any) -> None:
    made = _json(
        cli(
            "keys", "create", "--tenant", "acme", "--user", "ops", "--role", "admin",
            "--rpm", "60", "--tpm", "5000", "--concurrent", "3", "--daily-tokens", "100000",
            "--monthly-tokens", "900000", "--daily-cost", "2.5", "--monthly-cost", "40",
            "--models", "small, big", "--collections", "docs", "--expires-in-days", "7",
            "--name", "deploy bot", "--json",
        )
    )  # fmt: skip
    assert made["role"] == "admin" and made["name"] == "deploy bot"
    assert made["limits"] == {
        "rpm": 60, "tpm": 5000, "concurrent": 3, "daily_tokens": 100000,
        "monthly_tokens": 900000, "daily_cost_usd": 2.5, "monthly_cost_usd": 40.0,
    }  # fmt: skip
    assert made["models"] == ["small", "big"] and made["collections"] == ["docs"]
    expires = datetime.fromisoformat(made["expires_at"])
    assert timedelta(days=6.9) < expires - datetime.now(UTC) <= timedelta(days=7)


def test_keys_create_text_says_to_store_the_key(cli: Any) -> None:
    out = ok(cli("keys", "create", "--tenant", "acme", "--user", "alice"))
    keys = [word for word in out.split() if word.startswith("sk-strata-")]
    assert len(keys) == 1 and "not shown again" in out


def test_keys_list_shows_keys_but_no_secrets(cli: Any) -> None:
    a = _json(cli("keys", "create", "--tenant", "acme", "--user", "alice", "--json"))
    b = _json(cli("keys", "create", "--tenant", "globex", "--user", "bob", "--json"))
    listed = _json(cli("keys", "list", "--json"))
    assert [k["key_id"] for k in listed] == [a["key_id"], b["key_id"]]
    assert [k["key_id"] for k in _json(cli("keys", "list", "--tenant", "globex", "--json"))] == [
        b["key_id"]
    ]
    text = ok(cli("keys", "list"))
    assert a["key_id"] in text and "KEY ID" in text
    for output in (text, json.dumps(listed)):
        assert a["key"] not in output and a["key"].split("_", 1)[1] not in output


def test_keys_revoke_and_rotate(cli: Any) -> None:
    first = _json(cli("keys", "create", "--tenant", "acme", "--user", "alice", "--json"))
    rotated = _json(cli("keys", "rotate", first["key_id"], "--json"))
    assert rotated["key_id"] != first["key_id"] and rotated["key"] != first["key"]
    assert "Revoked" in ok(cli("keys", "revoke", rotated["key_id"]))
    statuses = {k["key_id"]: k["status"] for k in _json(cli("keys", "list", "--json"))}
    assert statuses == {first["key_id"]: "revoked", rotated["key_id"]: "revoked"}


def test_unknown_key_id_fails_with_one_line(cli: Any) -> None:
    result = cli("keys", "revoke", "abcdefghijkl")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "abcdefghijkl" in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tenant", "bad name", "--user", "alice"], "tenant"),
        (["--tenant", "acme", "--user", "alice", "--models", ","], "models"),
        (["--tenant", "acme", "--user", "alice", "--rpm", "-1"], "--rpm"),
        (["--tenant", "acme", "--user", "alice", "--role", "root"], "--role"),
    ],
)
def test_bad_options_exit_2_naming_the_option(cli: Any, args: list[str], needle: str) -> None:
    result = cli("keys", "create", *args)
    assert result.exit_code == 2 and needle in result.output


def test_tenants_create_update_list(cli: Any) -> None:
    made = ok(cli("tenants", "create", "acme", "--require-dpa", "--rpm", "10", "--tpm", "99"))
    assert "acme" in made and "rpm=10" in made
    assert cli("tenants", "create", "acme").exit_code == 2  # exists already
    ok(cli("tenants", "update", "acme", "--no-require-dpa", "--daily-cost", "5"))
    (tenant,) = _json(cli("tenants", "list", "--json"))
    assert tenant["require_dpa"] is False
    assert {k: v for k, v in tenant["limits"].items() if v is not None} == {
        "rpm": 10, "tpm": 99, "daily_cost_usd": 5.0,
    }  # fmt: skip
    ok(cli("tenants", "update", "acme", "--clear-limits", "--concurrent", "2"))
    (tenant,) = _json(cli("tenants", "list", "--json"))
    assert {k: v for k, v in tenant["limits"].items() if v is not None} == {"concurrent": 2}
    assert "acme" in ok(cli("tenants", "list"))
    assert cli("tenants", "update", "initech", "--rpm", "1").exit_code == 1


def _write_ledger(settings: Settings, records: list[UsageRecord]) -> None:
    async def write() -> None:
        async with Database(settings, pool_size=1) as database:
            writer = LedgerWriter(database.pool, flush_interval_s=60)
            for rec in records:
                writer.record(rec)
            await writer.aclose()

    asyncio.run(write())


def _usage(n: int, user: str, cost: float, days_ago: int = 0) -> UsageRecord:
    return UsageRecord(
        request_id=f"r{n}",
        at=datetime.now(UTC) - timedelta(days=days_ago),
        tenant="acme",
        user=user,
        key_id="k",
        model="small",
        prompt_tokens=10,
        completion_tokens=10,
        cost_usd=cost,
    )


def test_usage_report(cli: Any, pg_settings: Settings) -> None:
    old = _usage(3, "carol", 9.0, days_ago=40)
    _write_ledger(pg_settings, [_usage(1, "alice", 1.0), _usage(2, "bob", 3.0), old])
    report = _json(cli("usage", "report", "--by", "user", "--top", "2", "--json"))
    assert [r["key"] for r in report["rows"]] == ["acme/carol", "acme/bob"]
    since = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    report = _json(cli("usage", "report", "--since", since, "--json"))
    rows = [(r["key"], r["cost_share"]) for r in report["rows"]]
    assert rows == [("acme/bob", 0.75), ("acme/alice", 0.25)]
    spread = report["concentration"]
    assert spread["scopes"] == 2 and spread["top"][0][:3] == [0.01, 1, 0.75]
    assert spread["cost_per_request"][3] == 3.0  # the most expensive request
    text = ok(cli("usage", "report", "--by", "tenant"))
    assert "TENANT" in text and "acme" in text
    assert "top 5% of tenants (1 of 1) = 100.0% of cost" in text
    assert cli("usage", "report", "--since", "2025-13-01").exit_code == 2
    assert cli("usage", "report", "--by", "region").exit_code == 2


def test_usage_report_shows_the_idle_replica_time_of_the_window(
    cli: Any, pg_settings: Settings, pg_dsn: str
) -> None:
    _write_ledger(pg_settings, [_usage(1, "alice", 1.0)])  # the store, migrated
    old = datetime.now(UTC) - timedelta(days=40)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "INSERT INTO replica_time (at, upstream, replica_s, idle_s, replica_cost_usd, "
            "idle_cost_usd) VALUES (now(), 'engine', 600, 150, 1.2, 0.3), "
            "(%s, 'engine', 3600, 3600, 7.2, 7.2)",
            (old,),
        )
    since = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    text = ok(cli("usage", "report", "--since", since))
    assert "idle replica time on engine: 150 s of 600 s (25.0%) = $0.3000 of $1.2000" in text
    (replica,) = _json(cli("usage", "report", "--json"))["replicas"]
    assert replica["idle_s"] == 3750 and replica["idle_share"] == pytest.approx(3750 / 4200)


def test_config_file_selects_the_database(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "strata.yaml"
    config.write_text(yaml.safe_dump({"store": {"dsn": pg_dsn}, "data_dir": str(tmp_path)}))
    monkeypatch.setenv("STRATA_CONFIG", str(config))  # load_settings sets it; restored after
    monkeypatch.delenv("STRATA_STORE__DSN", raising=False)
    result = CliRunner().invoke(app, ["tenants", "create", "viaconfig", "--config", str(config)])
    assert result.exit_code == 0, result.output
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT name FROM tenants").fetchall() == [("viaconfig",)]
    missing = CliRunner().invoke(app, ["tenants", "list", "--config", str(tmp_path / "nope")])
    assert missing.exit_code == 2


def test_commands_attach_to_a_running_embedded_server(
    pg_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"STRATA_DATA_DIR": str(pg_server.pgdata.parent), "STRATA_STORE__DSN": None}
    env["STRATA_CONFIG"] = None
    result = CliRunner().invoke(app, ["tenants", "list", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert pg_server.running  # the command did not start it, so it did not stop it


def test_unreachable_database_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    dsn = f"host={tmp_path} dbname=nothing user=nobody connect_timeout=2"
    env = {"STRATA_STORE__DSN": dsn, "STRATA_CONFIG": None}
    result = CliRunner().invoke(app, ["keys", "list"], env=env)
    assert result.exit_code == 1 and result.stderr.startswith("PostgreSQL: ")
    assert result.stderr.strip().count("\n") == 0
