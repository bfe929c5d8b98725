"""Error bodies say what is wrong in the service's own words (the field, the rule): they never
repeat what the caller sent or what an upstream server answered (issue 10). Each probe carries a
distinctive marker; no answer may contain it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import responses
from builders import patient
from cds_support import hook_request
from flask.testing import FlaskClient

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.fhir.client import FhirError, FhirUnavailable
from pathway.fhir.prefetch import resolve
from pathway.settings import Settings

MARK = "ZQXMARK"
UPSTREAM = "UPSTREAM-DIAGNOSTICS-Q7"
EHR = "https://ehr.example.org/fhir"


@pytest.fixture
def client(tmp_path: Path, config: LoadedConfig) -> FlaskClient:
    settings = Settings.from_mapping(
        {
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
            "PATHWAY_FHIR_BASE_URL": EHR,
        }
    )
    app = create_app({"settings": settings, "config": config})
    app.extensions["pathway"].writeback.sleep = lambda _s: None  # retries without waiting
    return app.test_client()


def params(subject: str, data: Any = None) -> dict[str, Any]:
    p: list[dict[str, Any]] = [{"name": "subject", "valueString": subject}]
    if data is not None:
        p.append({"name": "data", "resource": data})
    return {"resourceType": "Parameters", "parameter": p}


APPLY = "/fhir/PlanDefinition/oud-care-pathway/$apply"
HOOK = hook_request("patient-view", "p1", {"patient": patient()})
PROBES: dict[str, tuple[str, str, Any, str]] = {
    # name: (method, path, body, content type)
    "malformed JSON": (
        "POST",
        "/cds-services/oud-pathway",
        b'{"a": ' + MARK.encode(),
        "application/json",
    ),
    "Content-Type": ("POST", "/cds-services/oud-pathway", b"{}", f"text/{MARK}"),
    "unknown service": ("POST", f"/cds-services/{MARK}", HOOK, "application/json"),
    "unknown service feedback": ("POST", f"/cds-services/{MARK}/feedback", {}, "application/json"),
    "wrong hook": ("POST", "/cds-services/oud-pathway", {**HOOK, "hook": MARK}, "application/json"),
    "patient id": (
        "POST",
        "/cds-services/oud-pathway",
        {**HOOK, "context": {"patientId": f"{MARK}/.."}},
        "application/json",
    ),
    "subject": ("POST", APPLY, params(f"Patient/{MARK} x"), "application/json"),
    "subject of another type": ("POST", APPLY, params(f"{MARK}/p1"), "application/json"),
    "data type": ("POST", APPLY, params("Patient/p1", {"resourceType": MARK}), "application/json"),
    "data of nobody": (
        "POST",
        APPLY,
        params(
            "Patient/p1",
            {
                "resourceType": "Bundle",
                "entry": [{"resource": {"resourceType": "Observation", "id": MARK}}],
            },
        ),
        "application/json",
    ),
    "conformance id": ("GET", f"/fhir/ValueSet/{MARK}", None, ""),
    "conformance type": ("GET", f"/fhir/{MARK}/x", None, ""),
    "not an object": ("POST", APPLY, [MARK], "application/json"),
    "field type": (
        "POST",
        "/cds-services/oud-pathway",
        {**HOOK, "hookInstance": [MARK]},
        "application/json",
    ),
}


@pytest.mark.parametrize("probe", PROBES.values(), ids=PROBES.keys())
def test_refusals_do_not_repeat_the_request(
    client: FlaskClient, probe: tuple[str, str, Any, str]
) -> None:
    method, path, body, ctype = probe
    data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    resp = client.open(path, method=method, data=data, content_type=ctype or None)
    assert 400 <= resp.status_code < 500, resp.get_data(as_text=True)
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"]
    assert MARK not in resp.get_data(as_text=True)
    for internal in ("Error", "Exception", "NoneType", "dict", "list"):
        assert internal not in outcome["issue"][0]["diagnostics"], internal


def test_malformed_json_says_where(client: FlaskClient) -> None:
    resp = client.post(
        "/cds-services/oud-pathway", data=b'{\n  "a": tru}', content_type="application/json"
    )
    assert resp.get_json()["issue"][0]["diagnostics"] == "Malformed JSON (line 2, column 8)."


@pytest.mark.parametrize("status", [400, 403, 500])
def test_an_upstream_answer_is_not_repeated(client: FlaskClient, status: int) -> None:
    upstream = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": UPSTREAM}],
    }
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{EHR}/Patient/p1", json=upstream, status=status)
        resp = client.post(APPLY, json=params("Patient/p1"))
    assert resp.status_code in (424, 502)
    text = resp.get_data(as_text=True)
    assert UPSTREAM not in text
    assert f"HTTP {status}" in resp.get_json()["issue"][0]["diagnostics"]


def test_prefetch_notes_name_the_status_not_the_servers_text() -> None:
    def fetch(_query: str) -> list[Any]:
        raise FhirUnavailable(f"GET answered 503: {UPSTREAM}", 503)

    out = resolve({"patient": patient()}, {"observations": "Observation?patient=p1"}, {}, fetch)
    assert out.missing == ["observations"] or "observations" in " ".join(out.notes)
    assert all(UPSTREAM not in n for n in out.notes)
    assert any("HTTP 503" in n for n in out.notes)

    def unreachable(_query: str) -> list[Any]:
        raise FhirError(f"GET failed: {UPSTREAM}")

    out = resolve(
        {"patient": patient()}, {"observations": "Observation?patient=p1"}, {}, unreachable
    )
    assert all(UPSTREAM not in n for n in out.notes)
