"""The attacks of the external security run (issue 10), played against the real `pathway serve`
(gunicorn, JWT on, one worker) with a FHIR server stand-in that counts every request it gets.

Each attack is one case below; the number played is printed at the end of the run. JWT forgery
and replay, the confused-deputy notifications, path-segment ids, SSRF through fhirServer and
jku, bodies over the limit whatever the framing, oversized request lines and headers (answered
by gunicorn itself), error bodies that could repeat input, metrics and readiness exposure, CORS,
gunicorn's control socket, and at the end: no token in any log line.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import jwt
import orjson
import pytest
import requests
from builders import patient
from cds_support import Signer, hook_request
from fuzz_counts import ATTACKS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "scripts"))
from loopback import TrustedCaller, free_port, server_env

from pathway.api.auth import SKEW_SECONDS, UNAUTHENTICATED
from pathway.api.observability import SECURITY_HEADERS

MAX_BODY = 16384
METRICS_TOKEN = "metrics-token-for-the-attack-run-0001"
NOTIFY_TOKEN = "notification-token-for-the-attack-run-0001"
EHR_UI = "https://ehr-ui.example.org"
HOOK_PATH = "/cds-services/oud-pathway"


class Counting(BaseHTTPRequestHandler):
    """A FHIR server stand-in: records every request, answers 404."""

    seen: ClassVar[list[str]] = []

    def _any(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        body = (
            b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}'
        )
        self.send_response(404)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _any

    def log_message(self, *_: Any) -> None:
        return None


@dataclass
class Run:
    base: str
    port: int
    metrics_port: int
    fhir: str
    home: Path
    caller: TrustedCaller
    tokens: list[str] = field(default_factory=list)  # every token sent: none may be logged
    output: bytes = b""
    pid: int = 0  # the gunicorn master
    clients: Path = Path()

    @property
    def outbound(self) -> list[str]:
        return Counting.seen

    def token(self, path: str = HOOK_PATH, **claims: Any) -> str:
        headers = claims.pop("_headers", {})
        key = claims.pop("_key", None)
        now = int(time.time())
        body = {
            "iss": self.caller.iss,
            "aud": self.base + path,
            "iat": now,
            "exp": now + 120,
            "jti": str(uuid.uuid4()),
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        alg = headers.pop("alg", "RS384")
        token = jwt.encode(
            body,
            key if key is not None else self.caller._key,
            algorithm=alg,
            headers={"kid": self.caller.kid, **headers},
        )
        self.tokens.append(token)
        return token


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("attacks")
    home = tmp / "home"
    home.mkdir()
    Counting.seen = []
    fhir = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=fhir.serve_forever, daemon=True).start()
    fhir_base = f"http://127.0.0.1:{fhir.server_address[1]}/fhir"
    caller = TrustedCaller("https://attack-run.example.org", "attack-kid")
    (tmp / "clients.json").write_bytes(caller.clients_file())
    port, metrics_port = free_port(), free_port()
    while metrics_port == port:  # two probes of a free port can return the same one
        metrics_port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PATHWAY_", "PROMETHEUS_"))},
        "HOME": str(home),  # gunicorn's default control socket would be under it
        "PATHWAY_PORT": str(port),
        "PATHWAY_PUBLIC_URL": base,
        "PATHWAY_WORKERS": "1",
        "PATHWAY_CDS_CLIENTS_FILE": str(tmp / "clients.json"),
        "PATHWAY_DATABASE_URL": f"sqlite:///{tmp / 'attacks.db'}",
        "PATHWAY_FHIR_ALLOWLIST": fhir_base,
        "PATHWAY_FHIR_BASE_URL": fhir_base,
        "PATHWAY_NOTIFICATION_TOKEN": NOTIFY_TOKEN,
        "PATHWAY_MAX_BODY_BYTES": str(MAX_BODY),
        "PATHWAY_METRICS_TOKEN": METRICS_TOKEN,
        "PATHWAY_METRICS_BIND": f"127.0.0.1:{metrics_port}",
        "PATHWAY_CORS_ORIGINS": EHR_UI,
        "PATHWAY_HOOK_FETCH_TIMEOUT_SECONDS": "1",
    }
    env.pop("XDG_RUNTIME_DIR", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "pathway.cli", "serve"],
        cwd=tmp,
        env=server_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    played = Run(base, port, metrics_port, fhir_base, home, caller)
    played.pid, played.clients = server.pid, tmp / "clients.json"
    up = False
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not up and server.poll() is None:
            try:
                up = requests.get(f"{base}/healthz", timeout=5).ok
            except requests.RequestException:
                time.sleep(0.2)
        assert up, "pathway serve did not come up"
        yield played
    finally:
        server.terminate()
        played.output, _ = server.communicate(timeout=20)
        fhir.shutdown()
        fhir.server_close()
        if not up:
            print(played.output.decode(errors="replace")[-3000:])
    # after every attack: not one token in any log line of the server
    text = played.output.decode(errors="replace")
    leaked = [t for t in played.tokens if t in text or (t.split(".")[2] or t) in text]
    assert not leaked, "a token reached the log"
    assert "Traceback" not in text


def raw(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 exchange (for what requests will not send)."""
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        try:
            while part := s.recv(65536):
                chunks.append(part)
        except ConnectionResetError:  # the server closed on unread input: its answer came first
            pass
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def pv(pid: str = "p1", **extra: Any) -> bytes:
    return orjson.dumps(
        hook_request(
            "patient-view",
            pid,
            {
                "patient": patient(pid if pid.isalnum() else "p1"),
                "conditions": None,
                "observations": None,
                "medicationRequests": None,
            },
            **extra,
        )
    )


def hook(r: Run, token: str | None, body: bytes | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(r.base + HOOK_PATH, data=body or pv(), headers=headers, timeout=10)


def generic_401(resp: requests.Response) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.json()["issue"][0]["diagnostics"] == UNAUTHENTICATED
    for word in ("Error", "issuer", "kid", "jti", "jku", "signature", "expired", "typ"):
        assert word not in resp.text


def refused_4xx(
    resp: requests.Response | tuple[int, dict[str, str], bytes], status: int
) -> dict[str, Any]:
    if isinstance(resp, tuple):
        code, headers, body = resp
    else:
        code, headers, body = (
            resp.status_code,
            {k.lower(): v for k, v in resp.headers.items()},
            resp.content,
        )
    assert code == status, body[:300]
    assert headers["content-type"].startswith("application/fhir+json")
    outcome: dict[str, Any] = orjson.loads(body)
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"]
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name.lower()) == value, name
    return outcome


def no_outbound(r: Run, before: int) -> None:
    time.sleep(0.05)
    assert len(r.outbound) == before, r.outbound[before:]


# ------------------------------------------------------------------ the attacks


def forged_none(r: Run) -> None:
    claims = {
        "iss": r.caller.iss,
        "aud": r.base + HOOK_PATH,
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "jti": "n1",
    }
    token = jwt.encode(claims, None, algorithm="none", headers={"kid": r.caller.kid})  # type: ignore[arg-type]
    r.tokens.append(token)
    generic_401(hook(r, token))


def forged_hmac_with_the_public_key(r: Run) -> None:
    """Algorithm confusion: HS384 keyed with the client's public key."""
    import base64

    n = base64.urlsafe_b64decode(r.caller.jwk["n"] + "==")
    parts = [
        base64.urlsafe_b64encode(
            orjson.dumps({"alg": "HS384", "kid": r.caller.kid, "typ": "JWT"})
        ).rstrip(b"="),
        base64.urlsafe_b64encode(
            orjson.dumps(
                {
                    "iss": r.caller.iss,
                    "aud": r.base + HOOK_PATH,
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 60,
                    "jti": "h1",
                }
            )
        ).rstrip(b"="),
    ]
    import hashlib
    import hmac

    sig = hmac.new(n, b".".join(parts), hashlib.sha384).digest()
    token = b".".join([*parts, base64.urlsafe_b64encode(sig).rstrip(b"=")]).decode()
    r.tokens.append(token)
    generic_401(hook(r, token))


def bad_signature(r: Run) -> None:
    other = Signer("RS384")
    generic_401(hook(r, r.token(_key=other.key)))


def unknown_issuer(r: Run) -> None:
    generic_401(hook(r, r.token(iss="https://unknown.example.org")))


def unknown_kid(r: Run) -> None:
    generic_401(hook(r, r.token(_headers={"kid": "not-a-kid"})))


def jku_not_allowed(r: Run) -> None:
    before = len(r.outbound)
    generic_401(hook(r, r.token(_headers={"jku": f"{r.fhir}/jwks.json"})))
    no_outbound(r, before)


def expired(r: Run) -> None:
    now = int(time.time())
    generic_401(hook(r, r.token(iat=now - 400, exp=now - SKEW_SECONDS - 30)))


def lifetime_too_long(r: Run) -> None:
    now = int(time.time())
    generic_401(hook(r, r.token(iat=now, exp=now + 86_400)))


def typ_not_jwt(r: Run) -> None:
    generic_401(hook(r, r.token(_headers={"typ": "at+jwt"})))


def wrong_audience(r: Run) -> None:
    generic_401(hook(r, r.token("/cds-services/oud-order-safety")))


def no_token(r: Run) -> None:
    generic_401(hook(r, None))


def replay(r: Run) -> None:
    token = r.token()
    assert hook(r, token).status_code == 200
    generic_401(hook(r, token))


def replay_inside_the_leeway(r: Run) -> None:
    """exp passed, the leeway still honours the token: the replay must still be known."""
    now = int(time.time())
    token = r.token(iat=now - 200, exp=now - SKEW_SECONDS // 3)
    assert hook(r, token).status_code == 200
    generic_401(hook(r, token))


def long_jtis_sharing_a_prefix(r: Run) -> None:
    prefix = "j" * 600
    assert hook(r, r.token(jti=prefix + "a")).status_code == 200
    assert hook(r, r.token(jti=prefix + "b")).status_code == 200  # not a "replay" of the first


def notify(r: Run, body: Any, token: str = NOTIFY_TOKEN) -> requests.Response:
    return requests.post(
        f"{r.base}/notifications",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"},
        timeout=10,
    )


def focus(*refs: Any) -> dict[str, Any]:
    events = [{"eventNumber": str(i), "focus": {"reference": x}} for i, x in enumerate(refs, 1)]
    status = {
        "resourceType": "SubscriptionStatus",
        "status": "active",
        "type": "event-notification",
        "notificationEvent": events,
    }
    return {"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}]}


def notification_attack(body: Any) -> Callable[[Run], None]:
    def play(r: Run) -> None:
        before = len(r.outbound)
        outcome = refused_4xx(notify(r, body), 400)
        text = outcome["issue"][0]["diagnostics"]
        assert "nothing was read" in text and ".." not in text and "?" not in text
        no_outbound(r, before)

    return play


def notification_wrong_token(r: Run) -> None:
    before = len(r.outbound)
    refused_4xx(notify(r, focus("Observation/o1"), "not-the-token"), 401)
    no_outbound(r, before)


def hook_patient_id_dotdot(r: Run) -> None:
    before = len(r.outbound)
    body = pv("..", fhirServer=r.fhir)
    refused_4xx(hook(r, r.token(), body), 400)
    no_outbound(r, before)


def apply_subject_dotdot(r: Run) -> None:
    path = "/fhir/PlanDefinition/oud-care-pathway/$apply"
    before = len(r.outbound)
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "subject", "valueString": "Patient/.."}],
    }
    resp = requests.post(
        r.base + path, json=params, timeout=10, headers={"Authorization": f"Bearer {r.token(path)}"}
    )
    refused_4xx(resp, 400)
    no_outbound(r, before)


def ssrf_fhir_server(r: Run) -> None:
    before = len(r.outbound)
    body = orjson.dumps(
        hook_request("patient-view", "p1", None, fhirServer="http://169.254.169.254/latest")
    )
    refused_4xx(hook(r, r.token(), body), 403)
    no_outbound(r, before)


def chunked_over_the_limit(r: Run) -> None:
    """A valid hook padded past the limit, sent chunked: refused, not cut and evaluated."""
    token = r.token()
    body = pv() + b" " * (MAX_BODY + 1 - len(pv()))
    chunks = b"".join(
        f"{len(body[i : i + 4096]):x}\r\n".encode() + body[i : i + 4096] + b"\r\n"
        for i in range(0, len(body), 4096)
    )
    request = (
        (
            f"POST {HOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n"
    )
    outcome = refused_4xx(raw(r.port, request), 413)
    assert outcome["issue"][0]["code"] == "too-costly"


def declared_length_over_the_limit(r: Run) -> None:
    token = r.token()
    request = (
        f"POST {HOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {MAX_BODY + 1}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()  # the body is not even sent: the length alone is refused
    refused_4xx(raw(r.port, request), 413)


def header_too_large(r: Run) -> None:
    request = (
        f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {'a' * 9000}\r\n\r\n"
    ).encode()
    outcome = refused_4xx(raw(r.port, request), 431)
    assert "aaaa" not in outcome["issue"][0]["diagnostics"]


def too_many_headers(r: Run) -> None:
    lines = "".join(f"X-H{i}: v\r\n" for i in range(60))
    refused_4xx(raw(r.port, f"GET /healthz HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode()), 431)


def request_line_too_long(r: Run) -> None:
    refused_4xx(raw(r.port, f"GET /healthz?{'q' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()), 414)


def malformed_request_line(r: Run) -> None:
    outcome = refused_4xx(raw(r.port, b"GET /healthz?<script> HTTP/9.9\r\nHost: x\r\n\r\n"), 400)
    assert "script" not in outcome["issue"][0]["diagnostics"]


def malformed_json_is_not_echoed(r: Run) -> None:
    resp = hook(r, r.token(), b'{"hook": "ZQX<script>MARK"')
    refused_4xx(resp, 400)
    assert "ZQX" not in resp.text


def unknown_service_is_not_echoed(r: Run) -> None:
    path = "/cds-services/ZQX-MARK"
    resp = requests.post(
        r.base + path,
        data=pv(),
        timeout=10,
        headers={"Authorization": f"Bearer {r.token(path)}", "Content-Type": "application/json"},
    )
    refused_4xx(resp, 404)
    assert "ZQX" not in resp.text


def metrics_without_the_token(r: Run) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer guess"},
        {"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"},
    ):
        resp = requests.get(f"{r.base}/metrics", headers=headers, timeout=10)
        refused_4xx(resp, 401)
        assert "pathway_decisions_total" not in resp.text
    ok = requests.get(
        f"{r.base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    assert ok.status_code == 200 and "pathway_decisions_total" in ok.text


def metrics_listener(r: Run) -> None:
    """The scraper's own listener: /metrics without a token; nothing else served there."""
    other = f"http://127.0.0.1:{r.metrics_port}"
    assert "pathway_decisions_total" in requests.get(f"{other}/metrics", timeout=10).text
    resp = requests.post(
        other + HOOK_PATH, data=pv(), timeout=10, headers={"Authorization": f"Bearer {r.token()}"}
    )
    refused_4xx(resp, 404)


def readiness_details(r: Run) -> None:
    assert requests.get(f"{r.base}/readyz", timeout=10).json() == {"status": "ready"}
    full = requests.get(
        f"{r.base}/readyz", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    assert full.json()["store"] == "writable"


def cors_foreign_origin(r: Run) -> None:
    for origin in ("https://evil.example.net", "null", f"{EHR_UI}.evil.example.net"):
        pre = requests.options(
            r.base + HOOK_PATH,
            timeout=10,
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert "Access-Control-Allow-Origin" not in pre.headers and origin not in str(pre.headers)


def cors_methods_of_the_route(r: Run) -> None:
    pre = requests.options(
        r.base + HOOK_PATH,
        timeout=10,
        headers={"Origin": EHR_UI, "Access-Control-Request-Method": "POST"},
    )
    assert pre.headers["Access-Control-Allow-Origin"] == EHR_UI
    assert pre.headers["Access-Control-Allow-Methods"] == "POST"
    pre = requests.options(
        r.base + HOOK_PATH,
        timeout=10,
        headers={"Origin": EHR_UI, "Access-Control-Request-Method": "DELETE"},
    )
    assert "Access-Control-Allow-Methods" not in pre.headers


def no_shared_control_socket(r: Run) -> None:
    assert not (r.home / ".gunicorn").exists()


PLAYS: dict[str, Callable[[Run], None]] = {
    "jwt: alg none": forged_none,
    "jwt: HS384 keyed with the public key": forged_hmac_with_the_public_key,
    "jwt: bad signature": bad_signature,
    "jwt: unknown issuer": unknown_issuer,
    "jwt: unknown kid": unknown_kid,
    "jwt: jku not on the allow-list": jku_not_allowed,
    "jwt: expired past the leeway": expired,
    "jwt: lifetime of a day": lifetime_too_long,
    "jwt: typ at+jwt": typ_not_jwt,
    "jwt: aud of another endpoint": wrong_audience,
    "jwt: no token": no_token,
    "jwt: replay": replay,
    "jwt: replay inside the leeway": replay_inside_the_leeway,
    "jwt: long jtis sharing a prefix": long_jtis_sharing_a_prefix,
    "notification: read turned into a search": notification_attack(focus("Patient/x?_id=other")),
    "notification: escape the base path": notification_attack(focus("Observation/../x")),
    "notification: encoded slashes": notification_attack(focus("Observation/%2F..%2Fx")),
    "notification: fragment": notification_attack(focus("Observation/x#")),
    "notification: id '..'": notification_attack(focus("Observation/..")),
    "notification: outside the compartment": notification_attack(focus("Practitioner/pr1")),
    "notification: Binary": notification_attack(focus("Binary/b1")),
    "notification: another server": notification_attack(
        focus("http://evil.example.net/fhir/Observation/o1")
    ),
    "notification: subject with a query": notification_attack(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/x?_id=other"},
        }
    ),
    "notification: 21 focus references": notification_attack(
        focus(*[f"Observation/o{i}" for i in range(21)])
    ),
    "notification: wrong token": notification_wrong_token,
    "hook: patientId '..'": hook_patient_id_dotdot,
    "$apply: subject Patient/..": apply_subject_dotdot,
    "hook: fhirServer off the allow-list (SSRF)": ssrf_fhir_server,
    "body: chunked past the limit": chunked_over_the_limit,
    "body: Content-Length past the limit": declared_length_over_the_limit,
    "headers: one field of 9,000 bytes": header_too_large,
    "headers: 60 fields": too_many_headers,
    "request line of 9,000 bytes": request_line_too_long,
    "malformed request line": malformed_request_line,
    "errors: malformed JSON not echoed": malformed_json_is_not_echoed,
    "errors: unknown service id not echoed": unknown_service_is_not_echoed,
    "metrics: without the token": metrics_without_the_token,
    "metrics: the scraper's listener": metrics_listener,
    "readyz: details only for the scraper": readiness_details,
    "cors: foreign origins": cors_foreign_origin,
    "cors: only the route's methods": cors_methods_of_the_route,
    "gunicorn: no shared control socket": no_shared_control_socket,
}


@pytest.mark.parametrize("name", PLAYS)
def test_attack(run: Run, name: str) -> None:
    PLAYS[name](run)
    ATTACKS[name] += 1


def test_a_rotated_key_is_taken_on_reload(run: Run) -> None:
    """Key rotation as the README says: the EHR's new key is added to the clients file, and
    `kill -HUP` of the master makes new workers read it; the old key keeps working meanwhile."""
    import signal

    rotated = TrustedCaller(run.caller.iss, "rotated-kid")

    def signed_by_new_key() -> str:
        (token,) = rotated.tokens(run.base + HOOK_PATH, 1, 120)
        run.tokens.append(token)
        return token

    generic_401(hook(run, signed_by_new_key()))  # not known yet
    both = [{"iss": run.caller.iss, "jwks": {"keys": [run.caller.jwk, rotated.jwk]}}]
    run.clients.write_bytes(orjson.dumps(both))
    os.kill(run.pid, signal.SIGHUP)
    deadline = time.time() + 60
    status = 0
    while time.time() < deadline and status != 200:
        time.sleep(0.5)
        try:
            status = hook(run, signed_by_new_key()).status_code
        except requests.RequestException:
            continue
    assert status == 200
    assert hook(run, run.token()).status_code == 200  # the old key still works
    ATTACKS["rotation: a new key taken on reload"] += 1
