"""Validate plain-dict FHIR R4 resources against the project's StructureDefinitions.

Deliberately independent of fhir.resources: the builder of CarePlans and Tasks uses the models,
so a second, simpler reading of the profiles catches the mistakes the two would otherwise
share. It understands the subset of StructureDefinition that `fhir_profiles/` uses:

- differential cardinality, evaluated over every repetition of the parent element;
- `fixed[x]` (equal) and `pattern[x]` (the value contains the pattern);
- choice-type restrictions (`value[x]` allowed as `valueCode` only) and reference targets;
- slices discriminated by `value` or `pattern` (on `$this` or a child path such as `system`);
- extensions whose profile is one of ours, validated against that profile;
- required bindings to our own ValueSets (bindings to other value sets are not checked: the
  validator holds no external terminology);
- every `constraint` of severity error, evaluated with fhirpathpy; a result other than
  `[True]` is an issue.

It does not read snapshots, the base resource definitions, or re-slicing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fhirpathpy
from fhirpathpy.models import models as fhirpath_models

JsonDict = dict[str, Any]

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "fhir_profiles"
"""`fhir_profiles/` at the repository root."""

_BASE_SD = "http://hl7.org/fhir/StructureDefinition/"
_LITERAL_REFERENCE = re.compile(
    r"^(?:.*/)?(?P<type>[A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)
_R4 = fhirpath_models["r4"]


@dataclass(frozen=True)
class ProfileIssue:
    """One way a resource fails a profile.

    `key` is the constraint key (e.g. `oudcp-17`) for FHIRPath constraints, otherwise the kind
    of structural check: `resourceType`, `cardinality`, `fixed`, `pattern`, `binding`, `type`,
    `reference`, `unknown-profile`, `fhirpath-error`.
    """

    path: str
    message: str
    key: str


@dataclass(frozen=True)
class Terminology:
    """The codes of our own value sets, as (system, code) pairs, keyed by ValueSet url."""

    value_sets: Mapping[str, frozenset[tuple[str, str]]]

    def knows(self, value_set: str) -> bool:
        return _strip_version(value_set) in self.value_sets

    def contains(self, value_set: str, system: str | None, code: str) -> bool:
        """Whether the code (from `system`, or from any system when None) is in the value set."""
        codes = self.value_sets.get(_strip_version(value_set), frozenset())
        if system is None:
            return any(member == code for _, member in codes)
        return (system, code) in codes


def _read_folder(folder: Path) -> list[JsonDict]:
    resources: list[JsonDict] = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            resources.append(data)
    return resources


def load_profiles(folder: Path = DEFAULT_FOLDER) -> dict[str, JsonDict]:
    """Every StructureDefinition in `folder`, keyed by its url."""
    return {
        res["url"]: res
        for res in _read_folder(folder)
        if res.get("resourceType") == "StructureDefinition" and isinstance(res.get("url"), str)
    }


def load_terminology(folder: Path = DEFAULT_FOLDER) -> Terminology:
    """Expand the ValueSets in `folder` from the CodeSystems in the same folder.

    A ValueSet that includes anything not resolvable here (another value set, a filter, a code
    system we do not hold) is left out, so bindings to it are not checked rather than wrongly
    failed.
    """
    resources = _read_folder(folder)
    code_systems = {
        res["url"]: frozenset(_concept_codes(res.get("concept", [])))
        for res in resources
        if res.get("resourceType") == "CodeSystem" and isinstance(res.get("url"), str)
    }
    value_sets: dict[str, frozenset[tuple[str, str]]] = {}
    for res in resources:
        if res.get("resourceType") != "ValueSet" or not isinstance(res.get("url"), str):
            continue
        compose = res.get("compose", {})
        included = _expand(compose.get("include", []), code_systems)
        excluded = _expand(compose.get("exclude", []), code_systems)
        if included is not None and excluded is not None:
            value_sets[res["url"]] = frozenset(included - excluded)
    return Terminology(value_sets)


def _concept_codes(concepts: list[JsonDict]) -> Iterator[str]:
    for concept in concepts:
        yield concept["code"]
        yield from _concept_codes(concept.get("concept", []))


def _expand(
    parts: list[JsonDict], code_systems: Mapping[str, frozenset[str]]
) -> set[tuple[str, str]] | None:
    codes: set[tuple[str, str]] = set()
    for part in parts:
        system = part.get("system")
        if not isinstance(system, str) or "valueSet" in part or "filter" in part:
            return None
        if "concept" in part:
            codes.update((system, concept["code"]) for concept in part["concept"])
        elif system in code_systems:
            codes.update((system, code) for code in code_systems[system])
        else:
            return None
    return codes


@cache
def _default_profiles() -> Mapping[str, JsonDict]:
    return load_profiles(DEFAULT_FOLDER)


@cache
def _default_terminology() -> Terminology:
    return load_terminology(DEFAULT_FOLDER)


@cache
def _compiled(expression: str) -> Callable[..., list[Any]]:
    return fhirpathpy.compile(expression, _R4)


def validate(
    resource: JsonDict,
    profile: JsonDict,
    *,
    profiles: Mapping[str, JsonDict] | None = None,
    terminology: Terminology | None = None,
) -> list[ProfileIssue]:
    """Check `resource` against one StructureDefinition; an empty list means conformant.

    `profiles` resolves the extension and reference-target profiles the StructureDefinition
    names, `terminology` the value sets of its required bindings; both default to the contents
    of `fhir_profiles/`.
    """
    checker = _Checker(
        profiles if profiles is not None else _default_profiles(),
        terminology if terminology is not None else _default_terminology(),
    )
    return checker.check(resource, profile)


def validate_by_meta(
    resource: JsonDict,
    profiles: Mapping[str, JsonDict],
    *,
    terminology: Terminology | None = None,
) -> list[ProfileIssue]:
    """Check `resource` against every profile its `meta.profile` lists.

    A profile url we do not know is itself an issue; a resource that claims no profile has
    nothing to be checked against and yields no issue.
    """
    issues: list[ProfileIssue] = []
    root = str(resource.get("resourceType", "Resource"))
    claimed = resource.get("meta", {}).get("profile", [])
    for index, url in enumerate(claimed if isinstance(claimed, list) else [claimed]):
        profile = profiles.get(_strip_version(str(url)))
        if profile is None:
            issues.append(
                ProfileIssue(
                    f"{root}.meta.profile[{index}]", f"unknown profile {url}", "unknown-profile"
                )
            )
            continue
        issues.extend(validate(resource, profile, profiles=profiles, terminology=terminology))
    return issues


@dataclass(frozen=True)
class _Node:
    path: str
    value: Any
    key: str = ""  # the JSON property it came from (for choice types)


class _Checker:
    def __init__(self, profiles: Mapping[str, JsonDict], terminology: Terminology) -> None:
        self.profiles = profiles
        self.terminology = terminology

    def check(
        self, resource: JsonDict, profile: JsonDict, root_path: str = ""
    ) -> list[ProfileIssue]:
        elements: list[JsonDict] = profile.get("differential", {}).get("element", [])
        by_id = {str(el.get("id", el.get("path"))): el for el in elements}
        root_name = str(profile.get("type"))
        root = _Node(root_path or root_name, resource)
        issues: list[ProfileIssue] = []
        if profile.get("kind") == "resource" and resource.get("resourceType") != root_name:
            issues.append(
                ProfileIssue(
                    root.path,
                    f"resourceType is {resource.get('resourceType')!r}, the profile "
                    f"{profile.get('url')} constrains {root_name}",
                    "resourceType",
                )
            )
            return issues
        for element in elements:
            element_id = str(element.get("id", element.get("path")))
            segments = element_id.split(".")
            if len(segments) > 1:
                parents = self._collect(root, segments[:-1], by_id)
                issues.extend(self._cardinality(element, element_id, parents, by_id))
            nodes = self._collect(root, segments, by_id)
            issues.extend(self._values(element, element_id, nodes))
            issues.extend(self._constraints(element, nodes, root))
        return issues

    # -- navigation ------------------------------------------------------------------------

    def _collect(
        self, root: _Node, segments: list[str], by_id: Mapping[str, JsonDict]
    ) -> list[_Node]:
        nodes = [root]
        prefix = segments[0]
        for segment in segments[1:]:
            name, _, slice_name = segment.partition(":")
            unsliced = f"{prefix}.{name}"
            children = [child for node in nodes for child in _children(node, name)]
            if slice_name:
                prefix = f"{unsliced}:{slice_name}"
                children = [c for c in children if self._in_slice(c.value, unsliced, prefix, by_id)]
            else:
                prefix = unsliced
            nodes = children
        return nodes

    def _in_slice(
        self, value: Any, unsliced_id: str, slice_id: str, by_id: Mapping[str, JsonDict]
    ) -> bool:
        slicing = by_id.get(unsliced_id, {}).get("slicing", {})
        slice_element = by_id.get(slice_id, {})
        for discriminator in slicing.get("discriminator", []):
            if discriminator.get("type") not in ("value", "pattern"):
                continue  # type/profile/exists discriminators: not used by our profiles
            path = str(discriminator.get("path", "$this"))
            if path == "$this":
                expected = _fixed_or_pattern(slice_element)
            else:
                expected = _fixed_or_pattern(by_id.get(f"{slice_id}.{path}", {}))
                if expected is None and path == "url":
                    expected = _extension_url(slice_element)
            if expected is None:
                continue
            actual = _values_at(value, path)
            if not any(_contains(item, expected[1]) for item in actual):
                return False
        return True

    # -- checks ----------------------------------------------------------------------------

    def _cardinality(
        self,
        element: JsonDict,
        element_id: str,
        parents: list[_Node],
        by_id: Mapping[str, JsonDict],
    ) -> Iterator[ProfileIssue]:
        minimum = element.get("min")
        maximum = element.get("max")
        if minimum is None and maximum is None:
            return
        last = element_id.rsplit(".", 1)[-1]
        name, _, slice_name = last.partition(":")
        prefix = element_id.rsplit(".", 1)[0]
        for parent in parents:
            if not isinstance(parent.value, dict):
                continue
            children = list(_children(parent, name))
            if slice_name:
                children = [
                    c
                    for c in children
                    if self._in_slice(c.value, f"{prefix}.{name}", element_id, by_id)
                ]
            count = len(children)
            where = f"{parent.path}.{last}"
            if isinstance(minimum, int) and count < minimum:
                yield ProfileIssue(
                    where,
                    f"{element_id}: at least {minimum} required, found {count}",
                    "cardinality",
                )
            if isinstance(maximum, str) and maximum != "*" and count > int(maximum):
                yield ProfileIssue(
                    where, f"{element_id}: at most {maximum} allowed, found {count}", "cardinality"
                )

    def _values(
        self, element: JsonDict, element_id: str, nodes: list[_Node]
    ) -> Iterator[ProfileIssue]:
        fixed = _prefixed(element, "fixed")
        pattern = _prefixed(element, "pattern")
        binding = element.get("binding", {})
        types: list[JsonDict] = element.get("type", [])
        allowed_suffixes = {_type_suffix(str(t.get("code"))) for t in types}
        for node in nodes:
            if fixed is not None and node.value != fixed[1]:
                yield ProfileIssue(
                    node.path, f"{element_id} must be {json.dumps(fixed[1])}", "fixed"
                )
            if pattern is not None and not _contains(node.value, pattern[1]):
                yield ProfileIssue(
                    node.path,
                    f"{element_id} must contain the pattern {json.dumps(pattern[1])}",
                    "pattern",
                )
            if element_id.endswith("[x]") and allowed_suffixes:
                stem = element_id.rsplit(".", 1)[-1].partition(":")[0][:-3]
                if node.key[len(stem) :] not in allowed_suffixes:
                    yield ProfileIssue(
                        node.path,
                        f"{element_id}: {node.key} is not allowed here "
                        f"(only {', '.join(stem + s for s in sorted(allowed_suffixes))})",
                        "type",
                    )
            if binding.get("strength") == "required" and binding.get("valueSet"):
                yield from self._binding(node, element_id, str(binding["valueSet"]))
            for declared in types:
                yield from self._typed(node, element_id, declared)

    def _binding(self, node: _Node, element_id: str, value_set: str) -> Iterator[ProfileIssue]:
        if not self.terminology.knows(value_set):
            return  # not one of our value sets: nothing to check it against
        value = node.value
        candidates: list[tuple[str | None, str]]
        if isinstance(value, str):  # code
            candidates = [(None, value)]
        elif isinstance(value, dict) and "code" in value and "coding" not in value:  # Coding
            candidates = [(value.get("system"), str(value["code"]))]
        elif isinstance(value, dict):  # CodeableConcept: one coding must be in the value set
            candidates = [(c.get("system"), str(c.get("code"))) for c in value.get("coding", [])]
        else:
            return
        if not any(self.terminology.contains(value_set, s, c) for s, c in candidates):
            shown = ", ".join(f"{s}|{c}" if s else c for s, c in candidates) or "no code"
            yield ProfileIssue(
                node.path,
                f"{element_id}: {shown} is not in the required value set {value_set}",
                "binding",
            )

    def _typed(self, node: _Node, element_id: str, declared: JsonDict) -> Iterator[ProfileIssue]:
        code = declared.get("code")
        if code == "Reference" and isinstance(node.value, dict):
            targets = {self._type_of(str(p)) for p in declared.get("targetProfile", [])}
            reference = node.value.get("reference")
            if not targets or None in targets or not isinstance(reference, str):
                return
            if reference.startswith(("#", "urn:uuid:", "urn:oid:")):
                return  # contained or inside a Bundle: resolved elsewhere
            match = _LITERAL_REFERENCE.match(reference)
            if match is None or match["type"] not in targets:
                yield ProfileIssue(
                    node.path,
                    f"{element_id}: {reference!r} is not a reference to "
                    f"{' or '.join(sorted(t for t in targets if t))}",
                    "reference",
                )
        elif code == "Extension" and isinstance(node.value, dict):
            for url in declared.get("profile", []):
                extension_profile = self.profiles.get(_strip_version(str(url)))
                if extension_profile is not None:
                    yield from self.check(node.value, extension_profile, node.path)

    def _type_of(self, profile_url: str) -> str | None:
        known = self.profiles.get(_strip_version(profile_url))
        if known is not None:
            return str(known.get("type"))
        if profile_url.startswith(_BASE_SD):
            return profile_url[len(_BASE_SD) :]
        return None

    def _constraints(
        self, element: JsonDict, nodes: list[_Node], root: _Node
    ) -> Iterator[ProfileIssue]:
        for constraint in element.get("constraint", []):
            if constraint.get("severity", "error") != "error" or not constraint.get("expression"):
                continue
            key = str(constraint.get("key", "constraint"))
            expression = str(constraint["expression"])
            for node in nodes:
                try:
                    result = _compiled(expression)(node.value, {"resource": root.value})
                except Exception as error:  # any engine failure is reported, not raised
                    yield ProfileIssue(
                        node.path,
                        f"{key}: could not evaluate {expression!r}: {error}",
                        "fhirpath-error",
                    )
                    continue
                if result != [True]:
                    yield ProfileIssue(
                        node.path,
                        f"{key}: {constraint.get('human', '')} (expression {expression!r} "
                        f"gave {result!r})",
                        key,
                    )


# -- helpers -----------------------------------------------------------------------------------


def _strip_version(url: str) -> str:
    return url.split("|", 1)[0]


def _children(node: _Node, name: str) -> Iterator[_Node]:
    if not isinstance(node.value, dict):
        return
    if name.endswith("[x]"):
        stem = name[:-3]
        keys = [
            k
            for k in node.value
            if k.startswith(stem) and len(k) > len(stem) and k[len(stem)].isupper()
        ]
    else:
        keys = [name] if name in node.value else []
    for key in keys:
        value = node.value[key]
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield _Node(f"{node.path}.{key}[{index}]", item, key)
        elif value is not None:
            yield _Node(f"{node.path}.{key}", value, key)


def _values_at(value: Any, path: str) -> list[Any]:
    current = [value]
    if path == "$this":
        return current
    for part in path.split("."):
        following: list[Any] = []
        for item in current:
            if isinstance(item, dict) and part in item:
                child = item[part]
                following.extend(child if isinstance(child, list) else [child])
        current = following
    return current


def _prefixed(element: JsonDict, prefix: str) -> tuple[str, Any] | None:
    for key, value in element.items():
        if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isupper():
            return key, value
    return None


def _fixed_or_pattern(element: JsonDict) -> tuple[str, Any] | None:
    return _prefixed(element, "fixed") or _prefixed(element, "pattern")


def _extension_url(element: JsonDict) -> tuple[str, Any] | None:
    for declared in element.get("type", []):
        for url in declared.get("profile", []):
            return "fixedUri", str(url)
    return None


def _contains(value: Any, pattern: Any) -> bool:
    """FHIR pattern matching: every property of the pattern is present with a matching value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and _contains(value[key], sub) for key, sub in pattern.items()
        )
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(_contains(item, sub) for item in items) for sub in pattern)
    return bool(value == pattern)


def _type_suffix(code: str) -> str:
    return code[:1].upper() + code[1:]
