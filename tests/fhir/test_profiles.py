"""The conformance resources in fhir_profiles/ and the independent profile validator."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from pathway.fhir.profiles import (
    ProfileIssue,
    load_profiles,
    load_terminology,
    validate,
    validate_by_meta,
)

FOLDER = Path(__file__).resolve().parents[2] / "fhir_profiles"
CANON = "https://oud-pathway.github.io/fhir"
CAREPLAN_PROFILE = f"{CANON}/StructureDefinition/oud-pathway-careplan"
TASK_PROFILE = f"{CANON}/StructureDefinition/oud-pathway-task"
SUITABILITY_URL = f"{CANON}/StructureDefinition/medication-suitability"
RULE_URL = f"{CANON}/StructureDefinition/pathway-rule"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PATIENT_ID = "pat-001"
SECURITY = [
    {
        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
        "code": "R",
        "display": "restricted",
    },
    {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "code": "SUD",
        "display": "substance use disorder information sensitivity",
    },
]

EXPECTED_CODES = {
    "oud-observation": [
        "cows-total",
        "dsm5-oud-criteria-count",
        "last-opioid-use",
        "readiness-stage",
        "opioid-type",
    ],
    "opioid-type": ["short-acting", "long-acting", "fentanyl"],
    "readiness-stage": [
        "precontemplation",
        "contemplation",
        "preparation",
        "action",
        "maintenance",
    ],
    "oud-pathway-phase": [
        "assessment",
        "stabilization",
        "maintenance",
        "recovery",
        "not-applicable",
    ],
    "oud-pathway-flag": ["return-to-use", "suspected-oud"],
    "oud-pathway-action": [
        "collect-uds",
        "assess-cows",
        "assess-oud-severity",
        "assess-readiness",
        "order-lft",
        "order-ecg",
        "pregnancy-test",
        "hiv-hcv-screening",
        "prescribe-naloxone",
        "discuss-moud-options",
        "review-adherence",
        "review-cns-depressants",
        "follow-up-visit",
        "motivational-interviewing",
        "contingency-management",
        "cbt",
        "case-management",
        "mutual-help",
        "peer-support",
        "addiction-counseling",
        "family-support",
    ],
    "medication-suitability": [
        "active",
        "suitable",
        "caution",
        "not-yet",
        "contraindicated",
        "recommended",
        "not-indicated",
    ],
}

ALL_FILES = sorted(FOLDER.glob("*.json"))


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FOLDER / name).read_text(encoding="utf-8"))
    return data


# -- fixtures: the shapes of CONTRACT.md §3 ---------------------------------------------------


def conformant_careplan() -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "id": "oud-pathway-pat-001",
        "meta": {"profile": [CAREPLAN_PROFILE], "security": copy.deepcopy(SECURITY)},
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p><b>Phase: stabilization</b> '
            "(active buprenorphine started 12 days ago).</p><ul><li>buprenorphine: active"
            "</li><li>methadone: contraindicated (QTc 512 ms on 2026-10-01)</li></ul>"
            "<p>Tasks: collect urine drug screen by 2026-11-29.</p></div>",
        },
        "identifier": [{"system": f"{CANON}/careplan", "value": PATIENT_ID}],
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
                    {
                        "system": f"{CANON}/CodeSystem/oud-pathway-phase",
                        "code": "stabilization",
                        "display": "Stabilization",
                    }
                ]
            },
        ],
        "title": "Opioid use disorder care pathway",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "created": "2026-11-22T10:00:00+00:00",
        "author": {"reference": "Device/oud-pathway-service", "display": "OUD pathway service"},
        "supportingInfo": [
            {"reference": "Condition/oud-1"},
            {"reference": "Observation/qtc-1"},
        ],
        "activity": [
            {
                "detail": {
                    "extension": [{"url": SUITABILITY_URL, "valueCode": "suitable"}],
                    "kind": "MedicationRequest",
                    "status": "not-started",
                    "productCodeableConcept": {
                        "coding": [{"system": RXNORM, "code": "1819", "display": "buprenorphine"}],
                        "text": "buprenorphine",
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
                        "coding": [{"system": RXNORM, "code": "6813", "display": "methadone"}],
                        "text": "methadone",
                    },
                    "description": "Contraindicated: QTc 512 ms (> 500 ms); choose buprenorphine.",
                }
            },
            {"reference": {"reference": "Task/oud-pathway-pat-001-collect-uds"}},
        ],
    }


def conformant_task() -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": "oud-pathway-pat-001-collect-uds",
        "meta": {"profile": [TASK_PROFILE], "security": copy.deepcopy(SECURITY)},
        "identifier": [{"system": f"{CANON}/task", "value": f"{PATIENT_ID}:collect-uds"}],
        "basedOn": [{"reference": "CarePlan/oud-pathway-pat-001"}],
        "status": "requested",
        "intent": "plan",
        "priority": "routine",
        "code": {
            "coding": [
                {
                    "system": f"{CANON}/CodeSystem/oud-pathway-action",
                    "code": "collect-uds",
                    "display": "Collect urine drug screen",
                }
            ]
        },
        "description": "Collect a urine drug screen: none in the last 7 days (stabilization).",
        "for": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": "2026-11-22T10:00:00+00:00",
        "restriction": {"period": {"end": "2026-11-29"}},
    }


@pytest.fixture(scope="module")
def profiles() -> dict[str, dict[str, Any]]:
    return load_profiles(FOLDER)


def _keys(issues: list[ProfileIssue]) -> set[str]:
    return {issue.key for issue in issues}


# -- the files --------------------------------------------------------------------------------


def test_folder_holds_every_resource() -> None:
    names = {path.name for path in ALL_FILES}
    for cs_id in EXPECTED_CODES:
        assert f"CodeSystem-{cs_id}.json" in names
        assert f"ValueSet-{cs_id}.json" in names
    assert {
        "StructureDefinition-medication-suitability.json",
        "StructureDefinition-oud-pathway-careplan.json",
        "StructureDefinition-oud-pathway-task.json",
        "PlanDefinition-oud-care-pathway.json",
    } <= names


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_parses_with_r4b_models(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    get_fhir_model_class(data["resourceType"]).model_validate(data)


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_canonical_metadata(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert path.name == f"{data['resourceType']}-{data['id']}.json"
    assert data["url"] == f"{CANON}/{data['resourceType']}/{data['id']}"
    assert data["version"] == "1.1.0"
    assert data["status"] == "active"
    assert data["date"] == "2026-11-30"
    assert data["publisher"] == "OUD Care Pathway project"
    assert data["name"].isidentifier()
    assert data["title"]
    assert data["description"]
    if data["resourceType"] == "StructureDefinition":
        assert data["fhirVersion"] == "4.0.1"


@pytest.mark.parametrize("cs_id", sorted(EXPECTED_CODES))
def test_code_system_codes(cs_id: str) -> None:
    cs = _load(f"CodeSystem-{cs_id}.json")
    assert [concept["code"] for concept in cs["concept"]] == EXPECTED_CODES[cs_id]
    assert cs["content"] == "complete"
    assert cs["caseSensitive"] is True
    assert cs["count"] == len(EXPECTED_CODES[cs_id])
    assert cs["valueSet"] == f"{CANON}/ValueSet/{cs_id}"
    assert all(concept["display"] and concept["definition"] for concept in cs["concept"])


@pytest.mark.parametrize("cs_id", sorted(EXPECTED_CODES))
def test_value_set_holds_every_code(cs_id: str) -> None:
    terminology = load_terminology(FOLDER)
    system = f"{CANON}/CodeSystem/{cs_id}"
    assert terminology.value_sets[f"{CANON}/ValueSet/{cs_id}"] == {
        (system, code) for code in EXPECTED_CODES[cs_id]
    }


def _walk(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for action in actions:
        found.append(action)
        found.extend(_walk(action.get("action", [])))
    return found


def test_plan_definition() -> None:
    plan = _load("PlanDefinition-oud-care-pathway.json")
    assert plan["version"] == "1.1.0"
    assert plan["type"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
        "code": "clinical-protocol",
        "display": "Clinical Protocol",
    }
    phases = [action["code"][0]["coding"][0]["code"] for action in plan["action"]]
    assert phases == ["assessment", "stabilization", "maintenance", "recovery"]
    for action in plan["action"]:
        assert action["condition"][0]["kind"] == "applicability"
        assert action["condition"][0]["expression"]["language"] == "text/plain"
    nested = _walk(plan["action"])
    action_codes = {
        coding["code"]
        for action in nested
        for concept in action.get("code", [])
        for coding in concept.get("coding", [])
        if coding["system"] == f"{CANON}/CodeSystem/oud-pathway-action"
    }
    assert action_codes == set(EXPECTED_CODES["oud-pathway-action"])
    medications = {concept.get("text") for action in nested for concept in action.get("code", [])}
    assert {"buprenorphine", "methadone", "naltrexone", "naloxone", "lofexidine", "clonidine"} <= (
        medications
    )
    goal_ids = {goal["id"] for goal in plan["goal"]}
    assert all(set(action.get("goalId", [])) <= goal_ids for action in nested)
    ids = [action["id"] for action in nested]
    assert len(ids) == len(set(ids))
    labels = {artifact["label"] for artifact in plan["relatedArtifact"]}
    assert {
        "UpToDate-2024",
        "ASAM-2020",
        "FDA-labels",
        "CDC-2022-R12",
        "SAMHSA-TIP-63",
        "COWS",
    } <= labels


def test_load_profiles(profiles: dict[str, dict[str, Any]]) -> None:
    assert set(profiles) == {CAREPLAN_PROFILE, TASK_PROFILE, SUITABILITY_URL, RULE_URL}


@pytest.mark.parametrize("url", [CAREPLAN_PROFILE, TASK_PROFILE])
def test_every_constraint_names_a_key_and_an_expression(
    profiles: dict[str, dict[str, Any]], url: str
) -> None:
    root = profiles[url]["differential"]["element"][0]
    keys = [constraint["key"] for constraint in root["constraint"]]
    assert len(keys) == len(set(keys))
    assert all(c["severity"] == "error" and c["expression"] for c in root["constraint"])


# -- conformant resources ---------------------------------------------------------------------


@pytest.mark.parametrize("build", [conformant_careplan, conformant_task])
def test_conformant_resource_passes(
    profiles: dict[str, dict[str, Any]], build: Callable[[], dict[str, Any]]
) -> None:
    resource = build()
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert validate_by_meta(resource, profiles) == []


def test_versioned_meta_profile_is_understood(profiles: dict[str, dict[str, Any]]) -> None:
    task = conformant_task()
    task["meta"]["profile"] = [f"{TASK_PROFILE}|1.1.0"]
    assert validate_by_meta(task, profiles) == []


def test_bundle_references_are_accepted(profiles: dict[str, dict[str, Any]]) -> None:
    task = conformant_task()
    task["basedOn"] = [{"reference": "urn:uuid:0b4f1c1e-8f0e-4c39-9f76-0d1bb2f0c001"}]
    careplan = conformant_careplan()
    careplan["activity"][2]["reference"]["reference"] = "urn:uuid:7a1f0d8e-3f6a-4c1e-a1c2-0c9e"
    assert validate_by_meta(task, profiles) == []
    assert validate_by_meta(careplan, profiles) == []


def test_cancelled_task_with_status_reason_passes(profiles: dict[str, dict[str, Any]]) -> None:
    task = conformant_task()
    task["status"] = "cancelled"
    task["statusReason"] = {"text": "No longer due: a urine drug screen was resulted."}
    assert validate_by_meta(task, profiles) == []


def test_revoked_careplan_without_activity_passes(profiles: dict[str, dict[str, Any]]) -> None:
    careplan = conformant_careplan()
    careplan["status"] = "revoked"
    careplan["category"][1]["coding"][0]["code"] = "not-applicable"
    del careplan["activity"]
    assert validate_by_meta(careplan, profiles) == []


def test_flag_category_passes(profiles: dict[str, dict[str, Any]]) -> None:
    careplan = conformant_careplan()
    careplan["category"].append(
        {"coding": [{"system": f"{CANON}/CodeSystem/oud-pathway-flag", "code": "return-to-use"}]}
    )
    assert validate_by_meta(careplan, profiles) == []


# -- broken copies: each yields an issue naming the rule --------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _detail(resource: dict[str, Any], index: int) -> dict[str, Any]:
    detail: dict[str, Any] = resource["activity"][index]["detail"]
    return detail


def _set_phase(code: str) -> Mutation:
    def mutate(careplan: dict[str, Any]) -> None:
        careplan["category"][1]["coding"][0]["code"] = code

    return mutate


CAREPLAN_BREAKS: list[tuple[str, Mutation, set[str]]] = [
    ("missing identifier", lambda r: r.pop("identifier"), {"oudcp-1", "cardinality"}),
    (
        "identifier with another system",
        lambda r: r["identifier"][0].update(system="urn:example:other"),
        {"oudcp-1", "cardinality"},
    ),
    ("missing instantiatesCanonical", lambda r: r.pop("instantiatesCanonical"), {"oudcp-2"}),
    (
        "instantiatesCanonical without version",
        lambda r: r.update(instantiatesCanonical=[f"{CANON}/PlanDefinition/oud-care-pathway"]),
        {"oudcp-2"},
    ),
    ("status completed", lambda r: r.update(status="completed"), {"oudcp-3"}),
    ("wrong intent", lambda r: r.update(intent="proposal"), {"oudcp-4", "fixed"}),
    ("no assess-plan category", lambda r: r["category"].pop(0), {"oudcp-5", "cardinality"}),
    ("no phase category", lambda r: r["category"].pop(1), {"oudcp-6", "cardinality"}),
    ("unknown phase code", _set_phase("detox"), {"binding"}),
    ("active and not-applicable", _set_phase("not-applicable"), {"oudcp-7"}),
    (
        "unknown flag code",
        lambda r: r["category"].append(
            {"coding": [{"system": f"{CANON}/CodeSystem/oud-pathway-flag", "code": "relapse"}]}
        ),
        {"binding"},
    ),
    (
        "subject is a Group",
        lambda r: r.update(subject={"reference": "Group/g1"}),
        {"oudcp-8", "reference"},
    ),
    ("missing created", lambda r: r.pop("created"), {"oudcp-9", "cardinality"}),
    (
        "author is a Practitioner",
        lambda r: r.update(author={"reference": "Practitioner/dr-1"}),
        {"oudcp-10", "reference"},
    ),
    ("missing author", lambda r: r.pop("author"), {"oudcp-10", "cardinality"}),
    ("missing title", lambda r: r.pop("title"), {"oudcp-11", "cardinality"}),
    ("missing text", lambda r: r.pop("text"), {"oudcp-12", "cardinality"}),
    ("text not generated", lambda r: r["text"].update(status="additional"), {"oudcp-12", "fixed"}),
    ("active without activity", lambda r: r.pop("activity"), {"oudcp-13"}),
    (
        "activity with reference and detail",
        lambda r: r["activity"][0].update(reference={"reference": "Task/t1"}),
        {"oudcp-13"},
    ),
    (
        "detail kind ServiceRequest",
        lambda r: _detail(r, 0).update(kind="ServiceRequest"),
        {"oudcp-14", "fixed"},
    ),
    (
        "detail without product",
        lambda r: _detail(r, 0).pop("productCodeableConcept"),
        {"oudcp-14", "cardinality"},
    ),
    (
        "product not RxNorm",
        lambda r: _detail(r, 0)["productCodeableConcept"]["coding"][0].update(
            system="http://snomed.info/sct"
        ),
        {"oudcp-14"},
    ),
    (
        "product as a reference",
        lambda r: _detail(r, 0).update(
            productReference={"reference": "Medication/m1"},
            productCodeableConcept=None,
        ),
        {"type"},
    ),
    (
        "detail without suitability",
        lambda r: _detail(r, 0).pop("extension"),
        {"oudcp-15", "cardinality"},
    ),
    (
        "unknown suitability code",
        lambda r: _detail(r, 0)["extension"][0].update(valueCode="maybe"),
        {"binding"},
    ),
    (
        "suitability as a string",
        lambda r: _detail(r, 0)["extension"][0].update(valueString="suitable", valueCode=None),
        {"type"},
    ),
    (
        "detail without description",
        lambda r: _detail(r, 0).pop("description"),
        {"oudcp-16", "cardinality"},
    ),
    (
        "contraindicated without doNotPerform",
        lambda r: _detail(r, 1).pop("doNotPerform"),
        {"oudcp-17"},
    ),
    (
        "doNotPerform on a suitable medication",
        lambda r: _detail(r, 0).update(doNotPerform=True),
        {"oudcp-18"},
    ),
    (
        "activity reference to a ServiceRequest",
        lambda r: r["activity"][2].update(reference={"reference": "ServiceRequest/s1"}),
        {"oudcp-19", "reference"},
    ),
    ("missing R security label", lambda r: r["meta"]["security"].pop(0), {"oudcp-20"}),
    ("missing SUD security label", lambda r: r["meta"]["security"].pop(1), {"oudcp-21"}),
    (
        "supportingInfo without reference",
        lambda r: r["supportingInfo"].append({"display": "a note"}),
        {"oudcp-22"},
    ),
]

TASK_BREAKS: list[tuple[str, Mutation, set[str]]] = [
    ("missing identifier", lambda r: r.pop("identifier"), {"oudtk-1", "cardinality"}),
    (
        "identifier value not <patient>:<code>",
        lambda r: r["identifier"][0].update(value="pat-001:assess-cows"),
        {"oudtk-2"},
    ),
    ("missing basedOn", lambda r: r.pop("basedOn"), {"oudtk-3", "cardinality"}),
    (
        "basedOn not a CarePlan",
        lambda r: r.update(basedOn=[{"reference": "ServiceRequest/s1"}]),
        {"oudtk-3", "reference"},
    ),
    ("wrong intent", lambda r: r.update(intent="order"), {"oudtk-4", "fixed"}),
    ("without code", lambda r: r.pop("code"), {"oudtk-5", "cardinality"}),
    (
        "code from another system",
        lambda r: r["code"]["coding"][0].update(system="http://loinc.org"),
        {"oudtk-5", "pattern"},
    ),
    (
        "unknown action code",
        lambda r: r["code"]["coding"][0].update(code="collect-urine"),
        {"binding"},
    ),
    ("for a Group", lambda r: r.update({"for": {"reference": "Group/g1"}}), {"oudtk-6"}),
    ("missing authoredOn", lambda r: r.pop("authoredOn"), {"oudtk-7", "cardinality"}),
    (
        "without restriction.period.end",
        lambda r: r["restriction"]["period"].pop("end"),
        {"oudtk-8", "cardinality"},
    ),
    ("without restriction", lambda r: r.pop("restriction"), {"oudtk-8", "cardinality"}),
    ("missing description", lambda r: r.pop("description"), {"oudtk-9", "cardinality"}),
    ("missing priority", lambda r: r.pop("priority"), {"oudtk-10", "cardinality"}),
    (
        "cancelled without statusReason",
        lambda r: r.update(status="cancelled"),
        {"oudtk-11"},
    ),
    ("missing R security label", lambda r: r["meta"]["security"].pop(0), {"oudtk-12"}),
    ("missing SUD security label", lambda r: r["meta"]["security"].pop(1), {"oudtk-13"}),
    ("no meta at all", lambda r: r.pop("meta"), {"oudtk-12", "oudtk-13", "cardinality"}),
]


def _break(build: Callable[[], dict[str, Any]], mutate: Mutation) -> dict[str, Any]:
    resource = build()
    mutate(resource)
    cleaned: dict[str, Any] = _drop_nones(resource)
    return cleaned


def _drop_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nones(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(m, e, id=name) for name, m, e in CAREPLAN_BREAKS],
)
def test_broken_careplan(
    profiles: dict[str, dict[str, Any]], mutate: Mutation, expected: set[str]
) -> None:
    careplan = _break(conformant_careplan, mutate)
    issues = validate(careplan, profiles[CAREPLAN_PROFILE], profiles=profiles)
    assert expected <= _keys(issues), issues


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(m, e, id=name) for name, m, e in TASK_BREAKS],
)
def test_broken_task(
    profiles: dict[str, dict[str, Any]], mutate: Mutation, expected: set[str]
) -> None:
    task = _break(conformant_task, mutate)
    issues = validate(task, profiles[TASK_PROFILE], profiles=profiles)
    assert expected <= _keys(issues), issues


def test_issue_paths_point_at_the_element(profiles: dict[str, dict[str, Any]]) -> None:
    careplan = conformant_careplan()
    _detail(careplan, 0)["extension"][0]["valueCode"] = "maybe"
    _detail(careplan, 1).pop("doNotPerform")
    issues = validate_by_meta(careplan, profiles)
    binding = [i for i in issues if i.key == "binding"]
    assert [i.path for i in binding] == ["CarePlan.activity[0].detail.extension[0].valueCode"]
    assert "maybe" in binding[0].message
    (contraindicated,) = [i for i in issues if i.key == "oudcp-17"]
    assert contraindicated.path == "CarePlan"
    assert "doNotPerform" in contraindicated.message


def test_missing_element_is_reported_under_its_parent(profiles: dict[str, dict[str, Any]]) -> None:
    task = conformant_task()
    task["restriction"]["period"].pop("end")
    issues = validate(task, profiles[TASK_PROFILE], profiles=profiles)
    assert (
        ProfileIssue(
            "Task.restriction.period.end",
            "Task.restriction.period.end: at least 1 required, found 0",
            "cardinality",
        )
        in issues
    )


def test_too_many_in_a_slice(profiles: dict[str, dict[str, Any]]) -> None:
    careplan = conformant_careplan()
    careplan["identifier"].append({"system": f"{CANON}/careplan", "value": "pat-002"})
    issues = validate(careplan, profiles[CAREPLAN_PROFILE], profiles=profiles)
    assert "CarePlan.identifier:pathway" in {i.path for i in issues if i.key == "cardinality"}
    assert "oudcp-1" in _keys(issues)


def test_wrong_resource_type(profiles: dict[str, dict[str, Any]]) -> None:
    task = conformant_task()
    task["meta"]["profile"] = [CAREPLAN_PROFILE]
    issues = validate_by_meta(task, profiles)
    assert [i.key for i in issues] == ["resourceType"]


def test_unknown_profile(profiles: dict[str, dict[str, Any]]) -> None:
    task = conformant_task()
    task["meta"]["profile"].append(f"{CANON}/StructureDefinition/nope")
    issues = validate_by_meta(task, profiles)
    assert issues == [
        ProfileIssue(
            "Task.meta.profile[1]",
            f"unknown profile {CANON}/StructureDefinition/nope",
            "unknown-profile",
        )
    ]


def test_no_claimed_profile_means_nothing_to_check(profiles: dict[str, dict[str, Any]]) -> None:
    task = conformant_task()
    del task["meta"]["profile"]
    assert validate_by_meta(task, profiles) == []


def test_fhirpath_error_is_an_issue_not_an_exception() -> None:
    profile = {
        "resourceType": "StructureDefinition",
        "url": "urn:test",
        "kind": "resource",
        "type": "Task",
        "differential": {
            "element": [
                {
                    "id": "Task",
                    "path": "Task",
                    "constraint": [
                        {"key": "t-1", "severity": "error", "human": "bad", "expression": "(("}
                    ],
                }
            ]
        },
    }
    issues = validate(conformant_task(), profile, profiles={})
    assert [i.key for i in issues] == ["fhirpath-error"]


def test_defaults_read_fhir_profiles() -> None:
    profile = load_profiles()[TASK_PROFILE]
    assert validate(conformant_task(), profile) == []


def test_terminology_expansion_rules(tmp_path: Path) -> None:
    def write(name: str, resource: dict[str, Any]) -> None:
        (tmp_path / name).write_text(json.dumps(resource), encoding="utf-8")

    write(
        "CodeSystem-cs.json",
        {
            "resourceType": "CodeSystem",
            "url": "urn:cs",
            "concept": [{"code": "a", "concept": [{"code": "a1"}]}, {"code": "b"}],
        },
    )
    write(
        "ValueSet-all.json",
        {
            "resourceType": "ValueSet",
            "url": "urn:vs:all",
            "compose": {
                "include": [{"system": "urn:cs"}],
                "exclude": [{"system": "urn:cs", "concept": [{"code": "b"}]}],
            },
        },
    )
    write(
        "ValueSet-listed.json",
        {
            "resourceType": "ValueSet",
            "url": "urn:vs:listed",
            "compose": {"include": [{"system": "urn:other", "concept": [{"code": "x"}]}]},
        },
    )
    write(
        "ValueSet-nested.json",
        {
            "resourceType": "ValueSet",
            "url": "urn:vs:nested",
            "compose": {"include": [{"valueSet": ["urn:vs:all"]}]},
        },
    )
    write(
        "ValueSet-foreign.json",
        {
            "resourceType": "ValueSet",
            "url": "urn:vs:foreign",
            "compose": {"include": [{"system": "http://loinc.org"}]},
        },
    )
    terminology = load_terminology(tmp_path)
    assert terminology.value_sets == {
        "urn:vs:all": {("urn:cs", "a"), ("urn:cs", "a1")},
        "urn:vs:listed": {("urn:other", "x")},
    }
    assert terminology.contains("urn:vs:all|2.0", None, "a1")
    assert not terminology.contains("urn:vs:all", "urn:cs", "b")
    assert not terminology.knows("urn:vs:nested")
