"""FHIR Subscription notifications: new data for a patient -> re-evaluate and write back.

Accepted bodies (rest-hook): an R4 notification carrying the changed resource (full resource),
an R4 id-only/empty ping (nothing to do without a resource: 200), or an R4B topic-based
notification Bundle (SubscriptionStatus first, then the focus resources or only their
references in notificationEvent.focus). The patient of each resource is re-read from
PATHWAY_FHIR_BASE_URL, evaluated now, and written back through the outbox.

The FHIR server authenticates with `Authorization: Bearer <PATHWAY_NOTIFICATION_TOKEN>` (set the
same value in Subscription.channel.header).

What a notification names is checked before any request is made (the service reads with its own
SMART credentials: it must not become a confused deputy). Every reference is a literal one,
`Type/id` (or `Type/id/_history/vid`, or PATHWAY_FHIR_BASE_URL followed by that), with a FHIR id
that is not a path segment; a focus resource is one of the patient's record that the pathway
reads (FOCUS_TYPES, all in the R4 patient compartment); at most MAX_FOCUS of them are read. Any
other reference refuses the whole notification with 400 and nothing is called. Reads are built
from the checked parts, each path segment quoted.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, request

from pathway.api.errors import ApiError, operation_outcome
from pathway.api.jsonio import fhir_response, read_body, read_json_body
from pathway.fhir.bundle import FHIR_ID, as_list, flatten
from pathway.fhir.client import FhirError
from pathway.service import Service

log = logging.getLogger("pathway.notifications")
bp = Blueprint("notifications", __name__)

# Resource types of a patient's record whose change can change the pathway: those it reads. All are
# in the R4 patient compartment; anything else (Practitioner, Binary, Group, ...) is refused.
FOCUS_TYPES = frozenset(
    {"Patient", "Condition", "Observation", "MedicationRequest", "CarePlan", "Task"}
)
PATIENT_LINKS = ("subject", "patient", "for")
MAX_FOCUS = 20  # focus resources read per notification (each is a request in this call)
RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
NOT_AUTHENTICATED = "The notification caller is not authenticated."


class BadReference(ValueError):
    """A reference a notification may not use; the message names the element, not the value."""


def _check_caller(svc: Service) -> None:
    expected = svc.settings.notification_token
    if expected is None:
        if svc.settings.auth_mode == "off":
            return
        log.warning("notification refused: PATHWAY_NOTIFICATION_TOKEN is not set")
        raise ApiError(401, NOT_AUTHENTICATED, "login")
    given = request.headers.get("Authorization", "")
    token = given[7:].strip() if given.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(token.encode(), expected.encode()):
        log.warning("notification refused: wrong or missing bearer token")
        raise ApiError(401, NOT_AUTHENTICATED, "login")


def parse_reference(ref: Any, base: str) -> tuple[str, str] | None:
    """(type, id) of a literal reference to a resource on `base`: `Type/id`,
    `Type/id/_history/vid`, or `base` + "/" + one of those. None for anything else."""
    if not isinstance(ref, str):
        return None
    if ref.startswith(base + "/"):
        ref = ref[len(base) + 1 :]
    parts = ref.split("/")
    if len(parts) == 4 and parts[2] == "_history" and FHIR_ID.fullmatch(parts[3]):
        parts = parts[:2]
    if len(parts) != 2:
        return None
    rtype, rid = parts
    if not RESOURCE_TYPE.fullmatch(rtype) or not FHIR_ID.fullmatch(rid):
        return None
    return rtype, rid


def _local(ref: str) -> bool:
    """A reference inside the notification itself (contained, or a Bundle's urn): no URL."""
    return ref.startswith(("#", "urn:uuid:", "urn:oid:"))


def patient_of(resource: dict[str, Any], base: str, where: str) -> str | None:
    """The patient a resource belongs to, or None when it names none. Raises BadReference for a
    reference the service would not follow (`where` names the element in the message)."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        if rid is None:
            return None
        if not isinstance(rid, str) or not FHIR_ID.fullmatch(rid):
            raise BadReference(f"{where}Patient.id is not a FHIR id")
        return rid
    for key in PATIENT_LINKS:
        link = resource.get(key)
        ref = link.get("reference") if isinstance(link, dict) else None
        if ref is None:
            continue
        named = rtype if isinstance(rtype, str) and RESOURCE_TYPE.fullmatch(rtype) else "resource"
        element = f"{where}{named}.{key}.reference"
        if isinstance(ref, str) and _local(ref):
            continue
        parsed = parse_reference(ref, base)
        if parsed is None:
            raise BadReference(
                f"{element} is not a reference to a resource on the configured FHIR server "
                "(Type/id with a FHIR id)"
            )
        if parsed[0] == "Patient":
            return parsed[1]
    return None


def named_in(body: Any, base: str) -> tuple[set[str], list[tuple[str, str]]]:
    """Patient ids named by a notification, and the focus resources (type, id) to read for the
    others. Everything is checked first: BadReference when anything is not acceptable."""
    patients: set[str] = set()
    focus: list[tuple[str, str]] = []
    for res, _ in flatten(body).resources:
        rtype = res.get("resourceType")
        if rtype in ("SubscriptionStatus", "Parameters"):
            for event in as_list(res.get("notificationEvent")):
                focus_of = event.get("focus") if isinstance(event, dict) else None
                ref = focus_of.get("reference") if isinstance(focus_of, dict) else None
                if ref is None:
                    continue
                parsed = parse_reference(ref, base)
                if parsed is None or parsed[0] not in FOCUS_TYPES:
                    raise BadReference(
                        f"{rtype}.notificationEvent.focus.reference must be a literal reference to "
                        "a resource of a patient's record on the configured FHIR server ("
                        + ", ".join(sorted(FOCUS_TYPES))
                        + ", with a FHIR id)"
                    )
                if parsed[0] == "Patient":
                    patients.add(parsed[1])
                elif parsed not in focus:
                    focus.append(parsed)
            continue
        pid = patient_of(res, base, "")
        if pid:
            patients.add(pid)
    if len(focus) > MAX_FOCUS:
        raise BadReference(f"at most {MAX_FOCUS} focus references are read per notification")
    return patients, focus


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
    try:
        patients, focus = named_in(body, base)
    except BadReference as e:
        log.warning("notification refused: %s", e)
        raise ApiError(400, f"Notification refused, nothing was read: {e}.", "invalid") from e
    unresolved = 0
    if focus:
        client = svc.writeback.client(base)
        for rtype, rid in focus:
            try:
                # from checked parts only, each segment quoted (a FHIR id needs no quoting: this
                # is the second line of defence)
                resource = client.read(quote(rtype, safe=""), quote(rid, safe=""))
                pid = patient_of(resource, base, "the focus resource's ")
            except (FhirError, BadReference) as e:
                log.warning("notification focus not resolved: %s", type(e).__name__)
                pid = None
            if pid:
                patients.add(pid)
            else:
                unresolved += 1
    for pid in sorted(patients):
        svc.workflow.reevaluate_later(pid)
    message = f"Re-evaluation queued for {len(patients)} patient(s)."
    if unresolved:
        message += f" {unresolved} focus reference(s) could not be resolved."
    log.info("notification: %d patient(s) queued", len(patients))
    return fhir_response(operation_outcome(message, "informational", "information"), 202)
