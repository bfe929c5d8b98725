"""/healthz (process up), /readyz (config loaded, store writable), /metrics (Prometheus).

/metrics shows decisions by phase, i.e. the service's OUD caseload: it is served only to a
scraper, that is a request with `Authorization: Bearer <PATHWAY_METRICS_TOKEN>` (compared in
constant time) or one that reached the separate metrics listener (`PATHWAY_METRICS_BIND`).
With neither set it is closed, unless authentication is off altogether (development). /readyz
tells anyone only whether the service is ready; its details (config version, store, auth mode)
only to a scraper.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, request

from pathway.api.errors import ApiError
from pathway.api.jsonio import json_response
from pathway.service import Service

log = logging.getLogger("pathway.health")
bp = Blueprint("health", __name__)
SCRAPER_ONLY = "Metrics are served only to the configured scraper."


def _service() -> Service:
    svc: Service = current_app.extensions["pathway"]
    return svc


def on_metrics_listener(svc: Service) -> bool:
    """True when the request came in on the PATHWAY_METRICS_BIND listener (the local address of
    the connection, which the caller cannot choose, unlike Host)."""
    bind = svc.settings.metrics_bind
    sock = request.environ.get("gunicorn.socket")
    if bind is None or sock is None:
        return False
    try:
        local = sock.getsockname()
    except OSError:
        return False
    host, port = str(local[0]), int(local[1])
    return port == bind[1] and (bind[0] in ("0.0.0.0", "::", host) or _loopback(bind[0], host))  # noqa: S104


def _loopback(configured: str, actual: str) -> bool:
    return configured == "localhost" and actual in ("127.0.0.1", "::1")


def is_scraper(svc: Service) -> bool:
    token = svc.settings.metrics_token
    if token is not None:
        given = request.headers.get("Authorization", "")
        offered = given[7:].strip() if given[:7].lower() == "bearer " else ""
        if hmac.compare_digest(offered.encode(), token.encode()):
            return True
    if on_metrics_listener(svc):
        return True
    return token is None and svc.settings.metrics_bind is None and svc.settings.auth_mode == "off"


@bp.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"})


_OPENAPI = (Path(__file__).parent / "openapi.json").read_bytes()


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document of this HTTP API (fuzzed by schemathesis in the tests)."""
    return Response(_OPENAPI, mimetype="application/json")


@bp.get("/metrics")
def metrics() -> Response:
    svc = _service()
    if not is_scraper(svc):
        why = (
            "no PATHWAY_METRICS_TOKEN is set"
            if svc.settings.metrics_token is None
            else "wrong or missing token"
        )
        log.warning("metrics refused: %s", why)
        raise ApiError(
            401, SCRAPER_ONLY, "login", headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
        )
    return Response(svc.metrics.render(), mimetype="text/plain; version=0.0.4")


@bp.get("/readyz")
def readyz() -> Response:
    svc = _service()
    store_ok = svc.store.writable()
    body: dict[str, object] = {"status": "ready" if store_ok else "not-ready"}
    if is_scraper(svc):
        body["config"] = {
            "version": svc.config.pathway.version,
            "valueSets": len(svc.config.valuesets),
        }
        body["store"] = "writable" if store_ok else "not writable"
        body["auth"] = svc.settings.auth_mode
    if svc.settings.auth_mode == "off":
        body["warning"] = "PATHWAY_AUTH_MODE=off: callers are NOT authenticated. Development only."
    return json_response(body, 200 if store_ok else 503)


METRICS_LISTENER_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


def install(app: Flask) -> None:
    """With PATHWAY_METRICS_BIND, its listener serves the scraper's paths and nothing else (a
    check made only when that setting is on)."""
    svc: Service = app.extensions["pathway"]
    if svc.settings.metrics_bind is None:
        return

    @app.before_request
    def _metrics_listener_only() -> None:
        if request.path not in METRICS_LISTENER_PATHS and on_metrics_listener(svc):
            raise ApiError(404, "This listener serves /metrics, /healthz and /readyz only.")
