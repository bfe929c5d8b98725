"""The FHIR endpoint (CONTRACT.md §2): $apply, metadata, conformance reads, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import BUP_NALOXONE_FILM, apply_parameters, bundle, condition, day_ago, med, patient
from conformance import assert_valid_bundle, assert_valid_resource
from flask.testing import FlaskClient

from pathway.rules.catalogue import all_rules

APPLY = "/fhir/PlanDefinition/oud-care-pathway/$apply"
CANON = "https://oud-pathway.github.io/fhir"
SCENARIOS = sorted((Path(__file__).parent.parent / "data" / "scenarios").glob("*.json"))


def post(client: FlaskClient, body: Any, content_type: str = "application/fhir+json") -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(APPLY, data=data, content_type=content_type)


def assert_outcome(resp: Any, status: int, *words: str) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    text = body["issue"][0]["diagnostics"]
    for w in words:
        assert w in text, text


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_apply_every_scenario(client: FlaskClient, path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    resp = post(client, apply_parameters(case["bundle"], case["asOf"]))
    assert resp.status_code == 200
    assert resp.mimetype == "application/fhir+json"
    out = resp.get_json()
    assert out["resourceType"] == "Bundle" and out["type"] == "collection"
    assert_valid_bundle(out)
    expect = case["expect"]
    resources = [e["resource"] for e in out["entry"]]
    if expect["phase"] == "not-applicable":
        assert [r["resourceType"] for r in resources] == ["OperationOutcome"]
        assert resources[0]["issue"][0]["severity"] == "information"
        return
    careplan, *tasks = resources
    assert careplan["resourceType"] == "CarePlan"
    assert all(t["resourceType"] == "Task" for t in tasks)
    phases = [
        c["coding"][0]["code"]
        for c in careplan["category"]
        if c["coding"][0]["system"] == f"{CANON}/CodeSystem/oud-pathway-phase"
    ]
    assert phases == [expect["phase"]]
    flags = {
        c["coding"][0]["code"]
        for c in careplan["category"]
        if c["coding"][0]["system"] == f"{CANON}/CodeSystem/oud-pathway-flag"
    }
    assert ("return-to-use" in flags) == expect.get("returnToUse", "return-to-use" in flags)
    assert ("suspected-oud" in flags) == expect.get("suspectedOud", "suspected-oud" in flags)
    suitability = {
        a["detail"]["productCodeableConcept"]["text"]: a["detail"]["extension"][0]["valueCode"]
        for a in careplan["activity"]
        if "detail" in a
    }
    for name, status in expect.get("medications", {}).items():
        assert suitability[name] == status
    # Every option and every Task names the rules behind it (CONTRACT §3, issue 9).
    rule_url = f"{CANON}/StructureDefinition/pathway-rule"
    rule_ids = {r.id for r in all_rules()}
    for a in careplan["activity"]:
        if "detail" in a:
            ids = [x["valueCode"] for x in a["detail"]["extension"] if x["url"] == rule_url]
            assert ids and set(ids) <= rule_ids, a["detail"]
    for t in tasks:
        (rule,) = [x["valueCode"] for x in t["extension"] if x["url"] == rule_url]
        assert rule in rule_ids and rule.startswith("task."), t
    codes = {t["code"]["coding"][0]["code"] for t in tasks}
    assert set(expect.get("tasksInclude", [])) <= codes
    assert not set(expect.get("tasksExclude", [])) & codes
    # The CarePlan points at each Task, each Task back at the CarePlan (by fullUrl).
    urls = {e["fullUrl"] for e in out["entry"][1:]}
    assert {a["reference"]["reference"] for a in careplan["activity"] if "reference" in a} == urls
    assert all(t["basedOn"][0]["reference"] == out["entry"][0]["fullUrl"] for t in tasks)
    assert all(t["identifier"][0]["value"] == f"p1:{t['code']['coding'][0]['code']}" for t in tasks)


def test_careplan_shape_and_narrative(client: FlaskClient) -> None:
    case = orjson.loads(next(p for p in SCENARIOS if "fentanyl-return" in p.name).read_bytes())
    out = post(client, apply_parameters(case["bundle"], case["asOf"])).get_json()
    cp = out["entry"][0]["resource"]
    assert cp["identifier"] == [{"system": f"{CANON}/careplan", "value": "p1"}]
    assert cp["instantiatesCanonical"] == [f"{CANON}/PlanDefinition/oud-care-pathway|1.1.0"]
    assert (cp["status"], cp["intent"]) == ("active", "plan")
    assert cp["author"]["reference"] == "Device/oud-pathway-service"
    assert {s["code"] for s in cp["meta"]["security"]} == {"R", "SUD"}
    div = cp["text"]["div"]
    assert "Return to use" in div or "return to use" in div
    assert "Observation/obs-3" in div and "2024-11-15" in div  # evidence with its date
    assert {"reference": "Observation/obs-3"} in cp["supportingInfo"]
    naltrexone = next(
        a["detail"]
        for a in cp["activity"]
        if a.get("detail", {}).get("productCodeableConcept", {}).get("text") == "naltrexone"
    )
    assert naltrexone["doNotPerform"] is True
    assert naltrexone["productCodeableConcept"]["coding"][0]["code"] == "7243"


def test_apply_is_a_dry_run_that_changes_nothing(client: FlaskClient) -> None:
    body = apply_parameters(bundle(patient(), condition()))
    first = post(client, body).get_json()
    second = post(client, body).get_json()
    assert first == second


def test_default_as_of_is_now(client: FlaskClient) -> None:
    body = apply_parameters(bundle(patient(), condition()), as_of=None)
    assert post(client, body).status_code == 200


# ----------------------------------------------------------------- bad input -> 4xx


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (b"{", 400, ("Malformed JSON", "line 1")),
        (b"", 400, ("empty",)),
        (b"[]", 400, ("expected a JSON object",)),
        (b'"Parameters"', 400, ("expected a JSON object",)),
        (b'{"resourceType": "Patient"}', 400, ("resourceType", "Parameters")),
        (b'{"resourceType": "Parameters"}', 400, ("parameter",)),
        (b'{"resourceType": "Parameters", "parameter": "x"}', 400, ("parameter",)),
        (b'{"resourceType": "Parameters", "parameter": [{"valueString": "x"}]}', 400, ("name",)),
        (b'{"resourceType": "Parameters", "parameter": []}', 400, ("subject",)),
    ],
)
def test_malformed_bodies(
    client: FlaskClient, raw: bytes, status: int, words: tuple[str, ...]
) -> None:
    assert_outcome(post(client, raw), status, *words)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ([{"name": "subject", "valueString": "p1"}], ("Patient/{id}",)),
        ([{"name": "subject", "valueString": "Patient/"}], ("Patient/{id}",)),
        ([{"name": "subject", "valueString": "Patient/a/b"}], ("Patient/{id}",)),
        (
            [
                {"name": "subject", "valueString": "Patient/p1"},
                {"name": "subject", "valueString": "Patient/p2"},
            ],
            ("exactly one",),
        ),
        ([{"name": "subject", "valueInteger": 3}], ("subject",)),
        (
            [
                {"name": "subject", "valueString": "Patient/p1"},
                {"name": "data", "resource": {"resourceType": "Patient", "id": "p1"}},
            ],
            ("must carry a Bundle",),
        ),
        ([{"name": "subject", "valueString": "Patient/p1"}, {"name": "data"}], ("Bundle",)),
        (
            [
                {"name": "subject", "valueString": "Patient/p1"},
                {"name": "data", "resource": {"resourceType": "Bundle", "entry": {}}},
            ],
            ("entry",),
        ),
        (
            [
                {"name": "subject", "valueString": "Patient/p1"},
                {"name": "data", "resource": {"resourceType": "Bundle"}},
                {"name": "asOf", "valueDateTime": "2025-06-15"},
            ],
            ("time zone",),
        ),
        (
            [
                {"name": "subject", "valueString": "Patient/p1"},
                {"name": "data", "resource": {"resourceType": "Bundle"}},
                {"name": "asOf", "valueDateTime": "next tuesday"},
            ],
            ("asOf",),
        ),
        (
            [
                {"name": "subject", "valueString": "Patient/p1"},
                {"name": "data", "resource": {"resourceType": "Bundle"}},
                {"name": "asOf", "valueString": "2025-06-15T00:00:00Z"},
            ],
            ("asOf",),
        ),
        ([{"name": "subject", "valueString": "Patient/p1"}], ("PATHWAY_FHIR_BASE_URL",)),
        (
            [
                {"name": "subject", "valueString": "Patient/p9"},
                {"name": "data", "resource": bundle(patient("p1"), condition())},
            ],
            ("whose it is",),  # the subject's id is not repeated back
        ),
    ],
)
def test_bad_parameters(
    client: FlaskClient, params: list[dict[str, Any]], words: tuple[str, ...]
) -> None:
    assert_outcome(post(client, {"resourceType": "Parameters", "parameter": params}), 400, *words)


def test_wrong_resource_types_inside_data_are_ignored_not_fatal(client: FlaskClient) -> None:
    weird = [
        {"resourceType": "Basic", "id": "b"},
        {"resourceType": 42},
        {"no": "type"},
        "text",
        {
            "resourceType": "Observation",
            "id": "o",
            "code": "not-an-object",
            "valueString": ["x"],
            "subject": {"reference": "Patient/p1"},
        },
        {
            "resourceType": "MedicationRequest",
            "id": "m",
            "status": 7,
            "medicationCodeableConcept": [],
            "authoredOn": {"x": 1},
        },
    ]
    data = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": patient()},
            {"resource": condition()},
            *({"resource": w} for w in weird),
        ],
    }
    resp = post(client, apply_parameters(data))
    assert resp.status_code == 200
    assert resp.get_json()["entry"][0]["resource"]["resourceType"] == "CarePlan"


def test_body_too_large_is_413(client: FlaskClient) -> None:
    big = b'{"resourceType": "Parameters", "parameter": [' + b" " * (50 * 1024 * 1024) + b"]}"
    assert_outcome(post(client, big), 413, "too large")


def test_not_json_content_type_is_415(client: FlaskClient) -> None:
    assert_outcome(
        post(client, b"<Parameters/>", content_type="application/fhir+xml"), 415, "not JSON"
    )


def test_get_on_apply_is_405(client: FlaskClient) -> None:
    assert client.get(APPLY).status_code == 405


def test_not_applicable_bundle_holds_only_an_outcome(client: FlaskClient) -> None:
    out = post(client, apply_parameters(bundle(patient(), condition("I10")))).get_json()
    (entry,) = out["entry"]
    assert entry["resource"]["resourceType"] == "OperationOutcome"
    assert "not-applicable" in entry["resource"]["issue"][0]["diagnostics"]


def test_apply_writes_an_audit_row_without_the_patient_id(client: FlaskClient, app: Any) -> None:
    post(
        client,
        apply_parameters(
            bundle(
                patient("secret-id"),
                condition(pid="secret-id"),
                med(BUP_NALOXONE_FILM, authored=day_ago(3), pid="secret-id"),
            ),
            subject="Patient/secret-id",
        ),
    )
    from sqlalchemy import select

    from pathway.store.db import audit

    store = app.extensions["pathway"].store
    store.flush_audit()
    with store.engine.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(select(audit))]
    assert rows and all("secret-id" not in str(r) for r in rows)
    assert rows[-1]["subject_hash"] == store.subject_hash("secret-id")


# ----------------------------------------------------------------- conformance resources


def test_metadata(client: FlaskClient) -> None:
    resp = client.get("/fhir/metadata")
    assert resp.status_code == 200
    cs = resp.get_json()
    assert cs["fhirVersion"] == "4.0.1"
    assert_valid_resource(cs)
    pd = next(r for r in cs["rest"][0]["resource"] if r["type"] == "PlanDefinition")
    assert pd["operation"][0]["name"] == "apply"


@pytest.mark.parametrize(
    "path",
    [
        "PlanDefinition/oud-care-pathway",
        "StructureDefinition/oud-pathway-careplan",
        "StructureDefinition/oud-pathway-task",
        "StructureDefinition/medication-suitability",
        "CodeSystem/oud-pathway-phase",
        "CodeSystem/oud-pathway-action",
        "ValueSet/naloxone-rescue",
        "ValueSet/oud-pathway-phase",
        "ValueSet/uds-fentanyl",
    ],
)
def test_conformance_reads(client: FlaskClient, path: str) -> None:
    resp = client.get(f"/fhir/{path}")
    assert resp.status_code == 200
    body = resp.get_json()
    assert f"{body['resourceType']}/{body['id']}" == path
    assert_valid_resource(body)


@pytest.mark.parametrize("path", ["/fhir/ValueSet/nope", "/fhir/Patient/p1", "/nope"])
def test_unknown_paths_are_404_outcomes(client: FlaskClient, path: str) -> None:
    assert_outcome(client.get(path), 404)
