"""Bad input, tried systematically (hypothesis): any JSON at every endpoint, and real resources
with missing, wrong-typed and extreme fields. Never a 5xx; every rejection an OperationOutcome
that says what is wrong; the reader and the rules never crash on what the EHR sends."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fuzz_counts import COUNTS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathway import create_app
from pathway.config import load_config
from pathway.evaluation import Evaluator
from pathway.fhir.facts import NoPatientError
from pathway.settings import Settings

SCENARIOS = sorted((Path(__file__).parent.parent / "data" / "scenarios").glob("*.json"))
CASES = [orjson.loads(p.read_bytes()) for p in SCENARIOS]
RESOURCES = [e["resource"] for c in CASES for e in c["bundle"]["entry"]]
CONFIG = load_config()
EVALUATOR = Evaluator(CONFIG)
AS_OF = datetime(2025, 6, 15, 12, tzinfo=UTC)

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "",
            "2025",
            "2025-13-45",
            "9999-12-31T23:59:59Z",
            "POS",
            "Patient/p1",
            "#x",
            "urn:uuid:1",
            "Bundle",
            "Observation",
            "active",
            "F11.20",
            "1010604",
            "59673-4",
            "-1",
            "1e308",
        ]
    )
)
json_values = st.recursive(
    json_leaf,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceType",
                    "id",
                    "entry",
                    "resource",
                    "code",
                    "coding",
                    "system",
                    "value",
                    "status",
                    "subject",
                    "reference",
                    "parameter",
                    "name",
                    "valueString",
                    "context",
                    "prefetch",
                    "hook",
                    "feedback",
                    "effectiveDateTime",
                    "valueInteger",
                ]
            )
            | st.text(max_size=8),
            kids,
            max_size=5,
        )
    ),
    max_leaves=25,
)


def make_app(tmp: Path) -> Any:
    settings = Settings.from_mapping(
        {"PATHWAY_AUTH_MODE": "off", "PATHWAY_DATABASE_URL": f"sqlite:///{tmp / 'h.db'}"}
    )
    return create_app({"settings": settings, "config": CONFIG})


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_app(tmp_path_factory.mktemp("fuzz")).test_client()


def assert_answer(resp: Any) -> None:
    assert resp.status_code < 500, resp.get_data(as_text=True)
    if resp.status_code >= 400:
        body = resp.get_json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["diagnostics"]


ENDPOINTS = [
    "/cds-services/oud-pathway",
    "/cds-services/oud-order-select",
    "/cds-services/oud-order-sign",
    "/cds-services/oud-order-safety",
    "/cds-services/oud-pathway/feedback",
    "/fhir/PlanDefinition/oud-care-pathway/$apply",
    "/notifications",
]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=json_values, endpoint=st.sampled_from(ENDPOINTS))
def test_any_json_anywhere(client: Any, body: Any, endpoint: str) -> None:
    COUNTS["any JSON at an endpoint"] += 1
    assert_answer(client.post(endpoint, data=orjson.dumps(body), content_type="application/json"))


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=st.binary(max_size=200))
def test_any_bytes(client: Any, raw: bytes) -> None:
    COUNTS["raw bytes"] += 1
    assert_answer(
        client.post("/cds-services/oud-pathway", data=raw, content_type="application/json")
    )


def mutate(resource: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """Delete a field, give it a wrong type or an extreme value, at the top or one level in."""
    r = copy.deepcopy(resource)
    for _ in range(data.draw(st.integers(1, 3))):
        keys = [k for k in r if k != "resourceType"]
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        action = data.draw(st.sampled_from(["delete", "replace", "inner"]))
        if action == "delete":
            del r[key]
        elif action == "replace" or not isinstance(r[key], dict | list):
            r[key] = data.draw(json_values)
        else:
            inner = r[key]
            if isinstance(inner, list) and inner:
                inner[data.draw(st.integers(0, len(inner) - 1))] = data.draw(json_values)
            elif isinstance(inner, dict) and inner:
                inner[data.draw(st.sampled_from(sorted(inner)))] = data.draw(json_values)
    return r


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_reader_and_rules_never_crash_on_mangled_resources(data: st.DataObject) -> None:
    COUNTS["mangled resources through the reader and rules"] += 1
    case = data.draw(st.sampled_from(CASES))
    resources = [
        mutate(e["resource"], data) if data.draw(st.booleans()) else e["resource"]
        for e in case["bundle"]["entry"]
    ]
    try:
        ev = EVALUATOR.evaluate(resources, AS_OF, patient_id="p1", strict_subject=False)
    except NoPatientError:
        return
    assert ev.decision.phase in (
        "assessment",
        "stabilization",
        "maintenance",
        "recovery",
        "not-applicable",
    )
    EVALUATOR.apply_bundle(ev)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hooks_with_mangled_prefetch(client: Any, data: st.DataObject) -> None:
    COUNTS["hook calls with mangled prefetch"] += 1
    case = data.draw(st.sampled_from(CASES))
    items = [
        mutate(e["resource"], data) if data.draw(st.booleans()) else e["resource"]
        for e in case["bundle"]["entry"]
    ]
    shape = data.draw(st.sampled_from(["list", "searchset", "entries"]))
    value: Any = items
    if shape == "searchset":
        value = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in items],
        }
    elif shape == "entries":
        value = [{"fullUrl": f"urn:uuid:{i}", "resource": r} for i, r in enumerate(items)]
    body = {
        "hook": "patient-view",
        "hookInstance": "fuzz",
        "context": {"patientId": "p1"},
        "prefetch": {
            "patient": None,
            "conditions": value,
            "observations": None,
            "medicationRequests": None,
        },
    }
    resp = client.post("/cds-services/oud-pathway", json=body)
    assert_answer(resp)
    if resp.status_code == 200:
        from cds_support import assert_valid_response

        assert_valid_response(resp.get_json())


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_apply_with_mangled_data(client: Any, data: st.DataObject) -> None:
    COUNTS["$apply with mangled data"] += 1
    case = data.draw(st.sampled_from(CASES))
    entries = [
        {"resource": mutate(e["resource"], data) if data.draw(st.booleans()) else e["resource"]}
        for e in case["bundle"]["entry"]
    ]
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": "Patient/p1"},
            {"name": "asOf", "valueDateTime": case["asOf"]},
            {
                "name": "data",
                "resource": {"resourceType": "Bundle", "type": "collection", "entry": entries},
            },
        ],
    }
    assert_answer(client.post("/fhir/PlanDefinition/oud-care-pathway/$apply", json=params))


@settings(max_examples=150, deadline=None)
@given(
    resource=st.sampled_from(RESOURCES),
    value=json_values,
    field=st.sampled_from(
        [
            "effectiveDateTime",
            "authoredOn",
            "recordedDate",
            "birthDate",
            "valueInteger",
            "valueString",
            "valueQuantity",
            "status",
            "medicationReference",
            "clinicalStatus",
            "component",
        ]
    ),
)
def test_one_field_any_value(resource: dict[str, Any], value: Any, field: str) -> None:
    COUNTS["one field, any value"] += 1
    r = {**resource, field: value}
    others = [x for x in RESOURCES if x.get("resourceType") == "Patient"][:1]
    try:
        ev = EVALUATOR.evaluate([*others, r], AS_OF, patient_id="p1", strict_subject=False)
    except NoPatientError:
        return
    assert ev.decision.patient_id == "p1"
