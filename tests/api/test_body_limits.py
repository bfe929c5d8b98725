"""PATHWAY_MAX_BODY_BYTES holds whatever the framing (issue 10): a chunked body over the limit
used to be cut to it and the first part evaluated (a valid hook padded past the limit was
answered 200 with cards); it is refused with 413."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from builders import patient
from cds_support import empty_patient_view
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.settings import Settings

LIMIT = 4096


@pytest.fixture
def client(tmp_path: Path, config: LoadedConfig) -> FlaskClient:
    settings = Settings.from_mapping(
        {
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}",
            "PATHWAY_MAX_BODY_BYTES": str(LIMIT),
        }
    )
    return create_app({"settings": settings, "config": config}).test_client()


HOOK = orjson.dumps(empty_patient_view(patient()))


def chunked(client: FlaskClient, path: str, body: bytes) -> TestResponse:
    """A body without Content-Length, ended by the server (as gunicorn does for chunked)."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},  # no Content-Length (the client would add one)
        environ_overrides={"wsgi.input_terminated": True},
    )


@pytest.mark.parametrize(
    "path",
    ["/cds-services/oud-pathway", "/notifications", "/fhir/PlanDefinition/oud-care-pathway/$apply"],
)
def test_a_padded_chunked_body_over_the_limit_is_refused(client: FlaskClient, path: str) -> None:
    resp = chunked(client, path, HOOK + b" " * (LIMIT + 1 - len(HOOK)))
    assert resp.status_code == 413, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "too-costly"
    assert str(LIMIT) in body["issue"][0]["diagnostics"]


def test_a_long_chunked_body_is_refused_without_being_read_whole(client: FlaskClient) -> None:
    stream = io.BytesIO(HOOK + b" " * (50 * LIMIT))
    resp = client.post(
        "/cds-services/oud-pathway",
        input_stream=stream,
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert resp.status_code == 413
    assert stream.tell() <= LIMIT + 1  # read one byte past the limit, not the rest


def test_a_chunked_body_at_the_limit_is_read_whole(client: FlaskClient) -> None:
    resp = chunked(client, "/cds-services/oud-pathway", HOOK + b" " * (LIMIT - len(HOOK)))
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_the_chunked_requests_here_have_no_declared_length(client: FlaskClient) -> None:
    """The test client adds a Content-Length from the stream unless told it is chunked."""
    app = client.application
    with app.test_request_context(
        "/",
        method="POST",
        input_stream=io.BytesIO(b"{}"),
        headers={"Transfer-Encoding": "chunked"},
    ):
        from flask import request

        assert request.content_length is None


def test_a_declared_length_over_the_limit_is_refused(client: FlaskClient) -> None:
    resp = client.post(
        "/cds-services/oud-pathway",
        data=HOOK + b" " * LIMIT,
        content_type="application/json",
    )
    assert resp.status_code == 413
    assert resp.get_json()["issue"][0]["code"] == "too-costly"
