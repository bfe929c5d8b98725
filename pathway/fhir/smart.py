"""SMART Backend Services (client_credentials with a private_key_jwt assertion).

The service signs a short-lived client assertion (RS384 or ES384, `kid` from the key), posts it to
the EHR's token endpoint, and caches the access token until shortly before it expires. Tokens
are never logged.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pathway.fhir.client import FhirAuthError, FhirBadResponse, FhirUnavailable

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REFRESH_MARGIN_SECONDS = 30


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: Any
    alg: str
    kid: str

    @classmethod
    def from_pem(cls, pem: bytes, kid: str | None = None) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as e:
            raise ValueError("the SMART private key is not a readable unencrypted PEM key") from e
        if isinstance(key, rsa.RSAPrivateKey):
            alg = "RS384"
        elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
            alg = "ES384"
        else:
            raise ValueError("the SMART private key must be RSA or EC P-384 (RS384 / ES384)")
        if kid is None:
            public = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            kid = uuid.uuid5(uuid.NAMESPACE_OID, public.hex()).hex
        return cls(key, alg, kid)

    @classmethod
    def from_file(cls, path: Path, kid: str | None = None) -> SigningKey:
        try:
            return cls.from_pem(path.read_bytes(), kid)
        except OSError as e:
            raise ValueError(f"the SMART private key file cannot be read ({e.strerror})") from e


class SmartBackendAuth:
    """A callable that returns a valid access token (fetching or refreshing it when needed)."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        key: SigningKey,
        scope: str = "system/*.read system/CarePlan.write system/Task.write "
        "system/Provenance.write system/DocumentReference.write",
        timeout: float = 10.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.key = key
        self.scope = scope
        self.timeout = timeout
        self.session = session or requests.Session()
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def assertion(self) -> str:
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(
            claims, self.key.key, algorithm=self.key.alg, headers={"kid": self.key.kid}
        )

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
            self._expires_at = 0.0

    def __call__(self) -> str:
        with self._lock:
            if self._token and self._clock() < self._expires_at - REFRESH_MARGIN_SECONDS:
                return self._token
            self._token, self._expires_at = self._fetch()
            return self._token

    def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        try:
            resp = self.session.post(
                self.token_url,
                data=form,
                timeout=self.timeout,
                allow_redirects=False,
                headers={"Accept": "application/json"},
            )
        except requests.RequestException as e:
            raise FhirUnavailable(f"token endpoint unreachable ({type(e).__name__})") from e
        if resp.status_code in (400, 401, 403):
            raise FhirAuthError(f"token request refused ({resp.status_code})", resp.status_code)
        if resp.status_code >= 500 or resp.status_code == 429:
            raise FhirUnavailable(f"token endpoint answered {resp.status_code}", resp.status_code)
        try:
            body = orjson.loads(resp.content)
        except orjson.JSONDecodeError as e:
            raise FhirBadResponse("token endpoint answered something that is not JSON") from e
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise FhirBadResponse("token response without access_token")
        expires_in = body.get("expires_in", 300)
        if not isinstance(expires_in, int | float) or expires_in <= 0:
            expires_in = 300
        return token, self._clock() + float(expires_in)
