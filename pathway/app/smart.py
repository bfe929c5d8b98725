"""SMART App Launch 2.x, the client side (authorization code with PKCE S256).

No Flask here: the routes hand in what the browser sent and get back where to send it. Every
outbound call (discovery, token endpoint) goes only to an allow-listed URL; tokens are returned to
the caller (kept server-side by the session store) and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from pathway.settings import Settings

log = logging.getLogger("pathway.app.smart")

BASE_SCOPES = ("launch", "openid", "fhirUser")
READ_V2 = "patient/*.rs"
READ_V1 = "patient/*.read"
# Writes the app's actions need (granted or not by the EHR: actions are offered per grant).
WRITE_V2 = (
    "patient/MedicationRequest.c",
    "patient/CarePlan.cu",
    "patient/Task.cu",
    "patient/Provenance.c",
)
WRITE_V1 = (
    "patient/MedicationRequest.write",
    "patient/CarePlan.write",
    "patient/Task.write",
    "patient/Provenance.write",
)
DISCOVERY_PATH = "/.well-known/smart-configuration"
MAX_DISCOVERY_BYTES = 256 * 1024


class LaunchError(Exception):
    """A launch or token step failed; `status` is the HTTP status of the page to show, and the
    message is safe to show (no token, no patient data)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class SmartConfiguration:
    authorization_endpoint: str
    token_endpoint: str
    v2: bool  # permission-v2 among the capabilities

    @classmethod
    def from_json(cls, doc: Any) -> SmartConfiguration:
        if not isinstance(doc, dict):
            raise LaunchError(502, "The EHR's SMART configuration is not a JSON object.")
        auth = doc.get("authorization_endpoint")
        token = doc.get("token_endpoint")
        for name, url in (("authorization_endpoint", auth), ("token_endpoint", token)):
            if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
                raise LaunchError(502, f"The EHR's SMART configuration has no usable {name}.")
        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise LaunchError(502, "The EHR's authorization server does not support PKCE S256.")
        caps = doc.get("capabilities")
        v2 = isinstance(caps, list) and "permission-v2" in caps
        return cls(str(auth), str(token), v2)


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge) for S256 (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)[:96]
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def scopes(v2: bool, standalone: bool) -> str:
    launch = ("launch/patient",) if standalone else ("launch",)
    read = READ_V2 if v2 else READ_V1
    write = WRITE_V2 if v2 else WRITE_V1
    return " ".join((*launch, *BASE_SCOPES[1:], read, *write))


def allows(granted: str, resource: str, op: str) -> bool:
    """Whether granted scopes let the app `op` (one of c r u d s) `resource` for the patient.
    SMART v2 (`patient/Task.cu`) and v1 (`patient/Task.write`, `patient/*.*`) forms."""
    for scope in granted.split():
        context, _, rest = scope.partition("/")
        if context not in ("patient", "user") or "." not in rest:
            continue
        rtype, _, perms = rest.partition(".")
        perms = perms.split("?", 1)[0]
        if rtype not in (resource, "*"):
            continue
        if perms == "*":
            return True
        if perms == "write" and op in "cud":
            return True
        if perms == "read" and op in "rs":
            return True
        if perms and set(perms) <= set("cruds") and op in perms:
            return True
    return False


class SmartApp:
    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.client_id = settings.smart_app_client_id or ""
        self.secret = settings.smart_app_client_secret
        self.http = session or requests.Session()

    @property
    def redirect_uri(self) -> str:
        return f"{self.settings.base_url}/app/callback"

    # ------------------------------------------------------------------ allow-lists
    def allowed_iss(self, iss: str) -> str:
        base = iss.strip().rstrip("/")
        if not base or not self.settings.fhir_server_allowed(base):
            raise LaunchError(
                400,
                "This EHR (iss) is not on this service's allow-list (PATHWAY_FHIR_ALLOWLIST): "
                "ask your administrator to add it.",
            )
        return base

    def token_url_allowed(self, url: str, iss: str) -> bool:
        """The token endpoint: on the origin of an allow-listed FHIR base (iss), or under an
        entry of PATHWAY_SMART_APP_AUTH_ALLOWLIST."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.username or parts.password:
            return False
        origin = (parts.scheme, parts.netloc)
        if origin == (urlsplit(iss).scheme, urlsplit(iss).netloc):
            return True
        return any(
            url == a or url.startswith(a + "/") for a in self.settings.smart_app_auth_allowlist
        )

    # ------------------------------------------------------------------ discovery
    def discover(self, iss: str) -> SmartConfiguration:
        try:
            resp = self.http.get(
                iss + DISCOVERY_PATH,
                headers={"Accept": "application/json"},
                timeout=self.settings.http_timeout_seconds,
                allow_redirects=False,
            )
        except requests.RequestException as e:
            raise LaunchError(502, "The EHR's SMART configuration could not be read.") from e
        if resp.status_code != 200 or len(resp.content) > MAX_DISCOVERY_BYTES:
            raise LaunchError(
                502, f"The EHR's SMART configuration answered HTTP {resp.status_code}."
            )
        try:
            doc = resp.json()
        except ValueError as e:
            raise LaunchError(502, "The EHR's SMART configuration is not JSON.") from e
        conf = SmartConfiguration.from_json(doc)
        if not self.token_url_allowed(conf.token_endpoint, iss):
            raise LaunchError(
                502,
                "The EHR's token endpoint is not on an allow-listed origin "
                "(PATHWAY_FHIR_ALLOWLIST or PATHWAY_SMART_APP_AUTH_ALLOWLIST).",
            )
        return conf

    def authorize_url(
        self,
        conf: SmartConfiguration,
        iss: str,
        launch: str | None,
        state: str,
        challenge: str,
    ) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": scopes(conf.v2, standalone=launch is None),
            "state": state,
            "aud": iss,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if launch is not None:
            params["launch"] = launch
        sep = "&" if "?" in conf.authorization_endpoint else "?"
        return conf.authorization_endpoint + sep + urlencode(params)

    # ------------------------------------------------------------------ token endpoint
    def _token_request(self, token_url: str, iss: str, form: dict[str, str]) -> dict[str, Any]:
        if not self.token_url_allowed(token_url, iss):
            raise LaunchError(502, "The token endpoint is not allow-listed.")
        auth = None
        if self.secret:
            auth = (self.client_id, self.secret)  # HTTP Basic: a confidential client
        else:
            form = {**form, "client_id": self.client_id}
        try:
            resp = self.http.post(
                token_url,
                data=form,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=self.settings.http_timeout_seconds,
                allow_redirects=False,
            )
        except requests.RequestException as e:
            raise LaunchError(502, "The EHR's token endpoint could not be reached.") from e
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            code = str(error)[:60] if isinstance(error, str) else f"HTTP {resp.status_code}"
            log.warning("token endpoint refused the request (%s)", code)
            raise LaunchError(401, f"The EHR did not issue a token ({code}).")
        if not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise LaunchError(502, "The EHR's token response has no access_token.")
        if str(body.get("token_type", "")).lower() != "bearer":
            raise LaunchError(502, "The EHR's token response is not a Bearer token.")
        return body

    def exchange(self, token_url: str, iss: str, code: str, verifier: str) -> dict[str, Any]:
        return self._token_request(
            token_url,
            iss,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier,
            },
        )

    def refresh(self, token_url: str, iss: str, refresh_token: str) -> dict[str, Any]:
        return self._token_request(
            token_url, iss, {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )
