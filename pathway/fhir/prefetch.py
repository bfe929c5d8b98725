"""Prefetch first, fetch only what is missing, otherwise say so (CONTRACT.md §1).

- a key present with data is used; a key present as `null` means "no data";
- a key absent is fetched from `fhirServer` with the hook's `fhirAuthorization`, unless the
  request already carries that kind of resource under keys of its own (some EHRs name their
  prefetch differently);
- data for a required key that can be had neither way makes the hook answer 412.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pathway.fhir.bundle import flatten
from pathway.fhir.client import FhirBadResponse, FhirError

KEY_TYPES = {
    "patient": "Patient",
    "conditions": "Condition",
    "observations": "Observation",
    "medicationRequests": "MedicationRequest",
    "carePlans": "CarePlan",
    "tasks": "Task",
}
REQUIRED_KEYS = ("patient", "conditions", "observations", "medicationRequests")


@dataclass(slots=True)
class Resolved:
    data: list[Any] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # required keys with no data
    notes: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    known: set[str] = field(default_factory=set)  # keys whose data is complete (given or read)


def describe(e: FhirError) -> str:
    """A failed FHIR call in the service's own words: what happened, never the server's text
    (it may quote the request or hold data of the server's)."""
    if isinstance(e, FhirBadResponse):
        return "its answer was not the FHIR JSON expected"
    if e.status is not None:
        return f"it answered HTTP {e.status}"
    return "it could not be reached in time"


def render(template: str, context: Mapping[str, Any]) -> str:
    out = template
    for key, value in context.items():
        if isinstance(value, str):
            out = out.replace("{{context." + key + "}}", value)
    return out


def resolve(
    prefetch: Mapping[str, Any] | None,
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    fetch: Callable[[str], list[Any]] | None,
) -> Resolved:
    out = Resolved()
    given = dict(prefetch or {})
    present_types: set[str] = set()
    for key, value in given.items():
        if value is None:
            continue
        out.data.append(value)
        if key not in KEY_TYPES:
            present_types.update(str(r.get("resourceType")) for r, _ in flatten(value).resources)
    for key, rtype in KEY_TYPES.items():
        if key in given:
            out.known.add(key)
            continue  # present (null = no data)
        if rtype in present_types:
            out.known.add(key)
            continue  # the EHR sent this kind of data under its own key
        template = templates.get(key)
        if fetch is None or template is None:
            if key in REQUIRED_KEYS:
                out.missing.append(key)
            else:
                out.notes.append(
                    f"'{key}' was not prefetched and could not be read: "
                    "completed tasks may not be known"
                )
            continue
        try:
            out.data.extend(fetch(render(template, context)))
            out.fetched.append(key)
            out.known.add(key)
        except FhirError as e:
            if key in REQUIRED_KEYS:
                out.missing.append(key)
                out.notes.append(f"'{key}' could not be read from the FHIR server: {describe(e)}")
            else:
                out.notes.append(
                    f"'{key}' could not be read from the FHIR server: completed "
                    "tasks may not be known"
                )
    return out
