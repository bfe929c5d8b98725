"""Strict checks of every FHIR output the tests produce: the R4B models and our profiles."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from pathway.fhir.profiles import load_profiles, validate_by_meta

PROFILES = load_profiles()


def assert_no_empty(value: Any, path: str = "") -> None:
    """FHIR JSON never carries null, empty strings, empty arrays or empty objects."""
    assert value is not None, f"{path} is null"
    if isinstance(value, str):
        assert value != "", f"{path} is an empty string"
    elif isinstance(value, list):
        assert value, f"{path} is an empty array"
        for i, v in enumerate(value):
            assert_no_empty(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        assert value, f"{path} is an empty object"
        for k, v in value.items():
            assert_no_empty(v, f"{path}.{k}")


def assert_valid_resource(resource: dict[str, Any]) -> None:
    assert_no_empty(resource, resource.get("resourceType", ""))
    # raises on any R4B violation
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    if resource.get("meta", {}).get("profile"):
        issues = validate_by_meta(resource, PROFILES)
        assert issues == [], issues


def assert_valid_bundle(bundle: dict[str, Any]) -> None:
    get_fhir_model_class("Bundle").model_validate(bundle)
    for entry in bundle.get("entry", []):
        assert_valid_resource(entry["resource"])
