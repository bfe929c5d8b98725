"""Caller authentication, round two of the security review (issue 10): replay inside the clock-skew
leeway, the token lifetime cap, long jtis, `typ`, and one generic 401 for every refusal."""

from __future__ import annotations

import calendar
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import patient
from cds_support import Signer, empty_patient_view, pathway_log
from flask import Flask
from flask.testing import FlaskClient

from pathway import create_app
from pathway.api.auth import SKEW_SECONDS, UNAUTHENTICATED
from pathway.config import LoadedConfig
from pathway.settings import Settings
from pathway.store.db import JTI_PRUNE_SECONDS

PUBLIC = "https://cds.example.org"
AUD = f"{PUBLIC}/cds-services/oud-pathway"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer("ES384")


def make_app(tmp_path: Path, config: LoadedConfig, signer: Signer, **extra: str) -> Flask:
    clients = tmp_path / "clients.json"
    clients.write_bytes(orjson.dumps([{"iss": signer.iss, "jwks": signer.jwks}]))
    settings = Settings.from_mapping(
        {
            "PATHWAY_PUBLIC_URL": PUBLIC,
            "PATHWAY_CDS_CLIENTS_FILE": str(clients),
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
            **extra,
        }
    )
    return create_app({"settings": settings, "config": config})


@pytest.fixture
def app(tmp_path: Path, config: LoadedConfig, signer: Signer) -> Flask:
    return make_app(tmp_path, config, signer)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def call(client: FlaskClient, token: str) -> Any:
    body = empty_patient_view(patient())
    return client.post(
        "/cds-services/oud-pathway",
        data=orjson.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def refused(resp: Any) -> None:
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert resp.get_json() == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "login", "diagnostics": UNAUTHENTICATED}],
    }


def force_prune(app: Flask) -> None:
    """Make the next replay check prune expired rows (it does so at most once a minute)."""
    app.extensions["pathway"].store._jti_pruned = time.monotonic() - JTI_PRUNE_SECONDS - 1


def test_a_token_is_not_replayable_inside_the_leeway_after_its_exp(
    app: Flask, client: FlaskClient, signer: Signer
) -> None:
    """exp has passed but the skew leeway still honours the token: its jti must still be known
    when the expired rows are pruned (the attack run replayed one at exp + 44 s)."""
    now = int(time.time())
    token = signer.token(AUD, iat=now - 200, exp=now - SKEW_SECONDS // 2)
    assert call(client, token).status_code == 200
    force_prune(app)
    with pathway_log() as logged:
        refused(call(client, token))
    assert any("jti already used" in m for m in logged), logged


def test_rows_are_pruned_once_the_leeway_has_passed_too(
    app: Flask, client: FlaskClient, signer: Signer
) -> None:
    from sqlalchemy import text

    store = app.extensions["pathway"].store
    now = int(time.time())
    assert call(client, signer.token(AUD, iat=now - 100, exp=now + 30)).status_code == 200
    with store.engine.connect() as c:
        (kept,) = c.execute(text("SELECT expires_at FROM seen_jti")).one()
    kept_s = calendar.timegm(time.strptime(str(kept)[:19], "%Y-%m-%d %H:%M:%S"))  # UTC
    assert abs(kept_s - (now + 30 + SKEW_SECONDS)) <= 1  # exp + leeway, not exp


@pytest.mark.parametrize(
    ("lifetime", "ok"), [(60, True), (300, True), (301, False), (3600, False), (86_400, False)]
)
def test_token_lifetime_is_capped(
    client: FlaskClient, signer: Signer, lifetime: int, ok: bool
) -> None:
    now = int(time.time())
    token = signer.token(AUD, iat=now, exp=now + lifetime)
    if ok:
        assert call(client, token).status_code == 200
        return
    with pathway_log() as logged:
        refused(call(client, token))
    assert any("lifetime" in m and "PATHWAY_JWT_MAX_LIFETIME_SECONDS" in m for m in logged)


def test_the_lifetime_cap_is_a_setting(
    tmp_path: Path, config: LoadedConfig, signer: Signer
) -> None:
    app = make_app(tmp_path, config, signer, PATHWAY_JWT_MAX_LIFETIME_SECONDS="900")
    now = int(time.time())
    assert call(app.test_client(), signer.token(AUD, iat=now, exp=now + 900)).status_code == 200
    refused(call(app.test_client(), signer.token(AUD, iat=now, exp=now + 901)))


def test_exp_must_come_after_iat(client: FlaskClient, signer: Signer) -> None:
    now = int(time.time())
    refused(call(client, signer.token(AUD, iat=now, exp=now)))


def test_long_jtis_are_hashed_not_cut(client: FlaskClient, signer: Signer) -> None:
    """Two jtis that share their first 1,000 characters are two jtis (they used to be cut to
    the table's 300 characters, so the second was refused as a replay)."""
    prefix = "j" * 1000
    assert call(client, signer.token(AUD, jti=prefix + "-1")).status_code == 200
    assert call(client, signer.token(AUD, jti=prefix + "-2")).status_code == 200
    refused(call(client, signer.token(AUD, jti=prefix + "-2")))


@pytest.mark.parametrize(
    ("typ", "ok"),
    [
        ("JWT", True),
        ("jwt", True),
        ("application/jwt", True),
        (None, True),  # absent: allowed (CDS Hooks: typ SHOULD be JWT)
        ("at+jwt", False),  # an OAuth access token is not a CDS Hooks caller token
        ("dpop+jwt", False),
        ("JOSE", False),
        (7, False),
    ],
)
def test_typ_must_be_jwt_when_present(
    client: FlaskClient, signer: Signer, typ: Any, ok: bool
) -> None:
    headers = {"typ": typ} if typ is not None else {}
    token = signer.token(AUD, _headers=headers)
    if typ is None:  # PyJWT adds typ JWT unless told otherwise
        import jwt

        claims = jwt.decode(token, options={"verify_signature": False})
        token = jwt.encode(
            claims, signer.key, algorithm="ES384", headers={"kid": "k1", "typ": None}
        )
        assert "typ" not in jwt.get_unverified_header(token)
    if ok:
        assert call(client, token).status_code == 200
        return
    with pathway_log() as logged:
        refused(call(client, token))
    assert any("typ" in m for m in logged), logged


def test_every_refusal_is_the_same_401(client: FlaskClient, signer: Signer) -> None:
    """Nothing in the answer tells which issuers, keys, jku hosts or jtis exist, or which
    library class refused the token: the reason goes to the log only."""
    other = Signer("ES384")  # same kid and issuer, another key: a bad signature
    used = signer.token(AUD)
    assert call(client, used).status_code == 200
    tokens = {
        "bad signature": other.token(AUD),
        "unknown issuer": signer.token(AUD, iss="https://unknown.example.org"),
        "unknown kid": signer.token(AUD, _headers={"kid": "nope"}),
        "jku not allowed": signer.token(AUD, _headers={"jku": "https://x.example.net/k"}),
        "replay": used,
        "wrong aud": signer.token(f"{PUBLIC}/cds-services/other"),
        "garbage": "a.b.c",
    }
    bodies = set()
    for name, token in tokens.items():
        with pathway_log() as logged:
            resp = call(client, token)
        refused(resp)
        bodies.add(resp.get_data())
        assert any("caller refused" in m for m in logged), name
        assert all(token not in m for m in logged), name
    no_header = client.post("/cds-services/oud-pathway", json={})
    refused(no_header)
    bodies.add(no_header.get_data())
    assert len(bodies) == 1
    text = orjson.loads(bodies.pop())["issue"][0]["diagnostics"].lower()
    for word in ("error", "issuer", "kid", "jti", "signature", "jku", "expired"):
        assert word not in text
