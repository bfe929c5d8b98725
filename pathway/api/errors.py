"""The only place errors become HTTP: one shape (OperationOutcome) for every failure.

A 500 logs the exception (without request data) and shows the caller nothing of it.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from pathway.errors import (
    FhirServerFailed,
    FhirServerNotAllowed,
    MissingData,
    NoFhirServer,
    PathwayError,
    PatientNotFound,
)
from pathway.fhir.facts import NoPatientError
from pathway.store.db import StoreError

log = logging.getLogger("pathway.errors")

ISSUE_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "not-found",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    500: "exception",
    503: "transient",
}


class ApiError(Exception):
    """An error with its HTTP status and a message for the caller (no patient data in it)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        expression: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or ISSUE_CODE.get(status, "processing")
        self.expression = expression
        self.headers = headers or {}


def operation_outcome(
    message: str,
    code: str = "invalid",
    severity: str = "error",
    expression: list[str] | None = None,
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def fhir_response(body: Any, status: int) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/fhir+json")


def domain_error(e: PathwayError) -> ApiError:
    """The HTTP answer to a use case's domain error (the one mapping there is)."""
    if isinstance(e, NoFhirServer):
        return ApiError(400, e.message, expression=["Parameters.parameter[data]"])
    if isinstance(e, PatientNotFound):
        return ApiError(404, e.message)
    if isinstance(e, FhirServerFailed):
        return ApiError(502 if e.status is None or e.status >= 500 else 424, e.message, "transient")
    if isinstance(e, FhirServerNotAllowed):
        return ApiError(403, e.message, "forbidden", expression=["fhirServer"])
    if isinstance(e, MissingData):
        return ApiError(412, e.message, "not-found", expression=[f"prefetch.{k}" for k in e.keys])
    return ApiError(422, e.message)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(PathwayError)
    def _domain_error(e: PathwayError) -> Response:
        return _api_error(domain_error(e))

    @app.errorhandler(NoPatientError)
    def _no_patient(e: NoPatientError) -> Response:
        # in the service's words: the reader's message names the patient id it looked for
        return _api_error(
            ApiError(
                400,
                "'data' cannot be evaluated: it does not say whose it is (a Patient with the "
                "subject's id, or resources that refer to one, are needed).",
                expression=["Parameters.parameter[data]"],
            )
        )

    @app.errorhandler(ApiError)
    def _api_error(e: ApiError) -> Response:
        resp = fhir_response(
            operation_outcome(e.message, e.code, expression=e.expression), e.status
        )
        for k, v in e.headers.items():
            resp.headers[k] = v
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Response:
        status = e.code or 500
        message = e.description or e.name
        if status == 413:
            message = (
                f"Request body too large (limit {app.config.get('MAX_CONTENT_LENGTH')} bytes)."
            )
        resp = fhir_response(
            operation_outcome(message, ISSUE_CODE.get(status, "processing")), status
        )
        if status == 405 and e.get_response().headers.get("Allow"):
            resp.headers["Allow"] = e.get_response().headers["Allow"]
        return resp

    @app.errorhandler(StoreError)
    def _store_error(e: StoreError) -> Response:
        log.error("store unavailable: %s", e)
        return fhir_response(
            operation_outcome(
                "The service's store is unavailable; nothing was saved. Try again.", "transient"
            ),
            503,
        )

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response:
        log.exception("unhandled error (%s)", type(e).__name__)
        return fhir_response(
            operation_outcome(
                "Internal error: the request was not processed. It has been logged.",
                "exception",
                severity="fatal",
            ),
            500,
        )
