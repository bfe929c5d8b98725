"""Durable store: feedback, audit, outbox and seen JWT ids. SQLite file by default, PostgreSQL by
URL (`PATHWAY_DATABASE_URL`), through SQLAlchemy Core.

The audit table holds what happened (service, phase, counts) and never patient identifiers in
clear: the patient is stored as a keyed hash so repeated evaluations can be related.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import hmac
import logging
import os
import sqlite3
import threading
import time
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

log = logging.getLogger("pathway.store")
metadata = MetaData()
AUDIT_BATCH = 200
AUDIT_FLUSH_SECONDS = 0.5
JTI_PRUNE_SECONDS = 60.0

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
    Column("status", String(20), nullable=False),  # pending | working | done | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
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


class StoreError(RuntimeError):
    """The store cannot be read or written."""


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
    def __init__(self, url: str, secret: bytes | None = None) -> None:
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
            metadata.create_all(self.engine)
        except (SQLAlchemyError, OSError) as e:
            raise StoreError(f"cannot open the store: {type(e).__name__}") from e
        self._secret = secret or os.urandom(32)
        self._audit_rows: list[dict[str, Any]] = []
        self._audit_lock = threading.Lock()
        self._audit_wakeup = threading.Event()
        self._closed = False
        threading.Thread(target=self._audit_writer, name="audit-writer", daemon=True).start()
        atexit.register(self.flush_audit)

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
        """Queue an audit row; rows are written in batches (one transaction per batch) so the
        hook's hot path does not wait for the disk. `flush_audit()` writes them now."""
        row = {
            "at": datetime.now(UTC),
            "action": action,
            "subject_hash": self.subject_hash(patient_id),
            "detail": orjson.dumps(detail).decode(),
        }
        with self._audit_lock:
            self._audit_rows.append(row)
            full = len(self._audit_rows) >= AUDIT_BATCH
        if full:
            self.flush_audit()
        else:
            self._audit_wakeup.set()

    def flush_audit(self) -> int:
        with self._audit_lock:
            rows, self._audit_rows = self._audit_rows, []
        if not rows:
            return 0
        try:
            with self._writer, self.engine.begin() as c:
                c.execute(insert(audit), rows)
        except SQLAlchemyError:
            log.error("audit rows could not be written (%d)", len(rows))
            return 0
        return len(rows)

    def _audit_writer(self) -> None:
        while not self._closed:
            self._audit_wakeup.wait(AUDIT_FLUSH_SECONDS)
            self._audit_wakeup.clear()
            time.sleep(AUDIT_FLUSH_SECONDS)  # let a batch gather
            self.flush_audit()

    def close(self) -> None:
        self._closed = True
        self._audit_wakeup.set()
        self.flush_audit()

    # --- outbox
    def outbox_put(self, key: str, target: str, body: str) -> int:
        """Queue the latest desired state for (target, patient): a pending entry for the same
        key is replaced (only the newest state is worth writing)."""
        now = datetime.now(UTC)
        try:
            with self._writer, self.engine.begin() as c:
                c.execute(
                    delete(outbox).where(
                        outbox.c.key == key, outbox.c.status.in_(("pending", "failed"))
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
                .values(status="done", lease_until=None, last_error=None)
            )

    def outbox_retry(
        self, entry_id: int, error: str, delay_seconds: float, give_up: bool = False
    ) -> None:
        with self._writer, self.engine.begin() as c:
            c.execute(
                update(outbox)
                .where(outbox.c.id == entry_id)
                .values(
                    status="failed" if give_up else "pending",
                    lease_until=None,
                    last_error=error[:2000],
                    next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay_seconds),
                )
            )

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

    def _remember_jti_sqlite(self, key: str, expires_at: datetime) -> bool:
        conn = getattr(self._thread, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                str(self._sqlite_path), timeout=5, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._thread.conn = conn
        # SQLAlchemy's SQLite text form, "YYYY-MM-DD HH:MM:SS.ffffff" (it sorts as time does)
        expires = expires_at.astimezone(UTC).isoformat(" ", "microseconds")[:26]
        try:
            with self._writer:
                conn.execute("INSERT INTO seen_jti (key, expires_at) VALUES (?, ?)", (key, expires))
                if self._prune_due():
                    now = datetime.now(UTC).isoformat(" ", "microseconds")[:26]
                    conn.execute("DELETE FROM seen_jti WHERE expires_at < ?", (now,))
        except sqlite3.IntegrityError:
            return False
        except sqlite3.Error as e:
            raise StoreError(f"replay check failed: {type(e).__name__}") from e
        return True
