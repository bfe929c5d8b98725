"""Flatten whatever an EHR sends into plain resources.

Accepted shapes (CONTRACT §1): bare resources, Bundles of any type (searchset, collection,
transaction), bundle entries (`{"fullUrl", "resource"}`), lists of those, nested Bundles, and
OperationOutcomes (kept aside as warnings, never treated as data).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 8


def as_list(value: Any) -> list[Any]:
    """A FHIR array, or nothing: an EHR field of the wrong type is never iterated."""
    return value if isinstance(value, list) else []


@dataclass(slots=True)
class Flattened:
    resources: list[tuple[dict[str, Any], str | None]] = field(
        default_factory=list
    )  # (res, fullUrl)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def flatten(
    item: Any, into: Flattened | None = None, full_url: str | None = None, depth: int = 0
) -> Flattened:
    out = into if into is not None else Flattened()
    _flatten(item, out, full_url, depth)
    return out


def _flatten(item: Any, out: Flattened, full_url: str | None, depth: int) -> None:
    if depth > MAX_DEPTH:
        out.problems.append("Bundles nested too deeply: the inner ones were skipped")
        return
    if item is None:
        return
    if type(item) is list:
        for x in item:
            _flatten(x, out, None, depth + 1)
        return
    if type(item) is not dict:
        out.problems.append(f"ignored a {type(item).__name__} where a resource was expected")
        return
    rtype = item.get("resourceType")
    if rtype is None and "resource" in item:  # a bundle entry
        url = item.get("fullUrl")
        _flatten(item["resource"], out, url if type(url) is str else None, depth + 1)
        return
    if type(rtype) is not str:
        out.problems.append("ignored an object without resourceType")
        return
    if rtype == "Bundle":
        entries = item.get("entry") or []
        if type(entries) is not list:
            out.problems.append("ignored a Bundle whose entry is not a list")
            return
        resources = out.resources
        for e in entries:
            if type(e) is not dict or "resource" not in e:
                if e is not None:
                    out.problems.append("ignored a Bundle entry without a resource")
                continue
            res = e["resource"]
            url = e.get("fullUrl")
            url = url if type(url) is str else None
            # The common case inline: a plain resource in an entry (no recursion per entry).
            if type(res) is dict:
                inner = res.get("resourceType")
                if type(inner) is str and inner not in ("Bundle", "OperationOutcome"):
                    resources.append((res, url))
                    continue
            _flatten(res, out, url, depth + 1)
        return
    if rtype == "OperationOutcome":
        out.outcomes.append(item)
        return
    out.resources.append((item, full_url))


def reference_keys(resource: dict[str, Any], full_url: str | None) -> Iterator[str]:
    """Every string another resource might use to point at this one."""
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if isinstance(rid, str) and rid:
        yield f"{rtype}/{rid}"
    if full_url:
        yield full_url
        if "/" in full_url and not full_url.startswith("urn:"):
            parts = full_url.rstrip("/").split("/")
            if len(parts) >= 2:
                yield f"{parts[-2]}/{parts[-1]}"


# The one FHIR id check (use with fullmatch): the FHIR id grammar, [A-Za-z0-9\-.]{1,64}, less the
# two ids that are path segments, "." and "..": every id the service puts into a URL passes here.
FHIR_ID = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9\-.]{1,64}")


def ref_of(resource: dict[str, Any], full_url: str | None = None) -> str:
    """The evidence reference for a resource: `Type/id`, else its fullUrl. An id that is not a
    FHIR id (e.g. "/") would make a broken reference: the fullUrl stands in for it."""
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if isinstance(rid, str) and FHIR_ID.fullmatch(rid):
        return f"{rtype}/{rid}"
    return full_url or f"{rtype}/(no id)"
