"""Write-back against the current Medplum FHIR router on loopback (its own transaction processing
and limits; our profiles' constraints checked here, on what is read back): CONTRACT.md §3.
The other server behaviours (no transactions, no conditional create, no If-Match, read-only
CarePlan/Task) are in test_server_profiles.py; failures in test_writeback_faults.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from builders import cows, iso, stage, uds
from flask import Flask
from medplum_server import MedplumServer
from wb_support import (
    CANON,
    PROFILES,
    assert_consistent,
    hook,
    if_matches,
    make_app,
    open_codes,
    ours,
    recording,
    scenario,
    search,
    seed,
    seed_case,
    svc_of,
    versions,
)
from wb_support import settings as _settings

from pathway import create_app
from pathway.cli import main as cli
from pathway.config import LoadedConfig
from pathway.fhir.profiles import validate_by_meta

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


@pytest.fixture
def app(tmp_path: Path, config: LoadedConfig, fhir: MedplumServer) -> Iterator[Flask]:
    application = make_app(tmp_path, config, fhir.base)
    yield application
    svc_of(application).writeback.drain()


# ------------------------------------------------------------------ the main path


def test_hook_writes_a_valid_careplan_tasks_and_provenance(app: Flask, fhir: MedplumServer) -> None:
    when = seed_case(fhir, "bup-day45-fentanyl-return-to-use")
    with recording() as sent:
        hook(app, fhir, when)
    # Medplum refuses the first write as one transaction (conditional creates need strict
    # isolation: at most 8 entries); it is written at once as ordered single requests.
    assert [s.method for s in sent if s.path == ""] == ["POST"]
    assert any(s.method == "POST" and s.path == "CarePlan" for s in sent)
    (row,) = svc_of(app).store.outbox_list()
    assert row["status"] == "done" and row["attempts"] == 1
    assert_consistent(fhir)
    plans, tasks = ours(fhir)
    assert len(plans) == 1
    plan = plans[0]
    assert plan["status"] == "active"
    assert {c["coding"][0]["code"] for c in plan["category"]} >= {"stabilization", "return-to-use"}
    assert validate_by_meta(plan, PROFILES) == []
    for t in tasks:
        assert validate_by_meta(t, PROFILES) == []
        assert t["basedOn"][0]["reference"] == f"CarePlan/{plan['id']}"
    assert {"contingency-management", "family-support", "follow-up-visit"} <= open_codes(tasks)
    refs = {a["reference"]["reference"] for a in plan["activity"] if "reference" in a}
    assert refs == {f"Task/{t['id']}" for t in tasks}
    provenance = search(fhir, "Provenance")
    assert provenance, "every write has a Provenance"
    targets = {t["reference"].split("/_history")[0] for p in provenance for t in p["target"]}
    assert f"CarePlan/{plan['id']}" in targets
    assert all(
        p["agent"][0]["who"]["reference"] == "Device/oud-pathway-service" for p in provenance
    )
    assert any(
        e["what"]["reference"] == "Observation/obs-3"
        for p in provenance
        for e in p.get("entity", [])
    )


def test_the_same_evaluation_again_writes_nothing(app: Flask, fhir: MedplumServer) -> None:
    when = seed_case(fhir, "oud-dx-no-moud")
    hook(app, fhir, when)
    plans, tasks = ours(fhir)
    before = versions(fhir, plans + tasks)
    provenance = fhir.count("Provenance")
    outcome_rows = len(svc_of(app).store.outbox_rows())
    hook(app, fhir, when + timedelta(minutes=5))
    plans2, tasks2 = ours(fhir)
    assert versions(fhir, plans2 + tasks2) == before
    assert fhir.count("Provenance") == provenance
    # The hook read our plan and tasks with the patient's data and saw nothing had changed:
    # no write-back was even queued.
    assert len(svc_of(app).store.outbox_rows()) == outcome_rows
    assert (
        'pathway_writeback_total{outcome="unchanged-in-prefetch"} 1.0'
        in svc_of(app).metrics.render().decode()
    )


def test_changed_data_makes_one_new_version_and_cancels_obsolete_tasks(
    app: Flask, fhir: MedplumServer
) -> None:
    when = seed_case(fhir, "oud-dx-no-moud")
    hook(app, fhir, when)
    (plan,), tasks = ours(fhir)
    assert "assess-readiness" in open_codes(tasks)
    first = fhir.versions("CarePlan", plan["id"])
    # New data: a stage of change (action) and a negative opioid screen.
    new = [
        stage("action", iso(when - timedelta(days=1))),
        uds("19295-5", "neg", iso(when - timedelta(days=1))),
        uds("59673-4", "neg", iso(when - timedelta(days=1))),
    ]
    for i, r in enumerate(new):
        r["id"] = f"new-{i}"  # never the scenario's own ids
    seed(fhir, *new)
    with recording() as sent:
        hook(app, fhir, when + timedelta(hours=1))
    (_plan2,), tasks2 = ours(fhir)
    assert fhir.versions("CarePlan", plan["id"]) == first + 1  # one update
    matches = if_matches(sent)
    assert matches and all((m or "").startswith('W/"') for m in matches), matches
    cancelled = {t["code"]["coding"][0]["code"]: t for t in tasks2 if t["status"] == "cancelled"}
    assert {"assess-readiness", "motivational-interviewing"} <= set(cancelled)
    assert all(t["statusReason"]["text"] for t in cancelled.values())
    assert {"cbt", "case-management"} <= open_codes(tasks2)


def test_eight_concurrent_evaluations_make_one_careplan(app: Flask, fhir: MedplumServer) -> None:
    when = seed_case(fhir, "bup-day10-stabilization")
    svc = svc_of(app)
    svc.clock = lambda: when
    ev = svc.evaluate_from_server("p1")
    want = svc.desired_state(ev)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            svc.writeback.write_now(fhir.base, want)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    plans, tasks = ours(fhir)
    assert len(plans) == 1
    codes = [t["code"]["coding"][0]["code"] for t in tasks]
    assert len(codes) == len(set(codes)), "one Task per code"


def test_server_down_during_a_write_then_back_lands_exactly_once(
    app: Flask, fhir: MedplumServer
) -> None:
    when = seed_case(fhir, "oud-dx-no-moud")
    svc = svc_of(app)
    svc.clock = lambda: when
    want = svc.desired_state(svc.evaluate_from_server("p1"))
    fhir.pause()
    try:
        outcome = svc.writeback.write_now(fhir.base, want)
    finally:
        fhir.resume()
    assert not outcome.ok
    (row,) = [r for r in svc.store.outbox_rows() if r["id"] == outcome.entry_id]
    assert row["status"] == "pending" and row["last_error"]
    assert fhir.count("CarePlan") == 0
    # The server is back: the kept entry is retried and lands, once.
    (retry,) = svc.writeback.run(only=outcome.entry_id)
    assert retry.ok and retry.result is not None and retry.result.wrote
    again = svc.writeback.run(only=outcome.entry_id)
    assert again == []  # done: not claimed again
    plans, _tasks = ours(fhir)
    assert len(plans) == 1
    assert_consistent(fhir)


def test_a_restart_loses_nothing(tmp_path: Path, config: LoadedConfig, fhir: MedplumServer) -> None:
    """The outbox survives the process: a new app over the same database runs the entry."""
    when = seed_case(fhir, "oud-dx-no-moud")
    first = create_app(
        {"settings": _settings(tmp_path, fhir.base), "config": config, "START_OUTBOX": False}
    )
    svc = svc_of(first)
    svc.clock = lambda: when
    svc.writeback.enqueue(fhir.base, svc.desired_state(svc.evaluate_from_server("p1")))
    # "killed" before running it; a new process starts
    second = create_app(
        {"settings": _settings(tmp_path, fhir.base), "config": config, "START_OUTBOX": False}
    )
    (outcome,) = svc_of(second).writeback.run()
    assert outcome.ok
    assert fhir.count("CarePlan") == 1


def test_a_task_completed_in_the_ehr_is_not_recreated(app: Flask, fhir: MedplumServer) -> None:
    when = seed_case(fhir, "oud-dx-no-moud")
    hook(app, fhir, when)
    _, tasks = ours(fhir)
    uds_task = next(t for t in tasks if t["code"]["coding"][0]["code"] == "collect-uds")
    done = dict(uds_task)
    done["status"] = "completed"
    done["executionPeriod"] = {"end": iso(when + timedelta(hours=2))}
    r = requests.put(f"{fhir.base}/Task/{uds_task['id']}", json=done, timeout=10)
    assert r.status_code == 200, r.text
    hook(app, fhir, when + timedelta(days=1))
    _, tasks2 = ours(fhir)
    collect = [t for t in tasks2 if t["code"]["coding"][0]["code"] == "collect-uds"]
    assert [t["status"] for t in collect] == ["completed"]


def test_resources_not_made_by_the_service_are_never_changed(
    app: Flask, fhir: MedplumServer
) -> None:
    when = seed_case(fhir, "oud-dx-no-moud")
    theirs: list[dict[str, Any]] = [
        {
            "resourceType": "CarePlan",
            "id": "ehr-plan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": "Patient/p1"},
        },
        {
            "resourceType": "Task",
            "id": "ehr-task",
            "status": "requested",
            "intent": "order",
            "for": {"reference": "Patient/p1"},
            "identifier": [{"system": "https://ehr.example.org/tasks", "value": "p1:collect-uds"}],
            "code": {
                "coding": [
                    {"system": f"{CANON}/CodeSystem/oud-pathway-action", "code": "collect-uds"}
                ]
            },
        },
    ]
    seed(fhir, *theirs)
    hook(app, fhir, when)
    hook(app, fhir, when + timedelta(days=40))  # a later evaluation that cancels/changes ours
    assert fhir.versions("CarePlan", "ehr-plan") == 1
    assert fhir.versions("Task", "ehr-task") == 1


def test_not_applicable_revokes_our_careplan(app: Flask, fhir: MedplumServer) -> None:
    when = seed_case(fhir, "oud-dx-no-moud")
    hook(app, fhir, when)
    # The diagnosis is entered in error: the pathway no longer applies.
    cond = scenario("oud-dx-no-moud")["bundle"]["entry"][1]["resource"]
    cond = {
        **{k: v for k, v in cond.items() if k != "clinicalStatus"},  # FHIR con-5
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "entered-in-error",
                }
            ]
        },
    }
    seed(fhir, cond)
    body = hook(app, fhir, when + timedelta(hours=1))
    assert body == {"cards": []}
    (plan,), tasks = ours(fhir)
    assert plan["status"] == "revoked"
    assert all(t["status"] == "cancelled" for t in tasks)


# ------------------------------------------------------------------ notifications, CLI


def test_notification_re_evaluates_and_writes(app: Flask, fhir: MedplumServer) -> None:
    when = seed_case(fhir, "oud-dx-no-moud")
    svc_of(app).clock = lambda: when
    obs = {**cows(9, iso(when - timedelta(hours=1))), "id": "new-cows"}
    seed(fhir, obs)
    resp = app.test_client().post("/notifications", json=obs)
    assert resp.status_code == 202
    svc_of(app).writeback.drain()
    plans, _ = ours(fhir)
    assert len(plans) == 1
    assert {c["coding"][0]["code"] for c in plans[0]["category"]} >= {"stabilization"}


def test_topic_notification_bundle_with_focus_reference(app: Flask, fhir: MedplumServer) -> None:
    when = seed_case(fhir, "oud-dx-no-moud")
    svc_of(app).clock = lambda: when
    obs = {**cows(9, iso(when - timedelta(hours=1))), "id": "new-cows"}
    seed(fhir, obs)
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {
                "resource": {
                    "resourceType": "SubscriptionStatus",
                    "status": "active",
                    "type": "event-notification",
                    "notificationEvent": [
                        {"eventNumber": "1", "focus": {"reference": f"Observation/{obs['id']}"}}
                    ],
                }
            }
        ],
    }
    resp = app.test_client().post("/notifications", json=bundle)
    assert resp.status_code == 202
    svc_of(app).writeback.drain()
    assert fhir.count("CarePlan") == 1


def test_cli_seed_and_sync(
    fhir: MedplumServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = scenario("on-methadone-maintenance")
    f = tmp_path / "case.json"
    f.write_bytes(orjson.dumps(case["bundle"]))
    assert cli(["seed", "--fhir-base", fhir.base, str(f)]) == 0
    monkeypatch.setenv("PATHWAY_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert (
        cli(
            [
                "sync",
                "--fhir-base",
                fhir.base,
                "--patient",
                "p1",
                "--as-of",
                case["asOf"],
                "--dry-run",
            ]
        )
        == 0
    )
    assert "Phase: maintenance" in capsys.readouterr().out
    assert fhir.count("CarePlan") == 0
    assert cli(["sync", "--fhir-base", fhir.base, "--patient", "p1", "--as-of", case["asOf"]]) == 0
    assert "created CarePlan/" in capsys.readouterr().out
    assert cli(["sync", "--fhir-base", fhir.base, "--patient", "p1", "--as-of", case["asOf"]]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert fhir.count("CarePlan") == 1


def test_synthea_patient_end_to_end(app: Flask, fhir: MedplumServer) -> None:
    path = next(
        (Path(__file__).parent.parent / "data" / "external" / "synthea-smart-r4").glob(
            "Gilberto_Orosco_*.json"
        )
    )
    r = requests.post(
        fhir.base,
        data=path.read_bytes(),
        timeout=120,
        headers={"Content-Type": "application/fhir+json"},
    )
    assert r.status_code == 200, r.text[:500]
    patient = search(fhir, "Patient")[0]
    svc = svc_of(app)
    svc.clock = lambda: datetime(2026, 11, 22, tzinfo=UTC)
    ev = svc.evaluate_from_server(patient["id"])
    assert ev.decision.phase == "assessment"
    theirs = {p["id"]: fhir.versions("CarePlan", p["id"]) for p in search(fhir, "CarePlan")}
    assert theirs, "Synthea brings CarePlans of its own"
    outcome = svc.writeback.write_now(fhir.base, svc.desired_state(ev))
    assert outcome.ok
    mine = search(fhir, f"CarePlan?identifier={CANON}/careplan|{patient['id']}")
    assert len(mine) == 1
    assert validate_by_meta(mine[0], PROFILES) == []
    assert fhir.count("CarePlan") == len(theirs) + 1
    assert {p: fhir.versions("CarePlan", p) for p in theirs} == theirs  # untouched
