"""A FHIR REST client that owns its session and timeouts and turns failures into typed errors.

- every request has a timeout; 408/429/502/503/504 are retried with backoff, honouring
  Retry-After (capped);
- OperationOutcome bodies become the message of the raised error; every error says which
  interaction failed (e.g. `POST CarePlan`), its HTTP status, the Retry-After it was given;
- search paging follows `next` links only on the same origin, with a page limit (no loops).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests

log = logging.getLogger("pathway.fhir.client")
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})


class FhirError(Exception):
    """Base of the client's errors. `status` is the HTTP status when there was one."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        outcome: dict[str, Any] | None = None,
        interaction: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome
        self.interaction = interaction  # e.g. "POST CarePlan", "GET Task" (no ids, no query)
        self.retry_after = retry_after  # seconds the server asked us to wait, if it did


def interaction_of(method: str, path: str) -> str:
    """`POST CarePlan`, `PUT Task`, `GET metadata`, `POST (transaction or batch)`: the method
    and the resource type only (ids and queries may be patient data)."""
    if path.startswith(("http://", "https://")):
        path = urlsplit(path).path.rsplit("/fhir", 1)[-1]
    first = path.strip("/").split("?", 1)[0].split("/", 1)[0]
    if not first:
        return f"{method} (transaction or batch)" if method == "POST" else method
    return f"{method} {first}" if first.isalnum() or first.startswith("$") else method


class FhirUnavailable(FhirError):
    """The server could not be reached, timed out, or kept answering 429/5xx."""


class FhirAuthError(FhirError):
    """401/403: the credentials were refused."""


class FhirNotFound(FhirError):
    """404/410."""


class FhirConflict(FhirError):
    """409/412: a version conflict (If-Match) or a duplicate (If-None-Exist)."""


class FhirBadResponse(FhirError):
    """The server answered something that is not the FHIR JSON expected."""


@dataclass(frozen=True, slots=True)
class FhirResponse:
    status: int
    body: Any
    headers: dict[str, str]


def _outcome_text(body: Any) -> str:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = [
            str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code"))
            for i in body.get("issue") or []
            if isinstance(i, dict)
        ]
        return "; ".join(t for t in texts if t and t != "None")
    return ""


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)


class FhirClient:
    def __init__(
        self,
        base_url: str,
        token: str | Callable[[], str | None] | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_pages: int = 20,
        max_retry_after: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_pages = max_pages
        self.max_retry_after = max_retry_after
        self.session = session or requests.Session()
        self._sleep = sleep

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Accept": "application/fhir+json"}
        token = self._token() if callable(self._token) else self._token
        if token:
            h["Authorization"] = f"Bearer {token}"
        if extra:
            h.update(extra)
        return h

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path}" if path else self.base_url

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> FhirResponse:
        url = self.url(path)
        data = orjson.dumps(body) if body is not None else None
        hdrs = self._headers(headers)
        if data is not None:
            hdrs["Content-Type"] = "application/fhir+json"
        interaction = interaction_of(method, path)
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self.session.request(
                    method,
                    url,
                    data=data,
                    headers=hdrs,
                    params=params,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.Timeout as e:
                if attempt <= self.retries:
                    self._sleep(self.backoff * 2.0 ** (attempt - 1))
                    continue
                raise FhirUnavailable(
                    f"{interaction} timed out after {self.timeout:g}s", interaction=interaction
                ) from e
            except requests.RequestException as e:
                if attempt <= self.retries:
                    self._sleep(self.backoff * 2.0 ** (attempt - 1))
                    continue
                raise FhirUnavailable(
                    f"{interaction} failed: {type(e).__name__}", interaction=interaction
                ) from e
            if resp.status_code in RETRY_STATUSES and attempt <= self.retries:
                self._sleep(self._retry_after(resp, attempt))
                continue
            return self._handle(interaction, resp)

    def _retry_after(self, resp: requests.Response, attempt: int) -> float:
        asked = self._retry_after_header(resp)
        if asked is None:
            return min(self.backoff * 2.0 ** (attempt - 1), self.max_retry_after)
        return min(asked, self.max_retry_after)

    def _retry_after_header(self, resp: requests.Response) -> float | None:
        value = resp.headers.get("Retry-After")
        if not value:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            pass
        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None

    def _handle(self, method: str, resp: requests.Response) -> FhirResponse:
        body: Any = None
        if resp.content:
            try:
                body = orjson.loads(resp.content)
            except orjson.JSONDecodeError:
                if resp.status_code < 400:
                    raise FhirBadResponse(
                        f"{method}: the server answered {resp.status_code} "
                        "with a body that is not JSON",
                        resp.status_code,
                        interaction=method,
                    ) from None
        headers = dict(resp.headers.items())
        status = resp.status_code
        if status < 400:
            return FhirResponse(status, body, headers)
        text = _outcome_text(body) or resp.reason or "error"
        message = f"{method} answered {status}: {text}"
        outcome = body if isinstance(body, dict) else None
        kind: type[FhirError] = FhirError
        if status in (401, 403):
            kind = FhirAuthError
        elif status in (404, 410):
            kind = FhirNotFound
        elif status in (409, 412):
            kind = FhirConflict
        elif status in RETRY_STATUSES or status >= 500:
            kind = FhirUnavailable
        raise kind(message, status, outcome, method, self._retry_after_header(resp))

    # ------------------------------------------------------------ conveniences
    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        r = self.request("GET", f"{rtype}/{rid}")
        if not isinstance(r.body, dict) or r.body.get("resourceType") != rtype:
            raise FhirBadResponse(f"read {rtype}: not a {rtype}", r.status)
        return r.body

    def capabilities(self) -> dict[str, Any]:
        r = self.request("GET", "metadata")
        if not isinstance(r.body, dict) or r.body.get("resourceType") != "CapabilityStatement":
            raise FhirBadResponse("metadata: not a CapabilityStatement", r.status)
        return r.body

    def search_pages(
        self, rtype: str, params: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the searchset Bundles of a search (`rtype` may carry its query string),
        following `next` on the same origin."""
        r = self.request("GET", rtype, params=params)
        seen: set[str] = set()
        for _ in range(self.max_pages):
            bundle = r.body
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise FhirBadResponse(f"search {rtype}: not a Bundle", r.status)
            yield bundle
            nxt = next(
                (
                    link.get("url")
                    for link in bundle.get("link") or []
                    if isinstance(link, dict) and link.get("relation") == "next"
                ),
                None,
            )
            if not isinstance(nxt, str) or nxt in seen:
                return
            if not same_origin(nxt, self.base_url):
                log.warning("search paging: next link on another origin not followed")
                return
            seen.add(nxt)
            r = self.request("GET", nxt)
        log.warning("search paging: stopped after %d pages", self.max_pages)

    def search(self, rtype: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return list(self.search_pages(rtype, params))

    def query(self, query: str) -> list[dict[str, Any]]:
        """A prefetch-style query: `Type/id` is a read, anything else a search."""
        path = query.split("?", 1)[0]
        parts = path.strip("/").split("/")
        if "?" not in query and len(parts) == 2:
            return [self.read(parts[0], parts[1])]
        return self.search(query)
