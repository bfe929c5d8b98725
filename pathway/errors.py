"""Domain errors of the service's use cases (`pathway.workflow`). No HTTP here: `api/errors.py`
alone says which status each one gets. Messages are for the caller and never carry patient data.
"""

from __future__ import annotations


class PathwayError(Exception):
    """A use case could not be carried out; `message` says why, for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NoFhirServer(PathwayError):
    """The data was not given and no FHIR server is configured to read it from."""


class PatientNotFound(PathwayError):
    """The FHIR server has no such patient."""


class FhirServerFailed(PathwayError):
    """The FHIR server could not be read (`status` is its HTTP status, None when unreachable)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class FhirServerNotAllowed(PathwayError):
    """The caller named a FHIR server that is not on the allow-list: nothing was called."""


class MissingData(PathwayError):
    """Data the decision needs is neither in the request nor to be had from the FHIR server."""

    def __init__(self, message: str, keys: list[str]) -> None:
        super().__init__(message)
        self.keys = keys
