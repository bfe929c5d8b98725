"""Every class of write-back failure, on the Medplum router, with the outbox state it leaves and
what an operator sees in `pathway outbox list`:

- answers that will not change (400, 403, 404, 405, 409 after re-reading, 422; 401 after a
  fresh token) make the entry `dead` at once;
- 408, 429, 5xx and no answer keep it `pending`, retried with backoff and jitter, honouring
  Retry-After (capped), `dead` after the last attempt;
- the operator's `retry` and `discard`.

Each runs on both stores the service supports: SQLite (the embedded default) and PostgreSQL
(a throwaway cluster on loopback, where the server binaries are installed, as in CI).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from medplum_server import MedplumServer
from pg_server import PgServer, empty_store, pg_bin
from wb_support import make_app, ours, seed_case, svc_of

from pathway import outbox as outbox_module
from pathway.cli import main as cli
from pathway.config import LoadedConfig
from pathway.fhir.writeback import Desired
from pathway.service import Service
from pathway.store.db import Store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[MedplumServer]:
    with MedplumServer() as s:
        yield s


@pytest.fixture
def fhir(server: MedplumServer) -> MedplumServer:
    server.resume()
    server.reset()
    return server


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer | None]:
    if pg_bin() is None:
        yield None
        return
    with PgServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg: PgServer | None) -> str:
    """The store's URL: SQLite in the test's folder, or the PostgreSQL cluster emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'w.db'}"
    if pg is None:
        pytest.skip("no PostgreSQL server binaries here")
    engine = Store(pg.url).engine  # migrated on first use
    empty_store(engine)
    engine.dispose()
    return pg.url


@pytest.fixture
def svc(tmp_path: Path, config: LoadedConfig, fhir: MedplumServer, db_url: str) -> Service:
    service = svc_of(make_app(tmp_path, config, fhir.base, PATHWAY_DATABASE_URL=db_url))
    service.writeback.random = lambda: 1.0  # no jitter: the delays below are exact
    when = seed_case(fhir, "oud-dx-no-moud")
    service.clock = lambda: when
    return service


def want(svc: Service) -> Desired:
    return svc.desired_state(svc.evaluate_from_server("p1"))


def operator_view(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> Any:
    monkeypatch.setenv("PATHWAY_DATABASE_URL", db_url)
    capsys.readouterr()
    assert cli(["outbox", "list", *args]) == 0
    out = capsys.readouterr().out
    return orjson.loads(out) if "json" in args else out


@pytest.mark.parametrize(
    ("status", "match", "code"),
    [
        (403, "POST", "forbidden"),
        (404, "POST", "not-found"),
        (405, "POST", "not-supported"),
        (422, "POST", "processing"),
    ],
)
def test_a_refusal_that_will_not_change_is_dead_at_once(
    svc: Service,
    fhir: MedplumServer,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
    match: str,
    code: str,
) -> None:
    w = want(svc)
    fhir.fail(status, count=50, match=match, code=code, text="Refused for Patient/p1 (p1)")
    outcome = svc.writeback.write_now(fhir.base, w)
    assert not outcome.ok
    (row,) = svc.store.outbox_list()
    assert row["status"] == "dead" and row["attempts"] == 1
    assert row["error_status"] == status and row["error_code"] == code
    entries = operator_view(db_url, monkeypatch, capsys, "--status", "dead", "--format", "json")
    assert entries[0]["id"] == outcome.entry_id and entries[0]["status"] == "dead"
    error = entries[0]["lastError"]
    assert error["httpStatus"] == status and error["issueCode"] == code
    assert error["interaction"].startswith(("POST", "transaction: POST CarePlan"))
    # Patient data never reaches the operator's view or the store's error columns.
    assert "p1" not in error["diagnostics"] and "[patient]" in error["diagnostics"]
    assert fhir.count("CarePlan") == 0
    text = operator_view(db_url, monkeypatch, capsys)
    assert f"{status} " in text and "dead" in text


def test_an_invalid_resource_is_a_400_from_the_server_and_dead(
    svc: Service,
    fhir: MedplumServer,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = want(svc)
    bad.careplan["status"] = 7  # Medplum's own validation refuses it
    outcome = svc.writeback.write_now(fhir.base, bad)
    assert not outcome.ok
    (entry,) = operator_view(db_url, monkeypatch, capsys, "--format", "json")
    assert entry["status"] == "dead"
    assert entry["lastError"]["httpStatus"] == 400
    assert entry["lastError"]["interaction"] == "POST CarePlan"  # after the transaction's refusal
    assert entry["lastError"]["issueCode"] == "structure"
    assert "CarePlan.status" in entry["lastError"]["diagnostics"]


def test_a_version_conflict_re_reads_then_is_dead(svc: Service, fhir: MedplumServer) -> None:
    w = want(svc)
    fhir.fail(409, count=50, match="POST", code="conflict")
    outcome = svc.writeback.write_now(fhir.base, w)
    assert not outcome.ok
    (row,) = svc.store.outbox_list()
    assert row["status"] == "dead" and row["error_status"] == 409


def test_unauthorised_without_a_fresh_token_is_dead(svc: Service, fhir: MedplumServer) -> None:
    w = want(svc)
    fhir.fail(401, count=50, code="login")
    outcome = svc.writeback.write_now(fhir.base, w)
    assert not outcome.ok
    (row,) = svc.store.outbox_list()
    assert row["status"] == "dead" and row["error_status"] == 401


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_a_passing_failure_is_retried_with_backoff_and_lands(
    svc: Service, fhir: MedplumServer, status: int
) -> None:
    w = want(svc)
    # 408, 429, 503: the client's one quick retry, then the attempt fails; 500: at once
    fhir.fail(status, count=1 if status == 500 else 2, code="transient")
    outcome = svc.writeback.write_now(fhir.base, w)
    assert not outcome.ok
    (row,) = svc.store.outbox_list()
    assert row["status"] == "pending" and row["error_status"] == status
    assert svc.writeback.run() == []  # not due yet: backing off
    svc.store.outbox_requeue(outcome.entry_id)  # time passes (the entry is due now)
    (again,) = svc.writeback.run()
    assert again.ok
    assert svc.store.outbox_list()[0]["status"] == "done"
    assert len(ours(fhir)[0]) == 1


def test_retry_after_is_honoured_and_capped(svc: Service, fhir: MedplumServer) -> None:
    w = want(svc)
    fhir.fail(429, count=2, retry_after="120")
    svc.writeback.write_now(fhir.base, w)
    (row,) = svc.store.outbox_list()
    delay = (row["next_attempt_at"] - row["updated_at"]).total_seconds()
    assert 119 <= delay <= 121  # the server's 120 s, more than our 2 s backoff
    fhir.fail(503, count=2, retry_after="86400")
    svc.writeback.write_now(fhir.base, w)
    (row,) = svc.store.outbox_list("pending")
    delay = (row["next_attempt_at"] - row["updated_at"]).total_seconds()
    assert delay == pytest.approx(outbox_module.MAX_RETRY_AFTER_SECONDS, abs=1)


def test_backoff_grows_with_jitter() -> None:
    fixed = [outbox_module.backoff(n, None, lambda: 1.0) for n in range(1, 12)]
    assert fixed[:4] == [2.0, 4.0, 8.0, 16.0] and max(fixed) == outbox_module.MAX_BACKOFF_SECONDS
    low = [outbox_module.backoff(n, None, lambda: 0.0) for n in range(1, 5)]
    assert low == [1.0, 2.0, 4.0, 8.0]  # half to full: workers do not retry in step


def test_no_answer_is_retried_then_dead_after_the_last_attempt(
    svc: Service,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/fhir"  # nothing listens there
    svc.writeback.max_attempts = 3
    entry = svc.writeback.enqueue(closed, want(svc))
    for attempt in (1, 2, 3):
        (outcome,) = svc.writeback.run(only=entry)
        assert not outcome.ok
        (row,) = svc.store.outbox_list()
        assert row["attempts"] == attempt
        assert row["status"] == ("dead" if attempt == 3 else "pending")
        assert row["error_status"] is None
    (listed,) = operator_view(db_url, monkeypatch, capsys, "--format", "json")
    assert listed["lastError"]["httpStatus"] is None
    assert listed["lastError"]["interaction"] == "GET metadata"
    assert 'pathway_writeback_total{outcome="dead"} 1.0' in svc.metrics.render().decode()
    assert 'pathway_writeback_total{outcome="retry"} 2.0' in svc.metrics.render().decode()


def test_operator_retries_and_discards(
    svc: Service,
    fhir: MedplumServer,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    w = want(svc)
    fhir.fail(403, count=1)
    first = svc.writeback.write_now(fhir.base, w)
    assert not first.ok
    monkeypatch.setenv("PATHWAY_DATABASE_URL", db_url)
    assert cli(["outbox", "retry", "--dead"]) == 0
    assert f"requeued 1 entry: {first.entry_id}" in capsys.readouterr().out
    (row,) = svc.store.outbox_list("pending")
    assert row["attempts"] == 0
    (again,) = svc.writeback.run()  # the running service's sweeper would do this
    assert again.ok and fhir.count("CarePlan") == 1
    assert cli(["outbox", "retry", str(first.entry_id)]) == 1  # done: nothing to retry
    fhir.fail(422, count=1)
    svc.store.outbox_put("ab" * 32, fhir.base, w.to_json().decode())  # another patient's key
    (failed,) = svc.writeback.run()
    assert not failed.ok
    assert cli(["outbox", "discard", str(failed.entry_id)]) == 0
    assert cli(["outbox", "discard", str(failed.entry_id)]) == 1
    assert [r["status"] for r in svc.store.outbox_list()] == ["done"]
    assert cli(["outbox", "retry"]) == 2  # an id or --dead
