"""The public CDC opioid CDS requests (tests/data/external/opioid-cds-r4) through the hooks.

Their data are dated relative to a dataDateRoller `dateLastUpdated`; instead of rewriting the
dates, the service's clock is frozen at that date (the rules take it as as_of). Their
fhirServer (http://localhost:8080/fhir) is allow-listed and stubbed with `responses`: keys the
requests leave out are fetched from it and come back empty (a Patient read returns a bare
Patient of that id). One request sends its draftOrders as a bare MedicationRequest instead of
a Bundle: tolerated. HelloWorld.json carries the
unrendered template "{{fhirServerUrl}}" as fhirServer: that is not a URL, so it is a 400.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import responses
from cds_support import assert_valid_response
from flask import Flask
from test_external import data_date

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.settings import Settings

EXTERNAL = Path(__file__).parent.parent / "data" / "external" / "opioid-cds-r4"
REQUESTS = sorted((EXTERNAL / "requests").rglob("*.json"))
RAW = sorted((EXTERNAL / "requests-upstream-raw").rglob("*.json"))
CDC_SERVER = "http://localhost:8080/fhir"
SERVICE = {
    "patient-view": "oud-pathway",
    "order-select": "oud-order-select",
    "order-sign": "oud-order-sign",
}


@pytest.fixture
def app(tmp_path: Path, config: LoadedConfig) -> Flask:
    settings = Settings.from_mapping(
        {
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
            "PATHWAY_FHIR_ALLOWLIST": CDC_SERVER,
        }
    )
    return create_app({"settings": settings, "config": config})


def _empty_server(rsps: responses.RequestsMock) -> None:
    empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    rsps.add(responses.GET, re.compile(re.escape(CDC_SERVER) + r"/(?!Patient/).*"), json=empty)

    def patient(request: Any) -> tuple[int, dict[str, str], bytes]:
        pid = request.url.rsplit("/", 1)[1]
        return 200, {}, orjson.dumps({"resourceType": "Patient", "id": pid})

    rsps.add_callback(
        responses.GET, re.compile(re.escape(CDC_SERVER) + r"/Patient/.*"), callback=patient
    )


@pytest.mark.parametrize("path", REQUESTS, ids=[p.stem for p in REQUESTS])
def test_cdc_request(app: Flask, path: Path) -> None:
    request: dict[str, Any] = orjson.loads(path.read_bytes())
    moment = data_date(request)
    app.extensions["pathway"].clock = lambda: moment
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        _empty_server(rsps)
        resp = client.post(f"/cds-services/{SERVICE[request['hook']]}", json=request)
    if request["fhirServer"] == "{{fhirServerUrl}}":
        assert resp.status_code == 400
        assert "fhirServer" in resp.get_json()["issue"][0]["diagnostics"]
        return
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert_valid_response(resp.get_json())


def test_cdc_suboxone_order_is_moud(app: Flask) -> None:
    path = next(p for p in REQUESTS if "rec-01-in-outpatient" in p.name)
    request = orjson.loads(path.read_bytes())
    moment = data_date(request)
    app.extensions["pathway"].clock = lambda: moment
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        _empty_server(rsps)
        body = (
            app.test_client()
            .post(f"/cds-services/{SERVICE[request['hook']]}", json=request)
            .get_json()
        )
    summaries = [c["summary"] for c in body["cards"]]
    assert not any("analgesic" in s for s in summaries)
    assert any("naloxone" in s.lower() for s in summaries)


@pytest.mark.parametrize("path", RAW, ids=[p.stem for p in RAW])
def test_cdc_raw_request_parse_errors_are_named(app: Flask, path: Path) -> None:
    raw = path.read_bytes()
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        resp = app.test_client().post(
            "/cds-services/oud-pathway", data=raw, content_type="application/json"
        )
        assert resp.status_code == 400
        text = resp.get_json()["issue"][0]["diagnostics"]
        # where, in the service's words (orjson's own message may quote the body)
        assert text == f"Malformed JSON (line {e.lineno}, column {e.colno})."
        return
    assert isinstance(request, dict)  # the few valid ones are covered by test_cdc_request
