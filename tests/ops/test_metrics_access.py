"""/metrics shows the OUD caseload (decisions by phase): only a scraper with the metrics token
gets it; /readyz tells anyone only ready or not (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.settings import Settings, SettingsError

TOKEN = "metrics-token-abcdef0123456789"


def make(tmp_path: Path, config: LoadedConfig, **extra: str) -> Flask:
    settings = Settings.from_mapping(
        {"PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}", **extra}
    )
    return create_app({"settings": settings, "config": config})


def test_metrics_need_the_token(tmp_path: Path, config: LoadedConfig) -> None:
    client = make(tmp_path, config, PATHWAY_METRICS_TOKEN=TOKEN).test_client()
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ):
        resp = client.get("/metrics", headers=headers)
        assert resp.status_code == 401, headers
        body = resp.get_json()
        assert body["resourceType"] == "OperationOutcome"
        assert "pathway_decisions_total" not in resp.get_data(as_text=True)
        assert "PATHWAY_" not in body["issue"][0]["diagnostics"]
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    assert "pathway_request_seconds" in resp.get_data(as_text=True)
    assert client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_metrics_are_closed_when_no_token_is_set(tmp_path: Path, config: LoadedConfig) -> None:
    """Authentication on and no way to tell a scraper: nobody gets them."""
    assert make(tmp_path, config).test_client().get("/metrics").status_code == 401


def test_metrics_are_open_in_development_mode_only(tmp_path: Path, config: LoadedConfig) -> None:
    dev = make(tmp_path, config, PATHWAY_AUTH_MODE="off").test_client()
    assert dev.get("/metrics").status_code == 200
    dev_with_token = make(
        tmp_path, config, PATHWAY_AUTH_MODE="off", PATHWAY_METRICS_TOKEN=TOKEN
    ).test_client()
    assert dev_with_token.get("/metrics").status_code == 401  # a token set is always required


def test_readyz_tells_anonymous_callers_only_ready_or_not(
    tmp_path: Path, config: LoadedConfig
) -> None:
    client = make(tmp_path, config, PATHWAY_METRICS_TOKEN=TOKEN).test_client()
    assert client.get("/readyz").get_json() == {"status": "ready"}
    full = client.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
    assert full["status"] == "ready" and full["store"] == "writable" and full["auth"] == "jwt"
    assert full["config"]["version"] and full["config"]["valueSets"] > 0
    app = make(tmp_path, config)  # no token: details for nobody
    assert app.test_client().get("/readyz").get_json() == {"status": "ready"}


def test_readyz_not_ready_says_only_that(tmp_path: Path, config: LoadedConfig) -> None:
    import sqlalchemy

    app = make(tmp_path, config, PATHWAY_METRICS_TOKEN=TOKEN)
    store = app.extensions["pathway"].store
    store.engine.dispose()
    store.engine = sqlalchemy.create_engine("sqlite:////proc/nope/x.db")
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503 and resp.get_json() == {"status": "not-ready"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PATHWAY_METRICS_TOKEN", "short"),
        ("PATHWAY_METRICS_BIND", "9100"),
        ("PATHWAY_METRICS_BIND", "127.0.0.1:99999"),
        ("PATHWAY_METRICS_BIND", "127.0.0.1:8080"),  # the service's own address
    ],
)
def test_metrics_settings_are_checked(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_mapping({name: value})


def test_metrics_bind_is_parsed() -> None:
    assert Settings.from_mapping({"PATHWAY_METRICS_BIND": "10.0.0.5:9100"}).metrics_bind == (
        "10.0.0.5",
        9100,
    )
    assert Settings.from_mapping({"PATHWAY_METRICS_BIND": "[::1]:9100"}).metrics_bind == (
        "::1",
        9100,
    )
    assert "metrics-token" not in str(
        Settings.from_mapping({"PATHWAY_METRICS_TOKEN": TOKEN}).redacted()
    )
