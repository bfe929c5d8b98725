"""marshmallow schemas for request bodies; errors become OperationOutcomes naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from pathway.api.errors import ApiError


class ParameterSchema(Schema):
    class Meta:
        unknown = INCLUDE  # other value[x] types are allowed and ignored

    name = fields.String(required=True, validate=validate.Length(min=1))
    valueString = fields.String()
    valueDateTime = fields.String()
    valueBoolean = fields.Boolean()
    valueReference = fields.Dict()
    resource = fields.Dict()


class ParametersSchema(Schema):
    class Meta:
        unknown = INCLUDE

    resourceType = fields.String(required=True, validate=validate.Equal("Parameters"))
    parameter = fields.List(fields.Nested(ParameterSchema), required=True)


def _paths(messages: Any, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(messages, Mapping):
        for k, v in messages.items():
            key = f"{prefix}[{k}]" if isinstance(k, int) else (f"{prefix}.{k}" if prefix else k)
            out.extend(_paths(v, key))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out.append((prefix, " ".join(messages)))
    elif isinstance(messages, list):
        for i, m in enumerate(messages):
            out.extend(_paths(m, f"{prefix}[{i}]"))
    else:
        out.append((prefix, str(messages)))
    return out


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (not the Python class)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "something else"


def load_or_400(schema: Schema, body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, f"{what}: expected a JSON object, got {_json_type(body)}.")
    try:
        data: dict[str, Any] = schema.load(body)
    except ValidationError as e:
        problems = _paths(e.messages)
        text = "; ".join(f"{p}: {m}" for p, m in problems)
        raise ApiError(
            400, f"{what} is not valid: {text}", "invalid", expression=[p for p, _ in problems if p]
        ) from e
    return data
