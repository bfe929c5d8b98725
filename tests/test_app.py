"""The app factory, settings, health endpoints, error shapes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.settings import Settings, SettingsError


def test_settings_defaults() -> None:
    s = Settings.from_mapping({})
    assert (s.host, s.port, s.auth_mode, s.writeback) == ("127.0.0.1", 8080, "jwt", "off")
    assert s.base_url == "http://127.0.0.1:8080"
    assert s.database_url.startswith("sqlite:///") and "var" in s.database_url
    assert s.fhir_allowlist == () and s.fhir_base_url is None and s.cds_clients_file is None


def test_settings_from_environment_names() -> None:
    s = Settings.from_mapping(
        {
            "PATHWAY_HOST": "0.0.0.0",
            "PATHWAY_PORT": "9000",
            "PATHWAY_PUBLIC_URL": "https://cds.example.org/",
            "PATHWAY_DATABASE_URL": "postgresql://u:secret@db/pathway",
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_CDS_CLIENTS_FILE": "/etc/clients.json",
            "PATHWAY_FHIR_ALLOWLIST": "https://ehr.example.org/fhir/, https://b.example.org/r4",
            "PATHWAY_FHIR_BASE_URL": "https://ehr.example.org/fhir/",
            "PATHWAY_WRITEBACK": "direct",
            "PATHWAY_SMART_CLIENT_ID": "cid",
            "PATHWAY_SMART_PRIVATE_KEY_FILE": "/run/secrets/key.pem",
            "PATHWAY_SMART_TOKEN_URL": "https://ehr.example.org/token",
        }
    )
    assert s.base_url == "https://cds.example.org"
    assert s.fhir_allowlist == ("https://ehr.example.org/fhir", "https://b.example.org/r4")
    assert s.fhir_server_allowed("https://ehr.example.org/fhir/")
    assert not s.fhir_server_allowed("https://evil.example.org/fhir")
    assert s.writeback == "direct" and s.smart_client_id == "cid"
    assert "u:secret@" not in str(s.redacted())


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"PATHWAY_PORT": "http"}, "PATHWAY_PORT"),
        ({"PATHWAY_PORT": "70000"}, "PATHWAY_PORT"),
        ({"PATHWAY_AUTH_MODE": "maybe"}, "PATHWAY_AUTH_MODE"),
        ({"PATHWAY_WRITEBACK": "yes"}, "PATHWAY_WRITEBACK"),
        ({"PATHWAY_FHIR_ALLOWLIST": "ftp://x"}, "PATHWAY_FHIR_ALLOWLIST"),
        ({"PATHWAY_PUBLIC_URL": "cds.example.org"}, "PATHWAY_PUBLIC_URL"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_mapping(env)


def test_settings_file_is_overridden_by_environment(tmp_path: Path) -> None:
    f = tmp_path / "pathway.env"
    f.write_text("# comment\nPATHWAY_PORT=9001\nPATHWAY_HOST=0.0.0.0\n")
    s = Settings.from_env({"PATHWAY_SETTINGS_FILE": str(f), "PATHWAY_PORT": "9002"})
    assert (s.host, s.port) == ("0.0.0.0", 9002)


def test_factory_uses_test_config(settings: Settings, config: LoadedConfig) -> None:
    app = create_app({"settings": settings, "config": config, "TESTING": True})
    assert app.testing
    assert app.extensions["pathway"].settings is settings
    assert app.config["MAX_CONTENT_LENGTH"] == settings.max_body_bytes


def test_auth_off_warns_loudly(
    settings: Settings, config: LoadedConfig, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("pathway")
    logger.addHandler(caplog.handler)
    try:
        create_app({"settings": settings, "config": config})
    finally:
        logger.removeHandler(caplog.handler)
    assert any(
        "NOT authenticated" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records
    )


def test_healthz_and_readyz(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["status"] == "ready" and body["store"] == "writable"
    assert "NOT authenticated" in body["warning"]


def test_readyz_fails_when_the_store_is_not_writable(client: FlaskClient, app: object) -> None:
    store = app.extensions["pathway"].store  # type: ignore[attr-defined]
    store.engine.dispose()
    store.engine = __import__("sqlalchemy").create_engine("sqlite:////proc/nope/x.db")
    assert client.get("/readyz").status_code == 503


def test_unexpected_error_is_a_generic_500(app: object, client: FlaskClient) -> None:
    def boom() -> None:
        raise RuntimeError("patient Jane Doe secret detail")

    app.add_url_rule("/boom", view_func=boom)  # type: ignore[attr-defined]

    resp = client.get("/boom")
    assert resp.status_code == 500
    text = resp.get_data(as_text=True)
    assert "OperationOutcome" in text and "Jane" not in text and "Traceback" not in text


def test_jwt_mode_refuses_unauthenticated_apply(tmp_path: Path, config: LoadedConfig) -> None:
    settings = Settings.from_mapping({"PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path}/s.db"})
    client = create_app({"settings": settings, "config": config}).test_client()
    resp = client.post("/fhir/PlanDefinition/oud-care-pathway/$apply", json={})
    assert resp.status_code == 401
    assert resp.get_json()["resourceType"] == "OperationOutcome"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_default_store_folder_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh clone has no ./var: `make run` must still start."""
    monkeypatch.chdir(tmp_path)
    from pathway.store.db import Store

    store = Store(Settings.from_mapping({}).database_url)
    assert (tmp_path / "var").is_dir()
    assert store.writable()
