"""CORS: only the EHR origins on PATHWAY_CORS_ORIGINS, only on the CDS Hooks routes, only the
methods each route takes; an Origin not on the list is never echoed (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.settings import Settings, SettingsError

EHR_UI = "https://ehr-ui.example.org"


@pytest.fixture
def client(tmp_path: Path, config: LoadedConfig) -> FlaskClient:
    settings = Settings.from_mapping(
        {
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
            "PATHWAY_CORS_ORIGINS": f"{EHR_UI}/, http://localhost:3000",
        }
    )
    return create_app({"settings": settings, "config": config}).test_client()


def preflight(client: FlaskClient, path: str, origin: str, method: str) -> TestResponse:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


def test_an_allowed_origin_gets_the_methods_of_its_route(client: FlaskClient) -> None:
    pre = preflight(client, "/cds-services/oud-pathway", EHR_UI, "POST")
    assert pre.headers["Access-Control-Allow-Origin"] == EHR_UI
    assert pre.headers["Access-Control-Allow-Methods"] == "POST"
    assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()
    assert "Origin" in pre.headers["Vary"]
    pre = preflight(client, "/cds-services", "http://localhost:3000", "GET")
    assert pre.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert pre.headers["Access-Control-Allow-Methods"] == "GET"
    browser = client.get("/cds-services", headers={"Origin": EHR_UI})
    assert browser.headers["Access-Control-Allow-Origin"] == EHR_UI
    refused = client.post("/cds-services/oud-pathway", json={}, headers={"Origin": EHR_UI})
    assert refused.status_code == 401  # the browser may read the refusal too
    assert refused.headers["Access-Control-Allow-Origin"] == EHR_UI


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/cds-services/oud-pathway", "DELETE"),
        ("/cds-services/oud-pathway", "PUT"),
        ("/cds-services/oud-pathway/feedback", "GET"),
        ("/cds-services", "POST"),
    ],
)
def test_a_method_the_route_does_not_take_is_not_granted(
    client: FlaskClient, path: str, method: str
) -> None:
    pre = preflight(client, path, EHR_UI, method)
    assert "Access-Control-Allow-Origin" not in pre.headers
    assert "Access-Control-Allow-Methods" not in pre.headers


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.net",
        "null",
        "https://ehr-ui.example.org.evil.example.net",
        "http://ehr-ui.example.org",  # another scheme is another origin
        "https://ehr-ui.example.org:8443",
        "*",
    ],
)
def test_an_origin_not_on_the_list_is_never_echoed(client: FlaskClient, origin: str) -> None:
    for resp in (
        preflight(client, "/cds-services/oud-pathway", origin, "POST"),
        client.get("/cds-services", headers={"Origin": origin}),
    ):
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert origin not in str(resp.headers)


def test_only_the_cds_routes_have_cors(client: FlaskClient) -> None:
    for path in ("/fhir/metadata", "/readyz", "/metrics", "/notifications"):
        resp = client.get(path, headers={"Origin": EHR_UI})
        assert "Access-Control-Allow-Origin" not in resp.headers, path


def test_no_origins_configured_means_no_cors(tmp_path: Path, config: LoadedConfig) -> None:
    settings = Settings.from_mapping({"PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"})
    client = create_app({"settings": settings, "config": config}).test_client()
    pre = preflight(client, "/cds-services/oud-pathway", EHR_UI, "POST")
    assert "Access-Control-Allow-Origin" not in pre.headers


@pytest.mark.parametrize(
    "value",
    ["*", "https://*.example.org", "https://ehr.example.org/path", "ehr.example.org", "null"],
)
def test_origins_must_be_exact(value: str) -> None:
    with pytest.raises(SettingsError, match="PATHWAY_CORS_ORIGINS"):
        Settings.from_mapping({"PATHWAY_CORS_ORIGINS": value})
