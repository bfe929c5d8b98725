"""Server-side sessions of the clinician's app (backend-for-frontend): the browser holds only a
random cookie; the launch state, the tokens and the CSRF secret live here.

One table of its own (`app_session`, created by the store's migration 0003) in the service's
store. A row is found by a hash of the
cookie and its content is encrypted with a key derived from the cookie, so the database alone
(a backup, a replica) yields neither a usable cookie nor a token. Rows past their expiry are
deleted as they are met and swept now and then.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from pathway.store.db import app_session  # the store owns the schema (Alembic migration 0003)

COOKIE = "pathway_app"
SWEEP_SECONDS = 300.0


class SessionStoreError(RuntimeError):
    """The session table cannot be read or written."""


@dataclass
class AppSession:
    """What one browser's session holds. `pending` maps launch states to their PKCE verifier
    and endpoints (each used once); `auth` is the token response and launch context."""

    cookie: str
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    auth: dict[str, Any] | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    message: str | None = None  # one-time notice after an action (post/redirect/get)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"pending": self.pending, "auth": self.auth, "csrf": self.csrf, "message": self.message}
        )


def _id(cookie: str) -> str:
    return hashlib.sha256(b"id|" + cookie.encode()).hexdigest()


def _fernet(cookie: str) -> Fernet:
    key = hashlib.sha256(b"enc|" + cookie.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


class SessionStore:
    def __init__(self, engine: Engine, lifetime: timedelta) -> None:
        self.engine = engine
        self.lifetime = lifetime
        self._swept = 0.0
        self._lock = threading.Lock()
        # The table is the store's (migration 0003): workers never create tables.

    def new(self) -> AppSession:
        return AppSession(secrets.token_urlsafe(32))

    def load(self, cookie: str | None) -> AppSession | None:
        if not cookie or len(cookie) > 100:
            return None
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as c:
                row = c.execute(
                    select(app_session.c.data, app_session.c.expires_at).where(
                        app_session.c.id == _id(cookie)
                    )
                ).first()
                if row is None:
                    return None
                expires = row.expires_at
                if expires.tzinfo is None:  # SQLite gives naive datetimes back
                    expires = expires.replace(tzinfo=UTC)
                if expires <= now:
                    c.execute(delete(app_session).where(app_session.c.id == _id(cookie)))
                    return None
        except SQLAlchemyError as e:
            raise SessionStoreError(f"cannot read the session: {type(e).__name__}") from e
        try:
            doc = orjson.loads(_fernet(cookie).decrypt(row.data.encode()))
        except (InvalidToken, orjson.JSONDecodeError):
            return None
        return AppSession(
            cookie, doc.get("pending") or {}, doc.get("auth"), doc["csrf"], doc.get("message")
        )

    def save(self, s: AppSession) -> None:
        data = _fernet(s.cookie).encrypt(s.to_json()).decode()
        expires = datetime.now(UTC) + self.lifetime
        key = _id(s.cookie)
        try:
            with self.engine.begin() as c:
                done = c.execute(
                    sql_update(app_session)
                    .where(app_session.c.id == key)
                    .values(data=data, expires_at=expires)
                ).rowcount
                if not done:
                    c.execute(insert(app_session).values(id=key, data=data, expires_at=expires))
        except SQLAlchemyError as e:
            raise SessionStoreError(f"cannot write the session: {type(e).__name__}") from e
        self._sweep()

    def drop(self, s: AppSession) -> None:
        try:
            with self.engine.begin() as c:
                c.execute(delete(app_session).where(app_session.c.id == _id(s.cookie)))
        except SQLAlchemyError as e:
            raise SessionStoreError(f"cannot delete the session: {type(e).__name__}") from e

    def _sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._swept < SWEEP_SECONDS:
                return
            self._swept = now
        try:
            with self.engine.begin() as c:
                c.execute(delete(app_session).where(app_session.c.expires_at < datetime.now(UTC)))
        except SQLAlchemyError:
            pass  # swept next time
