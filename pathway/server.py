"""The gunicorn side of `pathway serve`: its limits, set on purpose, and a worker whose refusals
look like every other refusal of the service.

gunicorn parses the request line and headers before the application sees anything; what it
refuses (a request line over `limit_request_line`, more header fields than
`limit_request_fields`, one over `limit_request_field_size`, malformed HTTP) it answers itself,
with an HTML page by default. PathwayWorker answers those with the service's OperationOutcome
(in its own words, never echoing the request) and its security headers, and logs the reason.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.sync import SyncWorker

from pathway.api.errors import ISSUE_CODE, operation_outcome
from pathway.api.observability import SECURITY_HEADERS

log = logging.getLogger("pathway.server")

# Request line: the longest URLs are a SMART launch or callback (iss, launch, code and state in
# the query); 8190 is gunicorn's maximum. Header fields: an EHR sends fewer than 20, a browser
# about 15, proxies add a few: 50 leaves room and bounds the work per request. One field: a
# CDS Hooks JWT (RS384, with jku) is 1-2 KB; 8190 bytes also takes a SMART session cookie.
LIMIT_REQUEST_LINE = 8190
LIMIT_REQUEST_FIELDS = 50
LIMIT_REQUEST_FIELD_SIZE = 8190

# gunicorn's request errors -> (status, reason phrase, what the caller is told)
_REFUSALS: tuple[tuple[str, int, str, str], ...] = (
    (
        "LimitRequestLine",
        414,
        "URI Too Long",
        f"The request line is longer than this service accepts ({LIMIT_REQUEST_LINE} bytes).",
    ),
    (
        "LimitRequestHeaders",
        431,
        "Request Header Fields Too Large",
        f"The request headers are too large: at most {LIMIT_REQUEST_FIELDS} fields of at most "
        f"{LIMIT_REQUEST_FIELD_SIZE} bytes each.",
    ),
    (
        "UnsupportedTransferCoding",
        501,
        "Not Implemented",
        "This Transfer-Encoding is not supported: send the body with Content-Length or chunked.",
    ),
    ("ExpectationFailed", 417, "Expectation Failed", "Only 'Expect: 100-continue' is supported."),
    ("ForbiddenProxyRequest", 403, "Forbidden", "This proxy is not allowed to connect."),
    ("ConfigurationProblem", 500, "Internal Server Error", "The server is misconfigured."),
)
_BAD_REQUEST = "The request is not well-formed HTTP/1.1."


def refusal(exc: BaseException) -> tuple[int, str, str]:
    """Status, reason phrase and message for an error gunicorn met before the application."""
    for name, status, reason, message in _REFUSALS:
        cls = getattr(http_errors, name, None)
        if cls is not None and isinstance(exc, cls):
            return status, reason, message
    if isinstance(exc, http_errors.ParseException):
        return 400, "Bad Request", _BAD_REQUEST
    return 500, "Internal Server Error", "Internal error: the request was not processed."


def response_bytes(status: int, reason: str, message: str) -> bytes:
    code = ISSUE_CODE.get(status, "invalid" if status < 500 else "exception")
    body = orjson.dumps(operation_outcome(message, code))
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Connection: close",
        "Content-Type: application/fhir+json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in SECURITY_HEADERS.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class PathwayWorker(SyncWorker):
    """gunicorn's sync worker; its own refusals answered as OperationOutcomes."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        status, reason, message = refusal(exc)
        if status >= 500:
            log.error("request failed in the server (%s)", type(exc).__name__)
        else:
            # the exception's text may quote the request: only its type is logged
            log.warning("request refused by the server: %s (%d)", type(exc).__name__, status)
        try:
            util.write_nonblock(client, response_bytes(status, reason, message))
        except Exception:
            log.debug("the refusal could not be sent")
