"""The store's schema upgrades (Alembic): a database of release 0.1.0 (kept as a fixture, made by
that release's code) keeps its rows; every migration from empty gives the same schema as the
tables the code declares; workers opened without migration refuse an old store; audit rows are
written at once. The same on PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pg_server import PgServer, pg_bin
from sqlalchemy import create_engine, inspect, text

from pathway.cli import main as cli
from pathway.store import db, schema
from pathway.store.db import Store, StoreError

RELEASE_0_1_0 = Path(__file__).parent / "data" / "release-0.1.0.sqlite3"


def old_store(tmp_path: Path) -> str:
    path = tmp_path / "old.sqlite3"
    shutil.copy(RELEASE_0_1_0, path)
    return f"sqlite:///{path}"


def test_release_0_1_0_store_upgrades_and_keeps_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = old_store(tmp_path)
    with pytest.raises(StoreError, match="pathway db upgrade"):
        Store(url, migrate=False)  # a worker does not migrate: it says what to do
    monkeypatch.setenv("PATHWAY_DATABASE_URL", url)
    assert cli(["db", "upgrade"]) == 0
    assert f"from revision 0001 to {schema.head()}" in capsys.readouterr().out
    assert cli(["db", "upgrade"]) == 0
    assert "nothing to do" in capsys.readouterr().out

    store = Store(url, migrate=False)
    rows = {r["id"]: r for r in store.outbox_rows()}
    assert {i: r["status"] for i, r in rows.items()} == {1: "pending", 2: "dead", 3: "done"}
    assert rows[2]["last_error"] == "POST answered 400: bad" and rows[2]["attempts"] == 1
    assert [r["action"] for r in store.audit_rows()] == ["patient-view", "apply"]
    assert len(store.feedback_rows()) == 1
    assert store.remember_jti("iss|jti-old", datetime(2099, 1, 1, tzinfo=UTC)) is False
    # The upgraded store works as a new one does.
    assert store.outbox_requeue(dead=True) == [2]
    assert cli(["outbox", "list", "--format", "json"]) == 0


def test_migrations_from_empty_equal_the_declared_tables(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    schema.upgrade(engine, None, target="0001")  # every migration, one by one
    schema.upgrade(engine, None, target="head")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == []
        assert schema.current(conn) == schema.head()
    engine.dispose()


def test_workers_refuse_a_store_not_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    with pytest.raises(StoreError, match=r"none \(empty\).*pathway db upgrade"):
        Store(url, migrate=False)
    Store(url)  # migrates (tests, embedded use); `pathway serve` does it before its workers
    Store(url, migrate=False)


def test_an_audit_row_survives_a_killed_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.sqlite3'}"
    Store(url)
    code = (
        "import os; from pathway.store.db import Store; "
        f"s = Store({url!r}); s.add_audit('patient-view', 'p9', {{'phase': 'assessment'}}); "
        "os._exit(9)"  # killed: no atexit, no flush
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    assert done.returncode == 9
    (row,) = Store(url).audit_rows()
    assert row["action"] == "patient-view" and "p9" not in row["subject_hash"]


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    if pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries here")
    with PgServer() as server:
        yield server


def test_postgres_upgrade_from_release_0_1_0_keeps_rows(pg: PgServer) -> None:
    engine = create_engine(pg.url)
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    schema.upgrade(engine, None, target="0001")
    with engine.begin() as c:  # release 0.1.0 had no version table: its tables only
        c.execute(text("DROP TABLE alembic_version"))
        c.execute(
            text(
                "INSERT INTO outbox (key, target, body, status, attempts, next_attempt_at, "
                "last_error, created_at) VALUES ('k', 'http://ehr/fhir', '{}', 'failed', 3, "
                "now(), 'POST answered 400: bad', now())"
            )
        )
        c.execute(
            text(
                "INSERT INTO audit (at, action, subject_hash, detail) "
                "VALUES (now(), 'apply', 'h', '{}')"
            )
        )
    store = Store(pg.url)  # migrates, under PostgreSQL's advisory lock
    (row,) = store.outbox_rows()
    assert row["status"] == "dead" and row["attempts"] == 3
    assert len(store.audit_rows()) == 1
    store.add_audit("patient-view", "p1", {})
    assert len(store.audit_rows()) == 2
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        assert "ix_outbox_status" in {i["name"] for i in inspect(conn).get_indexes("outbox")}
    store.close()
    Store(pg.url, migrate=False).close()
    engine.dispose()
