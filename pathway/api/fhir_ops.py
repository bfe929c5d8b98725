"""The service's own FHIR endpoint under /fhir (CONTRACT.md §2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app

from pathway.api.auth import require_caller
from pathway.api.errors import ApiError
from pathway.api.jsonio import fhir_response, read_json_body
from pathway.api.schemas import ParametersSchema, load_or_400
from pathway.fhir.bundle import FHIR_ID
from pathway.fhir.facts import parse_when
from pathway.service import Service

bp = Blueprint("fhir", __name__, url_prefix="/fhir")
CONFORMANCE_TYPES = ("PlanDefinition", "StructureDefinition", "CodeSystem", "ValueSet")
_parameters = ParametersSchema()


def _service() -> Service:
    svc: Service = current_app.extensions["pathway"]
    return svc


@bp.get("/metadata")
def metadata() -> Response:
    svc = _service()
    cfg = svc.config.pathway
    resources = [
        {
            "type": t,
            "interaction": [{"code": "read"}],
            **(
                {
                    "operation": [
                        {
                            "name": "apply",
                            "definition": "http://hl7.org/fhir/OperationDefinition/"
                            "PlanDefinition-apply",
                        }
                    ]
                }
                if t == "PlanDefinition"
                else {}
            ),
        }
        for t in CONFORMANCE_TYPES
    ]
    body = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": svc.started_at.date().isoformat(),
        "publisher": "OUD Care Pathway project",
        "kind": "instance",
        "software": {"name": "oud-pathway", "version": cfg.version},
        "implementation": {
            "description": "OUD care pathway service",
            "url": f"{svc.settings.base_url}/fhir",
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "instantiates": [f"{cfg.canonical}/PlanDefinition/oud-care-pathway"],
        "rest": [{"mode": "server", "resource": resources}],
    }
    return fhir_response(body)


@bp.get("/<rtype>/<rid>")
def read(rtype: str, rid: str) -> Response:
    if rtype not in CONFORMANCE_TYPES:
        raise ApiError(
            404, f"This endpoint serves only {', '.join(CONFORMANCE_TYPES)}.", "not-supported"
        )
    svc = _service()
    found = svc.config.conformance.get(rtype, {}).get(rid)
    if found is None and rtype == "ValueSet":
        found = svc.config.valuesets.get(rid)
    if found is None:
        raise ApiError(404, f"No {rtype} with this id here.", "not-found")
    return fhir_response(found)


def _params(body: Any) -> dict[str, list[dict[str, Any]]]:
    data = load_or_400(_parameters, body, "Parameters")
    out: dict[str, list[dict[str, Any]]] = {}
    for p in data["parameter"]:
        out.setdefault(p["name"], []).append(p)
    return out


def parse_as_of(raw: str | None) -> datetime:
    if raw is None:
        return datetime.now(UTC)
    when = parse_when(raw)
    if when is None or when.date_only:
        raise ApiError(
            400,
            "asOf must be a full dateTime with a time zone, e.g. 2025-06-15T12:00:00Z.",
            expression=["Parameters.parameter[asOf]"],
        )
    return when.earliest


@bp.post("/PlanDefinition/oud-care-pathway/$apply")
@require_caller
def apply() -> Response:
    params = _params(read_json_body())
    subjects = params.get("subject", [])
    if len(subjects) != 1 or not isinstance(subjects[0].get("valueString"), str):
        raise ApiError(
            400,
            "Parameters need exactly one 'subject' with valueString 'Patient/{id}'.",
            expression=["Parameters.parameter[subject]"],
        )
    subject = subjects[0]["valueString"].strip()
    if not subject.startswith("Patient/") or not FHIR_ID.fullmatch(subject[8:]):
        raise ApiError(
            400,
            "subject must be 'Patient/{id}' with a FHIR id (letters, digits, '-' and '.', "
            "at most 64).",
            expression=["Parameters.parameter[subject]"],
        )
    patient_id = subject[8:]
    as_of_params = params.get("asOf", [])
    if len(as_of_params) > 1:
        raise ApiError(400, "At most one 'asOf'.", expression=["Parameters.parameter[asOf]"])
    as_of = parse_as_of(as_of_params[0].get("valueDateTime") if as_of_params else None)
    if as_of_params and as_of_params[0].get("valueDateTime") is None:
        raise ApiError(
            400, "asOf needs a valueDateTime.", expression=["Parameters.parameter[asOf]"]
        )
    data_params = params.get("data", [])
    svc = _service()
    if len(data_params) > 1:
        raise ApiError(400, "At most one 'data' Bundle.", expression=["Parameters.parameter[data]"])
    if data_params:
        data = data_params[0].get("resource")
        if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
            raise ApiError(
                400,
                "'data' must carry a Bundle resource (resourceType 'Bundle').",
                expression=["Parameters.parameter[data]"],
            )
        if not isinstance(data.get("entry", []), list):
            raise ApiError(
                400,
                "'data' Bundle.entry must be a list.",
                expression=["Parameters.parameter[data].resource.entry"],
            )
    else:
        data = None  # read from PATHWAY_FHIR_BASE_URL
    return fhir_response(svc.workflow.apply(patient_id, data, as_of))
