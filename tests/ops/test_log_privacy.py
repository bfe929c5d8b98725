"""No patient data, names, identifiers or tokens in any log line of a full run (42 CFR Part 2).

A whole session is played with a patient whose name, id and tokens are distinctive strings,
through every path that logs: hooks with prefetch and with fetching, a failing EHR, $apply,
feedback with a free-text comment, refused callers, an unexpected error, write-back failing and
retried. Every record, as the JSON formatter writes it, is then searched for those strings.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import responses
from builders import BUP_NALOXONE_FILM, condition, day_ago, med
from cds_support import Signer

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.logs import JsonFormatter
from pathway.settings import Settings

PID = "zq-4471-patient"
NAME = "Zebulon"
FAMILY = "Quintrell"
EHR_TOKEN = "ehr-token-SECRET-9f8e7d"
EHR = "https://ehr.example.org/fhir"
PUBLIC = "https://cds.example.org"


def test_no_patient_data_or_tokens_in_the_logs(tmp_path: Path, config: LoadedConfig) -> None:
    signer = Signer("ES384")
    clients = tmp_path / "clients.json"
    clients.write_bytes(orjson.dumps([{"iss": signer.iss, "jwks": signer.jwks}]))
    settings = Settings.from_mapping(
        {
            "PATHWAY_PUBLIC_URL": PUBLIC,
            "PATHWAY_CDS_CLIENTS_FILE": str(clients),
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
            "PATHWAY_FHIR_ALLOWLIST": EHR,
            "PATHWAY_FHIR_BASE_URL": EHR,
            "PATHWAY_WRITEBACK": "direct",
            "PATHWAY_LOG_LEVEL": "DEBUG",
        }
    )
    app = create_app({"settings": settings, "config": config, "START_OUTBOX": False})
    app.extensions["pathway"].writeback.sleep = lambda _s: None

    def boom() -> None:
        raise RuntimeError(f"{NAME} {FAMILY} {PID}")

    app.add_url_rule("/boom-privacy", view_func=boom)  # type: ignore[arg-type]

    lines: list[str] = []
    formatter = JsonFormatter()

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    capture = Capture(level=logging.DEBUG)
    watched = [logging.getLogger(n) for n in ("pathway", "werkzeug", "gunicorn", "")]
    for lg in watched:
        lg.addHandler(capture)
    logging.getLogger("pathway").setLevel(logging.DEBUG)
    try:
        _play_session(app, signer)
    finally:
        for lg in watched:
            lg.removeHandler(capture)
    assert lines, "the session must have logged something"
    joined = "\n".join(lines)
    for secret in (PID, NAME, FAMILY, EHR_TOKEN, "1974-02-11", "declined-by-Zebulon"):
        assert secret not in joined, f"{secret!r} leaked into the logs"
    assert "eyJ" not in joined  # no JWT (base64url JSON header) either


def _patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": PID,
        "birthDate": "1974-02-11",
        "gender": "male",
        "name": [{"given": [NAME], "family": FAMILY}],
        "identifier": [{"system": "urn:mrn", "value": f"MRN-{PID}"}],
    }


def _play_session(app: Any, signer: Signer) -> None:
    client = app.test_client()
    aud = f"{PUBLIC}/cds-services/oud-pathway"
    prefetch = {
        "patient": _patient(),
        "conditions": [condition(pid=PID)],
        "observations": None,
        "medicationRequests": [med(BUP_NALOXONE_FILM, authored=day_ago(3), pid=PID)],
    }
    body = {
        "hook": "patient-view",
        "hookInstance": "h-1",
        "context": {"patientId": PID},
        "prefetch": prefetch,
    }

    def post(path: str, data: Any, token: str | None, audience: str = aud) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.post(path, json=data, headers=headers)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        # The EHR fails every write and search: write-back is retried and kept.
        rsps.add(responses.GET, f"{EHR}/metadata", status=503)
        rsps.add(
            responses.GET,
            f"{EHR}/Condition",
            status=500,
            json={
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "exception",
                        "diagnostics": f"no such patient {PID} {NAME}",
                    }
                ],
            },
        )
        assert post("/cds-services/oud-pathway", body, signer.token(aud)).status_code == 200
        app.extensions["pathway"].writeback.drain()
        # missing keys fetched from a failing EHR, with the hook's token
        fetch = {
            **body,
            "hookInstance": "h-2",
            "prefetch": {"patient": _patient()},
            "fhirServer": EHR,
            "fhirAuthorization": {
                "access_token": EHR_TOKEN,
                "token_type": "Bearer",
                "scope": "x",
                "subject": "s",
            },
        }
        assert post("/cds-services/oud-pathway", fetch, signer.token(aud)).status_code == 412
    # refused callers: a bad token, a replayed token, an unknown issuer
    assert post("/cds-services/oud-pathway", body, "x.y.z").status_code == 401
    replay = signer.token(aud)
    post("/cds-services/oud-pathway", body, replay)
    assert post("/cds-services/oud-pathway", body, replay).status_code == 401
    # a fhirServer not on the allow-list
    bad = {**body, "hookInstance": "h-3", "fhirServer": "https://evil.example.net/fhir"}
    assert post("/cds-services/oud-pathway", bad, signer.token(aud)).status_code == 403
    # feedback with a free-text comment naming the patient
    fb = {
        "feedback": [
            {
                "card": "c",
                "outcome": "overridden",
                "outcomeTimestamp": "t",
                "overrideReason": {"userComment": "declined-by-Zebulon"},
            }
        ]
    }
    assert (
        post("/cds-services/oud-pathway/feedback", fb, signer.token(f"{aud}/feedback")).status_code
        == 200
    )
    # $apply (auth on) and a malformed one
    apply_aud = f"{PUBLIC}/fhir/PlanDefinition/oud-care-pathway/$apply"
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": f"Patient/{PID}"},
            {
                "name": "data",
                "resource": {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [{"resource": _patient()}, {"resource": condition(pid=PID)}],
                },
            },
        ],
    }
    resp = client.post(
        "/fhir/PlanDefinition/oud-care-pathway/$apply",
        json=params,
        headers={"Authorization": f"Bearer {signer.token(apply_aud)}"},
    )
    assert resp.status_code == 200
    broken = {
        "resourceType": "Parameters",
        "parameter": [{"name": "subject", "valueString": f"Patient/{PID}/{NAME}"}],
    }
    client.post(
        "/fhir/PlanDefinition/oud-care-pathway/$apply",
        json=broken,
        headers={"Authorization": f"Bearer {signer.token(apply_aud)}"},
    )
    # an unexpected error whose message quotes the patient
    assert client.get("/boom-privacy").status_code == 500
