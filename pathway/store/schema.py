"""The store's schema, versioned with Alembic (`pathway/store/migrations/versions/`).

`upgrade(engine, path)` brings a database to the newest revision (an empty one is created from
the tables of `pathway.store.db` and stamped, as Alembic's cookbook does; a test checks that this
equals running every migration): `pathway db upgrade` runs it, and
`pathway serve` runs it once before its workers start (workers never create tables; they
check the revision and refuse to start on an older one). A database of release 0.1.0 (tables
made by create_all, no revision) is stamped `0001` first and upgraded from there, rows kept.
Concurrent upgrades wait for each other (a file lock beside an SQLite file, an advisory lock
on PostgreSQL).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"
FIRST = "0001"
PG_LOCK_KEY = 0x0D_9A_7B_01  # pg_advisory_lock key of the store's migrations


def _config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    head_rev = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head_rev is not None
    return head_rev


def current(connection: Connection) -> str | None:
    """The database's revision: None for an empty database, FIRST for one of release 0.1.0."""
    rev = MigrationContext.configure(connection).get_current_revision()
    if rev is None and inspect(connection).has_table("outbox"):
        return FIRST
    return rev


@contextmanager
def _lock(engine: Engine, sqlite_path: str | None) -> Iterator[Connection]:
    if sqlite_path is not None:
        fd = os.open(sqlite_path + ".migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with engine.connect() as conn:
                yield conn
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
            conn.commit()
        try:
            yield conn
        finally:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                conn.commit()


def upgrade(
    engine: Engine, sqlite_path: str | None, target: str = "head"
) -> tuple[str | None, str]:
    """Migrate to `target`; returns (revision before, revision after)."""
    with _lock(engine, sqlite_path) as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        if before is None and inspect(conn).has_table("outbox"):
            command.stamp(_config(conn), FIRST)  # release 0.1.0: its tables are revision 0001
            conn.commit()
            before = FIRST
        if before is None and target == "head":
            from pathway.store.db import metadata

            metadata.create_all(conn)
            command.stamp(_config(conn), "head")
        else:
            command.upgrade(_config(conn), target)
        conn.commit()
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after or ""
