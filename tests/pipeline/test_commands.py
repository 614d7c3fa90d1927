"""`strata pipeline …` as users run it: a real process, killed with SIGKILL mid-stream and
mid-reindex."""

from __future__ import annotations

import json
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

from strata.pipeline.chunker import Chunker
from strata.pipeline.commands import pipeline_app
from strata.pipeline.embedder import MINILM_NAME
from tests.pipeline.conftest import TICKETS_DDL, run_sql, source_settings
from tests.pipeline.support import (
    HashEmbedder,
    chunk_models,
    index_view,
    search_keys,
    wait_index_equals_table,
)

WORDS = [
    "login",
    "invoice",
    "refund",
    "export",
    "password",
    "dashboard",
    "timeout",
    "crash",
    "email",
    "sync",
    "report",
]


def _config(tmp_path: Path, primary_dsn: str, store_dsn: str) -> Path:
    path = tmp_path / "strata.yaml"
    source = {
        "name": "tickets", "dsn": primary_dsn, "table": "public.tickets",
        "text_columns": ["title", "body"], "metadata_columns": ["status", "priority"],
        "tenant_column": "org", "collection": "support",
    }  # fmt: skip
    data = {
        "data_dir": str(tmp_path),
        "store": {"dsn": store_dsn},
        "pipeline": {"sources": [source]},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    code = "from strata.pipeline.commands import pipeline_app; pipeline_app()"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, "run", "--config", str(config)],
            stdout=out,
            stderr=out,
            env=env,
        )


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))).capitalize() + "."


def _writer(dsn: str, stop: threading.Event, rng: random.Random) -> None:
    """A steady mix of text edits, non-text edits, inserts and deletes."""
    next_id = 1000
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            ids = [r[0] for r in conn.execute("SELECT id FROM tickets").fetchall()]
            kind = rng.random()
            target = rng.choice(ids) if ids else None
            if kind < 0.4 and target is not None:
                conn.execute(
                    "UPDATE tickets SET body = %s WHERE id = %s", (_sentence(rng) * 3, target)
                )
            elif kind < 0.7 and target is not None:
                conn.execute(
                    "UPDATE tickets SET status = %s, org = %s WHERE id = %s",
                    (rng.choice(["open", "closed"]), rng.choice(["acme", "globex"]), target),
                )
            elif kind < 0.9 or target is None:
                next_id += 1
                conn.execute(
                    "INSERT INTO tickets VALUES (%s, 'acme', %s, %s, 'open', 1)",
                    (next_id, _sentence(rng), _sentence(rng) * 4),
                )
            else:
                conn.execute("DELETE FROM tickets WHERE id = %s", (target,))
            time.sleep(0.05)


def _wait_applied(store_dsn: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM pipeline_freshness").fetchone()
            if row and row[0] > 0:
                return
            time.sleep(0.2)
    raise TimeoutError("the pipeline applied nothing")


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_leaves_index_equal_to_table(
    tmp_path: Path, primary_dsn: str, store_dsn: str, chunker: Chunker
) -> None:
    run_sql(primary_dsn, TICKETS_DDL)
    rng = random.Random(5)
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        for i in range(1, 41):
            conn.execute(
                "INSERT INTO tickets VALUES (%s, 'acme', %s, %s, 'open', 2)",
                (i, _sentence(rng), _sentence(rng) * 4),
            )
    config, log = _config(tmp_path, primary_dsn, store_dsn), tmp_path / "pipeline.log"
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(primary_dsn, stop, rng))
    process = _start(config, log)
    try:
        writer.start()
        _wait_applied(store_dsn)
        time.sleep(1.0)  # mid-stream: the writer keeps committing
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        time.sleep(0.5)  # changes committed while the pipeline is down
        process = _start(config, log)
        time.sleep(2.0)
        stop.set()
        writer.join()
        wait_index_equals_table(
            primary_dsn, store_dsn, source_settings(primary_dsn), chunker, timeout_s=60.0
        )
    finally:
        stop.set()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
    assert process.returncode == 0, log.read_text()


def test_status_reports_lag_freshness_and_dead_letters(
    tmp_path: Path, primary_dsn: str, store_dsn: str, make_pipeline: Any
) -> None:
    run_sql(primary_dsn, TICKETS_DDL, "INSERT INTO tickets VALUES (1, 'acme', 'Hi', 'Help me.')")
    pipeline = make_pipeline()
    pipeline.start()
    run_sql(primary_dsn, "INSERT INTO tickets VALUES (2, 'acme', 'Hi', 'Help me too.')")
    assert pipeline.step(10.0) is not None
    config = _config(tmp_path, primary_dsn, store_dsn)
    result = CliRunner().invoke(pipeline_app, ["status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "bytes behind" in result.output and "2 documents" in result.output
    assert "over 1 transactions" in result.output and "dead letters:    0" in result.output


def test_add_checks_the_table_and_names_bad_fields(tmp_path: Path, primary_dsn: str) -> None:
    run_sql(primary_dsn, "CREATE TABLE notes (id int, body text)")
    config = tmp_path / "strata.yaml"
    args = ["add", "--config", str(config), "--name", "notes", "--dsn", primary_dsn,
            "--table", "notes", "--collection", "kb", "--text-columns", "body",
            "--tenant", "acme"]  # fmt: skip
    refused = CliRunner().invoke(pipeline_app, args)
    assert refused.exit_code == 1 and "REPLICA IDENTITY FULL" in refused.output
    assert not config.exists()
    run_sql(primary_dsn, "ALTER TABLE notes ADD PRIMARY KEY (id)")
    added = CliRunner().invoke(pipeline_app, args)
    assert added.exit_code == 0, added.output
    assert yaml.safe_load(config.read_text())["pipeline"]["sources"][0]["table"] == "notes"
    bad = CliRunner().invoke(pipeline_app, [*args[:-2], "--tenant-column", "1x"])
    assert bad.exit_code == 2 and "tenant_column" in bad.output


def _invoke(config: Path, *args: str) -> Any:
    return CliRunner().invoke(pipeline_app, [*args, "--config", str(config)])


def test_reindex_switches_to_the_configured_model(
    tmp_path: Path, primary_dsn: str, store_dsn: str, pipeline_with: Any
) -> None:
    run_sql(primary_dsn, TICKETS_DDL, "INSERT INTO tickets VALUES (1, 'acme', 'Hi', 'Help me.')")
    pipeline_with(HashEmbedder()).start()  # indexed by another model; still streaming
    config = _config(tmp_path, primary_dsn, store_dsn)  # pipeline.embedder: the bundled MiniLM
    unknown = _invoke(config, "reindex", "--source", "nope")
    assert (
        unknown.exit_code == 2 and "--source: no pipeline source named ['nope']" in unknown.output
    )
    done = _invoke(config, "reindex", "--source", "tickets")
    assert done.exit_code == 0, done.output
    assert f"switched from test/word-hash-64 to {MINILM_NAME}" in done.output
    assert "1 chunk texts embedded (0 chunks built by an earlier run)" in done.output
    assert chunk_models(store_dsn) == {MINILM_NAME: 1}
    again = _invoke(config, "reindex", "--source", "tickets")
    assert again.exit_code == 0 and f"already serves {MINILM_NAME}" in again.output


def test_delete_tenant_reports_counts_and_keeps_the_tenant_out(
    tmp_path: Path, primary_dsn: str, store_dsn: str, pipeline_with: Any
) -> None:
    run_sql(
        primary_dsn,
        TICKETS_DDL,
        "INSERT INTO tickets VALUES (1, 'acme', 'Hi', 'Help me.'), (2, 'acme', 'Yo', 'Me too.'), "
        "(3, 'globex', 'Hey', 'And me.')",
    )
    pipeline_with(HashEmbedder()).start()
    config = _config(tmp_path, primary_dsn, store_dsn)
    blank = _invoke(config, "delete-tenant", "--tenant", " ")
    assert blank.exit_code == 2 and "tenant: give the tenant's name" in blank.output
    unknown = _invoke(config, "delete-tenant", "--tenant", "acme", "--source", "nope")
    assert unknown.exit_code == 2 and "--source" in unknown.output
    deleted = _invoke(config, "delete-tenant", "--tenant", "acme")
    assert deleted.exit_code == 0, deleted.output
    assert "from tickets: 2 documents, 2 chunks, 0 dead letters" in deleted.output
    assert "not indexed again" in deleted.output and sorted(index_view(store_dsn)) == ["3"]
    assert "excluded:        acme" in _invoke(config, "status").output
    lifted = _invoke(config, "include-tenant", "--tenant", "acme")
    assert lifted.exit_code == 0 and "lifted 1 exclusion(s) of tenant 'acme'" in lifted.output
    kept = _invoke(config, "delete-tenant", "--tenant", "globex", "--no-exclude", "--json")
    report = json.loads(kept.stdout)
    assert (report["documents"], report["excluded"]) == (1, False)
    assert "indexed again on their next change" in report["note"]


def _start_reindex(config: Path, log: Path) -> subprocess.Popen[bytes]:
    code = "from strata.pipeline.commands import pipeline_app; pipeline_app()"
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, "reindex", "--source", "tickets", "--config", str(config)],
            stdout=out,
            stderr=out,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )


def _wait_for_twins(store_dsn: str, model: str, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        built = chunk_models(store_dsn).get(model, 0)
        if built:
            return built
        time.sleep(0.1)
    raise TimeoutError("the reindex built nothing")


@pytest.mark.slow
def test_kill_9_mid_reindex_leaves_the_old_index_serving_and_a_rerun_finishes(
    tmp_path: Path, primary_dsn: str, store_dsn: str, pipeline_with: Any
) -> None:
    run_sql(primary_dsn, TICKETS_DDL)
    rng = random.Random(11)
    with psycopg.connect(primary_dsn, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO tickets VALUES (%s, %s, %s, %s, 'open', 1)",
            [(i, rng.choice(["acme", "globex"]), f"Ticket {i}", _sentence(rng))
             for i in range(1, 521)],  # three reindex batches of at most 256
        )  # fmt: skip
    old = HashEmbedder()
    pipeline_with(old).start()
    total = chunk_models(store_dsn)[old.model]
    before = search_keys(store_dsn, old, "acme", "refund invoice")
    config, log = _config(tmp_path, primary_dsn, store_dsn), tmp_path / "reindex.log"
    process = _start_reindex(config, log)
    try:
        _wait_for_twins(store_dsn, MINILM_NAME)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    built = chunk_models(store_dsn)[MINILM_NAME]
    assert 0 < built < total, log.read_text()
    assert chunk_models(store_dsn)[old.model] == total  # the old index: whole, and served
    assert search_keys(store_dsn, old, "acme", "refund invoice") == before
    finished = _invoke(config, "reindex", "--source", "tickets")
    assert finished.exit_code == 0, finished.output
    assert f"({built} chunks built by an earlier run), {total} vectors" in finished.output
    assert chunk_models(store_dsn) == {MINILM_NAME: total}
