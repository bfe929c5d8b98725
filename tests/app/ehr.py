"""A small SMART on FHIR EHR for the app's browser tests: an authorization server (SMART App
Launch 2.x: launch context, PKCE S256 checked, refresh tokens, scopes) in front of the real
loopback FHIR server (Medplum), whose requests it forwards only with a valid access token and
only within the token's scopes.

    with FakeEhr(medplum.base, client_id="app", redirect_uri=...) as ehr:
        launch = ehr.new_launch("p1", app_context='{"hookInstance": "..."}')
        browser.goto(f"{app}/app/launch?iss={ehr.iss}&launch={launch}")

Not a production server: everything is in memory; the user is always signed in and always
approves. What it records (`calls`) lets tests prove what the app did and did not ask.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import orjson
import requests
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

ALL_SCOPES = (
    "launch launch/patient openid fhirUser patient/*.rs patient/*.read "
    "patient/MedicationRequest.c patient/CarePlan.cu patient/Task.cu patient/Provenance.c "
    "patient/MedicationRequest.write patient/CarePlan.write patient/Task.write "
    "patient/Provenance.write"
)


@dataclass
class Grant:
    patient: str
    scope: str
    app_context: str | None
    user: str
    expires_at: float
    refresh_token: str | None


@dataclass
class FakeEhr:  # a real OAuth server and FHIR proxy; "fake" only in that it is ours
    fhir_upstream: str  # the Medplum base, http://127.0.0.1:P/fhir
    client_id: str
    redirect_uri: str
    client_secret: str | None = None
    v2: bool = True
    grantable: str = ALL_SCOPES  # what the "user" may grant
    token_seconds: int = 3600
    issue_refresh: bool = True
    fail_token: str | None = None  # an OAuth error code the token endpoint answers with
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    launches: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, Grant] = field(default_factory=dict)
    refreshes: dict[str, Grant] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    standalone_patient: str | None = None
    _server: BaseWSGIServer | None = None
    _thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> FakeEhr:
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.http = requests.Session()
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.http.close()

    @property
    def origin(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def iss(self) -> str:
        return f"{self.origin}/fhir"

    def new_launch(
        self, patient: str, app_context: str | None = None, user: str = "Practitioner/dr-1"
    ) -> str:
        launch = secrets.token_urlsafe(12)
        self.launches[launch] = {"patient": patient, "appContext": app_context, "user": user}
        return launch

    def expire_tokens(self) -> None:
        for g in self.tokens.values():
            g.expires_at = 0

    # ------------------------------------------------------------------ WSGI
    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        req = Request(environ)
        self.calls.append((req.method, req.path))
        if req.path == "/fhir/.well-known/smart-configuration":
            resp = self.configuration()
        elif req.path == "/auth/authorize":
            resp = self.authorize(req)
        elif req.path == "/auth/token" and req.method == "POST":
            resp = self.token(req)
        elif req.path.startswith("/fhir"):
            resp = self.fhir(req)
        else:
            resp = Response("not found", 404)
        return resp(environ, start_response)

    def configuration(self) -> Response:
        caps = ["launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric"]
        caps += ["context-ehr-patient", "context-standalone-patient", "sso-openid-connect"]
        if self.v2:
            caps.append("permission-v2")
        else:
            caps.append("permission-v1")
        doc = {
            "issuer": self.origin,
            "authorization_endpoint": f"{self.origin}/auth/authorize",
            "token_endpoint": f"{self.origin}/auth/token",
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "capabilities": caps,
            "scopes_supported": self.grantable.split(),
        }
        return Response(orjson.dumps(doc), 200, content_type="application/json")

    @staticmethod
    def _oauth_error(code: str, status: int = 400) -> Response:
        return Response(orjson.dumps({"error": code}), status, content_type="application/json")

    def authorize(self, req: Request) -> Response:
        q = req.args
        problems = []
        if q.get("response_type") != "code":
            problems.append("response_type")
        if q.get("client_id") != self.client_id:
            problems.append("client_id")
        if q.get("redirect_uri") != self.redirect_uri:
            problems.append("redirect_uri")
        if q.get("aud") != self.iss:
            problems.append("aud")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            problems.append("pkce")
        if not q.get("state"):
            problems.append("state")
        if problems:  # no redirect to an unverified redirect_uri: an error page
            return Response(f"bad authorization request: {', '.join(problems)}", 400)
        requested = set((q.get("scope") or "").split())
        launch = q.get("launch")
        if launch is not None:
            ctx = self.launches.get(launch)
            if ctx is None or "launch" not in requested:
                return self._redirect_error(q, "invalid_request")
        elif "launch/patient" in requested and self.standalone_patient:
            ctx = {
                "patient": self.standalone_patient,
                "appContext": None,
                "user": "Practitioner/dr-1",
            }
        else:
            return self._redirect_error(q, "invalid_scope")
        granted = " ".join(s for s in self.grantable.split() if s in requested)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            **ctx,
            "challenge": q["code_challenge"],
            "redirect_uri": q["redirect_uri"],
            "scope": granted,
            "used": False,
        }
        target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
        return Response("", 302, headers={"Location": target})

    @staticmethod
    def _redirect_error(q: Any, code: str) -> Response:
        target = q["redirect_uri"] + "?" + urlencode({"error": code, "state": q["state"]})
        return Response("", 302, headers={"Location": target})

    def _client_ok(self, req: Request) -> bool:
        if self.client_secret is None:
            return req.form.get("client_id") == self.client_id
        header = req.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user == self.client_id and password == self.client_secret

    def token(self, req: Request) -> Response:
        form = dict(req.form.items())
        self.token_requests.append(form)
        if self.fail_token:
            return self._oauth_error(self.fail_token)
        if not self._client_ok(req):
            return self._oauth_error("invalid_client", 401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            c = self.codes.get(form.get("code", ""))
            if c is None or c["used"]:
                return self._oauth_error("invalid_grant")
            c["used"] = True
            if form.get("redirect_uri") != c["redirect_uri"]:
                return self._oauth_error("invalid_grant")
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != c["challenge"]:
                return self._oauth_error("invalid_grant")  # PKCE mismatch
            g = Grant(c["patient"], c["scope"], c["appContext"], c["user"], 0, None)
        elif grant == "refresh_token":
            old = self.refreshes.pop(form.get("refresh_token", ""), None)
            if old is None:
                return self._oauth_error("invalid_grant")
            g = old
        else:
            return self._oauth_error("unsupported_grant_type")
        access = secrets.token_urlsafe(24)
        g = Grant(
            g.patient,
            g.scope,
            g.app_context,
            g.user,
            time.time() + self.token_seconds,
            secrets.token_urlsafe(24) if self.issue_refresh else None,
        )
        self.tokens[access] = g
        if g.refresh_token:
            self.refreshes[g.refresh_token] = g
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.token_seconds,
            "scope": g.scope,
            "patient": g.patient,
            "id_token": jwt.encode(
                {
                    "iss": self.origin,
                    "aud": self.client_id,
                    "sub": "dr-1",
                    "fhirUser": f"{self.iss}/{g.user}",
                },
                "test-ehr-secret-key-not-for-production",
                algorithm="HS256",
            ),
        }
        if g.refresh_token:
            body["refresh_token"] = g.refresh_token
        if g.app_context:
            body["appContext"] = g.app_context
        return Response(orjson.dumps(body), 200, content_type="application/json")

    # ------------------------------------------------------------------ resource server
    def fhir(self, req: Request) -> Response:
        header = req.headers.get("Authorization", "")
        g = self.tokens.get(header[7:]) if header.startswith("Bearer ") else None
        if g is None or g.expires_at < time.time():
            return _outcome("login", 401)
        parts = [p for p in req.path.split("/")[2:] if p]
        rtype = parts[0] if parts else ""
        search = len(parts) == 2 and parts[1] == "_search"
        write = req.method in ("POST", "PUT", "PATCH", "DELETE") and not search
        checks = [(rtype, "GET" if search else req.method)]
        if not rtype and req.method == "POST":  # a batch or transaction: each entry
            bundle = orjson.loads(req.get_data() or b"{}")
            checks = [
                (str(e["request"]["url"]).split("/")[0].split("?")[0], e["request"]["method"])
                for e in bundle.get("entry") or []
            ]
        if any(
            t and t != "metadata" and not _allowed(g.scope, t, m not in ("GET", "HEAD"), m)
            for t, m in checks
        ):
            return _outcome("forbidden", 403)
        if not write and rtype == "Patient" and len(parts) >= 2 and parts[1] != g.patient:
            return Response("", 403)
        url = self.fhir_upstream + req.path[len("/fhir") :]
        if req.query_string:
            url += "?" + req.query_string.decode()
        headers = {
            k: v
            for k, v in req.headers.items()
            if k.lower() in ("content-type", "accept", "if-match", "if-none-exist", "prefer")
        }
        up = self.http.request(req.method, url, data=req.get_data(), headers=headers, timeout=30)
        upstream_origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.fhir_upstream))
        body = up.content.replace(upstream_origin.encode(), self.origin.encode())
        out = Response(body, up.status_code, content_type=up.headers.get("Content-Type"))
        for k in ("ETag", "Location", "Last-Modified"):
            if k in up.headers:
                out.headers[k] = up.headers[k].replace(upstream_origin, self.origin)
        return out


def _outcome(code: str, status: int) -> Response:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]}
    return Response(orjson.dumps(body), status, content_type="application/fhir+json")


def _allowed(scope: str, rtype: str, write: bool, method: str) -> bool:
    ops = (
        {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}.get(method, "rs") if write else "rs"
    )
    for s in scope.split():
        ctx, _, rest = s.partition("/")
        if ctx not in ("patient", "user"):
            continue
        t, _, perm = rest.partition(".")
        if t not in (rtype, "*"):
            continue
        if perm == "write" and write:
            return True
        if perm == "read" and not write:
            return True
        if perm and set(perm) <= set("cruds") and all(o in perm for o in ops[:1]):
            return True
    return False


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
