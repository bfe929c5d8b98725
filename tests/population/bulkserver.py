"""A small Bulk Data server on loopback for the client's tests (a thread in the test process).

It plays an EHR's `$export` with the awkward parts turned on: a 429 at kick-off, 202s with
Retry-After while "in progress", a 500 in the middle of polling, a manifest with several files
per type (and optionally a second manifest page), a SMART token endpoint whose first token
expires after a number of file downloads, and a GET-less (4.0 ballot) mode. Every request is
logged for the assertions.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson


@dataclass
class Scenario:
    files: dict[str, bytes]  # name -> NDJSON content
    types: dict[str, str]  # name -> resource type
    kickoff_429: int = 1
    in_progress: int = 2  # 202 answers before the manifest
    status_500_at: int | None = 1  # the poll (0-based) that answers 500
    token_uses: int = 2  # file downloads the first token is good for
    get_allowed: bool = True
    requires_token: bool = True
    pages: int = 1  # manifest pages (partial manifests, STU3 `link` next)
    gzip_files: bool = False  # Content-Encoding: gzip on the wire
    redirect_files_to: str | None = None  # an origin to 302 file requests to
    log: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    tokens_issued: int = 0
    polls: int = 0
    deleted: bool = False


class BulkServer:
    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.lock = threading.Lock()
        self.valid: dict[str, int] = {}  # token -> uses left
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_port}/fhir"
        self.token_url = f"http://127.0.0.1:{self.httpd.server_port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> BulkServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p, _ in self.s.log if method is None or m == method]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self
        s = self.s

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(
                self,
                status: int,
                body: Any = None,
                headers: dict[str, str] | None = None,
                raw: bytes | None = None,
            ) -> None:
                data = raw if raw is not None else (orjson.dumps(body) if body is not None else b"")
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _outcome(self, status: int, text: str, code: str = "processing") -> None:
                self._send(
                    status,
                    {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
                    },
                    {"Content-Type": "application/fhir+json"},
                )

            def _authorised(self, file: bool = False) -> bool:
                """Tokens are good for any number of requests, except that the first one
                expires after `token_uses` file downloads (mid-download)."""
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer "):
                    return False
                token = auth[7:]
                with server.lock:
                    if token not in server.valid:
                        return False
                    left = server.valid[token]
                    if left <= 0:
                        return False
                    if file:
                        server.valid[token] = left - 1
                return True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                s.log.append(("POST", self.path, dict(self.headers)))
                s.bodies.append(body)
                if self.path == "/token":
                    form = parse_qs(body.decode())
                    if form.get("grant_type") != ["client_credentials"] or not form.get(
                        "client_assertion"
                    ):
                        self._send(400, {"error": "invalid_request"})
                        return
                    with server.lock:
                        s.tokens_issued += 1
                        token = f"tok{s.tokens_issued}"
                        # the first token runs out mid-download; later ones last
                        server.valid[token] = s.token_uses if s.tokens_issued == 1 else 1000
                    self._send(
                        200, {"access_token": token, "token_type": "bearer", "expires_in": 300}
                    )
                    return
                self._kickoff(post=True)

            def do_GET(self) -> None:
                s.log.append(("GET", self.path, dict(self.headers)))
                path = urlsplit(self.path).path
                if path.endswith("/$export"):
                    if not s.get_allowed:
                        self._outcome(405, "use POST", "not-supported")
                        return
                    self._kickoff(post=False)
                elif path.startswith("/fhir/status/"):
                    self._status(path)
                elif path.startswith("/files/"):
                    self._file(path[len("/files/") :])
                else:
                    self._outcome(404, "no such thing", "not-found")

            def do_DELETE(self) -> None:
                s.log.append(("DELETE", self.path, dict(self.headers)))
                s.deleted = True
                self._send(202)

            def _kickoff(self, post: bool) -> None:
                if self.headers.get("Prefer") != "respond-async":
                    self._outcome(400, "Prefer: respond-async is required", "invalid")
                    return
                if self.headers.get("Accept") != "application/fhir+json":
                    self._outcome(400, "Accept: application/fhir+json is required", "invalid")
                    return
                if not self._authorised():
                    self._outcome(401, "no token", "login")
                    return
                if s.kickoff_429 > 0:
                    s.kickoff_429 -= 1
                    self._outcome(429, "slow down", "throttled")
                    return
                self._send(202, headers={"Content-Location": "/fhir/status/job1"})

            def _status(self, path: str) -> None:
                if not self._authorised():
                    self._outcome(401, "no token", "login")
                    return
                page = int(path.rsplit("page", 1)[1]) if "page" in path else 0
                if page == 0:
                    n = s.polls
                    s.polls += 1
                    if s.status_500_at is not None and n == s.status_500_at:
                        self._outcome(500, "a passing problem", "transient")
                        return
                    if n < s.in_progress + (1 if s.status_500_at is not None else 0):
                        self._send(202, headers={"Retry-After": "1", "X-Progress": f"{n * 30}%"})
                        return
                names = sorted(s.files)
                per_page = -(-len(names) // s.pages)
                chunk = names[page * per_page : (page + 1) * per_page]
                host = s.redirect_files_to or ""
                manifest: dict[str, Any] = {
                    "transactionTime": "2025-06-15T12:00:00Z",
                    "request": "/fhir/Patient/$export",
                    "requiresAccessToken": s.requires_token,
                    "output": [
                        {
                            "type": s.types[n],
                            "url": f"{host}/files/{n}",
                            "count": s.files[n].count(b"\n"),
                        }
                        for n in chunk
                    ],
                    "error": [],
                }
                if page == 0 and s.pages > 1:
                    manifest["error"] = [
                        {"type": "OperationOutcome", "url": "/files/errors.ndjson"}
                    ]
                if page + 1 < s.pages:
                    manifest["link"] = [
                        {"relation": "next", "url": f"/fhir/status/job1-page{page + 1}"}
                    ]
                self._send(200, manifest, {"Content-Type": "application/json"})

            def _file(self, name: str) -> None:
                if s.requires_token and not self._authorised(file=True):
                    self._outcome(401, "token expired", "expired")
                    return
                if name == "errors.ndjson":
                    data = orjson.dumps(
                        {
                            "resourceType": "OperationOutcome",
                            "issue": [{"severity": "error", "code": "processing"}],
                        }
                    )
                    self._send(200, raw=data + b"\n")
                    return
                if name not in s.files:
                    self._outcome(404, "no such file", "not-found")
                    return
                data = s.files[name]
                headers = {"Content-Type": "application/fhir+ndjson"}
                if s.gzip_files:
                    data = gzip.compress(data)
                    headers["Content-Encoding"] = "gzip"
                self._send(200, headers=headers, raw=data)

        return Handler
