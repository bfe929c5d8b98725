"""A FHIR Bulk Data `$export` client (Bulk Data Access 1.0 to 3.0, and the 4.0 ballot's POST form).

- kick-off: `GET [base]/Patient/$export?_type=…` (or `Group/[id]/$export`) with
  `Accept: application/fhir+json` and `Prefer: respond-async`; or `POST` with a `Parameters`
  body (STU2+; the only form the 4.0 ballot keeps, with `_type` repeated instead of
  comma-separated). `auto` (the default) kicks off with GET and, when the server answers 405,
  with the 4.0 POST form;
- status polling honours `Retry-After` (seconds or an HTTP date), capped; 429 and 5xx are
  waited out with back-off a bounded number of times; a 4xx error ends the export with the
  server's OperationOutcome;
- the manifest's `output` files (several per type), its `error` / `outcome` files, and further
  manifest pages (`link` `next`, STU3 partial manifests) are downloaded; `requiresAccessToken`
  decides whether the token goes with the file requests;
- authorization: SMART Backend Services (pathway.fhir.smart); a token that expires mid-download
  (401) is refreshed once and the file retried;
- every URL (kick-off, status, files, manifest pages, redirects) must be on the kick-off's
  origin or under a `PATHWAY_FHIR_ALLOWLIST` base; nothing else is ever called;
- resumable: `export-state.json` in the output folder records the job and each finished file;
  a rerun after a kill polls the same job and downloads only what is not complete.
Tokens and patient data are never logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import orjson
import requests

from pathway.fhir.bundle import FHIR_ID
from pathway.fhir.client import FhirError, _outcome_text, same_origin
from pathway.fhir.smart import SigningKey, SmartBackendAuth
from pathway.settings import Settings

log = logging.getLogger("pathway.population.bulk")
# What the pathway reads, and what a population report needs.
EXPORT_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "MedicationRequest",
    "Medication",
    "Task",  # ours, completed: they satisfy a task inside its interval
)
STATE_FILE = "export-state.json"
KICKOFF_MODES = ("auto", "get", "post", "post-repeated")
MAX_REDIRECTS = 3


class BulkError(Exception):
    """The export could not be done; the message is safe to show (no token, no patient data)."""


@dataclass(frozen=True, slots=True)
class BulkOptions:
    kickoff: str = "auto"  # auto | get | post (comma-separated _type) | post-repeated (4.0)
    poll_cap_seconds: float = 120.0  # the longest single wait, whatever Retry-After says
    timeout_seconds: float = 6 * 3600.0  # the whole export
    max_retries: int = 6  # consecutive 429/5xx answers before giving up
    http_timeout_seconds: float = 60.0
    types: tuple[str, ...] = EXPORT_TYPES

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> BulkOptions:
        e = os.environ if env is None else env
        kickoff = e.get("PATHWAY_BULK_KICKOFF", "auto").lower()
        if kickoff not in KICKOFF_MODES:
            raise BulkError(f"PATHWAY_BULK_KICKOFF must be one of {', '.join(KICKOFF_MODES)}")
        try:
            return cls(
                kickoff=kickoff,
                poll_cap_seconds=float(e.get("PATHWAY_BULK_POLL_CAP_SECONDS", "120")),
                timeout_seconds=float(e.get("PATHWAY_BULK_TIMEOUT_SECONDS", str(6 * 3600))),
            )
        except ValueError as err:
            raise BulkError("PATHWAY_BULK_* durations must be numbers of seconds") from err


def retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


class BulkClient:
    def __init__(
        self,
        base: str,
        allowlist: tuple[str, ...],
        auth: Callable[[], str | None] | None = None,
        invalidate: Callable[[], None] | None = None,
        options: BulkOptions | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base.rstrip("/")
        self.allowlist = tuple(a.rstrip("/") for a in allowlist)
        if not self._on_allowlist(self.base):
            raise BulkError("the export URL is not on PATHWAY_FHIR_ALLOWLIST")
        self.auth = auth
        self.invalidate = invalidate
        self.o = options or BulkOptions()
        self.session = session or requests.Session()
        self.sleep = sleep
        self.clock = clock
        self.requests_made = 0

    # ------------------------------------------------------------ URL policy
    def _on_allowlist(self, url: str) -> bool:
        return any(url == a or url.startswith(a + "/") for a in self.allowlist)

    def allowed(self, url: str) -> bool:
        """Same origin as the kick-off, or under an allow-listed base; http(s) only."""
        if urlsplit(url).scheme not in ("http", "https"):
            return False
        return same_origin(url, self.base) or self._on_allowlist(url)

    def _check(self, url: str, what: str) -> str:
        if not self.allowed(url):
            raise BulkError(f"the server sent a {what} URL that is not allowed: {_origin(url)}")
        return url

    # ------------------------------------------------------------ HTTP
    def _headers(self, token: bool, accept: str) -> dict[str, str]:
        h = {"Accept": accept}
        if token and self.auth is not None:
            try:
                value = self.auth()
            except FhirError as e:
                raise BulkError(f"no access token from the token endpoint: {e}") from e
            if value:
                h["Authorization"] = f"Bearer {value}"
        return h

    def _send(
        self,
        method: str,
        url: str,
        token: bool = True,
        accept: str = "application/fhir+json",
        stream: bool = False,
        **kw: Any,
    ) -> requests.Response:
        """One request, following at most MAX_REDIRECTS allowed redirects (the token only
        goes to the kick-off's origin), refreshing an expired token once."""
        refreshed = False
        first = url
        for _ in range(MAX_REDIRECTS + 1):
            # The token goes where it was asked for, never on to another origin by a redirect
            # (a storage service's signed URL would refuse it, and it must not leak).
            headers = self._headers(token and same_origin(url, first), accept)
            headers.update(kw.pop("headers", {}))
            try:
                self.requests_made += 1
                resp = self.session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=self.o.http_timeout_seconds,
                    allow_redirects=False,
                    stream=stream,
                    **kw,
                )
            except requests.RequestException as e:
                raise _Transient(f"{_origin(url)} unreachable ({type(e).__name__})") from e
            if resp.status_code == 401 and token and self.auth is not None and not refreshed:
                # The token expired (or was revoked) mid-export: one fresh token, same request.
                resp.close()
                if self.invalidate is not None:
                    self.invalidate()
                refreshed = True
                continue
            if resp.status_code in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                resp.close()
                url = self._check(urljoin(url, resp.headers["Location"]), "redirect")
                if resp.status_code == 303:
                    method, kw = "GET", {}
                continue
            return resp
        raise BulkError(f"too many redirects from {_origin(url)}")

    def _wait(self, resp: requests.Response | None, attempt: int, deadline: float) -> None:
        told = retry_after(resp.headers.get("Retry-After")) if resp is not None else None
        delay = told if told is not None else min(2.0**attempt, 60.0)
        delay = min(delay, self.o.poll_cap_seconds, max(0.0, deadline - self.clock()))
        if self.clock() + delay >= deadline:
            raise BulkError("the export did not finish in PATHWAY_BULK_TIMEOUT_SECONDS")
        self.sleep(delay)

    # ------------------------------------------------------------ kick-off
    def kickoff_url(self, group: str | None) -> str:
        if group is None:
            return f"{self.base}/Patient/$export"
        if not FHIR_ID.fullmatch(group):
            raise BulkError("--group must be a FHIR id")
        return f"{self.base}/Group/{group}/$export"

    def kickoff(self, group: str | None, deadline: float) -> str:
        """Start the export; returns the status URL (Content-Location)."""
        url = self.kickoff_url(group)
        mode = self.o.kickoff
        attempt = 0
        while True:
            resp = self._kickoff_once(url, "get" if mode == "auto" else mode)
            if resp.status_code == 405 and mode == "auto":
                mode = "post-repeated"  # a 4.0 server: POST only, repeated parameters
                resp.close()
                continue
            if resp.status_code == 202:
                loc = resp.headers.get("Content-Location")
                if not loc:
                    raise BulkError("the kick-off was accepted without a Content-Location")
                return self._check(urljoin(url, loc), "status")
            if resp.status_code == 429 or resp.status_code >= 500:
                attempt += 1
                if attempt > self.o.max_retries:
                    raise BulkError(f"the kick-off kept failing ({resp.status_code})")
                self._wait(resp, attempt, deadline)
                continue
            raise BulkError(f"the kick-off was refused ({resp.status_code}): {_why(resp)}")

    def _kickoff_once(self, url: str, mode: str) -> requests.Response:
        headers = {"Prefer": "respond-async"}
        params = {"_type": ",".join(self.o.types), "_outputFormat": "application/fhir+ndjson"}
        if mode == "get":
            return self._send("GET", f"{url}?{urlencode(params)}", headers=headers)
        if mode == "post":
            parameter = [{"name": k, "valueString": v} for k, v in params.items()]
        else:
            parameter = [{"name": "_type", "valueString": t} for t in self.o.types]
            parameter.append({"name": "_outputFormat", "valueString": params["_outputFormat"]})
        body = orjson.dumps({"resourceType": "Parameters", "parameter": parameter})
        headers["Content-Type"] = "application/fhir+json"
        return self._send("POST", url, headers=headers, data=body)

    # ------------------------------------------------------------ status
    def poll(self, status_url: str, deadline: float) -> dict[str, Any]:
        """Poll until the manifest (200); returns it."""
        failures = 0
        polls = 0
        while True:
            try:
                resp = self._send("GET", status_url)
            except _Transient:
                resp = None
            if resp is not None and resp.status_code == 200:
                try:
                    manifest = orjson.loads(resp.content)
                except orjson.JSONDecodeError as e:
                    raise BulkError("the export manifest is not JSON") from e
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                    raise BulkError("the export manifest has no output list")
                return manifest
            if resp is not None and resp.status_code == 202:
                failures = 0
                polls += 1
                self._wait(resp, min(polls, 6), deadline)
                continue
            if resp is None or resp.status_code == 429 or resp.status_code >= 500:
                failures += 1
                if failures > self.o.max_retries:
                    why = _why(resp) if resp is not None else "unreachable"
                    raise BulkError(f"the export status kept failing: {why}")
                self._wait(resp, failures, deadline)
                continue
            if resp.status_code in (404, 410):
                raise _Gone(f"the export job is gone ({resp.status_code})")
            raise BulkError(f"the export failed ({resp.status_code}): {_why(resp)}")

    # ------------------------------------------------------------ files
    def download(self, url: str, dest: Path, token: bool, deadline: float) -> int:
        """Stream one file to dest (via a .part file); returns the lines written."""
        self._check(url, "file")
        failures = 0
        while True:
            try:
                resp = self._send(
                    "GET", url, token=token, accept="application/fhir+ndjson", stream=True
                )
            except _Transient:
                resp = None
            if resp is not None and resp.status_code == 200:
                break
            if resp is None or resp.status_code == 429 or resp.status_code >= 500:
                failures += 1
                if failures > self.o.max_retries:
                    raise BulkError(f"a file kept failing to download ({_origin(url)})")
                self._wait(resp, failures, deadline)
                continue
            raise BulkError(f"a file could not be downloaded ({resp.status_code})")
        part = dest.with_name(dest.name + ".part")
        lines = 0
        try:
            with part.open("wb") as f:
                for chunk in resp.iter_content(chunk_size=1 << 16):
                    lines += chunk.count(b"\n")
                    f.write(chunk)
        except requests.RequestException as e:
            raise BulkError(f"a file download broke off ({type(e).__name__})") from e
        finally:
            resp.close()
        os.replace(part, dest)
        return lines

    def delete(self, status_url: str) -> None:
        """Tell the server the files can go (a courtesy; failures are ignored)."""
        with contextlib.suppress(BulkError, _Transient):
            self._send("DELETE", status_url).close()


class _Transient(Exception):
    pass


class _Gone(BulkError):
    pass


def _origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


def _why(resp: requests.Response) -> str:
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return "no OperationOutcome"
    return _outcome_text(body) or "no diagnostics"


# ---------------------------------------------------------------- the resumable export


class ExportState:
    """`export-state.json`: the job, its manifest pages, and each finished file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.exists():
            try:
                self.data = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                self.data = {}

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(self.data, option=orjson.OPT_INDENT_2))
        os.replace(tmp, self.path)

    def matches(self, kickoff: str) -> bool:
        return self.data.get("kickoff") == kickoff


def _file_name(kind: str, rtype: str, n: int) -> str:
    safe = rtype if FHIR_ID.fullmatch(rtype) and "." not in rtype else "Resource"
    # Error files hold OperationOutcomes: kept for the record under a name the engines skip.
    return f"{safe}.{n:03d}.ndjson" if kind == "output" else f"{kind}-{safe}.{n:03d}.outcomes"


def run_export(
    client: BulkClient,
    out_dir: Path,
    group: str | None = None,
    on_file: Callable[[str], None] | None = None,
) -> Path:
    """Export into `out_dir/export/` and return that folder (NDJSON ready for the engines).
    `on_file` is told each file name as it is finished (progress, and the tests' kill switch)."""
    folder = out_dir / "export"
    folder.mkdir(parents=True, exist_ok=True)
    state = ExportState(out_dir / STATE_FILE)
    deadline = client.clock() + client.o.timeout_seconds
    kickoff = client.kickoff_url(group)
    if not state.matches(kickoff) or state.data.get("complete"):
        state.data = {"kickoff": kickoff, "files": {}}
        for old in folder.glob("*.ndjson*"):
            old.unlink()
    while True:
        if not state.data.get("status"):
            state.data["status"] = client.kickoff(group, deadline)
            state.data.pop("manifests", None)
            state.save()
        try:
            if "manifests" not in state.data:
                state.data["manifests"] = [client.poll(state.data["status"], deadline)]
                state.save()
            break
        except _Gone:
            # The server forgot the job (expired while we were away): start again.
            state.data = {"kickoff": kickoff, "files": {}}
            state.save()

    files: dict[str, Any] = state.data["files"]
    counters: dict[str, int] = {}
    page = 0
    while page < len(state.data["manifests"]):
        manifest = state.data["manifests"][page]
        token = bool(manifest.get("requiresAccessToken", False))
        items = [("output", o) for o in manifest.get("output") or []]
        items += [("error", o) for o in manifest.get("error") or manifest.get("outcome") or []]
        for kind, item in items:
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                continue
            url = urljoin(state.data["status"], item["url"])
            rtype = str(item.get("type") or "OperationOutcome")
            key = f"{kind}|{url}"
            n = counters[f"{kind}|{rtype}"] = counters.get(f"{kind}|{rtype}", -1) + 1
            done = files.get(key)
            if done and (folder / done["name"]).exists():
                continue  # finished before a kill: not downloaded again
            name = _file_name(kind, rtype, n)
            lines = client.download(url, folder / name, token, deadline)
            files[key] = {"name": name, "lines": lines, "count": item.get("count")}
            state.save()
            if on_file is not None:
                on_file(name)
        nxt = next(
            (
                link.get("url")
                for link in manifest.get("link") or []
                if isinstance(link, dict) and link.get("relation") == "next"
            ),
            None,
        )
        if isinstance(nxt, str) and page + 1 == len(state.data["manifests"]):
            url = client._check(urljoin(state.data["status"], nxt), "manifest")
            state.data["manifests"].append(client.poll(url, deadline))
            state.save()
        page += 1
    client.delete(state.data["status"])
    state.data["complete"] = True
    state.data["finished"] = datetime.now(UTC).isoformat()
    state.save()
    return folder


def export_from_settings(settings: Settings, url: str, group: str | None, out_dir: Path) -> Path:
    """`pathway population --export URL`: the client the deployment's settings describe."""
    auth: SmartBackendAuth | None = None
    if settings.smart_client_id and settings.smart_private_key_file and settings.smart_token_url:
        try:
            key = SigningKey.from_file(settings.smart_private_key_file)
        except ValueError as e:
            raise BulkError(str(e)) from e
        auth = SmartBackendAuth(
            settings.smart_token_url,
            settings.smart_client_id,
            key,
            scope="system/Patient.read system/Group.read system/Condition.read "
            "system/Observation.read system/MedicationRequest.read system/Medication.read "
            "system/Task.read",
            timeout=settings.http_timeout_seconds,
        )
    client = BulkClient(
        url,
        settings.fhir_allowlist,
        auth=auth,
        invalidate=auth.invalidate if auth is not None else None,
        options=BulkOptions.from_env(),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    return run_export(client, out_dir, group)
