"""CDS Hooks endpoints (CONTRACT.md §1): discovery, the services, feedback.

One service per hook, each id listed once in discovery (CDS Hooks 2.0 clients key services by
id): `oud-pathway` (patient-view), `oud-order-select`, `oud-order-sign`. The unlisted alias
`oud-order-safety` (both order hooks under one id, as before) answers whichever order hook the
request names, for EHRs configured with it. A request whose `hook` is not one its service
answers is a 400 naming the service that does.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, g
from flask.blueprints import BlueprintSetupState
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from pathway.api.auth import require_caller
from pathway.api.errors import ApiError
from pathway.api.jsonio import json_response, read_json_body
from pathway.api.observability import CDS_ROUTES, REQUEST_ID
from pathway.api.schemas import load_or_400
from pathway.cards import smart_app_link
from pathway.config import service_routes
from pathway.fhir.bundle import FHIR_ID, flatten
from pathway.service import Service
from pathway.workflow import HookCall

log = logging.getLogger("pathway.cds")
bp = Blueprint("cds", __name__)


class Routes:
    """What /cds-services serves, worked out once when the blueprint is registered."""

    def __init__(self, doc: dict[str, Any]) -> None:
        # id (listed or alias) -> hook -> prefetch templates
        self.hooks: dict[str, dict[str, dict[str, str]]] = service_routes(doc)
        # hook -> the listed service that answers it (named in the error for a wrong hook)
        self.listed = {s["hook"]: s["id"] for s in doc["services"]}
        self.discovery = orjson.dumps(
            {"services": [{k: v for k, v in s.items() if k[0] != "_"} for s in doc["services"]]}
        )


def routes(app: Flask) -> Routes:
    r: Routes = app.extensions[CDS_ROUTES]
    return r


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


NO_SUCH_SERVICE = "No CDS service with this id here (see GET /cds-services)."


def _service() -> Service:
    svc: Service = current_app.extensions["pathway"]
    return svc


@bp.record_once
def _build_routes(state: BlueprintSetupState) -> None:
    svc: Service = state.app.extensions["pathway"]
    state.app.extensions[CDS_ROUTES] = Routes(svc.config.services)


@bp.get("/cds-services")
def discovery() -> Response:
    return Response(routes(current_app).discovery, mimetype="application/json")


def _wrong_hook(
    service_id: str, answers: dict[str, Any], hook: str, listed: dict[str, str]
) -> ApiError:
    hook = hook[:40]
    which = " and ".join(answers)
    right = listed.get(hook)
    where = (
        f"; for {hook} call /cds-services/{right}"
        if right
        else f"; this server answers {', '.join(listed)} (GET /cds-services)"
    )
    return ApiError(
        400,
        # the hook is named back only when it is one this server knows (never caller text)
        f"Service {service_id} answers the {which} hook, not {repr(hook) if right else 'this one'}"
        f"{where}.",
        "not-supported",
        expression=["hook"],
    )


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
    r = routes(current_app)
    answers = r.hooks.get(service_id)
    if answers is None:
        raise ApiError(404, NO_SUCH_SERVICE, "not-found")
    req = load_or_400(_hook_schema, read_json_body(), "CDS Hooks request")
    hook = req["hook"]
    instance = str(req["hookInstance"])
    if REQUEST_ID.match(instance):
        g.request_id = instance  # log lines of this call carry the hook instance
    if hook not in answers:
        raise _wrong_hook(service_id, answers, hook, r.listed)
    patient_id, drafts = _context(hook, req["context"])
    svc = _service()
    app_link = None
    if hook == "patient-view" and svc.settings.smart_app_client_id:
        # the clinician's app, opened on this evaluation (CONTRACT §6): the card's first link
        app_link = smart_app_link(svc.settings.base_url, instance, svc.clock().isoformat())
    answer = svc.workflow.hook(
        HookCall(
            r.listed[hook],  # an alias answers as the listed service of the request's hook
            hook,
            patient_id,
            req["context"],
            req.get("prefetch") if isinstance(req.get("prefetch"), dict) else None,
            drafts,
            req.get("fhirServer"),
            (req.get("fhirAuthorization") or {}).get("access_token"),
            app_link,
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
    if service_id not in routes(current_app).hooks:
        raise ApiError(404, NO_SUCH_SERVICE, "not-found")
    body = load_or_400(_feedback_schema, read_json_body(), "Feedback")
    svc = _service()
    for item in body["feedback"]:
        svc.store.add_feedback(service_id, item["card"], item["outcome"], item)
    return json_response({"stored": len(body["feedback"])})
