"""JSON in and out with orjson; malformed or oversized bodies become a clear 4xx."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from pathway.api.errors import ApiError

FHIR_JSON = "application/fhir+json"


def read_body() -> bytes:
    """The raw request body, or 413 when it is over the limit, whatever its framing. It reads the
    server's stream: call it (or read_json_body) once, before anything else reads the body."""
    environ = request.environ
    length = request.content_length
    limit: int = current_app.config.get("MAX_CONTENT_LENGTH") or (1 << 62)
    if length is not None:
        if length > limit:
            raise RequestEntityTooLarge()
        # Read from the server's stream in one call (werkzeug's LimitedStream would copy it
        # through in chunks).
        data: bytes = environ["wsgi.input"].read(length)
        return data
    # No declared length: a chunked body, ended by the server (gunicorn says so with
    # wsgi.input_terminated; without it werkzeug too reads nothing). Read one byte more than the
    # limit: a body over the limit is refused, never cut to it (werkzeug's max-length stream
    # stops at the limit and hands back the first part).
    if not environ.get("wsgi.input_terminated"):
        return b""
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    total = 0
    while True:
        part: bytes = stream.read(min(1 << 16, limit + 1 - total))
        if not part:
            return b"".join(parts)
        parts.append(part)
        total += len(part)
        if total > limit:
            raise RequestEntityTooLarge()


def read_json_body(raw: bytes | None = None) -> Any:
    """The request body (or `raw`, read already with read_body) parsed, or an ApiError naming
    what is wrong with it."""
    ctype = (request.mimetype or "").lower()
    if ctype and ctype not in ("application/json", FHIR_JSON) and not ctype.endswith("+json"):
        raise ApiError(415, f"The Content-Type is not JSON: send application/json or {FHIR_JSON}.")
    if raw is None:
        raw = read_body()
    if not raw.strip():
        raise ApiError(400, "The request body is empty: a JSON object was expected.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        # where, in the service's words (orjson's message may quote the body)
        raise ApiError(
            400, f"Malformed JSON (line {e.lineno}, column {e.colno}).", "structure"
        ) from e


def json_response(body: Any, status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(orjson.dumps(body), status=status, mimetype=mimetype)


def fhir_response(body: Any, status: int = 200) -> Response:
    return json_response(body, status, FHIR_JSON)
