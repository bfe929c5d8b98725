"""CORS for EHRs that call the CDS services from a browser (and the CDS Hooks sandbox).

Only origins listed in PATHWAY_CORS_ORIGINS get CORS headers (none by default: browsers then
refuse cross-origin calls), only on the CDS Hooks routes, and a preflight is granted only the
methods its route takes (GET for discovery, POST for a service and its feedback). An Origin not on
the list is never echoed. Written here rather than with flask-cors: the methods come from the
matched route itself, origins are compared as whole strings (flask-cors reads an origin with
regular-expression characters as a pattern), and a request without Origin (an EHR's server)
costs one header lookup.
"""

from __future__ import annotations

from flask import Flask, Response, request

CORS_BLUEPRINTS = frozenset({"cds"})
ALLOW_HEADERS = "Authorization, Content-Type, X-Request-ID"
MAX_AGE_SECONDS = "600"


def install(app: Flask, origins: frozenset[str]) -> None:
    if not origins:
        return

    @app.after_request
    def _cors(resp: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin is None:
            return resp
        resp.vary.add("Origin")
        rule = request.url_rule
        if origin not in origins or rule is None or request.blueprint not in CORS_BLUEPRINTS:
            return resp
        methods = sorted((rule.methods or set()) - {"OPTIONS", "HEAD"})
        if request.method == "OPTIONS":  # a preflight
            if request.headers.get("Access-Control-Request-Method") not in methods:
                return resp
            resp.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
            resp.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            resp.headers["Access-Control-Max-Age"] = MAX_AGE_SECONDS
        resp.headers["Access-Control-Allow-Origin"] = origin
        return resp
