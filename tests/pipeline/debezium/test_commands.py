"""`strata pipeline …` with a `kind: debezium` source, as users run it: `run` killed with
SIGKILL while Debezium keeps publishing, then restarted; `status` showing the consumer's lag;
`backfill` pointing at Debezium's snapshot; config errors naming the field."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from strata.config import PipelineSourceSettings
from strata.pipeline.chunker import Chunker
from strata.pipeline.commands import pipeline_app
from strata.pipeline.mapping import Mapper
from tests.pipeline.conftest import TICKETS_DDL, run_sql
from tests.pipeline.debezium.changes import Changes
from tests.pipeline.debezium.conftest import STREAM, SUBJECT, Publisher
from tests.pipeline.debezium.debezium_format import EventWriter
from tests.pipeline.support import expected_view, index_view

WORDS = ["login", "invoice", "refund", "export", "password", "timeout", "crash", "sync"]
TYPES = {"id": 20, "priority": 23}  # what the metadata typing needs of the catalog


def _config(tmp_path: Path, nats_url: str, store_dsn: str) -> Path:
    path = tmp_path / "strata.yaml"
    source = {
        "name": "tickets", "kind": "debezium", "table": "public.tickets",
        "primary_key": ["id"], "text_columns": ["title", "body"],
        "metadata_columns": ["status", "priority"], "tenant_column": "org",
        "collection": "support",
        "broker": {"kind": "nats", "url": nats_url, "stream": STREAM, "subject": SUBJECT},
    }  # fmt: skip
    data = {"data_dir": str(tmp_path), "store": {"dsn": store_dsn},
            "pipeline": {"sources": [source]}}  # fmt: skip
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    code = "from strata.pipeline.commands import pipeline_app; pipeline_app()"
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, "run", "--config", str(config)],
            stdout=out, stderr=out, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))).capitalize() + "."


def _debezium(changes: Changes, stop: threading.Event, rng: random.Random) -> None:
    """Changes on the primary, each published as Debezium would, until stopped."""
    next_id = 100
    with psycopg.connect(changes.primary_dsn, autocommit=True) as conn:
        while not stop.is_set():
            ids = [r[0] for r in conn.execute("SELECT id FROM tickets").fetchall()]
            kind, target = rng.random(), rng.choice(ids) if ids else None
            if kind < 0.4 and target is not None:
                changes.commit(changes.update(target, body=_sentence(rng) * 3))
            elif kind < 0.7 and target is not None:
                changes.commit(changes.update(target, status=rng.choice(["open", "closed"]),
                                              org=rng.choice(["acme", "globex"])))  # fmt: skip
            elif kind < 0.9 or target is None:
                next_id += 1
                row = {"org": "acme", "title": _sentence(rng), "body": _sentence(rng)}
                changes.commit(changes.insert(id=next_id, status="open", priority=1, **row))
            else:
                changes.commit(changes.delete(target))
            time.sleep(0.05)


def _applied(store_dsn: str) -> int:
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT applied_lsn FROM pipeline_sources WHERE name = 'tickets'")
        found = row.fetchone()
    return int(found[0]) if found else 0


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_loses_nothing_and_repeats_nothing(
    tmp_path: Path, primary_dsn: str, store_dsn: str, jetstream: Publisher, nats_server: Any,
    chunker: Chunker,
) -> None:  # fmt: skip
    run_sql(primary_dsn, TICKETS_DDL)
    rng = random.Random(9)
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        for i in range(1, 31):
            conn.execute("INSERT INTO tickets VALUES (%s, 'acme', %s, %s, 'open', 2)",
                         (i, _sentence(rng), _sentence(rng) * 4))  # fmt: skip
    changes = Changes(primary_dsn, jetstream, EventWriter())
    changes.snapshot()
    config, log = _config(tmp_path, nats_server.url, store_dsn), tmp_path / "pipeline.log"
    stop = threading.Event()
    writer = threading.Thread(target=_debezium, args=(changes, stop, rng))
    process = _start(config, log)
    try:
        writer.start()
        _wait(lambda: _applied(store_dsn) > changes.published[29], 120, "nothing streamed")
        time.sleep(1.0)  # mid-stream: Debezium keeps publishing
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        time.sleep(0.5)  # published while strata is down
        process = _start(config, log)
        time.sleep(2.0)
        stop.set()
        writer.join()
        _wait(lambda: _applied(store_dsn) == changes.published[-1], 120, "did not catch up")
    finally:
        stop.set()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
    assert process.returncode == 0, log.read_text()
    source = PipelineSourceSettings.model_validate(
        yaml.safe_load(config.read_text())["pipeline"]["sources"][0]
    )
    mapper = Mapper(source, ("id",), TYPES)
    assert index_view(store_dsn) == expected_view(primary_dsn, mapper, chunker)
    with psycopg.connect(store_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pipeline_freshness").fetchone()
    assert row is not None and row[0] == changes.commits  # each transaction applied once


def test_status_shows_the_consumer_lag_and_backfill_points_at_debezium(
    tmp_path: Path, primary_dsn: str, store_dsn: str, jetstream: Publisher, nats_server: Any,
    make_debezium: Any,
) -> None:  # fmt: skip
    run_sql(primary_dsn, TICKETS_DDL)
    make_debezium(name="tickets")  # registers the source and its durable consumer
    changes = Changes(primary_dsn, jetstream, EventWriter())
    for i in range(3):
        changes.commit(changes.insert(id=i, org="acme", title="T", body="B.", status="open",
                                      priority=1))  # fmt: skip
    config = _config(tmp_path, nats_server.url, store_dsn)
    status = CliRunner().invoke(pipeline_app, ["status", "--config", str(config)])
    assert status.exit_code == 0, status.output
    assert "consumer:        3 messages behind (3 not yet delivered" in status.output
    backfill = CliRunner().invoke(pipeline_app, ["backfill", "--config", str(config)])
    assert backfill.exit_code == 0, backfill.output
    assert "Debezium's snapshot is its backfill" in backfill.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"broker": None}, "kind debezium needs broker"),
        ({"primary_key": []}, "kind debezium needs primary_key"),
        ({"row_filter": "status <> 'spam'"}, "row_filter needs the primary"),
        ({"dsn": "postgresql://db/app"}, "dsn is not used by kind debezium"),
        ({"broker": {"kind": "nats", "url": "nats://h:4222", "stream": "S"}},
         "broker.subject is required"),
        ({"broker": {"kind": "redis", "url": "nats://h:4222", "stream": "S"}},
         "broker.url must start with"),
        ({"broker": {"kind": "kafka", "url": "x", "stream": "S"}},
         "pipeline.sources.0.broker.kind"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    config = _config(tmp_path, "nats://127.0.0.1:4222", "postgresql://unused")
    data = yaml.safe_load(config.read_text())
    data["pipeline"]["sources"][0].update(change)
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(pipeline_app, ["status", "--config", str(config)])
    assert result.exit_code == 2 and message in result.output, result.output
