"""The store on PostgreSQL, as several replicas share it: replayed JWT ids refused across
replicas, an outbox entry claimed by one replica at a time, feedback and audit durable."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pg_server import PgServer, empty_store, pg_bin

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.settings import Settings
from pathway.store.db import Store

pytestmark = pytest.mark.skipif(pg_bin() is None, reason="no PostgreSQL server binaries here")


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    with PgServer() as server:
        yield server


@pytest.fixture
def replicas(pg: PgServer) -> tuple[Store, Store]:
    a, b = Store(pg.url), Store(pg.url)
    empty_store(a.engine)
    return a, b


def test_a_jti_seen_by_one_replica_is_a_replay_for_the_other(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    exp = datetime.now(UTC) + timedelta(minutes=5)
    assert a.remember_jti("iss|jti-1", exp) is True
    assert b.remember_jti("iss|jti-1", exp) is False
    assert b.remember_jti("iss|jti-2", exp) is True


def test_an_outbox_entry_is_claimed_by_one_replica_at_a_time(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    entry = a.outbox_put("k1", "https://ehr/fhir", "{}")
    got: list[list[int]] = []
    barrier = threading.Barrier(2)

    def claim(store: Store) -> None:
        barrier.wait()
        got.append([r["id"] for r in store.outbox_claim()])

    threads = [threading.Thread(target=claim, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(map(len, got)) == [0, 1] and [entry] in got
    a.outbox_done(entry)
    assert b.outbox_claim() == []
    assert a.outbox_depth() == 0


def test_a_dead_replicas_lease_expires(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    entry = a.outbox_put("k2", "https://ehr/fhir", "{}")
    assert [r["id"] for r in a.outbox_claim(lease_seconds=-1)] == [entry]  # a dies
    assert [r["id"] for r in b.outbox_claim()] == [entry]


def test_a_newer_state_replaces_a_pending_one(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    a.outbox_put("k3", "https://ehr/fhir", '{"v": 1}')
    b.outbox_put("k3", "https://ehr/fhir", '{"v": 2}')
    rows = [r for r in a.outbox_rows() if r["key"] == "k3"]
    assert [r["body"] for r in rows] == ['{"v": 2}']


def test_feedback_and_audit_are_durable(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    a.add_feedback("oud-pathway", "card-1", "accepted", {"card": "card-1"})
    a.add_audit("patient-view", "secret-patient", {"phase": "assessment"})
    a.flush_audit()
    assert [r["card"] for r in b.feedback_rows()] == ["card-1"]
    with b.engine.connect() as c:
        rows = c.exec_driver_sql("SELECT subject_hash, detail FROM audit").fetchall()
    assert len(rows) == 1 and "secret-patient" not in str(rows)


def test_the_service_runs_on_postgresql(pg: PgServer, config: LoadedConfig, tmp_path: Path) -> None:
    settings = Settings.from_mapping({"PATHWAY_AUTH_MODE": "off", "PATHWAY_DATABASE_URL": pg.url})
    client = create_app({"settings": settings, "config": config}).test_client()
    assert client.get("/readyz").get_json()["store"] == "writable"
    resp = client.post(
        "/cds-services/oud-pathway/feedback",
        json={"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "t"}]},
    )
    assert resp.status_code == 200
