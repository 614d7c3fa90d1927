"""Several pipeline workers on the same sources (`strata.pipeline.service` with
`strata.pipeline.ownership`): real `strata pipeline run` processes on one primary and one store;
the owner is killed with SIGKILL while changes keep arriving."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
import yaml

from strata.pipeline.chunker import Chunker
from strata.pipeline.ownership import Owner, owner
from tests.pipeline.conftest import TICKETS_DDL, run_sql, source_settings
from tests.pipeline.support import wait_index_equals_table
from tests.support.waiting import until

T = TypeVar("T")
WORKERS = ("worker-a", "worker-b")
WORDS = ["login", "invoice", "refund", "export", "password", "timeout", "crash", "email", "sync"]


class Writer(threading.Thread):
    """Commits one change per transaction, each touching exactly one row of the table (so each
    is streamed, and must be applied, exactly once): text edits, metadata-only edits, inserts
    and deletes, about 30 a second."""

    def __init__(self, dsn: str, ids: list[int]) -> None:
        super().__init__(daemon=True)
        self._dsn, self._ids = dsn, list(ids)
        self._rng = random.Random(9)
        self.stop = threading.Event()
        self.transactions = 0

    def run(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                assert conn.execute(*self._change()).rowcount == 1
                self.transactions += 1
                self.stop.wait(0.03)

    def _change(self) -> tuple[str, tuple[object, ...]]:
        kind, target = self._rng.random(), self._rng.choice(self._ids)
        if kind < 0.4:
            return "UPDATE tickets SET body = %s WHERE id = %s", (self._sentence(), target)
        if kind < 0.7:
            status = self._rng.choice(["open", "closed", "pending"])
            return "UPDATE tickets SET status = %s WHERE id = %s", (status, target)
        if kind < 0.9 or len(self._ids) < 10:
            self._ids.append(max(self._ids) + 1)
            values = (self._ids[-1], self._sentence(), self._sentence())
            return "INSERT INTO tickets VALUES (%s, 'acme', %s, %s)", values
        self._ids.remove(target)
        return "DELETE FROM tickets WHERE id = %s", (target,)

    def _sentence(self) -> str:
        return " ".join(self._rng.choice(WORDS) for _ in range(self._rng.randint(4, 12))) + "."


@pytest.mark.slow
def test_two_workers_apply_each_change_once_and_one_takes_over_when_the_owner_is_killed(
    tmp_path: Path, primary_dsn: str, store_dsn: str, chunker: Chunker
) -> None:
    run_sql(primary_dsn, TICKETS_DDL)
    seed = [(i, f"Ticket {i}", f"Body of ticket {i}.") for i in range(1, 31)]
    with psycopg.connect(primary_dsn, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany("INSERT INTO tickets VALUES (%s, 'acme', %s, %s)", seed)
    config = _config(tmp_path, primary_dsn, store_dsn)
    logs = {w: tmp_path / f"{w}.log" for w in WORKERS}
    workers = {w: _start(config, w, logs[w]) for w in WORKERS}
    writer = Writer(primary_dsn, [i for i, _, _ in seed])
    try:
        first = until(lambda: _backfilled_owner(store_dsn), "no worker backfilled", 120.0)
        (second,) = set(WORKERS) - {first.worker}
        until(lambda: "stands by" in logs[second].read_text(), f"{second} is not standing by", 60.0)
        writer.start()
        until(lambda: _applied(store_dsn) >= 20, "the owner applied nothing", 60.0)
        workers[first.worker].send_signal(signal.SIGKILL)  # mid-stream: the writer goes on
        killed_at = time.monotonic()
        workers[first.worker].wait(10)
        taken = until(lambda: _live_owner(store_dsn, second), f"{second} never took over", 10.0)
        took_s = time.monotonic() - killed_at
        applied = _applied(store_dsn)
        until(lambda: _applied(store_dsn) >= applied + 20, f"{second} applies nothing", 60.0)
        writer.stop.set()
        writer.join()
        source = source_settings(primary_dsn, metadata_columns=["status"])
        wait_index_equals_table(primary_dsn, store_dsn, source, chunker)
        samples, distinct = _freshness_samples(store_dsn)
    finally:
        writer.stop.set()
        _stop(workers.values())
    assert took_s < 5.0, f"hand-over took {took_s:.1f} s"
    assert (samples, distinct) == (writer.transactions, writer.transactions)  # each once
    with psycopg.connect(store_dsn) as conn:
        assert owner(conn, "tickets") == Owner(second, taken.since, False, 2)  # stopped now
    assert workers[second].returncode == 0, logs[second].read_text()


# --- helpers -----------------------------------------------------------------------------------


def _config(tmp_path: Path, primary_dsn: str, store_dsn: str) -> Path:
    path = tmp_path / "strata.yaml"
    source = {
        "name": "tickets", "dsn": primary_dsn, "table": "public.tickets",
        "text_columns": ["title", "body"], "metadata_columns": ["status"],
        "tenant_column": "org", "collection": "support",
    }  # fmt: skip
    pipeline = {"sources": [source], "worker": {"poll_interval_s": 0.5}}
    data = {"data_dir": str(tmp_path), "store": {"dsn": store_dsn}, "pipeline": pipeline}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _start(config: Path, worker: str, log: Path) -> subprocess.Popen[bytes]:
    code = "from strata.pipeline.commands import pipeline_app; pipeline_app()"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STRATA_PIPELINE__WORKER__ID": worker}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, "run", "--config", str(config)],
            stdout=out,
            stderr=out,
            env=env,
        )


def _stop(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _backfilled_owner(store_dsn: str) -> Owner | None:
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('pipeline_owners')").fetchone() == (None,):
            return None
        row = conn.execute(
            "SELECT backfilled_at FROM pipeline_sources WHERE name = 'tickets'"
        ).fetchone()
        held = owner(conn, "tickets")
    return held if row and row[0] and held and held.live else None


def _live_owner(store_dsn: str, worker: str) -> Owner | None:
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        held = owner(conn, "tickets")
    return held if held and held.live and held.worker == worker else None


def _applied(store_dsn: str) -> int:
    return _freshness_samples(store_dsn)[0]


def _freshness_samples(store_dsn: str) -> tuple[int, int]:
    """Freshness samples written (one per source transaction applied), and how many distinct
    source commits they are of."""
    with psycopg.connect(store_dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT commit_at) FROM pipeline_freshness"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
