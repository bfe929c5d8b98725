"""The app's parts without a browser: scopes, discovery checks, the server-side session (no token
readable from the database), appContext, the card's smart link, view ordering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import responses
from cds_support import hook_request, prefetch_of
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from pathway import create_app
from pathway.app import view
from pathway.app.routes import _as_of, _token_fields
from pathway.app.sessions import SessionStore, app_session
from pathway.app.smart import (
    LaunchError,
    SmartApp,
    SmartConfiguration,
    allows,
    pkce_pair,
    scopes,
)
from pathway.config import LoadedConfig
from pathway.evaluation import Evaluator
from pathway.settings import Settings, SettingsError
from pathway.store.db import Store

SCENARIOS = Path(__file__).parent.parent / "data" / "scenarios"
ISS = "https://ehr.example.org/fhir"


def settings(**extra: str) -> Settings:
    return Settings.from_mapping(
        {
            "PATHWAY_FHIR_ALLOWLIST": ISS,
            "PATHWAY_SMART_APP_CLIENT_ID": "app",
            "PATHWAY_PUBLIC_URL": "https://pathway.example.org",
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("granted", "resource", "op", "ok"),
    [
        ("patient/*.rs", "Task", "r", True),
        ("patient/*.rs", "Task", "u", False),
        ("patient/Task.cu", "Task", "u", True),
        ("patient/Task.cu", "CarePlan", "u", False),
        ("patient/Task.read", "Task", "c", False),
        ("patient/*.write", "MedicationRequest", "c", True),
        ("user/*.*", "Provenance", "c", True),
        ("patient/MedicationRequest.c?category=outpatient", "MedicationRequest", "c", True),
        ("system/*.cruds", "Task", "u", False),  # not a user-facing context
        ("launch openid fhirUser", "Task", "r", False),
        ("", "Task", "r", False),
    ],
)
def test_scope_checks(granted: str, resource: str, op: str, ok: bool) -> None:
    assert allows(granted, resource, op) is ok


def test_requested_scopes() -> None:
    assert scopes(True, False).startswith("launch openid fhirUser patient/*.rs")
    assert scopes(False, False).startswith("launch openid fhirUser patient/*.read")
    assert scopes(True, True).startswith("launch/patient openid fhirUser patient/*.rs")


def test_pkce_pair_is_s256() -> None:
    import base64
    import hashlib

    v, c = pkce_pair()
    assert 43 <= len(v) <= 128
    assert c == base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=").decode()
    assert pkce_pair()[0] != v


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {},
        {"authorization_endpoint": "https://a/x"},
        {"authorization_endpoint": "javascript:x", "token_endpoint": "https://a/t"},
        {
            "authorization_endpoint": "https://a/x",
            "token_endpoint": "https://a/t",
            "code_challenge_methods_supported": ["plain"],
        },
    ],
)
def test_unusable_smart_configuration_is_refused(doc: Any) -> None:
    with pytest.raises(LaunchError):
        SmartConfiguration.from_json(doc)


@responses.activate
def test_token_endpoint_must_be_allow_listed() -> None:
    responses.get(
        f"{ISS}/.well-known/smart-configuration",
        json={
            "authorization_endpoint": "https://ehr.example.org/oauth/authorize",
            "token_endpoint": "https://tokens.elsewhere.example/token",
            "capabilities": ["permission-v2"],
        },
    )
    with pytest.raises(LaunchError) as e:
        SmartApp(settings()).discover(ISS)
    assert "token endpoint" in str(e.value)
    ok = SmartApp(settings(PATHWAY_SMART_APP_AUTH_ALLOWLIST="https://tokens.elsewhere.example"))
    assert ok.discover(ISS).v2


def test_iss_checked_before_anything() -> None:
    app = SmartApp(settings())
    with pytest.raises(LaunchError) as e:
        app.allowed_iss("https://evil.example/fhir")
    assert e.value.status == 400
    assert app.allowed_iss(ISS + "/") == ISS


@responses.activate
def test_confidential_client_uses_http_basic() -> None:
    responses.post(
        "https://ehr.example.org/token",
        json={"access_token": "t", "token_type": "Bearer", "patient": "p1"},
    )
    app = SmartApp(settings(PATHWAY_SMART_APP_CLIENT_SECRET="s3cret"))
    app.exchange("https://ehr.example.org/token", ISS, "code", "verifier")
    sent = responses.calls[0].request
    assert sent.headers["Authorization"].startswith("Basic ")
    assert "client_id" not in str(sent.body)
    assert "code_verifier=verifier" in str(sent.body)
    assert settings(PATHWAY_SMART_APP_CLIENT_SECRET="s3cret").redacted()[
        "smart_app_client_secret"
    ] == ("***")


def test_token_response_needs_a_patient_and_keeps_fhir_user() -> None:
    import jwt

    with pytest.raises(LaunchError):
        _token_fields({"access_token": "t", "token_type": "Bearer"})
    with pytest.raises(LaunchError):
        _token_fields({"access_token": "t", "patient": "../x"})
    idt = jwt.encode({"fhirUser": f"{ISS}/Practitioner/dr-9"}, "k" * 32, algorithm="HS256")
    f = _token_fields({"access_token": "t", "patient": "p1", "id_token": idt, "expires_in": 60})
    assert f["fhirUser"] == "Practitioner/dr-9"
    refreshed = _token_fields({"access_token": "t2"}, keep=f)
    assert refreshed["patient"] == "p1" and refreshed["fhirUser"] == "Practitioner/dr-9"


def test_frame_ancestors_setting_is_validated() -> None:
    assert settings().app_frame_ancestors == "'self'"
    with pytest.raises(SettingsError):
        settings(PATHWAY_APP_FRAME_ANCESTORS="'self'; script-src *")


def test_as_of_from_app_context() -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    card = (now - timedelta(minutes=5)).isoformat()
    assert _as_of(orjson.dumps({"asOf": card}).decode(), now) == (
        now - timedelta(minutes=5),
        "card",
    )
    old = (now - timedelta(days=3)).isoformat()
    assert _as_of(orjson.dumps({"asOf": old}).decode(), now) == (now, "now")
    future = (now + timedelta(days=3)).isoformat()
    assert _as_of(orjson.dumps({"asOf": future}).decode(), now) == (now, "now")
    assert _as_of("not json", now) == (now, "now")
    assert _as_of(None, now) == (now, "now")


@given(st.text(max_size=200))
def test_as_of_never_fails(text: str) -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    when, source = _as_of(orjson.dumps({"asOf": text}).decode(), now)
    assert source in ("card", "now")
    assert now - timedelta(hours=24) <= when <= now


def test_session_store_keeps_tokens_unreadable_in_the_database(tmp_path: Path) -> None:
    engine = Store(f"sqlite:///{tmp_path / 's.db'}").engine  # migrated: app_session exists
    store = SessionStore(engine, timedelta(minutes=5))
    s = store.new()
    s.auth = {"access_token": "very-secret-token", "patient": "p1"}
    store.save(s)
    with engine.begin() as c:
        rows = c.execute(select(app_session)).all()
    assert len(rows) == 1
    assert "very-secret-token" not in rows[0].data
    assert s.cookie not in rows[0].id
    loaded = store.load(s.cookie)
    assert loaded is not None and loaded.auth == s.auth and loaded.csrf == s.csrf
    tampered = ("y" if s.cookie[0] == "x" else "x") + s.cookie[1:]  # always a different cookie
    assert tampered != s.cookie
    assert store.load(tampered) is None
    assert store.load(None) is None
    store.drop(s)
    assert store.load(s.cookie) is None


def test_session_expires(tmp_path: Path) -> None:
    engine = Store(f"sqlite:///{tmp_path / 's.db'}").engine
    store = SessionStore(engine, timedelta(seconds=-1))
    s = store.new()
    store.save(s)
    assert store.load(s.cookie) is None


def _hook(tmp_path: Path, config: LoadedConfig, **extra: str) -> dict[str, Any]:
    s = Settings.from_mapping(
        {
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}",
            "PATHWAY_PUBLIC_URL": "https://pathway.example.org",
            **extra,
        }
    )
    app = create_app({"settings": s, "config": config})
    case = orjson.loads((SCENARIOS / "bup-day45-maintenance.json").read_bytes())
    body = hook_request("patient-view", "p1", prefetch_of(case["bundle"]))
    r = app.test_client().post(
        "/cds-services/oud-pathway", data=orjson.dumps(body), content_type="application/json"
    )
    assert r.status_code == 200
    out: dict[str, Any] = r.get_json()
    out["hookInstance"] = body["hookInstance"]
    return out


def test_card_links_to_the_app_when_enabled(tmp_path: Path, config: LoadedConfig) -> None:
    body = _hook(tmp_path, config, PATHWAY_SMART_APP_CLIENT_ID="app")
    links = [lk for lk in body["cards"][0]["links"] if lk["type"] == "smart"]
    assert len(links) == 1
    assert links[0]["url"] == "https://pathway.example.org/app/launch"
    ctx = orjson.loads(links[0]["appContext"])
    assert ctx["hookInstance"] == body["hookInstance"]
    assert datetime.fromisoformat(ctx["asOf"])
    plain = _hook(tmp_path / "b", config)
    assert all(lk["type"] != "smart" for lk in plain["cards"][0]["links"])


def test_app_routes_absent_when_not_configured(tmp_path: Path, config: LoadedConfig) -> None:
    s = Settings.from_mapping({"PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    app = create_app({"settings": s, "config": config})
    assert app.test_client().get("/app/launch?iss=x").status_code == 404


def test_view_orders_tasks_overdue_first_and_flags_critical_first(
    evaluator: Evaluator, config: LoadedConfig
) -> None:
    for path in sorted(SCENARIOS.glob("*.json")):
        case = orjson.loads(path.read_bytes())
        as_of = datetime.fromisoformat(case["asOf"].replace("Z", "+00:00"))
        later = as_of + timedelta(days=20)  # some tasks are overdue by then
        ev = evaluator.evaluate(case["bundle"], later, patient_id="p1")
        page = view.build(ev, config.pathway, evaluator.writer)
        keys = [(not t.overdue, t.due) for t in page.tasks]
        assert keys == sorted(keys), path.name
        rank = [view.SEVERITY_ORDER[f.indicator] for f in page.flags]
        assert rank == sorted(rank)
        assert {m.name: m.status for m in page.medications} == {
            m.medication: m.status for m in ev.decision.medications
        }
        assert len(page.timeline.marks) >= 0
        for m in page.timeline.marks:
            assert page.timeline.start <= (m.end or m.start)
            assert m.start <= page.timeline.end
