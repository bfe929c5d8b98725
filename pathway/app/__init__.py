"""The clinician's app (CONTRACT.md §6): a SMART on FHIR app under /app/, launched from the card.

Server-rendered HTML (Jinja), usable without JavaScript. The browser holds only an HttpOnly,
SameSite session cookie; the SMART tokens stay on the server (pathway.app.sessions). Enabled when
PATHWAY_SMART_APP_CLIENT_ID is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, Response, request

if TYPE_CHECKING:
    from pathway.service import Service


def csp(frame_ancestors: str) -> str:
    """No inline script or style anywhere: every script and stylesheet is a local file."""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; "
        f"frame-ancestors {frame_ancestors}"
    )


def install(app: Flask, svc: Service) -> None:
    """Register the app's blueprint (when enabled) and the headers of its pages. Call before the
    service's own header hook is installed: Flask runs after-request hooks in reverse order, so
    this one runs last and owns the framing headers of /app/ (the rest keep theirs)."""
    settings = svc.settings
    policy = csp(settings.app_frame_ancestors)
    same_origin_only = settings.app_frame_ancestors.strip() in ("'self'", "'none'")

    @app.after_request
    def _app_headers(resp: Response) -> Response:
        if request.path == "/app" or request.path.startswith("/app/"):
            resp.headers["Content-Security-Policy"] = policy
            # Our own form POSTs carry their Origin (no-referrer would send "null"), which the
            # CSRF check reads; nothing goes to other sites (app URLs hold no patient data).
            resp.headers["Referrer-Policy"] = "same-origin"
            if same_origin_only:
                none = settings.app_frame_ancestors.strip() == "'none'"
                resp.headers["X-Frame-Options"] = "DENY" if none else "SAMEORIGIN"
            else:
                # The EHR (another origin) shows the app in a frame: CSP frame-ancestors says
                # which; X-Frame-Options cannot name an origin, so it is left out.
                resp.headers.pop("X-Frame-Options", None)
        return resp

    if settings.smart_app_client_id:
        from pathway.app.routes import make_blueprint

        app.register_blueprint(make_blueprint(svc))
