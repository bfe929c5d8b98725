"""Per-request plumbing: a request id in every log line, one access line per request (no
patient data: paths carry no patient ids, and no query strings or bodies are logged), latency
histograms per endpoint, and security headers.

The access line and the latency label name the CDS service called
(`POST /cds-services/oud-order-sign 200 1.4ms`); an id that is not served here is named
`<unknown>`, so arbitrary paths neither reach the log nor multiply the metric's labels."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request

log = logging.getLogger("pathway.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
CDS_ROUTES = "pathway.cds.routes"  # app.extensions key: the ids /cds-services serves
UNKNOWN_SERVICE = "<unknown>"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",  # answers carry 42 CFR Part 2 data: never cached
}


def current_request_id() -> str | None:
    try:
        rid = g.get("request_id")
        if not rid:
            rid = g.request_id = uuid.uuid4().hex
    except RuntimeError:  # outside a request
        return None
    return str(rid)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id()
        return True


def install(app: Flask) -> None:
    for handler in logging.getLogger("pathway").handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())

    labels: dict[tuple[str, str], str] = {}  # (route, known service id) -> label

    def endpoint_label() -> str:
        rule = request.url_rule
        if rule is None:
            return "unmatched"
        args = request.view_args
        sid = args.get("service_id") if args else None
        if not isinstance(sid, str):
            return str(rule.rule)
        key = (str(rule.rule), sid)
        label = labels.get(key)
        if label is None:
            served: Any = app.extensions.get(CDS_ROUTES)
            known = served is not None and sid in served.hooks
            label = key[0].replace("<service_id>", sid if known else UNKNOWN_SERVICE)
            if known:  # only served ids are kept: the cache stays as small as the label set
                labels[key] = label
        return label

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "")
        if REQUEST_ID.match(given):
            g.request_id = given
        # else one is made when first needed (a CDS call names itself by its hookInstance)

    @app.after_request
    def _finish(resp: Response) -> Response:
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        if request.scheme == "https":
            resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        rid = current_request_id()
        if rid:
            resp.headers["X-Request-ID"] = rid
        started = g.get("started")
        if started is not None:
            seconds = time.perf_counter() - started
            endpoint = endpoint_label()
            svc = app.extensions.get("pathway")
            if svc is not None:
                svc.metrics.requests.labels(endpoint, f"{resp.status_code // 100}xx").observe(
                    seconds
                )
            log.info("%s %s %d %.1fms", request.method, endpoint, resp.status_code, seconds * 1000)
        return resp
