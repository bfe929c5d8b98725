"""Framing and cookies of the app when an EHR of another origin shows it in a frame."""

from __future__ import annotations

from pathlib import Path

import responses

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.settings import Settings

ISS = "https://ehr.example.org/fhir"


@responses.activate
def test_framed_by_another_origin_over_https(tmp_path: Path, config: LoadedConfig) -> None:
    responses.get(
        f"{ISS}/.well-known/smart-configuration",
        json={
            "authorization_endpoint": "https://ehr.example.org/oauth/authorize",
            "token_endpoint": "https://ehr.example.org/oauth/token",
            "capabilities": ["permission-v2"],
            "code_challenge_methods_supported": ["S256"],
        },
    )
    settings = Settings.from_mapping(
        {
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'f.db'}",
            "PATHWAY_PUBLIC_URL": "https://pathway.example.org",
            "PATHWAY_FHIR_ALLOWLIST": ISS,
            "PATHWAY_SMART_APP_CLIENT_ID": "app",
            "PATHWAY_APP_FRAME_ANCESTORS": "'self' https://ehr.example.org",
        }
    )
    app = create_app({"settings": settings, "config": config})
    r = app.test_client().get(f"/app/launch?iss={ISS}&launch=abc")
    assert r.status_code == 302
    assert r.headers["Location"].startswith("https://ehr.example.org/oauth/authorize?")
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://ehr.example.org" in csp
    assert "X-Frame-Options" not in r.headers  # it cannot name the EHR: CSP decides
    cookie = r.headers["Set-Cookie"]
    for part in ("HttpOnly", "Secure", "SameSite=None", "Partitioned", "Path=/app"):
        assert part in cookie
    # the service's other endpoints keep their own framing headers
    h = app.test_client().get("/healthz").headers
    assert h["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
