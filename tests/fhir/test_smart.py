"""SMART Backend Services token flow (responses stubs)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pathway.fhir.client import FhirAuthError, FhirBadResponse, FhirUnavailable
from pathway.fhir.smart import ASSERTION_TYPE, SigningKey, SmartBackendAuth

TOKEN_URL = "https://ehr.example.org/oauth2/token"


def pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(params=["RS384", "ES384"])
def key(request: pytest.FixtureRequest) -> SigningKey:
    k = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if request.param == "RS384"
        else ec.generate_private_key(ec.SECP384R1())
    )
    return SigningKey.from_pem(pem(k), kid="key-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@responses.activate
def test_token_request_carries_a_signed_assertion(key: SigningKey) -> None:
    responses.post(TOKEN_URL, json={"access_token": "at-1", "expires_in": 300})
    auth = SmartBackendAuth(TOKEN_URL, "cds-client", key)
    assert auth() == "at-1"
    form = parse_qs(str(responses.calls[0].request.body))
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_assertion_type"] == [ASSERTION_TYPE]
    assertion = form["client_assertion"][0]
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == key.alg and header["kid"] == "key-1"
    claims = jwt.decode(assertion, key.key.public_key(), algorithms=[key.alg], audience=TOKEN_URL)
    assert claims["iss"] == claims["sub"] == "cds-client"
    assert claims["exp"] - claims["iat"] <= 300 and claims["jti"]


@responses.activate
def test_token_is_cached_until_shortly_before_it_expires(key: SigningKey) -> None:
    clock = Clock()
    responses.post(TOKEN_URL, json={"access_token": "at-1", "expires_in": 300})
    responses.post(TOKEN_URL, json={"access_token": "at-2", "expires_in": 300})
    auth = SmartBackendAuth(TOKEN_URL, "c", key, clock=clock)
    assert auth() == "at-1"
    clock.now += 200
    assert auth() == "at-1"
    assert len(responses.calls) == 1
    clock.now += 80  # within 30 s of expiry: refreshed
    assert auth() == "at-2"
    assert len(responses.calls) == 2


@responses.activate
def test_invalidate_forces_a_new_token(key: SigningKey) -> None:
    responses.post(TOKEN_URL, json={"access_token": "at-1", "expires_in": 300})
    responses.post(TOKEN_URL, json={"access_token": "at-2", "expires_in": 300})
    auth = SmartBackendAuth(TOKEN_URL, "c", key)
    auth()
    auth.invalidate()
    assert auth() == "at-2"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"status": 401, "json": {"error": "invalid_client"}}, FhirAuthError),
        ({"status": 400, "json": {"error": "invalid_grant"}}, FhirAuthError),
        ({"status": 503}, FhirUnavailable),
        ({"status": 200, "body": b"not json"}, FhirBadResponse),
        ({"status": 200, "json": {"token_type": "bearer"}}, FhirBadResponse),
    ],
)
@responses.activate
def test_token_failures_are_typed(
    key: SigningKey, kwargs: dict[str, object], error: type[Exception]
) -> None:
    responses.post(TOKEN_URL, **kwargs)
    with pytest.raises(error):
        SmartBackendAuth(TOKEN_URL, "c", key)()


def test_keys_that_cannot_sign_rs384_or_es384_are_refused(tmp_path: Path) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="P-384"):
        SigningKey.from_pem(pem(p256))
    with pytest.raises(ValueError, match="PEM"):
        SigningKey.from_pem(b"-----BEGIN NOTHING-----")
    with pytest.raises(ValueError, match="cannot be read"):
        SigningKey.from_file(tmp_path / "missing.pem")


def test_kid_defaults_to_a_stable_thumbprint() -> None:
    k = ec.generate_private_key(ec.SECP384R1())
    assert SigningKey.from_pem(pem(k)).kid == SigningKey.from_pem(pem(k)).kid
