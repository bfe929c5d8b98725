"""CDS Hooks endpoints (CONTRACT.md §1): discovery, the two services, feedback."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, g
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from pathway.api.auth import require_caller
from pathway.api.errors import ApiError
from pathway.api.jsonio import json_response, read_json_body
from pathway.api.observability import REQUEST_ID
from pathway.api.schemas import load_or_400
from pathway.fhir.bundle import FHIR_ID, flatten
from pathway.service import Service
from pathway.workflow import HookCall

log = logging.getLogger("pathway.cds")
bp = Blueprint("cds", __name__)

SERVICE_HOOKS = {
    "oud-pathway": ("patient-view",),
    "oud-order-safety": ("order-select", "order-sign"),
}


class FhirAuthorizationSchema(Schema):
    class Meta:
        unknown = INCLUDE

    access_token = fields.String(required=True, validate=validate.Length(min=1))
    token_type = fields.String(required=True)
    expires_in = fields.Integer()
    scope = fields.String()
    subject = fields.String()


class HookRequestSchema(Schema):
    class Meta:
        unknown = INCLUDE  # tolerate fields of CDS Hooks 1.x and 3.0

    hook = fields.String(required=True, validate=validate.Length(min=1))
    hookInstance = fields.String(required=True, validate=validate.Length(min=1))
    fhirServer = fields.Url(require_tld=False, schemes={"http", "https"})
    fhirAuthorization = fields.Nested(FhirAuthorizationSchema, allow_none=True)
    context = fields.Dict(required=True)
    prefetch = fields.Dict(allow_none=True)

    @validates_schema
    def _auth_needs_server(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("fhirAuthorization") and not data.get("fhirServer"):
            raise ValidationError("fhirAuthorization needs fhirServer", "fhirAuthorization")


class CodingSchema(Schema):
    class Meta:
        unknown = INCLUDE

    system = fields.String()
    code = fields.String(required=True)
    display = fields.String()


class OverrideReasonSchema(Schema):
    reason = fields.Nested(CodingSchema)
    userComment = fields.String()


class AcceptedSuggestionSchema(Schema):
    id = fields.String(required=True, validate=validate.Length(min=1))


class FeedbackItemSchema(Schema):
    class Meta:
        unknown = INCLUDE

    card = fields.String(required=True, validate=validate.Length(min=1))
    outcome = fields.String(required=True, validate=validate.OneOf(("accepted", "overridden")))
    acceptedSuggestions = fields.List(fields.Nested(AcceptedSuggestionSchema))
    overrideReason = fields.Nested(OverrideReasonSchema)
    outcomeTimestamp = fields.String(required=True, validate=validate.Length(min=1))

    @validates_schema
    def _accepted_needs_suggestions(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("outcome") == "accepted" and not data.get("acceptedSuggestions"):
            raise ValidationError("required for accepted outcomes", "acceptedSuggestions")


class FeedbackSchema(Schema):
    feedback = fields.List(
        fields.Nested(FeedbackItemSchema), required=True, validate=validate.Length(min=1)
    )


_hook_schema = HookRequestSchema()
_feedback_schema = FeedbackSchema()


def _service() -> Service:
    svc: Service = current_app.extensions["pathway"]
    return svc


@bp.get("/cds-services")
def discovery() -> Response:
    services = [
        {k: v for k, v in s.items() if not k.startswith("_")}
        for s in _service().config.services["services"]
    ]
    return json_response({"services": services})


def _context(hook: str, context: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    pid = context.get("patientId")
    if not isinstance(pid, str) or not pid.strip():
        raise ApiError(
            400, "context.patientId is required (a string).", expression=["context.patientId"]
        )
    drafts: list[dict[str, Any]] = []
    if hook in ("order-select", "order-sign"):
        orders = context.get("draftOrders")
        # A Bundle per the spec; a bare MedicationRequest or a list of them is tolerated.
        if isinstance(orders, dict) and orders.get("resourceType") == "MedicationRequest":
            orders = [orders]
        if isinstance(orders, list):
            orders = {"resourceType": "Bundle", "entry": [{"resource": o} for o in orders]}
        if not isinstance(orders, dict) or orders.get("resourceType") != "Bundle":
            raise ApiError(
                400,
                f"context.draftOrders must be a Bundle for {hook}.",
                expression=["context.draftOrders"],
            )
        if not isinstance(orders.get("entry", []), list):
            raise ApiError(
                400,
                "context.draftOrders.entry must be a list.",
                expression=["context.draftOrders.entry"],
            )
        drafts = [
            r for r, _ in flatten(orders).resources if r.get("resourceType") == "MedicationRequest"
        ]
    pid = pid.strip().removeprefix("Patient/")  # some EHRs send the reference
    if not FHIR_ID.fullmatch(pid):
        # It goes into FHIR search URLs: only a FHIR id (letters, digits, '-', '.', <= 64).
        raise ApiError(400, "context.patientId is not a FHIR id.", expression=["context.patientId"])
    return pid, drafts


@bp.post("/cds-services/<service_id>")
@require_caller
def call(service_id: str) -> Response:
    if service_id not in SERVICE_HOOKS:
        raise ApiError(
            404, "No CDS service with this id here (see GET /cds-services).", "not-found"
        )
    req = load_or_400(_hook_schema, read_json_body(), "CDS Hooks request")
    hook = req["hook"]
    instance = str(req["hookInstance"])
    if REQUEST_ID.match(instance):
        g.request_id = instance  # log lines of this call carry the hook instance
    if hook not in SERVICE_HOOKS[service_id]:
        answers = " and ".join(SERVICE_HOOKS[service_id])
        raise ApiError(
            400, f"Service {service_id} answers {answers}, not this hook.", expression=["hook"]
        )
    patient_id, drafts = _context(hook, req["context"])
    svc = _service()
    answer = svc.workflow.hook(
        HookCall(
            service_id,
            hook,
            patient_id,
            req["context"],
            req.get("prefetch") if isinstance(req.get("prefetch"), dict) else None,
            drafts,
            req.get("fhirServer"),
            (req.get("fhirAuthorization") or {}).get("access_token"),
        )
    )
    cards, system_actions = answer.cards, answer.system_actions
    body: dict[str, Any] = {"cards": cards}
    if system_actions:
        body["systemActions"] = system_actions
    return json_response(body)


@bp.post("/cds-services/<service_id>/feedback")
@require_caller
def feedback(service_id: str) -> Response:
    if service_id not in SERVICE_HOOKS:
        raise ApiError(
            404, "No CDS service with this id here (see GET /cds-services).", "not-found"
        )
    body = load_or_400(_feedback_schema, read_json_body(), "Feedback")
    svc = _service()
    for item in body["feedback"]:
        svc.store.add_feedback(service_id, item["card"], item["outcome"], item)
    return json_response({"stored": len(body["feedback"])})
