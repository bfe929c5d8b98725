"""POST /notifications trusts nothing it is sent (issue 10): every id and reference is checked
before any request; the attacks of the external run are refused with a 4xx OperationOutcome and
make no outbound request at all (`responses` would record any)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from fuzz_counts import COUNTS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathway import create_app
from pathway.api.notifications import MAX_FOCUS
from pathway.config import LoadedConfig
from pathway.settings import Settings as ServiceSettings

EHR = "https://ehr.example.org/fhir"
TOKEN = "notification-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(tmp_path: Path, config: LoadedConfig) -> Flask:
    settings = ServiceSettings.from_mapping(
        {
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'n.db'}",
            "PATHWAY_NOTIFICATION_TOKEN": TOKEN,
            "PATHWAY_FHIR_BASE_URL": EHR,
        }
    )
    app = create_app({"settings": settings, "config": config, "START_OUTBOX": False})
    jobs: list[Callable[[], None]] = []
    app.extensions["pathway"].writeback.submit = jobs.append  # re-evaluations, held back
    app.config["jobs"] = jobs
    return app


def queued(app: Flask) -> list[str]:
    """The patients whose re-evaluation a notification queued, in order: each held-back job is
    run against a FHIR server that has no one (its first read, `Patient/{id}`, names it)."""
    jobs: list[Callable[[], None]] = app.config["jobs"]
    patients = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(re.compile(".*"), status=404, json={"resourceType": "OperationOutcome"})
        for job in jobs:
            before = len(rsps.calls)
            job()
            url = str(rsps.calls[before].request.url)
            assert url.startswith(f"{EHR}/Patient/")
            patients.append(url.removeprefix(f"{EHR}/Patient/"))
    jobs.clear()
    return patients


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def topic(*refs: Any) -> dict[str, Any]:
    """An R4B topic-based notification Bundle naming focus references."""
    return {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {
                "resource": {
                    "resourceType": "SubscriptionStatus",
                    "status": "active",
                    "type": "event-notification",
                    "notificationEvent": [
                        {"eventNumber": str(i), "focus": {"reference": r}}
                        for i, r in enumerate(refs, 1)
                    ],
                }
            }
        ],
    }


def observation(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": subject},
    }


ATTACKS = {
    "a read turned into a search": topic("Patient/x?_id=other"),
    "a focus read turned into a search": topic("Observation/x?_id=other"),
    "escape the base path": topic("Observation/../x"),
    "escape the base path, encoded": topic("Observation/%2F..%2Fx"),
    "escape the base path, encoded id": topic("Observation/..%2F..%2Fmetadata"),
    "a fragment cuts the URL": topic("Observation/x#"),
    "a fragment, inside": topic("Observation/x#/../../y"),
    "an id that is a path segment": topic("Observation/.."),
    "an id that is the current segment": topic("Observation/."),
    "a version that is a path segment": topic("Observation/o1/_history/.."),
    "outside the patient compartment: Practitioner": topic("Practitioner/pr1"),
    "outside the patient compartment: Binary": topic("Binary/b1"),
    "outside the patient compartment: Group": topic("Group/g1"),
    "another server": topic("https://evil.example.net/fhir/Observation/o1"),
    "another server, our base as a prefix": topic(f"{EHR}.evil.example.net/Observation/o1"),
    "a relative path with more segments": topic("fhir/Observation/o1"),
    "not a string": topic(7),
    "empty": topic(""),
    "a subject read turned into a search": observation("Patient/x?_id=other"),
    "a subject that escapes": observation("Patient/../Observation/o9"),
    "a subject on another server": observation("https://evil.example.net/fhir/Patient/p1"),
    "a Patient whose id is a path segment": {"resourceType": "Patient", "id": ".."},
    "a Patient whose id carries a query": {"resourceType": "Patient", "id": "p1?_count=1000"},
    "one bad reference among good ones": topic("Observation/o1", "Observation/../x"),
    "too many focus references": topic(*[f"Observation/o{i}" for i in range(MAX_FOCUS + 1)]),
}


@pytest.mark.parametrize("body", ATTACKS.values(), ids=ATTACKS.keys())
def test_attacks_are_refused_before_any_request(
    app: Flask, client: FlaskClient, body: dict[str, Any]
) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        resp = client.post("/notifications", json=body, headers=AUTH)
        assert len(rsps.calls) == 0  # nothing went out
    assert resp.status_code == 400, resp.get_data(as_text=True)
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    text = outcome["issue"][0]["diagnostics"]
    assert "nothing was read" in text
    for part in ("..", "%2F", "_id=", "evil", "#", "?"):  # says what is wrong, not what was sent
        assert part not in text, text
    assert queued(app) == []


def test_a_focus_resource_is_read_from_checked_parts(app: Flask, client: FlaskClient) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{EHR}/Observation/o1", json=observation("Patient/p1"))
        rsps.get(
            f"{EHR}/Condition/c-2.x",
            json={**observation("Patient/p2"), "resourceType": "Condition"},
        )
        resp = client.post(
            "/notifications",
            json=topic("Observation/o1", f"{EHR}/Condition/c-2.x/_history/3", "Patient/p3"),
            headers=AUTH,
        )
        assert [c.request.url for c in rsps.calls] == [
            f"{EHR}/Observation/o1",
            f"{EHR}/Condition/c-2.x",
        ]
    assert resp.status_code == 202
    assert sorted(queued(app)) == ["p1", "p2", "p3"]


def test_a_focus_resource_that_names_a_bad_patient_is_not_followed(
    app: Flask, client: FlaskClient
) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{EHR}/Observation/o1", json=observation("Patient/../x"))
        resp = client.post("/notifications", json=topic("Observation/o1"), headers=AUTH)
        assert len(rsps.calls) == 1
    assert resp.status_code == 202
    assert (
        "1 focus reference(s) could not be resolved" in resp.get_json()["issue"][0]["diagnostics"]
    )
    assert queued(app) == []


def test_full_resource_notifications_name_their_patient(app: Flask, client: FlaskClient) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for body in (
            observation("Patient/p1"),
            observation(f"{EHR}/Patient/p2"),
            observation("urn:uuid:3f1c8a1e-0000-4000-8000-000000000001"),  # in-Bundle: no URL
            {"resourceType": "Patient", "id": "p4"},
        ):
            assert client.post("/notifications", json=body, headers=AUTH).status_code == 202
        assert len(rsps.calls) == 0
    assert queued(app) == ["p1", "p2", "p4"]


def test_refusals_to_the_caller_are_generic(tmp_path: Path, config: LoadedConfig) -> None:
    """An unauthenticated caller is not told how the service is configured."""
    settings = ServiceSettings.from_mapping(
        {"PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'n.db'}"}
    )
    client = create_app({"settings": settings, "config": config}).test_client()
    resp = client.post("/notifications", json={}, headers=AUTH)
    assert resp.status_code == 401
    assert "PATHWAY_" not in resp.get_json()["issue"][0]["diagnostics"]


REFERENCE_BITS = st.sampled_from(
    [
        "Observation",
        "Patient",
        "Condition",
        "Binary",
        "o1",
        "p1",
        "..",
        ".",
        "%2F",
        "#",
        "?",
        "_id=x",
        "_history",
        "2",
        EHR,
        "https://evil.example.net",
        "urn:uuid:1",
        "",
        " ",
    ]
)
references = st.lists(REFERENCE_BITS, min_size=1, max_size=5).map("/".join) | st.text(max_size=30)
URL_ALLOWED = re.compile(
    re.escape(EHR)
    + r"/(Observation|Condition|MedicationRequest|CarePlan|Task)/[A-Za-z0-9\-.]{1,64}"
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(refs=st.lists(references, min_size=1, max_size=4), inline=st.booleans())
def test_any_reference_is_refused_or_read_from_checked_parts(
    client: FlaskClient, refs: list[str], inline: bool
) -> None:
    """Whatever the references, the answer is never a 5xx, and every request that goes out is a
    read of a pathway resource type by a FHIR id on the configured server."""
    COUNTS["notification references"] += 1
    body = (
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": observation(r)} for r in refs],
        }
        if inline
        else topic(*refs)
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(
            responses.GET,
            re.compile(".*"),
            callback=lambda req: (200, {}, orjson.dumps(observation("Patient/p1"))),
        )
        resp = client.post("/notifications", json=body, headers=AUTH)
        urls = [c.request.url for c in rsps.calls]
    assert resp.status_code in (202, 400), resp.get_data(as_text=True)
    for url in urls:
        assert url is not None and URL_ALLOWED.fullmatch(url), url
    if resp.status_code == 400:
        assert urls == []
