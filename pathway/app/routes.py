"""The app's HTTP side: launch, callback, the page and its actions. Domain work is elsewhere
(smart, sessions, view, actions); this module maps it to requests, cookies and pages."""

from __future__ import annotations

import logging
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import jwt
from flask import Blueprint, make_response, redirect, render_template, request
from werkzeug.wrappers import Response

from pathway.app import view
from pathway.app.actions import ActionError, Actions
from pathway.app.sessions import COOKIE, AppSession, SessionStore, SessionStoreError
from pathway.app.smart import LaunchError, SmartApp, SmartConfiguration, allows, pkce_pair
from pathway.fhir.bundle import FHIR_ID
from pathway.fhir.client import FhirAuthError, FhirClient, FhirError, FhirNotFound
from pathway.service import Service

log = logging.getLogger("pathway.app")
STATE_TTL_SECONDS = 600
MAX_PENDING = 5
REFRESH_MARGIN_SECONDS = 60
CARD_AS_OF_HOURS = 24
LAUNCH_MAX = 2048
PRINTABLE = re.compile(r"[\x21-\x7e]+")
FHIR_USER = re.compile(
    r"(?:.*/)?(Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/([A-Za-z0-9\-.]{1,64})"
)


class Expired(Exception):
    """No usable session: the page says so and how to start again."""


def make_blueprint(svc: Service) -> Blueprint:
    bp = Blueprint(
        "app",
        __name__,
        url_prefix="/app",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    settings = svc.settings
    smart = SmartApp(settings)
    store = SessionStore(svc.store.engine, timedelta(minutes=settings.app_session_minutes))
    actions = Actions(svc)
    secure = settings.base_url.startswith("https://")
    framed_elsewhere = settings.app_frame_ancestors.strip() not in ("'self'", "'none'")

    # ------------------------------------------------------------------ helpers
    def set_cookie(resp: Response, s: AppSession) -> None:
        if secure and framed_elsewhere:
            # In an EHR's frame (another site) a Lax cookie is not sent: SameSite=None with
            # Secure, partitioned to that EHR (CHIPS), is what a browser sends there.
            resp.set_cookie(
                COOKIE, s.cookie, httponly=True, secure=True, samesite="None", path="/app"
            )
            cookie = resp.headers.getlist("Set-Cookie")[-1]
            resp.headers.remove("Set-Cookie")
            resp.headers.add("Set-Cookie", cookie + "; Partitioned")
        else:
            resp.set_cookie(
                COOKIE, s.cookie, httponly=True, secure=secure, samesite="Lax", path="/app"
            )

    def page(template: str, status: int = 200, **values: Any) -> Response:
        resp = make_response(render_template(template, **values), status)
        resp.headers["Content-Type"] = "text/html; charset=utf-8"
        return resp

    def message(status: int, title: str, text: str, restart: bool = False) -> Response:
        return page("app/message.html", status, title=title, text=text, restart=restart)

    def session() -> AppSession | None:
        return store.load(request.cookies.get(COOKIE))

    def authed() -> tuple[AppSession, dict[str, Any]]:
        s = session()
        if s is None or not s.auth:
            raise Expired
        auth = s.auth
        if not settings.fhir_server_allowed(auth["iss"]):
            raise Expired
        if auth.get("expires_at") and auth["expires_at"] - REFRESH_MARGIN_SECONDS < time.time():
            refresh(s)
        return s, s.auth or auth

    def refresh(s: AppSession) -> None:
        auth = s.auth or {}
        rt = auth.get("refresh_token")
        if not rt:
            store.drop(s)
            raise Expired
        try:
            body = smart.refresh(auth["token_endpoint"], auth["iss"], rt)
        except LaunchError as e:
            store.drop(s)
            raise Expired from e
        s.auth = {**auth, **_token_fields(body, keep=auth)}
        store.save(s)

    def fhir(auth: dict[str, Any]) -> FhirClient:
        return FhirClient(
            auth["iss"], token=auth["access_token"], timeout=settings.http_timeout_seconds
        )

    # ------------------------------------------------------------------ launch
    @bp.get("/launch")
    def launch() -> Response:
        iss_raw = request.args.get("iss", "")
        launch_id = request.args.get("launch")
        try:
            iss = smart.allowed_iss(iss_raw)  # before any outbound request
            if launch_id is not None and (
                len(launch_id) > LAUNCH_MAX or not PRINTABLE.fullmatch(launch_id)
            ):
                raise LaunchError(400, "The launch parameter is not a usable launch id.")
            conf = smart.discover(iss)
        except LaunchError as e:
            return message(e.status, "The app could not be launched", str(e))
        s = session() or store.new()
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(32)
        s.pending[state] = {
            "iss": iss,
            "token_endpoint": conf.token_endpoint,
            "verifier": verifier,
            "created": time.time(),
        }
        if len(s.pending) > MAX_PENDING:  # keep the newest few (several tabs)
            for old in sorted(s.pending, key=lambda k: s.pending[k]["created"])[:-MAX_PENDING]:
                del s.pending[old]
        store.save(s)
        resp = redirect(smart.authorize_url(conf, iss, launch_id, state, challenge), 302)
        set_cookie(resp, s)
        return resp

    # ------------------------------------------------------------------ callback
    @bp.get("/callback")
    def callback() -> Response:
        state = request.args.get("state", "")
        s = session()
        pending = s.pending.pop(state, None) if s is not None and state else None
        if s is None or pending is None:
            log.warning("app callback with an unknown or reused state")
            return message(
                400,
                "This sign-in link is not valid",
                "The sign-in did not start in this browser, or its link was already used. "
                "Open the app again from the EHR.",
                restart=True,
            )
        store.save(s)  # the state is spent, whatever happens next
        if time.time() - float(pending["created"]) > STATE_TTL_SECONDS:
            return message(
                400,
                "The sign-in took too long",
                "Open the app again from the EHR.",
                restart=True,
            )
        if request.args.get("error"):
            code = str(request.args["error"])[:60]
            log.warning("authorization refused (%s)", code)
            return message(
                401, "Access was not granted", f"The EHR did not authorise the app ({code})."
            )
        code = request.args.get("code", "")
        if not code or len(code) > 4096:
            return message(400, "The sign-in did not complete", "The EHR sent no code.")
        try:
            body = smart.exchange(
                pending["token_endpoint"], pending["iss"], code, pending["verifier"]
            )
            fields = _token_fields(body)
        except LaunchError as e:
            return message(e.status, "The sign-in did not complete", str(e), restart=True)
        # A fresh cookie once signed in (no session fixation); the old session is dropped.
        fresh = store.new()
        fresh.auth = {"iss": pending["iss"], "token_endpoint": pending["token_endpoint"], **fields}
        fresh.pending = s.pending
        store.drop(s)
        store.save(fresh)
        svc.store.add_audit("app-launch", fields["patient"], {"user": bool(fields["fhirUser"])})
        resp = redirect("/app/", 302)
        set_cookie(resp, fresh)
        return resp

    # ------------------------------------------------------------------ the page
    @bp.get("/")
    def index() -> Response:
        try:
            s, auth = authed()
            as_of, source = _as_of(auth.get("appContext"), svc.clock())
            try:
                data = svc.workflow.read_patient(fhir(auth), auth["patient"])
            except FhirAuthError:
                refresh(s)  # the token was refused early: once more with a fresh one
                auth = s.auth or auth
                data = svc.workflow.read_patient(fhir(auth), auth["patient"])
        except Expired:
            return expired()
        except FhirNotFound:
            return message(404, "Patient not found", "The EHR has no record of this patient.")
        except FhirAuthError:
            return expired()
        except FhirError as e:
            log.warning("reading the EHR for the app failed: %s", type(e).__name__)
            return message(502, "The EHR could not be read", "Try again in a moment.")
        html, decision = render_page(
            svc,
            list(data.values()),
            auth["patient"],
            as_of,
            source,
            s.csrf,
            str(auth.get("scope", "")),
            auth.get("fhirUser") or "",
            _hook_instance(auth.get("appContext")),
            s.message,
        )
        svc.workflow.record_decision(decision, "app-view")
        if s.message:
            s.message = None
            store.save(s)
        resp = make_response(html, 200)
        resp.headers["Content-Type"] = "text/html; charset=utf-8"
        return resp

    def expired() -> Response:
        resp = message(
            401,
            "Your session has ended",
            "For the patient's privacy the app signs out after a while or when the EHR's "
            "access ends. Open the app again from the patient's chart in the EHR.",
            restart=True,
        )
        resp.delete_cookie(COOKIE, path="/app")
        return resp

    # ------------------------------------------------------------------ actions
    def act(kind: str, task_id: str | None = None) -> Response:
        try:
            s, auth = authed()
        except Expired:
            return expired()
        sent = request.form.get("csrf", "")
        if not sent or not secrets.compare_digest(sent, s.csrf) or not _same_origin(settings):
            log.warning("app action refused: CSRF check failed")
            return message(403, "The action was refused", "Reload the page and try again.")
        granted = str(auth.get("scope", ""))
        try:
            as_of, _ = _as_of(auth.get("appContext"), svc.clock())
            if kind == "naloxone":
                done = actions.order_naloxone(fhir(auth), auth, granted, as_of)
            elif kind == "careplan":
                done = actions.save_plan(fhir(auth), auth, granted, as_of)
            else:
                assert task_id is not None
                done = actions.complete_task(fhir(auth), auth, granted, task_id)
        except ActionError as e:
            return message(e.status, "The action could not be done", str(e))
        except FhirAuthError:
            return message(
                403, "The EHR refused the write", "Your access does not allow this change."
            )
        except FhirError as e:
            log.warning("app action failed: %s", type(e).__name__)
            return message(502, "The EHR could not be written", "Nothing was changed. Try again.")
        s.message = done
        store.save(s)
        return redirect("/app/", 303)

    @bp.post("/actions/naloxone")
    def order_naloxone() -> Response:
        return act("naloxone")

    @bp.post("/actions/careplan")
    def save_careplan() -> Response:
        return act("careplan")

    @bp.post("/actions/tasks/<task_id>/done")
    def task_done(task_id: str) -> Response:
        if not FHIR_ID.fullmatch(task_id):
            return message(400, "The action could not be done", "That is not a Task id.")
        return act("task", task_id)

    @bp.post("/logout")
    def logout() -> Response:
        s = session()
        if s is not None and secrets.compare_digest(request.form.get("csrf", ""), s.csrf):
            store.drop(s)
        resp = message(200, "Signed out", "The app's session has ended.", restart=True)
        resp.delete_cookie(COOKIE, path="/app")
        return resp

    @bp.errorhandler(SessionStoreError)
    def _store_down(_e: SessionStoreError) -> Response:
        log.error("app session store unavailable")
        return message(503, "The app is unavailable", "Try again in a moment.")

    return bp


def render_page(
    svc: Service,
    resources: list[Any],
    patient_id: str,
    as_of: datetime,
    source: str,
    csrf: str,
    granted: str,
    user: str,
    hook_instance: str,
    notice: str | None = None,
) -> tuple[str, Any]:
    """The page for a patient's data: the hook's evaluation, the view, the template. What the
    benchmark times as the page's server work (the FHIR reads aside)."""
    ev = svc.evaluator.evaluate(resources, as_of, patient_id=patient_id)
    model = view.build(ev, svc.config.pathway, svc.evaluator.writer, source, _count(resources))
    signed = bool(user)  # writes name the clinician: none without fhirUser
    can = {
        "naloxone": signed
        and model.naloxone_recommended
        and allows(granted, "MedicationRequest", "c")
        and allows(granted, "Provenance", "c"),
        "careplan": signed
        and model.applicable
        and allows(granted, "CarePlan", "c")
        and allows(granted, "CarePlan", "u")
        and allows(granted, "Task", "c")
        and allows(granted, "Provenance", "c"),
        "task": signed and allows(granted, "Task", "u") and allows(granted, "Provenance", "c"),
    }
    html = render_template(
        "app/page.html",
        p=model,
        csrf=csrf,
        can=can,
        notice=notice,
        user=user,
        hook_instance=hook_instance,
    )
    return html, ev.decision


# ---------------------------------------------------------------------- pure helpers
def _token_fields(body: dict[str, Any], keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the session keeps of a token response (a refresh keeps the launch context)."""
    keep = keep or {}
    patient = body.get("patient", keep.get("patient"))
    if not isinstance(patient, str) or not FHIR_ID.fullmatch(patient):
        raise LaunchError(400, "The EHR did not name a patient for this launch.")
    expires_in = body.get("expires_in")
    expires_at = (
        time.time() + float(expires_in)
        if isinstance(expires_in, int | float) and expires_in > 0
        else None
    )
    fhir_user = keep.get("fhirUser", "")
    id_token = body.get("id_token")
    if isinstance(id_token, str):
        # Received straight from the token endpoint over the back channel (OIDC Core 3.1.3.7:
        # TLS stands in for the signature check here); only the fhirUser claim is used.
        try:
            claims = jwt.decode(id_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            claims = {}
        m = FHIR_USER.fullmatch(str(claims.get("fhirUser", "")))
        fhir_user = f"{m.group(1)}/{m.group(2)}" if m else ""
    ctx = body.get("appContext", keep.get("appContext"))
    return {
        "access_token": body["access_token"],
        "refresh_token": body.get("refresh_token", keep.get("refresh_token")),
        "expires_at": expires_at,
        "scope": str(body.get("scope", keep.get("scope", ""))),
        "patient": patient,
        "fhirUser": fhir_user,
        "appContext": ctx if isinstance(ctx, str) and len(ctx) <= 4096 else None,
    }


def _app_context(ctx: Any) -> dict[str, Any]:
    import orjson

    if not isinstance(ctx, str):
        return {}
    try:
        doc = orjson.loads(ctx)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _hook_instance(ctx: Any) -> str:
    value = _app_context(ctx).get("hookInstance")
    return value if isinstance(value, str) and PRINTABLE.fullmatch(value[:100]) else ""


def _as_of(ctx: Any, now: datetime) -> tuple[datetime, str]:
    """The card's evaluation time from appContext when it is recent (the app opens on what the
    card showed); otherwise now."""
    raw = _app_context(ctx).get("asOf")
    if isinstance(raw, str):
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return now, "now"
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if now - timedelta(hours=CARD_AS_OF_HOURS) <= when <= now + timedelta(minutes=1):
            return min(when, now), "card"
    return now, "now"


def _same_origin(settings: Any) -> bool:
    """A POST from our own pages: Origin (or Referer) is the service's public origin."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return origin is None  # a browser sends Origin on POST; "null" is refused
    want = urlsplit(settings.base_url)
    got = urlsplit(origin)
    return (got.scheme, got.netloc) == (want.scheme, want.netloc)


def _count(resources: list[Any]) -> int:
    n = 0
    for r in resources:
        if isinstance(r, dict) and r.get("resourceType") == "Bundle":
            n += len(r.get("entry") or [])
        elif r is not None:
            n += 1
    return n


__all__ = ["SmartConfiguration", "make_blueprint"]
