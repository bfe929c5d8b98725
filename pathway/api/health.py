"""/healthz (process up), /readyz (config loaded, store writable)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app

from pathway.api.jsonio import json_response

bp = Blueprint("health", __name__)


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
    svc = current_app.extensions["pathway"]
    return Response(svc.metrics.render(), mimetype="text/plain; version=0.0.4")


@bp.get("/readyz")
def readyz() -> Response:
    svc = current_app.extensions["pathway"]
    store_ok = svc.store.writable()
    body: dict[str, object] = {
        "status": "ready" if store_ok else "not-ready",
        "config": {"version": svc.config.pathway.version, "valueSets": len(svc.config.valuesets)},
        "store": "writable" if store_ok else "not writable",
        "auth": svc.settings.auth_mode,
    }
    if svc.settings.auth_mode == "off":
        body["warning"] = "PATHWAY_AUTH_MODE=off: callers are NOT authenticated. Development only."
    return json_response(body, 200 if store_ok else 503)
