"""Request ids, JSON logs, security headers, Prometheus metrics (issue: production readiness)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from builders import condition, patient
from flask import Flask
from flask.testing import FlaskClient

from pathway.logs import JsonFormatter


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep(level=logging.DEBUG)
    from pathway.api.observability import RequestIdFilter

    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("pathway")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(old)


def hook_body(instance: str = "5b3f0f0e-0000-4000-8000-000000000001") -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": instance,
        "context": {"patientId": "p1"},
        "prefetch": {
            "patient": patient(),
            "conditions": [condition()],
            "observations": None,
            "medicationRequests": None,
        },
    }


@pytest.mark.parametrize("path", ["/healthz", "/cds-services", "/fhir/metadata", "/nope"])
def test_security_headers_everywhere(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Referrer-Policy"] == "no-referrer"


def test_request_id_is_echoed_or_made(client: FlaskClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id; <script>"})
    assert made.headers["X-Request-ID"] != "bad id; <script>"
    assert len(made.headers["X-Request-ID"]) == 32


def test_hook_instance_is_the_request_id_of_its_log_lines(
    client: FlaskClient, records: list[logging.LogRecord]
) -> None:
    resp = client.post("/cds-services/oud-pathway", json=hook_body())
    assert resp.status_code == 200
    assert resp.headers["X-Request-ID"] == "5b3f0f0e-0000-4000-8000-000000000001"
    access = [r for r in records if r.name == "pathway.access"]
    assert (
        access and getattr(access[-1], "request_id", None) == "5b3f0f0e-0000-4000-8000-000000000001"
    )
    line = orjson.loads(JsonFormatter().format(access[-1]))
    assert line["requestId"] == "5b3f0f0e-0000-4000-8000-000000000001"
    assert line["message"].startswith("POST /cds-services/oud-pathway 200 ")
    assert {"time", "level", "logger", "message"} <= set(line)


def test_metrics(client: FlaskClient, app: Flask) -> None:
    client.post("/cds-services/oud-pathway", json=hook_body())
    client.post("/cds-services/oud-pathway", json={"bad": 1})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'endpoint="/cds-services/oud-pathway",le="+Inf",status="2xx"} 1.0' in text
    assert 'endpoint="/cds-services/oud-pathway",le="+Inf",status="4xx"} 1.0' in text
    assert 'pathway_decisions_total{phase="assessment",service="oud-pathway"} 1.0' in text
    assert "pathway_outbox_depth" in text
    assert "pathway_writeback_total" in text or "# HELP pathway_writeback" in text


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("/cds-services/oud-order-sign", 400, "/cds-services/oud-order-sign"),
        ("/cds-services/oud-order-select/feedback", 400, "/cds-services/oud-order-select/feedback"),
        ("/cds-services/oud-order-safety", 400, "/cds-services/oud-order-safety"),
        ("/cds-services/p1-jane-doe", 404, "/cds-services/<unknown>"),
        ("/cds-services/p1-jane-doe/feedback", 404, "/cds-services/<unknown>/feedback"),
    ],
)
def test_access_line_and_latency_label_name_the_service_called(
    app: Flask,
    client: FlaskClient,
    records: list[logging.LogRecord],
    path: str,
    status: int,
    named: str,
) -> None:
    """The service's id, not the route pattern; an id not served here is one fixed label, so
    arbitrary paths neither reach the log nor add metric series."""
    assert client.post(path, json={}).status_code == status
    (access,) = [r for r in records if r.name == "pathway.access"]
    assert access.getMessage().startswith(f"POST {named} {status} ")
    assert "jane" not in access.getMessage()
    text = app.extensions["pathway"].metrics.render().decode()
    assert f'endpoint="{named}"' in text
    assert "jane" not in text and "<service_id>" not in text


def test_exception_log_line_names_type_and_place_not_the_message(
    app: Flask, client: FlaskClient, records: list[logging.LogRecord]
) -> None:
    def boom() -> None:
        raise RuntimeError("Jane Doe, MRN 123")

    app.add_url_rule("/boom-log", view_func=boom)  # type: ignore[arg-type]
    assert client.get("/boom-log").status_code == 500
    (err,) = [r for r in records if r.name == "pathway.errors"]
    line = JsonFormatter().format(err)
    assert "RuntimeError" in line and "test_observability.py" in line
    assert "Jane" not in line and "MRN" not in line
