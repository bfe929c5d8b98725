"""The FHIR client: typed errors, retries with Retry-After, paging (responses stubs)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import responses

from pathway.fhir.client import (
    FhirAuthError,
    FhirBadResponse,
    FhirClient,
    FhirConflict,
    FhirError,
    FhirNotFound,
    FhirUnavailable,
)

BASE = "https://ehr.example.org/fhir"
OO = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "processing", "diagnostics": "the reason"}],
}


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> FhirClient:
    return FhirClient(BASE, token="tok", timeout=2, retries=3, backoff=0.5, sleep=sleeps.append)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, FhirAuthError),
        (403, FhirAuthError),
        (404, FhirNotFound),
        (410, FhirNotFound),
        (409, FhirConflict),
        (412, FhirConflict),
        (400, FhirError),
        (422, FhirError),
        (500, FhirUnavailable),
    ],
)
@responses.activate
def test_status_codes_become_typed_errors(
    client: FhirClient, status: int, error: type[FhirError]
) -> None:
    responses.get(f"{BASE}/Patient/p1", status=status, json=OO)
    with pytest.raises(error) as e:
        client.read("Patient", "p1")
    assert e.value.status == status
    assert "the reason" in str(e.value)
    assert e.value.outcome == OO


@responses.activate
def test_bearer_token_and_accept_header(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    client.read("Patient", "p1")
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer tok"
    assert sent.headers["Accept"] == "application/fhir+json"


@responses.activate
def test_token_provider_is_called_per_request(sleeps: list[float]) -> None:
    tokens = iter(["a", "b"])
    c = FhirClient(BASE, token=lambda: next(tokens), sleep=sleeps.append)
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    c.read("Patient", "p1")
    c.read("Patient", "p1")
    assert [x.request.headers["Authorization"] for x in responses.calls] == ["Bearer a", "Bearer b"]


@pytest.mark.parametrize("status", [429, 502, 503, 504])
@responses.activate
def test_transient_statuses_are_retried_with_backoff(
    client: FhirClient, sleeps: list[float], status: int
) -> None:
    responses.get(f"{BASE}/Patient/p1", status=status)
    responses.get(f"{BASE}/Patient/p1", status=status)
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    assert client.read("Patient", "p1")["id"] == "p1"
    assert sleeps == [0.5, 1.0]


@responses.activate
def test_retry_after_seconds_is_honoured(client: FhirClient, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Patient/p1", status=429, headers={"Retry-After": "7"})
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    client.read("Patient", "p1")
    assert sleeps == [7.0]


@responses.activate
def test_retry_after_is_capped_and_http_date_understood(
    client: FhirClient, sleeps: list[float]
) -> None:
    responses.get(f"{BASE}/Patient/p1", status=503, headers={"Retry-After": "9999"})
    responses.get(
        f"{BASE}/Patient/p1", status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    client.read("Patient", "p1")
    assert sleeps == [30.0, 0.0]


@responses.activate
def test_gives_up_after_the_retries(client: FhirClient, sleeps: list[float]) -> None:
    for _ in range(4):
        responses.get(f"{BASE}/Patient/p1", status=503, json=OO)
    with pytest.raises(FhirUnavailable):
        client.read("Patient", "p1")
    assert len(sleeps) == 3


@pytest.mark.parametrize(
    "exc", [requests.ConnectTimeout, requests.ConnectionError, requests.ReadTimeout]
)
@responses.activate
def test_network_failures_are_retried_then_unavailable(
    client: FhirClient, sleeps: list[float], exc: type[Exception]
) -> None:
    for _ in range(4):
        responses.get(f"{BASE}/Patient/p1", body=exc("boom"))
    with pytest.raises(FhirUnavailable):
        client.read("Patient", "p1")
    assert len(sleeps) == 3


@responses.activate
def test_garbage_body_is_a_bad_response(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient/p1", body=b"<html>proxy error</html>", status=200)
    with pytest.raises(FhirBadResponse):
        client.read("Patient", "p1")


@responses.activate
def test_wrong_resource_type_is_a_bad_response(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Observation"})
    with pytest.raises(FhirBadResponse):
        client.read("Patient", "p1")


def _page(n: int, nxt: str | None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Condition", "id": f"c{n}"}}],
    }
    if nxt:
        b["link"] = [{"relation": "next", "url": nxt}]
    return b


@responses.activate
def test_paging_follows_next_links(client: FhirClient) -> None:
    responses.get(
        f"{BASE}/Condition",
        json=_page(1, f"{BASE}/Condition?page=2"),
        match=[responses.matchers.query_param_matcher({"patient": "p1"})],
    )
    responses.get(
        f"{BASE}/Condition",
        json=_page(2, None),
        match=[responses.matchers.query_param_matcher({"page": "2"})],
    )
    assert len(client.search("Condition", {"patient": "p1"})) == 2


@responses.activate
def test_a_paging_loop_stops(client: FhirClient) -> None:
    responses.get(
        f"{BASE}/Condition",
        json=_page(1, f"{BASE}/Condition?page=2"),
        match=[responses.matchers.query_param_matcher({"patient": "p1"})],
    )
    responses.get(
        f"{BASE}/Condition",
        json=_page(2, f"{BASE}/Condition?page=2"),
        match=[responses.matchers.query_param_matcher({"page": "2"})],
    )
    assert len(client.search("Condition", {"patient": "p1"})) == 2
    assert len(responses.calls) == 2


@responses.activate
def test_paging_stops_at_the_page_limit(sleeps: list[float]) -> None:
    c = FhirClient(BASE, max_pages=3, sleep=sleeps.append)
    for i in range(1, 6):
        responses.get(
            f"{BASE}/Condition",
            json=_page(i, f"{BASE}/Condition?page={i + 1}"),
            match=[responses.matchers.query_param_matcher({"page": str(i)} if i > 1 else {})],
        )
    assert len(c.search("Condition")) == 3


@responses.activate
def test_paging_never_leaves_the_origin(client: FhirClient) -> None:
    responses.get(f"{BASE}/Condition", json=_page(1, "https://elsewhere.example.net/steal"))
    assert len(client.search("Condition")) == 1
    assert len(responses.calls) == 1


@responses.activate
def test_query_reads_or_searches(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    responses.get(f"{BASE}/Condition", json=_page(1, None))
    assert client.query("Patient/p1")[0]["id"] == "p1"
    assert client.query("Condition?patient=p1")[0]["resourceType"] == "Bundle"


@responses.activate
def test_writes_send_fhir_json(client: FhirClient) -> None:
    responses.post(
        f"{BASE}/Task",
        status=201,
        json={"resourceType": "Task", "id": "t1"},
        headers={"ETag": 'W/"1"'},
    )
    r = client.request(
        "POST", "Task", body={"resourceType": "Task"}, headers={"If-None-Exist": "identifier=s|v"}
    )
    sent = responses.calls[0].request
    assert sent.headers["Content-Type"] == "application/fhir+json"
    assert sent.headers["If-None-Exist"] == "identifier=s|v"
    assert r.status == 201 and r.headers["ETag"] == 'W/"1"'


@responses.activate
def test_transaction_posts_to_the_base(client: FhirClient) -> None:
    responses.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response"})
    client.request("POST", "", body={"resourceType": "Bundle", "type": "transaction"})
    assert responses.calls[0].request.url == BASE
