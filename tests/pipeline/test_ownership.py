"""One owner per source among pipeline workers (`strata.pipeline.ownership`): the advisory lock
in the store, hand-over when the owner's session ends, the fence on index writes, what status
shows, and the worker settings."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner, Result

from strata.config import PipelineSettings, PipelineWorkerSettings, Settings, StoreSettings
from strata.pipeline.chunker import Chunker
from strata.pipeline.commands import pipeline_app
from strata.pipeline.embedder import MiniLMEmbedder
from strata.pipeline.errors import PipelineError
from strata.pipeline.metrics import PipelineMetrics
from strata.pipeline.ownership import Owner, Ownership, SourceLock, owner, owning, worker_id
from strata.pipeline.service import PipelineService
from strata.pipeline.source import SourcePipeline, slot_name
from tests.pipeline.conftest import TICKETS_DDL, run_sql, source_settings
from tests.pipeline.support import HashEmbedder, assert_index_matches
from tests.support.waiting import until

T = TypeVar("T")


def end_session(store_dsn: str, ownership: Ownership) -> None:
    """What the store sees when the owner's process dies or its network goes: the session
    ends (here from the server's side, so the owner's objects live on in this process)."""
    pid = ownership.conn.info.backend_pid
    with psycopg.connect(store_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.fixture
def locks(store_dsn: str) -> Iterator[Callable[..., SourceLock]]:
    """`locks(worker, source="tickets")`: a SourceLock on this test's store, released after."""
    made: list[SourceLock] = []

    def make(worker: str, source: str = "tickets", **kwargs: object) -> SourceLock:
        lock = SourceLock(store_dsn, source, worker, **kwargs)  # type: ignore[arg-type]
        made.append(lock)
        return lock

    yield make
    for lock in made:
        lock.release()


def test_one_worker_owns_a_source_until_its_session_ends_then_another_takes_it(
    store_dsn: str, locks: Callable[..., SourceLock]
) -> None:
    metrics = PipelineMetrics()
    a, b = locks("worker-a", metrics=metrics), locks("worker-b", metrics=metrics)
    owned = a.try_acquire()
    assert owned is not None and owned.worker == "worker-a"
    assert a.try_acquire() is owned  # asking again changes nothing
    assert b.try_acquire() is None and b.try_acquire() is None
    assert locks("worker-b", "notes").try_acquire() is not None  # one lock per source
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        assert owner(conn, "tickets") == Owner("worker-a", owned.since, True, 1)
        assert owner(conn, "nothing") is None
        end_session(store_dsn, owned)
        until(lambda: not _live(conn), "the lock outlived its session")
        assert owner(conn, "tickets") == Owner("worker-a", owned.since, False, 1)
        taken = until(b.try_acquire, "worker-b never took the source over")
        held = owner(conn, "tickets")
    assert held == Owner("worker-b", taken.since, True, 2) and taken.since > owned.since
    assert b.holder() == held
    assert metrics.ownership_changes.labels("tickets", "acquired")._value.get() == 2
    assert metrics.owned.labels("tickets")._value.get() == 1
    b.release()
    assert metrics.ownership_changes.labels("tickets", "released")._value.get() == 1
    assert metrics.owned.labels("tickets")._value.get() == 0


def test_an_owner_cut_off_from_the_store_commits_nothing_and_its_successor_takes_the_slot(
    primary_dsn: str,
    store_dsn: str,
    minilm: MiniLMEmbedder,
    chunker: Chunker,
    locks: Callable[..., SourceLock],
) -> None:
    run_sql(primary_dsn, TICKETS_DDL, "INSERT INTO tickets VALUES (1, 'acme', 'Hi', 'Help me.')")
    source = source_settings(primary_dsn)
    settings = PipelineSettings(sources=[source], group_transactions=1)
    first = locks("worker-a").try_acquire()
    assert first is not None
    old = SourcePipeline(source, settings, store_dsn, minilm, chunker, ownership=first)
    new: SourcePipeline | None = None
    try:
        old.open()
        old.start()  # backfills row 1, then streams
        old_reader = _slot_reader(primary_dsn)
        run_sql(primary_dsn, "INSERT INTO tickets VALUES (2, 'acme', 'Yo', 'Me too.')")
        assert old.step(10.0) is not None
        end_session(store_dsn, first)  # its stream on the primary lives on
        run_sql(primary_dsn, "INSERT INTO tickets VALUES (3, 'acme', 'Hey', 'And me.')")
        with pytest.raises(psycopg.OperationalError):
            old.step(10.0)  # it reads row 3 but cannot write it: its session is gone
        assert _freshness_rows(store_dsn) == 1 and _documents(store_dsn) == ["1", "2"]
        second = until(locks("worker-b").try_acquire, "worker-b never took the source")
        new = SourcePipeline(source, settings, store_dsn, minilm, chunker, ownership=second)
        new.open()  # terminates the old owner's walsender, which still holds the slot
        new.start()  # from the slot's confirmed position: row 3 comes again
        assert new.step(10.0) is not None
        assert_index_matches(new, primary_dsn, store_dsn)
        assert _freshness_rows(store_dsn) == 2  # each transaction applied once
        assert _slot_reader(primary_dsn) not in (None, old_reader)
    finally:
        old.close()
        if new is not None:
            new.close()


def test_status_shows_the_owner_and_backfill_refuses_an_owned_source(
    tmp_path: Path, primary_dsn: str, store_dsn: str, locks: Callable[..., SourceLock]
) -> None:
    run_sql(primary_dsn, TICKETS_DDL)
    config = _config(tmp_path, primary_dsn, store_dsn)
    assert "owner:           none yet" in _invoke(config, "status").output
    held = locks("worker-a").try_acquire()
    assert held is not None
    text = _invoke(config, "status").output
    assert f"owner:           worker worker-a since {held.since} (0 hand-over(s))" in text
    report = json.loads(_invoke(config, "status", "--json").stdout)[0]
    assert report["owner"]["worker"] == "worker-a" and report["owner"]["live"] is True
    refused = _invoke(config, "backfill")
    assert refused.exit_code == 1
    assert "pipeline source 'tickets' is streamed by worker worker-a" in refused.output
    locks("worker-a").release()  # a lock on another session: no effect
    assert "owner:           worker worker-a" in _invoke(config, "status").output
    end_session(store_dsn, held)
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        until(lambda: not _live(conn), "the lock outlived its session")
    gone = _invoke(config, "status").output
    assert f"none: worker worker-a (owner since {held.since}) is gone" in gone


def test_owning_is_exclusive_for_one_off_jobs(store_dsn: str) -> None:
    settings = PipelineWorkerSettings(id="job")
    with owning(store_dsn, "tickets", settings) as ownership:
        assert ownership.worker == "job" and not ownership.conn.closed
        with (
            pytest.raises(PipelineError, match="is streamed by worker job"),
            owning(store_dsn, "tickets", PipelineWorkerSettings(id="other")),
        ):
            pass
    assert ownership.conn.closed  # the lock went with its session
    with owning(store_dsn, "tickets", PipelineWorkerSettings(id="other")) as again:
        assert again.worker == "other"


def test_worker_settings_are_checked_and_name_the_fix(primary_dsn: str) -> None:
    source = source_settings(primary_dsn)
    with pytest.raises(ValidationError, match=r"pipeline.worker.sources: no pipeline source"):
        PipelineSettings(sources=[source], worker={"sources": ["nope"]})
    with pytest.raises(ValidationError, match="at least 1 item"):
        PipelineWorkerSettings(sources=[])
    with pytest.raises(ValidationError, match="pattern"):
        PipelineWorkerSettings(id="has space")
    with pytest.raises(ValidationError, match="greater than 0"):
        PipelineWorkerSettings(poll_interval_s=0)
    assert worker_id(PipelineWorkerSettings(id="w1")) == "w1"
    assert worker_id(PipelineWorkerSettings()).endswith(f"-{os.getpid()}")


def test_a_worker_runs_only_its_sources(primary_dsn: str, tmp_path: Path) -> None:
    names = ["tickets", "notes", "faq"]
    sources = [source_settings(primary_dsn, name=n) for n in names]
    pipeline = PipelineSettings(sources=sources, worker={"sources": ["notes", "faq"], "id": "w"})
    settings = Settings(data_dir=tmp_path, pipeline=pipeline, store=StoreSettings())
    service = PipelineService(settings, "", HashEmbedder())
    assert [s.name for s in service.sources] == ["notes", "faq"] and service.worker == "w"
    chosen = PipelineService(settings, "", HashEmbedder(), sources=["tickets"])  # --source
    assert [s.name for s in chosen.sources] == ["tickets"]


# --- helpers -----------------------------------------------------------------------------------


def _live(conn: psycopg.Connection) -> bool:
    held = owner(conn, "tickets")
    return held is not None and held.live


def _freshness_rows(store_dsn: str) -> int:
    with psycopg.connect(store_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pipeline_freshness").fetchone()
    assert row is not None
    return int(row[0])


def _documents(store_dsn: str) -> list[str]:
    with psycopg.connect(store_dsn) as conn:
        rows = conn.execute("SELECT key FROM pipeline_documents ORDER BY key").fetchall()
    return [r[0] for r in rows]


def _slot_reader(primary_dsn: str) -> int | None:
    with psycopg.connect(primary_dsn) as conn:
        row = conn.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
            (slot_name("tickets"),),
        ).fetchone()
    return None if row is None else row[0]


def _config(tmp_path: Path, primary_dsn: str, store_dsn: str) -> Path:
    path = tmp_path / "strata.yaml"
    source = {
        "name": "tickets", "dsn": primary_dsn, "table": "public.tickets",
        "text_columns": ["title", "body"], "tenant_column": "org", "collection": "support",
    }  # fmt: skip
    data = {
        "data_dir": str(tmp_path),
        "store": {"dsn": store_dsn},
        "pipeline": {"sources": [source]},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(pipeline_app, [*args, "--config", str(config)])
