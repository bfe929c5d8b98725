"""Durable store: feedback, audit, outbox and seen JWT ids. SQLite file by default, PostgreSQL by
URL (`PATHWAY_DATABASE_URL`), through SQLAlchemy Core. The schema is versioned with Alembic
(`pathway.store.schema`); the tables below mirror the newest revision.

The audit table holds what happened (service, phase, counts) and never patient identifiers in
clear: the patient is stored as a keyed hash so repeated evaluations can be related. Each audit
row is written when it happens (a killed worker loses none).

Outbox entries are `pending` (due, or waiting for their next attempt), `working` (claimed by a
worker under a lease; shown as pending), `done` or `dead` (refused for good, or out of attempts;
an operator retries or discards them).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

log = logging.getLogger("pathway.store")
metadata = MetaData()
JTI_PRUNE_SECONDS = 60.0
# Whether opening a store brings its schema up to date (under a lock). `pathway serve` migrates
# once before its workers start and turns this off, so workers only check the revision.
AUTO_MIGRATE = True

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(100), nullable=False),
    Column("card", String(100), nullable=False),
    Column("outcome", String(40), nullable=False),
    Column("body", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)
audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(40), nullable=False),
    Column("subject_hash", String(64), nullable=False),
    Column("detail", Text, nullable=False),
)
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, index=True),  # base|patient hash
    Column("target", String(500), nullable=False),  # the FHIR base URL
    Column("body", Text, nullable=False),  # the desired state (no tokens, ever)
    Column("status", String(20), nullable=False, index=True),  # pending|working|done|dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True)),
    Column("last_error", Text),  # the last error's diagnostics, without patient data
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("error_status", Integer),  # the last error's HTTP status (None: no answer)
    Column("error_interaction", String(200)),  # e.g. "transaction: POST CarePlan"
    Column("error_code", String(60)),  # the OperationOutcome's issue code
    Column("updated_at", DateTime(timezone=True)),
)
seen_jti = Table(
    "seen_jti",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    # SQLite: the rows live in the key's B-tree (one tree written per call, not two)
    sqlite_with_rowid=False,
)
health = Table(
    "health",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("checked_at", DateTime(timezone=True), nullable=False),
)
# The clinician app's server-side sessions (pathway/app/sessions.py; migration 0003).
app_session = Table(
    "app_session",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the cookie, hex
    Column("data", Text, nullable=False),  # Fernet token: encrypted JSON
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


class StoreError(RuntimeError):
    """The store cannot be read or written."""


@dataclass(frozen=True, slots=True)
class EntryError:
    """Why an outbox entry's last attempt failed, as an operator reads it (no patient data)."""

    http_status: int | None
    interaction: str
    issue_code: str | None
    diagnostics: str


def _engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 5, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def open_engine(url: str) -> tuple[Engine, str | None]:
    """An engine for `url` (the SQLite file's folder made) and the SQLite file's path, if any."""
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else None
    sqlite_path = path if path and path != ":memory:" else None
    if sqlite_path is not None:
        try:
            Path(sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store's folder: {e.strerror}") from e
    return _engine(url), sqlite_path


class _WriterLock:
    """Serialises SQLite writers of every process with flock: a waiting writer wakes the moment
    the lock is free, where SQLite's own busy handler would sleep whole milliseconds. A no-op
    for other databases (PostgreSQL handles concurrent writers itself)."""

    def __init__(self, path: str | None) -> None:
        self._fd: int | None = None
        self._local = threading.Lock()
        if path:
            self._fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        self._local.acquire()
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._local.release()


class Store:
    def __init__(self, url: str, secret: bytes | None = None, migrate: bool | None = None) -> None:
        """Open the store. `migrate` (default AUTO_MIGRATE): bring the schema up to date;
        otherwise a database not at the newest revision is refused (run `pathway db
        upgrade`)."""
        self.url = url
        db_path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else None
        self._sqlite_path = db_path if db_path and db_path != ":memory:" else None
        if self._sqlite_path is not None:
            try:  # the default ./var does not exist on a fresh clone
                Path(self._sqlite_path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the store's folder: {e.strerror}") from e
        self._writer = _WriterLock(self._sqlite_path)
        self._thread = threading.local()
        self._jti_pruned = time.monotonic()
        try:
            self.engine = _engine(url)
            # A store dropped without close() still closes its pooled connections.
            weakref.finalize(self, self.engine.dispose)
            self._check_schema(AUTO_MIGRATE if migrate is None else migrate)
        except (SQLAlchemyError, OSError) as e:
            raise StoreError(f"cannot open the store: {type(e).__name__}") from e
        self._secret = secret or os.urandom(32)

    def _check_schema(self, migrate: bool) -> None:
        from pathway.store import schema

        with self.engine.connect() as c:
            rev = schema.current(c)
        if rev == schema.head():
            return
        if migrate:
            schema.upgrade(self.engine, self._sqlite_path)
            return
        raise StoreError(
            f"the store's schema is at revision {rev or 'none (empty)'}, this release needs "
            f"{schema.head()}: run `pathway db upgrade`"
        )

    def subject_hash(self, patient_id: str) -> str:
        return hmac.new(self._secret, patient_id.encode(), hashlib.sha256).hexdigest()

    # --- health
    def writable(self) -> bool:
        try:
            with self.engine.begin() as c:
                now = datetime.now(UTC)
                if (
                    c.execute(
                        update(health).where(health.c.id == 1).values(checked_at=now)
                    ).rowcount
                    == 0
                ):
                    c.execute(insert(health).values(id=1, checked_at=now))
            return True
        except SQLAlchemyError:
            return False

    # --- feedback and audit
    def add_feedback(self, service_id: str, card: str, outcome: str, body: Any) -> int:
        try:
            with self.engine.begin() as c:
                result = c.execute(
                    insert(feedback).values(
                        service_id=service_id,
                        card=card,
                        outcome=outcome,
                        body=orjson.dumps(body).decode(),
                        received_at=datetime.now(UTC),
                    )
                )
                pk = result.inserted_primary_key
                return int(pk[0]) if pk else 0
        except SQLAlchemyError as e:
            raise StoreError(f"feedback not stored: {type(e).__name__}") from e

    def feedback_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(select(feedback).order_by(feedback.c.id))]

    def add_audit(self, action: str, patient_id: str, detail: dict[str, Any]) -> None:
        """Write an audit row now (one short transaction): a worker killed a moment later
        loses nothing. On SQLite a plain sqlite3 statement on the thread's connection."""
        at = datetime.now(UTC)
        subject = self.subject_hash(patient_id)
        body = orjson.dumps(detail).decode()
        if self._sqlite_path is not None:
            try:
                with self._writer:
                    self._sqlite().execute(
                        "INSERT INTO audit (at, action, subject_hash, detail) VALUES (?, ?, ?, ?)",
                        (_sqlite_time(at), action, subject, body),
                    )
            except sqlite3.Error as e:
                raise StoreError(f"audit row not written: {type(e).__name__}") from e
            return
        try:
            with self.engine.begin() as c:
                c.execute(
                    insert(audit).values(at=at, action=action, subject_hash=subject, detail=body)
                )
        except SQLAlchemyError as e:
            raise StoreError(f"audit row not written: {type(e).__name__}") from e

    def flush_audit(self) -> int:
        """Kept for callers of earlier releases: audit rows are no longer held back."""
        return 0

    def audit_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(select(audit).order_by(audit.c.id))]

    def close(self) -> None:
        conn = getattr(self._thread, "conn", None)
        if conn is not None:
            conn.close()
            self._thread.conn = None
        self.engine.dispose()

    # --- outbox
    def outbox_put(self, key: str, target: str, body: str) -> int:
        """Queue the latest desired state for (target, patient): a pending entry for the same
        key is replaced (only the newest state is worth writing)."""
        now = datetime.now(UTC)
        try:
            with self._writer, self.engine.begin() as c:
                c.execute(
                    delete(outbox).where(
                        outbox.c.key == key, outbox.c.status.in_(("pending", "dead"))
                    )
                )
                r = c.execute(
                    insert(outbox).values(
                        key=key,
                        target=target,
                        body=body,
                        status="pending",
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
                pk = r.inserted_primary_key
                return int(pk[0]) if pk else 0
        except SQLAlchemyError as e:
            raise StoreError(f"outbox write failed: {type(e).__name__}") from e

    def outbox_claim(
        self, lease_seconds: float = 120, limit: int = 10, only: int | None = None
    ) -> list[dict[str, Any]]:
        """Claim due entries (pending and due, or working with an expired lease): each entry
        is run by one worker at a time, and a killed worker's entry comes back after its
        lease. Entries of a key another worker is running wait."""
        now = datetime.now(UTC)
        claimed: list[dict[str, Any]] = []
        with self._writer, self.engine.begin() as c:
            busy = {
                r.key
                for r in c.execute(
                    select(outbox.c.key).where(
                        outbox.c.status == "working", outbox.c.lease_until >= now
                    )
                )
            }
            q = (
                select(outbox)
                .where(
                    ((outbox.c.status == "pending") & (outbox.c.next_attempt_at <= now))
                    | ((outbox.c.status == "working") & (outbox.c.lease_until < now))
                )
                .order_by(outbox.c.id)
                .limit(limit)
            )
            if only is not None:
                q = select(outbox).where(
                    outbox.c.id == only, outbox.c.status.in_(("pending", "working"))
                )
            for row in c.execute(q).fetchall():
                if row.key in busy and row.status != "working":
                    continue
                done = c.execute(
                    update(outbox)
                    .where(outbox.c.id == row.id, outbox.c.status == row.status)
                    .values(
                        status="working",
                        lease_until=now + timedelta(seconds=lease_seconds),
                        attempts=row.attempts + 1,
                    )
                )
                if done.rowcount == 1:
                    busy.add(row.key)
                    claimed.append({**row._mapping, "attempts": row.attempts + 1})
        return claimed

    def outbox_done(self, entry_id: int) -> None:
        with self._writer, self.engine.begin() as c:
            c.execute(
                update(outbox)
                .where(outbox.c.id == entry_id)
                .values(
                    status="done",
                    lease_until=None,
                    last_error=None,
                    error_status=None,
                    error_interaction=None,
                    error_code=None,
                    updated_at=datetime.now(UTC),
                )
            )

    def outbox_retry(
        self, entry_id: int, error: EntryError, delay_seconds: float, give_up: bool = False
    ) -> None:
        """Record a failed attempt: `pending` again after `delay_seconds`, or `dead`."""
        now = datetime.now(UTC)
        with self._writer, self.engine.begin() as c:
            c.execute(
                update(outbox)
                .where(outbox.c.id == entry_id)
                .values(
                    status="dead" if give_up else "pending",
                    lease_until=None,
                    last_error=error.diagnostics[:2000],
                    error_status=error.http_status,
                    error_interaction=error.interaction[:200],
                    error_code=(error.issue_code or "")[:60] or None,
                    next_attempt_at=now + timedelta(seconds=delay_seconds),
                    updated_at=now,
                )
            )

    def outbox_requeue(self, entry_id: int | None = None, dead: bool = False) -> list[int]:
        """An operator's retry: the entry (pending or dead), or every dead entry, is due now
        with its attempts counted from zero. Returns the ids requeued."""
        now = datetime.now(UTC)
        where: ColumnElement[bool]
        if entry_id is not None:
            where = (outbox.c.id == entry_id) & outbox.c.status.in_(("pending", "dead"))
        elif dead:
            where = outbox.c.status == "dead"
        else:
            return []
        with self._writer, self.engine.begin() as c:
            ids = [int(r.id) for r in c.execute(select(outbox.c.id).where(where))]
            if ids:
                c.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(ids))
                    .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now)
                )
        return ids

    def outbox_discard(self, entry_id: int) -> bool:
        """An operator's discard: the entry (not one a worker is running) is deleted."""
        with self._writer, self.engine.begin() as c:
            gone = c.execute(
                delete(outbox).where(outbox.c.id == entry_id, outbox.c.status != "working")
            ).rowcount
        return bool(gone)

    def outbox_list(self, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Entries for the operator, newest first, without their bodies (the desired state is
        patient data). `status` pending (includes working), done or dead."""
        cols = [c for c in outbox.c if c.name not in ("body", "key")]
        q = select(*cols).order_by(outbox.c.id.desc()).limit(limit)
        if status == "pending":
            q = q.where(outbox.c.status.in_(("pending", "working")))
        elif status is not None:
            q = q.where(outbox.c.status == status)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def outbox_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(select(outbox).order_by(outbox.c.id))]

    def outbox_depth(self) -> int:
        with self.engine.connect() as c:
            rows = c.execute(
                select(outbox.c.id).where(outbox.c.status.in_(("pending", "working")))
            ).fetchall()
            return len(rows)

    # --- JWT replay
    def remember_jti(self, key: str, expires_at: datetime) -> bool:
        """True the first time a key (issuer and jti) is seen before `expires_at`, the time until
        which it must be remembered; False when it is a replay. The key is stored as its SHA-256
        (64 hex characters): a long jti is never cut, so two that share a prefix stay two. On
        SQLite a plain sqlite3 statement (no ORM round trip): this is on every authenticated
        call."""
        key = hashlib.sha256(key.encode()).hexdigest()
        if self._sqlite_path is not None:
            return self._remember_jti_sqlite(key, expires_at)
        try:
            with self.engine.begin() as c:
                c.execute(insert(seen_jti).values(key=key, expires_at=expires_at))
        except IntegrityError:
            return False
        if self._prune_due():
            with self.engine.begin() as c:
                c.execute(delete(seen_jti).where(seen_jti.c.expires_at < datetime.now(UTC)))
        return True

    def _prune_due(self) -> bool:
        """Expired jti rows are deleted at most once a minute per process (a table scan)."""
        now = time.monotonic()
        if now - self._jti_pruned < JTI_PRUNE_SECONDS:
            return False
        self._jti_pruned = now
        return True

    def _sqlite(self) -> sqlite3.Connection:
        """This thread's plain sqlite3 connection (autocommit), for the hot-path writes."""
        conn: sqlite3.Connection | None = getattr(self._thread, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                str(self._sqlite_path), timeout=5, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._thread.conn = conn
        return conn

    def _remember_jti_sqlite(self, key: str, expires_at: datetime) -> bool:
        conn = self._sqlite()
        expires = _sqlite_time(expires_at)
        try:
            with self._writer:
                conn.execute("INSERT INTO seen_jti (key, expires_at) VALUES (?, ?)", (key, expires))
                if self._prune_due():
                    now = _sqlite_time(datetime.now(UTC))
                    conn.execute("DELETE FROM seen_jti WHERE expires_at < ?", (now,))
        except sqlite3.IntegrityError:
            return False
        except sqlite3.Error as e:
            raise StoreError(f"replay check failed: {type(e).__name__}") from e
        return True


def _sqlite_time(when: datetime) -> str:
    """SQLAlchemy's SQLite text form, "YYYY-MM-DD HH:MM:SS.ffffff" (it sorts as time does)."""
    return when.astimezone(UTC).isoformat(" ", "microseconds")[:26]
