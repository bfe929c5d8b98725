"""JSON in and out with orjson; malformed or oversized bodies become a clear 4xx."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, current_app, request

from pathway.api.errors import ApiError

FHIR_JSON = "application/fhir+json"


def read_body() -> bytes:
    """The raw request body. It reads the server's stream: call it (or read_json_body) once,
    before anything else reads the body."""
    length = request.content_length
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if length is not None and limit is not None and length <= limit:
        # The declared length is within the limit: read it from the server's stream in one call
        # (werkzeug's LimitedStream would copy it through in chunks).
        data: bytes = request.environ["wsgi.input"].read(length)
        return data
    return request.get_data(cache=False)  # chunked, or too large: werkzeug answers 413


def read_json_body(raw: bytes | None = None) -> Any:
    """The request body (or `raw`, read already with read_body) parsed, or an ApiError naming
    what is wrong with it."""
    ctype = (request.mimetype or "").lower()
    if ctype and ctype not in ("application/json", FHIR_JSON) and not ctype.endswith("+json"):
        raise ApiError(
            415, f"Content-Type {ctype!r} is not JSON: send application/json or {FHIR_JSON}."
        )
    if raw is None:
        raw = read_body()
    if not raw.strip():
        raise ApiError(400, "The request body is empty: a JSON object was expected.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, f"Malformed JSON: {e}", "structure") from e


def json_response(body: Any, status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(orjson.dumps(body), status=status, mimetype=mimetype)


def fhir_response(body: Any, status: int = 200) -> Response:
    return json_response(body, status, FHIR_JSON)
