"""schemathesis over the OpenAPI document: zero 5xx, every rejection an OperationOutcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from fuzz_counts import COUNTS
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from pathway import create_app
from pathway.config import load_config
from pathway.settings import Settings

_TMP = Path(__import__("tempfile").mkdtemp())
APP = create_app(
    {
        "settings": Settings.from_mapping(
            {"PATHWAY_AUTH_MODE": "off", "PATHWAY_DATABASE_URL": f"sqlite:///{_TMP / 'o.db'}"}
        ),
        "config": load_config(),
    }
)
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)
# Valid requests and, above all, invalid ones (wrong types, missing fields, out-of-range values).
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_with_a_5xx(case: Any) -> None:
    COUNTS["schemathesis cases"] += 1
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    if response.status_code >= 400:
        COUNTS["schemathesis cases refused (4xx)"] += 1
    if response.status_code >= 400 and case.path != "/readyz":
        body = response.json()
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"]
