"""The one FHIR id check (pathway.fhir.bundle.FHIR_ID): the FHIR id grammar less the two ids
that are path segments, "." and ".." (valid by the grammar, but a URL resolves them: `Patient/..`
is the server's base). Every place that puts a patient id into a URL uses it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from builders import patient
from cds_support import hook_request
from flask.testing import FlaskClient

from pathway.cli import main
from pathway.fhir.bundle import FHIR_ID, ref_of


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("p1", True),
        ("a.b-C9", True),
        ("...", True),  # not a path segment
        (".a", True),
        ("a..", True),
        ("x" * 64, True),
        (".", False),
        ("..", False),
        ("x" * 65, False),
        ("", False),
        ("a/b", False),
        ("a%2Fb", False),
        ("a#", False),
        ("a?b", False),
        ("a\n", False),
        ("a b", False),
    ],
)
def test_fhir_id(value: str, ok: bool) -> None:
    assert bool(FHIR_ID.fullmatch(value)) is ok


def test_an_id_that_is_a_path_segment_is_cited_by_its_full_url() -> None:
    assert ref_of({"resourceType": "Observation", "id": ".."}, "urn:uuid:1") == "urn:uuid:1"


@pytest.mark.parametrize("pid", ["..", ".", "Patient/..", "Patient/."])
def test_hook_refuses_a_patient_id_that_is_a_path_segment(client: FlaskClient, pid: str) -> None:
    body = hook_request("patient-view", pid, {"patient": patient()})
    resp = client.post(
        "/cds-services/oud-pathway", data=orjson.dumps(body), content_type="application/json"
    )
    assert resp.status_code == 400
    assert "not a FHIR id" in resp.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("subject", ["Patient/..", "Patient/."])
def test_apply_refuses_a_subject_that_is_a_path_segment(client: FlaskClient, subject: str) -> None:
    params: dict[str, Any] = {
        "resourceType": "Parameters",
        "parameter": [{"name": "subject", "valueString": subject}],
    }
    resp = client.post("/fhir/PlanDefinition/oud-care-pathway/$apply", json=params)
    assert resp.status_code == 400
    text = resp.get_json()["issue"][0]["diagnostics"]
    assert "FHIR id" in text and ".." not in text.replace("'", "")


@pytest.mark.parametrize("pid", ["..", "p1?_count=1", "../Patient/x"])
def test_sync_refuses_a_patient_that_is_not_a_fhir_id(
    pid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sync", "--fhir-base", "http://127.0.0.1:9/fhir", "--patient", pid]) == 2
    assert "FHIR id" in capsys.readouterr().err
