"""JWT replay memory on the SQLite store: one row per (issuer, jti), pruned when expired."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pathway.store.db import JTI_PRUNE_SECONDS, Store


def test_a_jti_is_accepted_once(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert store.remember_jti("iss|a", later) is True
    assert store.remember_jti("iss|a", later) is False
    assert store.remember_jti("other-iss|a", later) is True


def test_expired_rows_are_pruned_at_most_once_a_minute(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    past = datetime.now(UTC) - timedelta(minutes=1)
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert store.remember_jti("iss|expired", past)
    assert store.remember_jti("iss|b", later)  # no prune yet: the minute has not passed
    assert store.remember_jti("iss|expired", past) is False
    store._jti_pruned = time.monotonic() - JTI_PRUNE_SECONDS - 1
    assert store.remember_jti("iss|c", later)  # prunes the expired row
    assert store.remember_jti("iss|expired", past) is True  # gone, so new again
    assert store.remember_jti("iss|b", later) is False  # unexpired rows stay


def test_long_keys_are_hashed_not_cut(tmp_path: Path) -> None:
    """Keys are stored as their SHA-256: two that share a long prefix stay two (they used to be
    cut to 300 characters), and a row holds no issuer or jti in clear."""
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    later = datetime.now(UTC) + timedelta(minutes=5)
    prefix = "iss|" + "x" * 400
    assert store.remember_jti(prefix + "1", later) is True
    assert store.remember_jti(prefix + "2", later) is True
    assert store.remember_jti(prefix + "2", later) is False
    with store.engine.connect() as c:
        keys = [r[0] for r in c.exec_driver_sql("SELECT key FROM seen_jti")]
    assert len(keys) == 2 and all(len(k) == 64 and "x" not in k for k in keys)
