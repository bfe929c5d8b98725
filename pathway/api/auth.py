"""Caller authentication per the CDS Hooks specification (JWT bearer tokens).

Trusted clients come from `PATHWAY_CDS_CLIENTS_FILE`: a JSON list of
`{"iss": ..., "jwks": {...}}` (keys inline) or `{"iss": ..., "jku": ["https://..."]}` (allowed
key-set URLs), optional `"tenant"`. Accepted: RS384 and ES384 only (no `none`, no HMAC), a `kid`,
`typ` `JWT` when present, `iss` trusted, `aud` equal to the URL called, `exp`/`iat`/`nbf` within a
small skew (SKEW_SECONDS), a lifetime `exp - iat` of at most PATHWAY_JWT_MAX_LIFETIME_SECONDS,
and a `jti` never seen before: a seen jti is remembered until `exp` + the skew, as long as the
token itself could be accepted, and stored as a SHA-256 of (issuer, jti), whatever its length.

Every refusal is the same 401 OperationOutcome: a caller learns nothing of which issuers, keys or
jtis exist. The reason is logged (never the token).
"""

from __future__ import annotations

import base64
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import jwt
import orjson
import requests
from flask import current_app, g, request

from pathway.api.errors import ApiError

log = logging.getLogger("pathway.auth")
ALGORITHMS = ("RS384", "ES384")
SKEW_SECONDS = 60
DEFAULT_MAX_LIFETIME_SECONDS = 300
JWKS_CACHE_SECONDS = 300
# RFC 7519 §5.1: "JWT" (media types compare case-insensitively; "application/" may be omitted).
JWT_TYPES = ("JWT", "APPLICATION/JWT")
UNAUTHENTICATED = (
    "The caller is not authenticated: a valid CDS Hooks JWT is required "
    "(Authorization: Bearer <JWT>)."
)
F = TypeVar("F", bound=Callable[..., Any])


class AuthError(Exception):
    """Why a caller was refused (safe to log: no token content)."""


@dataclass(frozen=True, slots=True)
class Client:
    iss: str
    jwks: dict[str, Any] | None
    jku: tuple[str, ...]
    tenant: str | None


def load_clients(path: Path | None) -> dict[str, Client]:
    if path is None:
        return {}
    try:
        raw = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise ValueError(f"PATHWAY_CDS_CLIENTS_FILE {path}: {e}") from e
    if not isinstance(raw, list):
        raise ValueError(f"PATHWAY_CDS_CLIENTS_FILE {path}: expected a JSON list of clients")
    clients: dict[str, Client] = {}
    for i, c in enumerate(raw):
        if not isinstance(c, dict) or not isinstance(c.get("iss"), str):
            raise ValueError(f"PATHWAY_CDS_CLIENTS_FILE {path}: client [{i}] needs 'iss'")
        jwks = c.get("jwks")
        jku = c.get("jku") or []
        if isinstance(jku, str):
            jku = [jku]
        if jwks is None and not jku:
            raise ValueError(f"PATHWAY_CDS_CLIENTS_FILE {path}: client [{i}] needs 'jwks' or 'jku'")
        if jwks is not None and not (isinstance(jwks, dict) and isinstance(jwks.get("keys"), list)):
            raise ValueError(
                f"PATHWAY_CDS_CLIENTS_FILE {path}: client [{i}] 'jwks' must be a JWK Set"
            )
        clients[c["iss"]] = Client(c["iss"], jwks, tuple(str(u) for u in jku), c.get("tenant"))
    return clients


class KeySets:
    """Fetches allow-listed `jku` key sets, cached for a few minutes."""

    def __init__(self, timeout: float = 5.0) -> None:
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.timeout = timeout

    def get(self, url: str) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(url)
            if hit and now - hit[0] < JWKS_CACHE_SECONDS:
                return hit[1]
        try:
            resp = requests.get(url, timeout=self.timeout, allow_redirects=False)
            resp.raise_for_status()
            jwks = orjson.loads(resp.content)
        except (requests.RequestException, orjson.JSONDecodeError) as e:
            raise AuthError(f"key set could not be fetched ({type(e).__name__})") from e
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise AuthError("key set is not a JWK Set")
        with self._lock:
            self._cache[url] = (now, jwks)
        return jwks


_KEY_CACHE: dict[bytes, Any] = {}


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, unverified, to find the issuer and key (PyJWT verifies below)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("malformed token")
    try:
        header = orjson.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError) as e:
        raise AuthError("malformed token") from e
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AuthError("malformed token")
    return header, claims


def _find_key(jwks: dict[str, Any], kid: str, alg: str) -> Any:
    for k in jwks.get("keys", []):
        if isinstance(k, dict) and k.get("kid") == kid:
            # Parsed keys are cached by their full JWK (a rotated key is a new entry).
            cache_key = orjson.dumps([alg, k], option=orjson.OPT_SORT_KEYS)
            key = _KEY_CACHE.get(cache_key)
            if key is None:
                try:
                    key = jwt.PyJWK(k, algorithm=alg).key
                except (jwt.PyJWKError, jwt.InvalidKeyError) as e:
                    raise AuthError("the signing key is not usable") from e
                if len(_KEY_CACHE) > 1000:
                    _KEY_CACHE.clear()
                _KEY_CACHE[cache_key] = key
            return key
    raise AuthError(f"no key with kid {kid[:64]!r}")


class Verifier:
    def __init__(
        self,
        clients: dict[str, Client],
        remember_jti: Callable[[str, datetime], bool],
        keysets: KeySets | None = None,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
    ) -> None:
        self.clients = clients
        self.remember_jti = remember_jti
        self.keysets = keysets or KeySets()
        self.max_lifetime_seconds = max_lifetime_seconds

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        header, unverified = _peek(token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise AuthError(f"algorithm {str(alg)[:20]!r} not accepted (RS384 or ES384)")
        typ = header.get("typ")
        if typ is not None and not (isinstance(typ, str) and typ.upper() in JWT_TYPES):
            raise AuthError(f"typ {str(typ)[:40]!r} is not JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("no kid in the token header")
        iss = unverified.get("iss")
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise AuthError(f"issuer {str(iss)[:100]!r} not trusted")
        jku = header.get("jku")
        if isinstance(jku, str):
            if jku not in client.jku:
                raise AuthError("jku not on the issuer's allow-list")
            jwks = self.keysets.get(jku)
        elif client.jwks is not None:
            jwks = client.jwks
        elif len(client.jku) == 1:
            jwks = self.keysets.get(client.jku[0])
        else:
            raise AuthError("no key set for this issuer")
        key = _find_key(jwks, kid, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                leeway=SKEW_SECONDS,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise AuthError("token expired") from e
        except jwt.InvalidAudienceError as e:
            raise AuthError("aud is not this endpoint") from e
        except jwt.ImmatureSignatureError as e:
            raise AuthError("token not valid yet (nbf or iat in the future)") from e
        except jwt.MissingRequiredClaimError as e:
            raise AuthError(f"required claim '{e.claim}' missing") from e
        except jwt.PyJWTError as e:
            raise AuthError(f"token rejected ({type(e).__name__})") from e
        now = time.time()
        iat, exp, jti = claims.get("iat"), claims["exp"], claims["jti"]
        if not isinstance(iat, int | float) or iat > now + SKEW_SECONDS:
            raise AuthError("iat in the future")
        if not isinstance(exp, int | float) or exp <= iat:
            raise AuthError("exp is not after iat")
        if exp - iat > self.max_lifetime_seconds:
            raise AuthError(
                f"token lifetime {exp - iat:.0f} s exceeds {self.max_lifetime_seconds} s "
                "(PATHWAY_JWT_MAX_LIFETIME_SECONDS)"
            )
        if not isinstance(jti, str) or not jti:
            raise AuthError("jti is not a non-empty string")
        # Remembered as long as the token could be accepted: until exp plus the leeway.
        keep_until = datetime.fromtimestamp(float(exp) + SKEW_SECONDS, UTC)
        if not self.remember_jti(replay_key(client.iss, jti), keep_until):
            raise AuthError("jti already used")
        return claims


def replay_key(iss: str, jti: str) -> str:
    """The (issuer, jti) pair as the store's key (it keeps a SHA-256 of it; the form of release
    0.1.0, so the rows it wrote still count). Two trusted issuers whose names contain `|` could
    share a key: a token would then be refused as a replay, never accepted."""
    return f"{iss}|{jti}"


def require_caller(view: F) -> F:
    """Authenticate the caller (unless auth is explicitly off) before the view runs."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        svc = current_app.extensions["pathway"]
        if svc.settings.auth_mode == "off":
            g.caller = None
            return view(*args, **kwargs)
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            log.warning("caller refused: no bearer token (path %s)", request.path)
            raise ApiError(
                401,
                UNAUTHENTICATED,
                "login",
                headers={"WWW-Authenticate": 'Bearer realm="oud-pathway"'},
            )
        audience = svc.settings.base_url + request.path
        try:
            g.caller = current_app.extensions["pathway.verifier"].verify(
                header[7:].strip(), audience
            )
        except AuthError as e:
            # The reason is for the operator; the caller gets the same answer whatever it is.
            log.warning("caller refused: %s (path %s)", e, request.path)
            raise ApiError(
                401,
                UNAUTHENTICATED,
                "login",
                headers={"WWW-Authenticate": 'Bearer realm="oud-pathway", error="invalid_token"'},
            ) from e
        return view(*args, **kwargs)

    return cast(F, wrapper)
