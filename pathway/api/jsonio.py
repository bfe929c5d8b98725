"""JSON in and out with orjson; malformed or oversized bodies become a clear 4xx."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, request

FHIR_JSON = "application/fhir+json"


def read_json_body() -> Any:
    """The request body parsed, or an ApiError naming what is wrong with it."""
    from pathway.api.errors import ApiError

    ctype = (request.mimetype or "").lower()
    if ctype and ctype not in ("application/json", FHIR_JSON) and not ctype.endswith("+json"):
        raise ApiError(
            415, f"Content-Type {ctype!r} is not JSON: send application/json or {FHIR_JSON}."
        )
    raw = request.get_data(cache=False)  # honours MAX_CONTENT_LENGTH (413)
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
