"""Faults: the EHR slow, down, answering 500/429/garbage, paging loops, a token that expires
mid-call, the store full or locked. The hook answers within its budget, nothing is lost,
nothing is written twice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from builders import condition, patient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.fhir.client import FhirAuthError, FhirUnavailable
from pathway.fhir.writeback import WriteResult
from pathway.service import Service
from pathway.settings import Settings
from pathway.store.db import StoreError

EHR = "https://ehr.example.org/fhir"
BUDGET_SECONDS = 2.0  # the hook's answer time with a failing EHR (fetch timeout 3 s, 1 retry)


@pytest.fixture
def app(tmp_path: Path, config: LoadedConfig) -> Flask:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = tmp_path / "smart.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = Settings.from_mapping(
        {
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'f.db'}",
            "PATHWAY_FHIR_ALLOWLIST": EHR,
            "PATHWAY_FHIR_BASE_URL": EHR,
            "PATHWAY_WRITEBACK": "direct",
            "PATHWAY_SMART_CLIENT_ID": "cds",
            "PATHWAY_SMART_PRIVATE_KEY_FILE": str(pem),
            "PATHWAY_SMART_TOKEN_URL": "https://ehr.example.org/token",
        }
    )
    application = create_app({"settings": settings, "config": config, "START_OUTBOX": False})
    application.extensions["pathway"].writeback.sleep = lambda _s: None
    return application


def svc_of(app: Flask) -> Service:
    s: Service = app.extensions["pathway"]
    return s


def fetch_request() -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "f",
        "fhirServer": EHR,
        "context": {"patientId": "p1"},
        "prefetch": {"patient": patient()},
    }


def full_request() -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "f",
        "fhirServer": EHR,
        "context": {"patientId": "p1"},
        "prefetch": {
            "patient": patient(),
            "conditions": [condition()],
            "observations": None,
            "medicationRequests": None,
            "carePlans": None,
            "tasks": None,
        },
    }


@pytest.mark.parametrize(
    "failure",
    [
        {"body": requests.ReadTimeout("slow")},
        {"body": requests.ConnectionError("down")},
        {"status": 500, "json": {"resourceType": "OperationOutcome", "issue": []}},
        {"status": 429, "headers": {"Retry-After": "1"}},
        {"status": 200, "body": b"<html>gateway</html>"},
        {"status": 200, "json": {"resourceType": "Patient"}},  # not a Bundle
    ],
    ids=["slow", "down", "500", "429", "garbage", "wrong-type"],
)
def test_ehr_failures_give_a_quick_412(app: Flask, failure: dict[str, Any]) -> None:
    # Timed on a shared CI machine: the best of three tries. A hook that waits out the EHR's
    # back-off or retries more is slow every time; a busy machine only now and then.
    times = []
    for _ in range(3):
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            for _ in range(3):
                rsps.add(responses.GET, f"{EHR}/Condition", **failure)
                rsps.add(responses.GET, f"{EHR}/Observation", **failure)
                rsps.add(responses.GET, f"{EHR}/MedicationRequest", **failure)
            rsps.add(responses.GET, f"{EHR}/CarePlan", json={"resourceType": "Bundle"})
            rsps.add(responses.GET, f"{EHR}/Task", json={"resourceType": "Bundle"})
            started = time.perf_counter()
            resp = app.test_client().post("/cds-services/oud-pathway", json=fetch_request())
            times.append(time.perf_counter() - started)
        assert resp.status_code == 412
        assert resp.get_json()["resourceType"] == "OperationOutcome"
        if times[-1] < BUDGET_SECONDS:
            break
    assert min(times) < BUDGET_SECONDS, times


def test_a_paging_loop_is_cut_and_the_hook_answers(app: Flask) -> None:
    looping = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": f"{EHR}/Condition?page=2"}],
        "entry": [{"resource": condition()}],
    }
    empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{EHR}/Condition", json=looping)  # every page points on
        for rtype in ("Observation", "MedicationRequest", "CarePlan", "Task"):
            rsps.add(responses.GET, f"{EHR}/{rtype}", json=empty)
        resp = app.test_client().post("/cds-services/oud-pathway", json=fetch_request())
        condition_calls = [c for c in rsps.calls if "/Condition" in str(c.request.url)]
    assert resp.status_code == 200
    assert len(condition_calls) <= 2  # the repeated next link is followed once, then stopped
    svc_of(app).writeback.drain()


def test_the_hook_answers_while_the_ehr_is_down_and_the_write_waits(app: Flask) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(
            responses.POST,
            "https://ehr.example.org/token",
            json={"access_token": "t", "expires_in": 300},
        )
        rsps.add(responses.GET, f"{EHR}/metadata", body=requests.ConnectionError("down"))
        started = time.perf_counter()
        resp = app.test_client().post("/cds-services/oud-pathway", json=full_request())
        assert time.perf_counter() - started < BUDGET_SECONDS
        assert resp.status_code == 200 and resp.get_json()["cards"]
        svc_of(app).writeback.drain()
    (row,) = svc_of(app).store.outbox_rows()
    assert row["status"] == "pending" and row["attempts"] == 1  # kept for a retry


def test_a_token_that_expires_mid_call_is_refreshed_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    wb = svc_of(app).writeback
    calls: list[str | None] = []
    invalidated: list[bool] = []

    def reconcile(key: str, base: str, token: str | None, want: Any) -> WriteResult:
        calls.append(token)
        if len(calls) == 1:
            raise FhirAuthError("PUT answered 401: token expired", 401)
        return WriteResult(written=["created CarePlan/1"], mode="transaction")

    monkeypatch.setattr(wb, "_reconcile", reconcile)
    assert wb._smart is not None
    monkeypatch.setattr(wb._smart, "invalidate", lambda: invalidated.append(True))
    ev = svc_of(app).evaluator.evaluate([patient(), condition()], svc_of(app).clock())
    outcome = wb.write_now(EHR, svc_of(app).desired_state(ev))
    assert outcome.ok
    assert len(calls) == 2 and invalidated == [True]


def test_a_token_refused_after_a_fresh_one_is_dead(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    wb = svc_of(app).writeback

    def reconcile(*_a: Any) -> WriteResult:
        raise FhirAuthError("401", 401)

    monkeypatch.setattr(wb, "_reconcile", reconcile)
    ev = svc_of(app).evaluator.evaluate([patient(), condition()], svc_of(app).clock())
    outcome = wb.write_now(EHR, svc_of(app).desired_state(ev))
    assert not outcome.ok
    (row,) = svc_of(app).store.outbox_rows()
    assert row["status"] == "dead" and row["error_status"] == 401  # retrying will not help


def test_retries_give_up_after_the_limit_and_say_so(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    wb = svc_of(app).writeback

    def reconcile(*_a: Any) -> WriteResult:
        raise FhirUnavailable("down")

    monkeypatch.setattr(wb, "_reconcile", reconcile)
    wb.max_attempts = 3
    ev = svc_of(app).evaluator.evaluate([patient(), condition()], svc_of(app).clock())
    entry = wb.enqueue(EHR, svc_of(app).desired_state(ev))
    for _ in range(3):
        wb.run(only=entry)
    (row,) = svc_of(app).store.outbox_rows()
    assert row["status"] == "dead" and row["attempts"] == 3 and row["last_error"] == "down"
    assert 'pathway_writeback_total{outcome="dead"} 1.0' in svc_of(app).metrics.render().decode()


def test_store_unavailable_the_hook_still_answers(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_a: Any, **_k: Any) -> int:
        raise StoreError("database or disk is full")

    monkeypatch.setattr(svc_of(app).store, "outbox_put", full)
    resp = app.test_client().post("/cds-services/oud-pathway", json=full_request())
    assert resp.status_code == 200 and resp.get_json()["cards"]
    text = svc_of(app).metrics.render().decode()
    assert 'pathway_writeback_total{outcome="not-queued"} 1.0' in text


def test_store_unavailable_feedback_is_a_503_not_a_loss_claim(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked(*_a: Any, **_k: Any) -> int:
        raise StoreError("database is locked")

    monkeypatch.setattr(svc_of(app).store, "add_feedback", locked)
    resp = app.test_client().post(
        "/cds-services/oud-pathway/feedback",
        json={"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "t"}]},
    )
    assert resp.status_code == 503
    assert "nothing was saved" in resp.get_json()["issue"][0]["diagnostics"]


def test_a_killed_worker_leaves_a_lease_that_expires(app: Flask) -> None:
    store = svc_of(app).store
    ev = svc_of(app).evaluator.evaluate([patient(), condition()], svc_of(app).clock())
    entry = svc_of(app).writeback.enqueue(EHR, svc_of(app).desired_state(ev))
    (claimed,) = store.outbox_claim(lease_seconds=-1)  # claimed, then the worker "dies"
    assert claimed["id"] == entry
    again = store.outbox_claim()
    assert [r["id"] for r in again] == [entry]  # the expired lease lets another worker run it
    assert store.outbox_claim() == []  # and only one at a time
