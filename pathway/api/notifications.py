"""FHIR Subscription notifications: new data for a patient -> re-evaluate and write back.

Accepted bodies (rest-hook): an R4 notification carrying the changed resource (full resource),
an R4 id-only/empty ping (nothing to do without a resource: 200), or an R4B topic-based
notification Bundle (SubscriptionStatus first, then the focus resources or only their
references in notificationEvent.focus). The patient of each resource is re-read from
PATHWAY_FHIR_BASE_URL, evaluated now, and written back through the outbox.

The FHIR server authenticates with `Authorization: Bearer <PATHWAY_NOTIFICATION_TOKEN>` (set the
same value in Subscription.channel.header).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint, Response, current_app, request

from pathway.api.errors import ApiError, operation_outcome
from pathway.api.jsonio import fhir_response, read_body, read_json_body
from pathway.fhir.bundle import as_list, flatten
from pathway.fhir.client import FhirError
from pathway.service import Service

log = logging.getLogger("pathway.notifications")
bp = Blueprint("notifications", __name__)


def _check_caller(svc: Service) -> None:
    expected = svc.settings.notification_token
    if expected is None:
        if svc.settings.auth_mode == "off":
            return
        raise ApiError(
            401, "Notifications are not accepted: PATHWAY_NOTIFICATION_TOKEN is not set.", "login"
        )
    given = request.headers.get("Authorization", "")
    token = given[7:].strip() if given.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiError(401, "Notification caller not authenticated.", "login")


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
        return str(resource["id"])
    for key in ("subject", "patient", "for"):
        ref = resource.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            parts = ref["reference"].rstrip("/").split("/")
            if len(parts) >= 2 and parts[-2] == "Patient":
                return parts[-1]
    return None


def patients_in(body: Any, read: Any) -> tuple[set[str], list[str]]:
    """Patient ids named by a notification; `read(reference)` fetches a focus resource."""
    patients: set[str] = set()
    focus_refs: list[str] = []
    flat = flatten(body)
    for res, _ in flat.resources:
        if res.get("resourceType") in ("SubscriptionStatus", "Parameters"):
            for event in as_list(res.get("notificationEvent")):
                ref = (
                    (event.get("focus") or {}).get("reference") if isinstance(event, dict) else None
                )
                if isinstance(ref, str):
                    focus_refs.append(ref)
            continue
        pid = _patient_of(res)
        if pid:
            patients.add(pid)
    unresolved: list[str] = []
    for ref in focus_refs:
        parts = ref.split("/")
        if len(parts) >= 2 and parts[-2] == "Patient":
            patients.add(parts[-1])
            continue
        try:
            pid = _patient_of(read(ref))
        except FhirError:
            pid = None
        if pid:
            patients.add(pid)
        else:
            unresolved.append(ref)
    return patients, unresolved


@bp.post("/notifications")
def notification() -> Response:
    svc: Service = current_app.extensions["pathway"]
    _check_caller(svc)
    raw = read_body()
    if not raw.strip():
        return fhir_response(
            operation_outcome(
                "Heartbeat or id-only ping: nothing to do.", "informational", "information"
            )
        )
    body = read_json_body(raw)
    base = svc.settings.fhir_base_url
    if not base:
        raise ApiError(
            409,
            "No FHIR server is configured (PATHWAY_FHIR_BASE_URL): "
            "notifications cannot be acted on.",
            "not-supported",
        )
    client = svc.writeback.client(base)

    def read(ref: str) -> dict[str, Any]:
        rtype, rid = ref.split("/")[-2:]
        return client.read(rtype, rid)

    patients, unresolved = patients_in(body, read)
    for pid in sorted(patients):
        svc.workflow.reevaluate_later(pid)
    message = f"Re-evaluation queued for {len(patients)} patient(s)."
    if unresolved:
        message += f" {len(unresolved)} focus reference(s) could not be resolved."
    log.info("notification: %d patient(s) queued", len(patients))
    return fhir_response(operation_outcome(message, "informational", "information"), 202)
