"""The two databases of a pipeline run, in one temp dir: an embedded PostgreSQL as the user's
primary (`wal_level = logical`, fsync off, like the tests) and strata's store (an embedded
PostgreSQL + pgvector with strata's migrations and production settings). Both are stopped and
the dir removed on exit."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from strata.config import Settings
from strata.store.database import Database, EmbeddedServer
from strata.store.logical import start_logical_primary


class Databases(NamedTuple):
    primary: str  # conninfo of the primary's `postgres` database
    store: str  # conninfo of strata's store, migrated


@contextmanager
def databases(prefix: str = "strata-bench-pipeline-") -> Iterator[Databases]:
    # Not 0700 under a private tmp root: as root, the servers run as the system user
    # `embedded_postgres`, which must be able to reach its data dirs.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with logical_primary(root / "primary") as primary, store(root / "store") as conninfo:
            yield Databases(primary, conninfo)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def logical_primary(pgdata: Path) -> Iterator[str]:
    server = start_logical_primary(pgdata)
    try:
        yield server.conninfo
    finally:
        server.stop()
        EmbeddedServer(pgdata, "", started_here=True).stop()  # if a restart left it up


@contextmanager
def store(data_dir: Path) -> Iterator[str]:
    with Database(Settings(data_dir=data_dir)) as database:
        yield database.conninfo
