"""The loopback FHIR R4 test server (tests/fhirserver: Medplum's router 5.2 over its in-memory
repository) behaves as Medplum does, and each server profile as the EHR it stands for.

These tests pin down the server itself, so that integration tests of the service can trust it:
HTTP semantics of create/update/conditional create, Medplum's own transaction processing and
limits, atomic transactions, the search parameters the service uses, paging, base validation,
the server profiles and the fault switches. Our profiles are not checked by the server (real
servers do not know them): the tests check what they read back.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from medplum_server import MedplumServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "fhir_profiles"
SYNTHEA = ROOT / "tests" / "data" / "external" / "synthea-smart-r4"
CANON = "https://oud-pathway.github.io/fhir"
CAREPLAN_PROFILE = f"{CANON}/StructureDefinition/oud-pathway-careplan"
TASK_PROFILE = f"{CANON}/StructureDefinition/oud-pathway-task"
SUITABILITY_URL = f"{CANON}/StructureDefinition/medication-suitability"
CAREPLAN_SYSTEM = f"{CANON}/careplan"
TASK_SYSTEM = f"{CANON}/task"
ACTION_SYSTEM = f"{CANON}/CodeSystem/oud-pathway-action"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
SECURITY = [
    {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"},
    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "SUD"},
]

# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[MedplumServer]:
    with MedplumServer(PROFILES) as srv:
        yield srv


@pytest.fixture
def fhir(server: MedplumServer) -> Iterator[requests.Session]:
    server.resume()
    server.reset()
    with requests.Session() as session:
        session.headers.update(FHIR_JSON)
        yield session


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def careplan(patient_id: str, *, with_identifier: bool = True) -> dict[str, Any]:
    """A CarePlan conforming to oud-pathway-careplan (as tests/fhir/test_profiles.py builds it)."""
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "meta": {"profile": [CAREPLAN_PROFILE], "security": copy.deepcopy(SECURITY)},
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p><b>Phase: stabilization</b></p>'
            "<ul><li>buprenorphine: suitable</li><li>methadone: contraindicated</li></ul></div>",
        },
        "identifier": [{"system": CAREPLAN_SYSTEM, "value": patient_id}],
        "instantiatesCanonical": [f"{CANON}/PlanDefinition/oud-care-pathway|1.1.0"],
        "status": "active",
        "intent": "plan",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
                        "code": "assess-plan",
                    }
                ]
            },
            {
                "coding": [
                    {"system": f"{CANON}/CodeSystem/oud-pathway-phase", "code": "stabilization"}
                ]
            },
        ],
        "title": "Opioid use disorder care pathway",
        "subject": {"reference": f"Patient/{patient_id}"},
        "created": "2026-11-22T10:00:00+00:00",
        "author": {"reference": "Device/oud-pathway-service", "display": "OUD pathway service"},
        "supportingInfo": [{"reference": "Condition/oud-1"}],
        "activity": [
            {
                "detail": {
                    "extension": [{"url": SUITABILITY_URL, "valueCode": "suitable"}],
                    "kind": "MedicationRequest",
                    "status": "not-started",
                    "productCodeableConcept": {
                        "coding": [{"system": RXNORM, "code": "1819", "display": "buprenorphine"}]
                    },
                    "description": "Suitable: office-based, no daily clinic visits.",
                }
            },
            {
                "detail": {
                    "extension": [{"url": SUITABILITY_URL, "valueCode": "contraindicated"}],
                    "kind": "MedicationRequest",
                    "status": "not-started",
                    "doNotPerform": True,
                    "productCodeableConcept": {
                        "coding": [{"system": RXNORM, "code": "6813", "display": "methadone"}]
                    },
                    "description": "Contraindicated: QTc 512 ms (> 500 ms).",
                }
            },
        ],
    }
    if not with_identifier:
        del resource["identifier"]
    return resource


def task(patient_id: str, code: str, based_on: str, status: str = "requested") -> dict[str, Any]:
    """A Task conforming to oud-pathway-task."""
    return {
        "resourceType": "Task",
        "meta": {"profile": [TASK_PROFILE], "security": copy.deepcopy(SECURITY)},
        "identifier": [{"system": TASK_SYSTEM, "value": f"{patient_id}:{code}"}],
        "basedOn": [{"reference": based_on}],
        "status": status,
        "intent": "plan",
        "priority": "routine",
        "code": {"coding": [{"system": ACTION_SYSTEM, "code": code}]},
        "description": f"Do {code}.",
        "for": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2026-11-22T10:00:00+00:00",
        "restriction": {"period": {"end": "2026-11-29"}},
    }


def post(session: requests.Session, url: str, body: Any, **headers: str) -> requests.Response:
    return session.post(url, data=json.dumps(body), headers=headers)


def put(session: requests.Session, url: str, body: Any, **headers: str) -> requests.Response:
    return session.put(url, data=json.dumps(body), headers=headers)


def ids(bundle: dict[str, Any], rtype: str | None = None) -> list[str]:
    return [
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if rtype is None or e["resource"]["resourceType"] == rtype
    ]


def search(session: requests.Session, url: str) -> dict[str, Any]:
    response = session.get(url)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def issue_text(response: requests.Response) -> str:
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    return json.dumps(outcome["issue"])


# -- capabilities -----------------------------------------------------------------------------


def test_metadata(server: MedplumServer, fhir: requests.Session) -> None:
    response = fhir.get(f"{server.base}/metadata")
    assert response.status_code == 200
    cs = response.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    assert {"transaction", "batch"} <= {i["code"] for i in rest["interaction"]}
    by_type = {r["type"]: {i["code"] for i in r["interaction"]} for r in rest["resource"]}
    for rtype in (
        "CarePlan",
        "Task",
        "Provenance",
        "DocumentReference",
        "Patient",
        "Condition",
        "Observation",
        "MedicationRequest",
        "Medication",
    ):
        assert {"read", "vread", "search-type", "create", "update"} <= by_type[rtype], rtype
    careplan_entry = next(r for r in rest["resource"] if r["type"] == "CarePlan")
    assert careplan_entry["conditionalCreate"] is True
    assert careplan_entry["versioning"] == "versioned-update"


# -- create, read, update ---------------------------------------------------------------------


def test_create_read_vread_etag_location(server: MedplumServer, fhir: requests.Session) -> None:
    created = post(fhir, f"{server.base}/Patient", {"resourceType": "Patient", "id": "ignored"})
    assert created.status_code == 201, created.text
    body = created.json()
    pid, vid = body["id"], body["meta"]["versionId"]
    assert pid != "ignored"  # a create assigns the id
    assert created.headers["ETag"] == f'W/"{vid}"'
    assert created.headers["Location"] == f"{server.base}/Patient/{pid}/_history/{vid}"

    read = fhir.get(f"{server.base}/Patient/{pid}")
    assert read.status_code == 200 and read.headers["ETag"] == f'W/"{vid}"'
    assert fhir.get(f"{server.base}/Patient/{pid}/_history/{vid}").json()["id"] == pid
    assert fhir.get(f"{server.base}/Patient/nope").status_code == 404

    updated = put(fhir, f"{server.base}/Patient/{pid}", {**body, "gender": "female"})
    assert updated.status_code == 200, updated.text
    new_vid = updated.json()["meta"]["versionId"]
    assert new_vid != vid and updated.headers["ETag"] == f'W/"{new_vid}"'
    assert server.versions("Patient", pid) == 2
    history = fhir.get(f"{server.base}/Patient/{pid}/_history").json()
    assert {e["resource"]["meta"]["versionId"] for e in history["entry"]} == {new_vid, vid}

    upsert = put(
        fhir, f"{server.base}/Patient/given-id", {"resourceType": "Patient", "id": "given-id"}
    )
    assert upsert.status_code in (200, 201)
    assert fhir.delete(f"{server.base}/Patient/given-id").status_code == 200
    assert fhir.get(f"{server.base}/Patient/given-id").status_code == 404
    assert server.count("Patient") == 1


def test_conditional_create_returns_existing(server: MedplumServer, fhir: requests.Session) -> None:
    pid = new_id()
    query = f"identifier={CAREPLAN_SYSTEM}|{pid}"
    first = post(fhir, f"{server.base}/CarePlan", careplan(pid), **{"If-None-Exist": query})
    assert first.status_code == 201, first.text
    second = post(fhir, f"{server.base}/CarePlan", careplan(pid), **{"If-None-Exist": query})
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["ETag"] == first.headers["ETag"]
    assert server.count("CarePlan") == 1
    assert server.versions("CarePlan", first.json()["id"]) == 1

    # Several matches: 412.
    post(fhir, f"{server.base}/Patient", {"resourceType": "Patient", "gender": "male"})
    post(fhir, f"{server.base}/Patient", {"resourceType": "Patient", "gender": "male"})
    third = post(
        fhir,
        f"{server.base}/Patient",
        {"resourceType": "Patient"},
        **{"If-None-Exist": "gender=male"},
    )
    assert third.status_code == 412, third.text


def test_concurrent_conditional_creates_make_one(server: MedplumServer) -> None:
    server.reset()
    pid = new_id()
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    lock = threading.Lock()

    def create() -> None:
        with requests.Session() as session:
            barrier.wait(timeout=10)
            response = session.post(
                f"{server.base}/CarePlan",
                data=json.dumps(careplan(pid)),
                headers={**FHIR_JSON, "If-None-Exist": f"identifier={CAREPLAN_SYSTEM}|{pid}"},
                timeout=30,
            )
            with lock:
                statuses.append(response.status_code)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [200] * 7 + [201]
    assert server.count("CarePlan") == 1


def test_if_match(server: MedplumServer, fhir: requests.Session) -> None:
    created = post(fhir, f"{server.base}/CarePlan", careplan(new_id())).json()
    url = f"{server.base}/CarePlan/{created['id']}"
    stale = put(fhir, url, {**created, "title": "Changed"}, **{"If-Match": 'W/"not-the-version"'})
    assert stale.status_code == 412, stale.text
    assert server.versions("CarePlan", created["id"]) == 1
    etag = f'W/"{created["meta"]["versionId"]}"'
    fresh = put(fhir, url, {**created, "title": "Changed"}, **{"If-Match": etag})
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["title"] == "Changed"
    assert server.versions("CarePlan", created["id"]) == 2
    again = put(fhir, url, {**created, "title": "Again"}, **{"If-Match": etag})
    assert again.status_code == 412  # the version moved on

    # The same in a transaction entry (request.ifMatch): the whole transaction fails.
    current = fresh.json()
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**current, "title": "In a transaction"},
                "request": {"method": "PUT", "url": f"CarePlan/{current['id']}", "ifMatch": etag},
            },
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    assert post(fhir, server.base, bundle).status_code == 412
    assert server.count("Patient") == 0
    new_etag = f'W/"{current["meta"]["versionId"]}"'
    bundle["entry"][0]["request"]["ifMatch"] = new_etag
    response = post(fhir, server.base, bundle)
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["response"]["status"] == "200"
    assert server.versions("CarePlan", created["id"]) == 3 and server.count("Patient") == 1


# -- transaction and batch --------------------------------------------------------------------


def pathway_transaction(pid: str) -> dict[str, Any]:
    plan_urn = f"urn:uuid:{uuid.uuid4()}"
    task_urn = f"urn:uuid:{uuid.uuid4()}"
    plan = careplan(pid)
    plan["activity"].append({"reference": {"reference": task_urn}})
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": plan_urn,
                "resource": plan,
                "request": {
                    "method": "POST",
                    "url": "CarePlan",
                    "ifNoneExist": f"identifier={CAREPLAN_SYSTEM}|{pid}",
                },
            },
            {
                "fullUrl": task_urn,
                "resource": task(pid, "collect-uds", plan_urn),
                "request": {
                    "method": "POST",
                    "url": "Task",
                    "ifNoneExist": f"identifier={TASK_SYSTEM}|{pid}:collect-uds",
                },
            },
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Provenance",
                    "target": [{"reference": plan_urn}, {"reference": task_urn}],
                    "recorded": "2026-11-22T10:00:00+00:00",
                    "agent": [{"who": {"reference": "Device/oud-pathway-service"}}],
                },
                "request": {"method": "POST", "url": "Provenance"},
            },
        ],
    }


def test_transaction_resolves_urn_uuid(server: MedplumServer, fhir: requests.Session) -> None:
    pid = new_id()
    response = post(fhir, server.base, pathway_transaction(pid))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201"] * 3
    plan_loc, task_loc, prov_loc = (e["response"]["location"] for e in result["entry"])
    plan_ref = "/".join(plan_loc.split("/")[:2])
    task_ref = "/".join(task_loc.split("/")[:2])

    stored_task = fhir.get(f"{server.base}/{task_ref}").json()
    assert stored_task["basedOn"] == [{"reference": plan_ref}]
    stored_plan = fhir.get(f"{server.base}/{plan_ref}").json()
    assert stored_plan["activity"][-1]["reference"]["reference"] == task_ref
    prov = fhir.get(f"{server.base}/{'/'.join(prov_loc.split('/')[:2])}").json()
    assert [t["reference"] for t in prov["target"]] == [plan_ref, task_ref]

    # The same transaction again: the conditional creates find the existing ones.
    again = post(fhir, server.base, pathway_transaction(pid)).json()
    assert [e["response"]["status"] for e in again["entry"]][:2] == ["200", "200"]
    assert server.count("CarePlan") == 1 and server.count("Task") == 1
    assert server.count("Provenance") == 2
    prov2 = again["entry"][2]["resource"]
    assert [t["reference"] for t in prov2["target"]] == [plan_ref, task_ref]


def test_transaction_is_atomic(server: MedplumServer, fhir: requests.Session) -> None:
    bundle = pathway_transaction(new_id())
    bundle["entry"][1]["resource"]["intent"] = 5  # Medplum's validation refuses the Task
    response = post(fhir, server.base, bundle)
    assert response.status_code == 400, response.text
    assert "Task.intent" in issue_text(response)
    assert server.count("CarePlan") == 0 and server.count("Provenance") == 0


def test_medplum_limits_transactions(server: MedplumServer, fhir: requests.Session) -> None:
    """Medplum's own rule: a transaction needing strict isolation (one with a conditional create
    or update) may hold at most 8 entries; and at most 50 updates in any transaction."""

    def tasks(n: int, conditional: bool) -> dict[str, Any]:
        entries = []
        for i in range(n):
            request: dict[str, Any] = {"method": "POST", "url": "Task"}
            if conditional:
                request["ifNoneExist"] = f"identifier={TASK_SYSTEM}|x:{i}"
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": task("x", f"code-{i}", "CarePlan/x"),
                    "request": request,
                }
            )
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    refused = post(fhir, server.base, tasks(9, conditional=True))
    assert refused.status_code == 400, refused.text
    assert "too many entries" in issue_text(refused)
    assert server.count("Task") == 0
    assert post(fhir, server.base, tasks(8, conditional=True)).status_code == 200
    assert post(fhir, server.base, tasks(20, conditional=False)).status_code == 200
    assert server.count("Task") == 28
    updates = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**task("y", "c", "CarePlan/x"), "id": f"t{i}"},
                "request": {"method": "PUT", "url": f"Task/t{i}"},
            }
            for i in range(51)
        ],
    }
    refused = post(fhir, server.base, updates)
    assert refused.status_code == 400 and "more update operations" in issue_text(refused)


def test_batch_entries_succeed_or_fail_alone(server: MedplumServer, fhir: requests.Session) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {**careplan(new_id()), "status": 7},
                "request": {"method": "POST", "url": "CarePlan"},
            },
            {"request": {"method": "GET", "url": "Patient?_count=5"}},
        ],
    }
    response = post(fhir, server.base, bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"] == "201"
    assert entries[1]["response"]["status"] == "400"
    assert "CarePlan.status" in json.dumps(entries[1]["response"]["outcome"])
    assert entries[2]["response"]["status"] == "200"
    assert server.count("Patient") == 1 and server.count("CarePlan") == 0


def test_synthea_transaction_loads(server: MedplumServer, fhir: requests.Session) -> None:
    path = next(SYNTHEA.glob("Chet_Thompson_*.json"))
    response = fhir.post(server.base, data=path.read_bytes())
    assert response.status_code == 200, response.text[:2000]
    entries = response.json()["entry"]
    assert all(e["response"]["status"] == "201" for e in entries)
    assert server.count("Patient") == 1
    patient_id = fhir.get(f"{server.base}/Patient").json()["entry"][0]["resource"]["id"]
    observations = search(fhir, f"{server.base}/Observation?patient={patient_id}&_count=1")
    source = json.loads(path.read_text(encoding="utf-8"))
    expected = sum(1 for e in source["entry"] if e["resource"]["resourceType"] == "Observation")
    assert observations["total"] == expected
    subject = observations["entry"][0]["resource"]["subject"]["reference"]
    assert subject == f"Patient/{patient_id}"


# -- search -----------------------------------------------------------------------------------


def test_paging_follows_next_links(server: MedplumServer, fhir: requests.Session) -> None:
    pid = new_id()
    for i in range(25):
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": f"obs {i}"},
            "subject": {"reference": f"Patient/{pid}"},
        }
        assert post(fhir, f"{server.base}/Observation", observation).status_code == 201
    seen: list[str] = []
    url: str | None = f"{server.base}/Observation?patient=Patient/{pid}&_count=10"
    pages = 0
    while url:
        bundle = search(fhir, url)
        assert bundle["total"] == 25
        seen += ids(bundle)
        url = next((lk["url"] for lk in bundle["link"] if lk["relation"] == "next"), None)
        pages += 1
    assert pages == 3 and len(seen) == 25 == len(set(seen))
    default_page = search(fhir, f"{server.base}/Observation?patient={pid}")
    assert len(default_page["entry"]) == 20  # a default page size, as real servers have


def test_search_parameters_the_service_uses(server: MedplumServer, fhir: requests.Session) -> None:
    base = server.base
    pid, other = new_id(), new_id()
    plan = post(fhir, f"{base}/CarePlan", careplan(pid)).json()
    post(fhir, f"{base}/CarePlan", careplan(other))
    plan_ref = f"CarePlan/{plan['id']}"
    uds = post(fhir, f"{base}/Task", task(pid, "collect-uds", plan_ref)).json()
    ecg = post(fhir, f"{base}/Task", task(pid, "order-ecg", plan_ref, status="ready")).json()
    done_task = task(pid, "order-lft", plan_ref, status="completed")
    post(fhir, f"{base}/Task", done_task)
    foreign = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": "http://example.org/other", "code": "x"}]},
        "for": {"reference": f"Patient/{pid}"},
    }
    foreign_id = post(fhir, f"{base}/Task", foreign).json()["id"]

    found = search(fhir, f"{base}/CarePlan?patient={pid}&identifier={CAREPLAN_SYSTEM}|{pid}")
    assert ids(found) == [plan["id"]]
    found = search(fhir, f"{base}/CarePlan?patient=Patient/{pid}&identifier={CAREPLAN_SYSTEM}|x")
    assert ids(found) == []

    ours = search(fhir, f"{base}/Task?patient={pid}&code={ACTION_SYSTEM}|")
    assert len(ids(ours)) == 3
    open_ones = search(
        fhir,
        f"{base}/Task?identifier={TASK_SYSTEM}|{pid}:collect-uds"
        "&status=draft,requested,received,accepted,ready,in-progress,on-hold",
    )
    assert ids(open_ones) == [uds["id"]]
    open_any = search(fhir, f"{base}/Task?patient={pid}&status=requested,ready")
    assert sorted(ids(open_any)) == sorted([uds["id"], ecg["id"], foreign_id])
    theirs = search(fhir, f"{base}/Task?patient={pid}&code=http://example.org/other|")
    assert ids(theirs) == [foreign_id]

    cat = "http://terminology.hl7.org/CodeSystem"
    for code in ("problem-list-item", "encounter-diagnosis", "health-concern"):
        condition = {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{pid}"},
            "category": [{"coding": [{"system": f"{cat}/condition-category", "code": code}]}],
            "code": {"text": code},
        }
        post(fhir, f"{base}/Condition", condition)
    conditions = search(
        fhir, f"{base}/Condition?patient={pid}&category=problem-list-item,encounter-diagnosis"
    )
    assert len(ids(conditions)) == 2

    for code in ("laboratory", "survey", "vital-signs"):
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": f"{cat}/observation-category", "code": code}]}],
            "code": {"text": code},
            "subject": {"reference": f"Patient/{pid}"},
        }
        post(fhir, f"{base}/Observation", observation)
    observations = search(
        fhir,
        f"{base}/Observation?patient={pid}"
        f"&category={cat}/observation-category|laboratory,{cat}/observation-category|survey",
    )
    assert len(ids(observations)) == 2

    medication = post(
        fhir,
        f"{base}/Medication",
        {
            "resourceType": "Medication",
            "code": {"coding": [{"system": RXNORM, "code": "1819", "display": "buprenorphine"}]},
        },
    ).json()
    request = post(
        fhir,
        f"{base}/MedicationRequest",
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationReference": {"reference": f"Medication/{medication['id']}"},
            "subject": {"reference": f"Patient/{pid}"},
        },
    ).json()
    bundle = search(
        fhir, f"{base}/MedicationRequest?patient={pid}&_include=MedicationRequest:medication"
    )
    modes = {e["resource"]["id"]: e["search"]["mode"] for e in bundle["entry"]}
    assert modes == {request["id"]: "match", medication["id"]: "include"}
    assert bundle["total"] == 1

    provenance = post(
        fhir,
        f"{base}/Provenance",
        {
            "resourceType": "Provenance",
            "target": [{"reference": plan_ref}, {"reference": f"Task/{uds['id']}"}],
            "recorded": "2026-11-22T10:00:00+00:00",
            "agent": [{"who": {"reference": "Device/oud-pathway-service"}}],
        },
    ).json()
    assert ids(search(fhir, f"{base}/Provenance?target={plan_ref}")) == [provenance["id"]]
    assert ids(search(fhir, f"{base}/Provenance?target=Task/{ecg['id']}")) == []


# -- validation -------------------------------------------------------------------------------


def test_the_server_checks_base_r4_not_our_profiles(
    server: MedplumServer, fhir: requests.Session
) -> None:
    """Like a real EHR, the server knows base R4 and not our profiles: a CarePlan breaking
    oudcp-1 (no identifier of ours) is stored, and only our own check finds it."""
    from pathway.fhir.profiles import load_profiles, validate_by_meta

    response = post(fhir, f"{server.base}/CarePlan", careplan(new_id(), with_identifier=False))
    assert response.status_code == 201, response.text
    stored = fhir.get(f"{server.base}/CarePlan/{response.json()['id']}").json()
    assert any("oudcp-1" in str(i) for i in validate_by_meta(stored, load_profiles()))
    good = post(fhir, f"{server.base}/CarePlan", careplan(new_id()))
    assert validate_by_meta(good.json(), load_profiles()) == []

    # Base R4 validation (Medplum's validateResource).
    response = post(fhir, f"{server.base}/Patient", {"resourceType": "Patient", "birthDate": "x"})
    assert response.status_code == 400, response.text
    response = post(fhir, f"{server.base}/Patient", {"resourceType": "Patient", "foo": 1})
    assert response.status_code == 400, response.text
    response = fhir.post(f"{server.base}/Patient", data="{not json")
    assert response.status_code == 400


# -- fault switches ---------------------------------------------------------------------------


def test_pause_and_resume(server: MedplumServer, fhir: requests.Session) -> None:
    server.pause()
    try:
        response = fhir.get(f"{server.base}/metadata")
        assert response.status_code == 503
        assert response.json()["resourceType"] == "OperationOutcome"
        assert post(fhir, f"{server.base}/Patient", {"resourceType": "Patient"}).status_code == 503
    finally:
        server.resume()
    assert fhir.get(f"{server.base}/metadata").status_code == 200
    assert post(fhir, f"{server.base}/Patient", {"resourceType": "Patient"}).status_code == 201
    assert server.count("Patient") == 1


def test_injected_faults(server: MedplumServer, fhir: requests.Session) -> None:
    server.fail(429, count=2, match="POST", retry_after="7", code="throttled")
    assert fhir.get(f"{server.base}/metadata").status_code == 200  # not matched
    for _ in range(2):
        response = post(fhir, f"{server.base}/Patient", {"resourceType": "Patient"})
        assert response.status_code == 429 and response.headers["Retry-After"] == "7"
        assert response.json()["issue"][0]["code"] == "throttled"
    assert post(fhir, f"{server.base}/Patient", {"resourceType": "Patient"}).status_code == 201


def test_read_only_careplan_profile() -> None:
    """As Epic and Oracle Health today: CarePlan and Task cannot be written."""
    with MedplumServer(profile="read-only-careplan") as server, requests.Session() as fhir:
        fhir.headers.update(FHIR_JSON)
        cs = fhir.get(f"{server.base}/metadata").json()
        by_type = {
            r["type"]: {i["code"] for i in r["interaction"]} for r in cs["rest"][0]["resource"]
        }
        assert "create" not in by_type["CarePlan"] and "update" not in by_type["CarePlan"]
        assert "create" not in by_type["Task"]
        assert {"read", "search-type"} <= by_type["CarePlan"]
        assert {"create", "update"} <= by_type["DocumentReference"]

        pid = new_id()
        assert post(fhir, f"{server.base}/CarePlan", careplan(pid)).status_code == 405
        assert (
            put(fhir, f"{server.base}/CarePlan/x", {**careplan(pid), "id": "x"}).status_code == 405
        )
        response = post(fhir, server.base, pathway_transaction(pid))
        assert response.status_code == 405, response.text
        assert server.count("CarePlan") == 0 and server.count("Provenance") == 0
        document = {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient/{pid}"},
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}],
        }
        assert post(fhir, f"{server.base}/DocumentReference", document).status_code == 201


def test_no_transaction_profile() -> None:
    with MedplumServer(profile="no-transaction") as server, requests.Session() as fhir:
        fhir.headers.update(FHIR_JSON)
        rest = fhir.get(f"{server.base}/metadata").json()["rest"][0]
        assert rest["interaction"] == []
        response = post(fhir, server.base, pathway_transaction(new_id()))
        assert response.status_code == 405
        assert server.count("CarePlan") == 0


def test_conditional_create_profiles() -> None:
    pid = new_id()
    query = {"If-None-Exist": f"identifier={CAREPLAN_SYSTEM}|{pid}"}
    with MedplumServer(profile="no-conditional-create") as server, requests.Session() as fhir:
        fhir.headers.update(FHIR_JSON)
        cs = fhir.get(f"{server.base}/metadata").json()
        assert not any(r["conditionalCreate"] for r in cs["rest"][0]["resource"])
        for _ in range(2):  # If-None-Exist ignored: two creates
            assert post(fhir, f"{server.base}/CarePlan", careplan(pid), **query).status_code == 201
        assert server.count("CarePlan") == 2
    with MedplumServer(profile="conditional-create-refused") as server, requests.Session() as fhir:
        fhir.headers.update(FHIR_JSON)
        refused = post(fhir, f"{server.base}/CarePlan", careplan(pid), **query)
        assert refused.status_code == 400 and "not-supported" in refused.text
        bundle = pathway_transaction(pid)
        assert post(fhir, server.base, bundle).status_code == 400
        assert post(fhir, f"{server.base}/CarePlan", careplan(pid)).status_code == 201


def test_no_if_match_profile() -> None:
    with MedplumServer(profile="no-if-match") as server, requests.Session() as fhir:
        fhir.headers.update(FHIR_JSON)
        cs = fhir.get(f"{server.base}/metadata").json()
        assert {r["versioning"] for r in cs["rest"][0]["resource"]} == {"versioned"}
        created = post(fhir, f"{server.base}/CarePlan", careplan(new_id())).json()
        url = f"{server.base}/CarePlan/{created['id']}"
        stale = put(fhir, url, {**created, "title": "Changed"}, **{"If-Match": 'W/"stale"'})
        assert stale.status_code == 200  # ignored: last writer wins
        assert server.versions("CarePlan", created["id"]) == 2
