"""CDS Hooks (CONTRACT.md §1, PATHWAY.md §5): discovery, services, prefetch, auth, feedback."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import responses
from builders import (
    ALPRAZOLAM_TABLET,
    BUP_NALOXONE_FILM,
    OXYCODONE_TABLET,
    condition,
    day_ago,
    med,
    patient,
)
from cds_support import (
    Signer,
    assert_valid_response,
    empty_patient_view,
    hook_request,
    pathway_log,
    prefetch_of,
)
from flask import Flask
from flask.testing import FlaskClient

from pathway import create_app
from pathway.api.auth import UNAUTHENTICATED
from pathway.config import LoadedConfig
from pathway.settings import Settings

PUBLIC = "https://cds.example.org"
EHR = "https://ehr.example.org/fhir"
DATA = Path(__file__).parent.parent / "data"
SCENARIOS = sorted((DATA / "scenarios").glob("*.json"))
NALTREXONE_TABLET = "1483744"


def scenario(name: str) -> dict[str, Any]:
    case: dict[str, Any] = orjson.loads((DATA / "scenarios" / f"{name}.json").read_bytes())
    return case


def at(app: Flask, when: str | datetime) -> None:
    """Freeze the service's clock (the rules take it as as_of)."""
    moment = (
        when if isinstance(when, datetime) else datetime.fromisoformat(when.replace("Z", "+00:00"))
    )
    app.extensions["pathway"].clock = lambda: moment


# ------------------------------------------------------------------ an app with JWT on


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer("ES384")


@pytest.fixture(scope="module")
def rsa_signer() -> Signer:
    return Signer("RS384", kid="r1", iss="https://other-ehr.example.org")


@pytest.fixture
def secure_app(tmp_path: Path, config: LoadedConfig, signer: Signer, rsa_signer: Signer) -> Flask:
    clients = tmp_path / "clients.json"
    clients.write_bytes(
        orjson.dumps(
            [
                {"iss": signer.iss, "jwks": signer.jwks, "tenant": "a"},
                {"iss": rsa_signer.iss, "jku": ["https://other-ehr.example.org/jwks.json"]},
            ]
        )
    )
    settings = Settings.from_mapping(
        {
            "PATHWAY_PUBLIC_URL": PUBLIC,
            "PATHWAY_CDS_CLIENTS_FILE": str(clients),
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
            "PATHWAY_FHIR_ALLOWLIST": EHR,
        }
    )
    return create_app({"settings": settings, "config": config})


@pytest.fixture
def secure(secure_app: Flask) -> FlaskClient:
    return secure_app.test_client()


@pytest.fixture
def open_app(tmp_path: Path, config: LoadedConfig) -> Flask:
    settings = Settings.from_mapping(
        {
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'o.db'}",
            "PATHWAY_FHIR_ALLOWLIST": EHR,
        }
    )
    return create_app({"settings": settings, "config": config})


@pytest.fixture
def hooks(open_app: Flask) -> FlaskClient:
    return open_app.test_client()


def post(client: FlaskClient, path: str, body: Any, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path, data=data, content_type="application/json", headers=headers)


def outcome(resp: Any, status: int, *words: str) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    for w in words:
        assert w in body["issue"][0]["diagnostics"]


# ------------------------------------------------------------------ discovery


def test_discovery(hooks: FlaskClient) -> None:
    services = hooks.get("/cds-services").get_json()["services"]
    ids = [s["id"] for s in services]
    # CDS Hooks 2.0 clients key services by id: an id listed twice hides all but its last entry
    assert len(ids) == len(set(ids)), f"an id is listed twice: {ids}"
    assert all(isinstance(s["hook"], str) for s in services)  # one hook per service
    assert sorted((s["id"], s["hook"]) for s in services) == [
        ("oud-order-select", "order-select"),
        ("oud-order-sign", "order-sign"),
        ("oud-pathway", "patient-view"),
    ]
    assert "oud-order-safety" not in ids  # the alias is served, not listed
    for s in services:
        assert s["title"] and s["description"]
        assert set(s["prefetch"]) == {
            "patient",
            "conditions",
            "observations",
            "medicationRequests",
            "carePlans",
            "tasks",
        }
        assert "category=" in s["prefetch"]["observations"]
        assert "_include=MedicationRequest:medication" in s["prefetch"]["medicationRequests"]


def test_services_json_with_an_id_listed_twice_is_refused(tmp_path: Path) -> None:
    from pathway.config import DEFAULT_CONFIG_DIR, ConfigError, load_services

    doc = orjson.loads((DEFAULT_CONFIG_DIR / "services.json").read_bytes())
    sign = next(s for s in doc["services"] if s["hook"] == "order-sign")
    doc["services"].append({**sign, "hook": "order-select"})  # the 0.1 layout
    bad = tmp_path / "services.json"
    bad.write_bytes(orjson.dumps(doc))
    with pytest.raises(ConfigError, match="listed twice"):
        load_services(bad)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"serves": ["oud-order-select", "oud-order-select"]}, "two services for one hook"),
        ({"serves": ["oud-order-nope"]}, "listed service ids"),
        ({"id": "oud-pathway"}, "is a listed service"),
    ],
)
def test_services_json_bad_alias_is_refused(tmp_path: Path, change: Any, why: str) -> None:
    from pathway.config import DEFAULT_CONFIG_DIR, ConfigError, load_services

    doc = orjson.loads((DEFAULT_CONFIG_DIR / "services.json").read_bytes())
    doc["unlistedAliases"][0].update(change)
    bad = tmp_path / "services.json"
    bad.write_bytes(orjson.dumps(doc))
    with pytest.raises(ConfigError, match=why):
        load_services(bad)


# ------------------------------------------------------------------ patient-view


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_patient_view_every_scenario(open_app: Flask, hooks: FlaskClient, path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    at(open_app, case["asOf"])
    resp = post(
        hooks,
        "/cds-services/oud-pathway",
        hook_request("patient-view", "p1", prefetch_of(case["bundle"])),
    )
    assert resp.status_code == 200
    body = resp.get_json()
    assert_valid_response(body)
    expect = case["expect"]
    if expect["phase"] == "not-applicable":
        assert body == {"cards": []}
        return
    (card,) = body["cards"]
    a = card["extension"]["io.github.oud-pathway.assessment"]
    assert a["phase"] == expect["phase"]
    if "returnToUse" in expect:
        assert a["returnToUse"] is expect["returnToUse"]
    if "suspectedOud" in expect:
        assert a["suspectedOud"] is expect["suspectedOud"]
    statuses = {m["medication"]: m["status"] for m in a["medications"]}
    for name, status in expect.get("medications", {}).items():
        assert statuses[name] == status
    assert set(expect.get("tasksInclude", [])) <= set(a.get("tasks", []))
    assert not set(expect.get("tasksExclude", [])) & set(a.get("tasks", []))
    assert expect["phase"].capitalize() in card["summary"]


def test_body_without_content_length_is_read_too(open_app: Flask, hooks: FlaskClient) -> None:
    """A chunked request (no Content-Length) takes werkzeug's path; a declared length is read
    in one call. Both give the same card."""
    import io

    case = scenario("oud-dx-no-moud")
    at(open_app, case["asOf"])
    raw = orjson.dumps(hook_request("patient-view", "p1", prefetch_of(case["bundle"])))
    declared = hooks.post(
        "/cds-services/oud-pathway", data=raw, content_type="application/json"
    ).get_json()
    chunked = hooks.post(
        "/cds-services/oud-pathway",
        input_stream=io.BytesIO(raw),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},  # else the test client declares a length
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.status_code == 200
    strip = {"uuid"}

    def without_ids(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: without_ids(v) for k, v in x.items() if k not in strip}
        if isinstance(x, list):
            return [without_ids(v) for v in x]
        return x

    assert without_ids(chunked.get_json()) == without_ids(declared)
    assert declared["cards"][0]["extension"]["io.github.oud-pathway.assessment"]["phase"]


def test_pathway_card_content(open_app: Flask, hooks: FlaskClient) -> None:
    case = scenario("bup-day45-fentanyl-return-to-use")
    at(open_app, case["asOf"])
    card = post(
        hooks,
        "/cds-services/oud-pathway",
        hook_request("patient-view", "p1", prefetch_of(case["bundle"])),
    ).get_json()["cards"][0]
    assert card["indicator"] == "warning"  # return to use
    assert "return to use" in card["summary"]
    assert "- **buprenorphine** active — On buprenorphine: continue." in card["detail"]
    assert "fentanyl (2024-11-15 16:45 UTC)" in card["detail"]  # the why, with its date
    assert "not an order" in card["detail"]
    labels = [s["label"] for s in card["suggestions"]]
    assert any("naloxone" in label for label in labels)
    naloxone = card["suggestions"][0]["actions"][0]["resource"]
    assert naloxone["resourceType"] == "MedicationRequest" and naloxone["status"] == "draft"
    assert naloxone["subject"] == {"reference": "Patient/p1"}
    plan = card["suggestions"][1]["actions"]
    assert plan[0]["resource"]["resourceType"] == "CarePlan"
    assert all(
        a["resource"]["basedOn"][0]["reference"] == f"CarePlan/{plan[0]['resource']['id']}"
        for a in plan[1:]
    )
    assert card["overrideReasons"][0]["system"] == (
        "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
    )
    assert card["source"]["topic"]["code"] == "stabilization"


@pytest.mark.parametrize("shape", ["bare", "entries", "searchset", "outcome", "null"])
def test_prefetch_shapes(open_app: Flask, hooks: FlaskClient, shape: str) -> None:
    at(open_app, "2025-06-15T12:00:00Z")
    cond = condition()
    shapes: dict[str, Any] = {
        "bare": cond,
        "entries": [{"fullUrl": "x", "resource": cond}],
        "searchset": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": cond},
                {
                    "resource": {
                        "resourceType": "OperationOutcome",
                        "issue": [
                            {
                                "severity": "information",
                                "code": "informational",
                                "diagnostics": "results limited",
                            }
                        ],
                    }
                },
            ],
        },
        "outcome": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "suppressed", "diagnostics": "withheld"}],
        },
        "null": None,
    }
    prefetch = {
        "patient": patient(),
        "conditions": shapes[shape],
        "observations": None,
        "medicationRequests": None,
        "carePlans": None,
        "tasks": None,
    }
    body = post(
        hooks, "/cds-services/oud-pathway", hook_request("patient-view", "p1", prefetch)
    ).get_json()
    assert_valid_response(body)
    if shape in ("outcome", "null"):
        assert body == {"cards": []}  # no OUD evidence: not applicable
    else:
        assert (
            body["cards"][0]["extension"]["io.github.oud-pathway.assessment"]["phase"]
            == "assessment"
        )


def _stub_ehr(rsps: responses.RequestsMock, resources: dict[str, list[dict[str, Any]]]) -> None:
    def searchset(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in items],
        }

    rsps.get(f"{EHR}/Patient/p1", json=patient())
    for rtype, items in resources.items():
        rsps.get(f"{EHR}/{rtype}", json=searchset(items))


def test_missing_keys_are_fetched_with_the_hook_token(open_app: Flask, hooks: FlaskClient) -> None:
    at(open_app, "2025-06-15T12:00:00Z")
    with responses.RequestsMock() as rsps:
        _stub_ehr(
            rsps,
            {
                "Condition": [condition()],
                "Observation": [],
                "MedicationRequest": [med(BUP_NALOXONE_FILM, authored=day_ago(3))],
                "CarePlan": [],
                "Task": [],
            },
        )
        body = post(
            hooks,
            "/cds-services/oud-pathway",
            hook_request(
                "patient-view",
                "p1",
                None,
                fhirServer=EHR,
                fhirAuthorization={
                    "access_token": "ehr-token",
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "scope": "patient/*.read",
                    "subject": "cds",
                },
            ),
        ).get_json()
        assert all(c.request.headers["Authorization"] == "Bearer ehr-token" for c in rsps.calls)
        queries = [str(c.request.url) for c in rsps.calls]
    assert any("category=laboratory" in q for q in queries)
    a = body["cards"][0]["extension"]["io.github.oud-pathway.assessment"]
    assert a["phase"] == "stabilization"
    assert_valid_response(body)


def test_paging_is_followed_on_the_same_origin_only(open_app: Flask, hooks: FlaskClient) -> None:
    at(open_app, "2025-06-15T12:00:00Z")
    page1 = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": f"{EHR}/Condition?page=2"}],
        "entry": [{"resource": condition("I10")}],
    }
    page2 = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": "https://evil.example.org/steal"}],
        "entry": [{"resource": condition("F11.20")}],
    }
    prefetch = {
        "patient": patient(),
        "observations": None,
        "medicationRequests": None,
        "carePlans": None,
        "tasks": None,
    }
    with responses.RequestsMock() as rsps:
        rsps.get(
            f"{EHR}/Condition",
            json=page1,
            match=[responses.matchers.query_param_matcher({"patient": "p1"})],
        )
        rsps.get(
            f"{EHR}/Condition",
            json=page2,
            match=[responses.matchers.query_param_matcher({"page": "2"})],
        )
        body = post(
            hooks,
            "/cds-services/oud-pathway",
            hook_request("patient-view", "p1", prefetch, fhirServer=EHR),
        ).get_json()
        assert len(rsps.calls) == 2  # never the other origin
    assert (
        body["cards"][0]["extension"]["io.github.oud-pathway.assessment"]["phase"] == "assessment"
    )


def test_missing_data_and_no_fhir_server_is_412(hooks: FlaskClient) -> None:
    outcome(
        post(
            hooks,
            "/cds-services/oud-pathway",
            hook_request("patient-view", "p1", {"patient": patient()}),
        ),
        412,
        "conditions",
        "observations",
        "medicationRequests",
        "no fhirServer",
    )


def test_fhir_server_failure_is_412(open_app: Flask, hooks: FlaskClient) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(
            f"{EHR}/Condition",
            status=500,
            json={
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "exception"}],
            },
        )
        prefetch = {
            "patient": patient(),
            "observations": None,
            "medicationRequests": None,
            "carePlans": None,
            "tasks": None,
        }
        open_app.extensions["pathway"].settings = Settings.from_mapping(
            {
                "PATHWAY_AUTH_MODE": "off",
                "PATHWAY_FHIR_ALLOWLIST": EHR,
                "PATHWAY_HTTP_TIMEOUT_SECONDS": "1",
            }
        )
        resp = post(
            hooks,
            "/cds-services/oud-pathway",
            hook_request("patient-view", "p1", prefetch, fhirServer=EHR),
        )
    outcome(resp, 412, "conditions")


def test_fhir_server_not_on_allow_list_is_refused_without_a_call(hooks: FlaskClient) -> None:
    with responses.RequestsMock() as rsps:  # any call would fail the test
        resp = post(
            hooks,
            "/cds-services/oud-pathway",
            hook_request(
                "patient-view", "p1", None, fhirServer="https://attacker.example.net/fhir"
            ),
        )
        assert len(rsps.calls) == 0
    outcome(resp, 403, "allow-list")


# ------------------------------------------------------------------ bad requests


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{", 400, ("Malformed JSON",)),
        (b"[]", 400, ("expected a JSON object",)),
        ({"hookInstance": "x", "context": {}}, 400, ("hook",)),
        ({"hook": "patient-view", "context": {"patientId": "p1"}}, 400, ("hookInstance",)),
        ({"hook": "patient-view", "hookInstance": "x"}, 400, ("context",)),
        (
            {"hook": "order-sign", "hookInstance": "x", "context": {"patientId": "p1"}},
            400,
            ("patient-view",),
        ),
        ({"hook": "patient-view", "hookInstance": "x", "context": {}}, 400, ("patientId",)),
        (
            {
                "hook": "patient-view",
                "hookInstance": "x",
                "context": {"patientId": "p1"},
                "fhirServer": "not a url",
            },
            400,
            ("fhirServer",),
        ),
        (
            {
                "hook": "patient-view",
                "hookInstance": "x",
                "context": {"patientId": "p1"},
                "fhirAuthorization": {"access_token": "t", "token_type": "Bearer"},
            },
            400,
            ("fhirAuthorization",),
        ),
        (
            {
                "hook": "patient-view",
                "hookInstance": "x",
                "context": {"patientId": "p1"},
                "prefetch": [],
            },
            400,
            ("prefetch",),
        ),
    ],
)
def test_bad_hook_requests(
    hooks: FlaskClient, body: Any, status: int, words: tuple[str, ...]
) -> None:
    outcome(post(hooks, "/cds-services/oud-pathway", body), status, *words)


def test_unknown_service_is_404(hooks: FlaskClient) -> None:
    outcome(post(hooks, "/cds-services/nope", hook_request("patient-view", "p1", {})), 404)


def test_order_hooks_need_draft_orders(hooks: FlaskClient) -> None:
    outcome(
        post(
            hooks,
            "/cds-services/oud-order-sign",
            hook_request("order-sign", "p1", {}, context={"draftOrders": "not orders"}),
        ),
        400,
        "draftOrders",
    )


# ------------------------------------------------------------------ order-select / order-sign


def _order_request(hook: str, drafts: list[dict[str, Any]], *resources: dict[str, Any]) -> Any:
    prefetch = {
        "patient": patient(),
        "conditions": [r for r in resources if r["resourceType"] == "Condition"],
        "observations": [r for r in resources if r["resourceType"] == "Observation"],
        "medicationRequests": [r for r in resources if r["resourceType"] == "MedicationRequest"],
        "carePlans": None,
        "tasks": None,
    }
    for d in drafts:
        d["status"] = "draft"
    context = {
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        },
        "selections": [f"MedicationRequest/{d['id']}" for d in drafts],
    }
    return hook_request(hook, "p1", prefetch, context=context)


ORDER_SERVICES = [
    ("oud-order-select", "order-select"),
    ("oud-order-sign", "order-sign"),
    ("oud-order-safety", "order-select"),  # the unlisted alias serves either hook
    ("oud-order-safety", "order-sign"),
]


@pytest.mark.parametrize(("service", "hook"), ORDER_SERVICES)
def test_naltrexone_ordered_on_buprenorphine_is_critical(
    open_app: Flask, hooks: FlaskClient, service: str, hook: str
) -> None:
    at(open_app, "2025-06-15T12:00:00Z")
    draft = med(NALTREXONE_TABLET)
    body = post(
        hooks,
        f"/cds-services/{service}",
        _order_request(hook, [draft], condition(), med(BUP_NALOXONE_FILM, authored=day_ago(40))),
    ).get_json()
    assert_valid_response(body)
    critical = [c for c in body["cards"] if c["indicator"] == "critical"]
    assert critical and "Naltrexone" in critical[0]["summary"]
    removal = [s for s in critical[0]["suggestions"] if s["actions"][0]["type"] == "delete"]
    assert removal[0]["actions"][0]["resourceId"] == f"MedicationRequest/{draft['id']}"


def test_draft_buprenorphine_naloxone_is_moud_not_an_analgesic(
    open_app: Flask, hooks: FlaskClient
) -> None:
    at(open_app, "2025-06-15T12:00:00Z")
    body = post(
        hooks,
        "/cds-services/oud-order-sign",
        _order_request("order-sign", [med(BUP_NALOXONE_FILM)], condition()),
    ).get_json()
    codes = {c["summary"] for c in body["cards"]}
    assert not any("analgesic" in s for s in codes)
    assert any(
        c["indicator"] == "info" and "naloxone" in c["summary"].lower() for c in body["cards"]
    )
    assert_valid_response(body)


def test_opioid_with_benzodiazepine_warns_a_patient_without_oud(
    open_app: Flask, hooks: FlaskClient
) -> None:
    at(open_app, "2025-06-15T12:00:00Z")
    body = post(
        hooks,
        "/cds-services/oud-order-select",
        _order_request(
            "order-select", [med(OXYCODONE_TABLET)], med(ALPRAZOLAM_TABLET, authored=day_ago(20))
        ),
    ).get_json()
    (card,) = body["cards"]
    assert card["indicator"] == "warning"
    assert "benzodiazepine" in card["summary"].lower()
    assert "stop MOUD" not in card["detail"].replace("Do not stop MOUD", "")
    assert card["extension"]["io.github.oud-pathway.assessment"]["phase"] == "not-applicable"
    assert_valid_response(body)


def test_opioid_analgesic_for_oud_warns(open_app: Flask, hooks: FlaskClient) -> None:
    at(open_app, "2025-06-15T12:00:00Z")
    body = post(
        hooks,
        "/cds-services/oud-order-sign",
        _order_request("order-sign", [med(OXYCODONE_TABLET)], condition()),
    ).get_json()
    assert any("analgesic" in c["summary"] for c in body["cards"])


def test_harmless_draft_gives_no_card(open_app: Flask, hooks: FlaskClient) -> None:
    at(open_app, "2025-06-15T12:00:00Z")
    body = post(
        hooks,
        "/cds-services/oud-order-sign",
        _order_request("order-sign", [med("197361")], condition("I10")),
    ).get_json()  # amlodipine
    assert body == {"cards": []}


def test_alias_answers_as_the_listed_service_of_the_hook(
    open_app: Flask, hooks: FlaskClient
) -> None:
    """EHRs configured with the 0.1 id keep working: the same cards as the listed service."""
    at(open_app, "2025-06-15T12:00:00Z")
    for hook in ("order-select", "order-sign"):
        drafts = [med(NALTREXONE_TABLET)]
        request = _order_request(
            hook, drafts, condition(), med(BUP_NALOXONE_FILM, authored=day_ago(40))
        )
        listed = post(hooks, f"/cds-services/oud-{hook}", request).get_json()
        alias = post(hooks, "/cds-services/oud-order-safety", request).get_json()
        assert listed["cards"]
        assert [(c["summary"], c["indicator"]) for c in alias["cards"]] == [
            (c["summary"], c["indicator"]) for c in listed["cards"]
        ]


@pytest.mark.parametrize(
    ("service", "hook", "names"),
    [
        ("oud-order-sign", "order-select", "/cds-services/oud-order-select"),
        ("oud-order-select", "order-sign", "/cds-services/oud-order-sign"),
        ("oud-order-sign", "patient-view", "/cds-services/oud-pathway"),
        ("oud-pathway", "order-select", "/cds-services/oud-order-select"),
        ("oud-order-safety", "patient-view", "/cds-services/oud-pathway"),
        # a hook name carries its major version (CDS Hooks "Hook Version"): another hook
        ("oud-order-sign", "order-sign-2", "patient-view, order-select, order-sign"),
        ("oud-order-sign", "Order-Sign", "patient-view, order-select, order-sign"),
        ("oud-order-select", "medication-prescribe", "patient-view, order-select, order-sign"),
    ],
)
def test_a_hook_the_service_does_not_answer_is_refused_clearly(
    hooks: FlaskClient, service: str, hook: str, names: str
) -> None:
    context = {"draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": []}}
    resp = post(hooks, f"/cds-services/{service}", hook_request(hook, "p1", {}, context=context))
    known = hook in ("patient-view", "order-select", "order-sign")
    # a hook this server knows is named back; any other text the caller sent is not (issue 10)
    outcome(resp, 400, service, f"not '{hook}'" if known else "not this one", names)
    issue = resp.get_json()["issue"][0]
    assert known or hook not in issue["diagnostics"]
    assert issue["code"] == "not-supported" and issue["expression"] == ["hook"]


def test_an_order_select_without_selections_is_served(open_app: Flask, hooks: FlaskClient) -> None:
    """order-select's `selections` is REQUIRED in CDS Hooks 2.0 but absent from some 1.x clients:
    tolerated (every draft order is checked)."""
    at(open_app, "2025-06-15T12:00:00Z")
    request = _order_request(
        "order-select",
        [med(NALTREXONE_TABLET)],
        condition(),
        med(BUP_NALOXONE_FILM, authored=day_ago(40)),
    )
    del request["context"]["selections"]
    body = post(hooks, "/cds-services/oud-order-select", request).get_json()
    assert any(c["indicator"] == "critical" for c in body["cards"])


# ------------------------------------------------------------------ feedback


def test_feedback_is_stored_durably(open_app: Flask, hooks: FlaskClient) -> None:
    body = {
        "feedback": [
            {
                "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
                "outcomeTimestamp": "2025-06-15T12:00:00Z",
            },
            {
                "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "system": "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes",
                        "code": "patient-refuses",
                    },
                    "userComment": "declined today",
                },
                "outcomeTimestamp": "2025-06-15T12:01:00Z",
            },
        ]
    }
    resp = post(hooks, "/cds-services/oud-pathway/feedback", body)
    assert resp.status_code == 200
    rows = open_app.extensions["pathway"].store.feedback_rows()
    assert [(r["service_id"], r["outcome"]) for r in rows] == [
        ("oud-pathway", "accepted"),
        ("oud-pathway", "overridden"),
    ]
    assert "patient-refuses" in rows[1]["body"]


@pytest.mark.parametrize(
    "service", ["oud-pathway", "oud-order-select", "oud-order-sign", "oud-order-safety"]
)
def test_feedback_for_every_service_id(open_app: Flask, hooks: FlaskClient, service: str) -> None:
    body = {
        "feedback": [
            {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2025-06-15T12:00:00Z"}
        ]
    }
    assert post(hooks, f"/cds-services/{service}/feedback", body).status_code == 200
    rows = open_app.extensions["pathway"].store.feedback_rows()
    assert [r["service_id"] for r in rows] == [service]


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        {},
        {"feedback": []},
        {"feedback": [{"card": "x"}]},
        {"feedback": [{"card": "x", "outcome": "maybe", "outcomeTimestamp": "t"}]},
        {"feedback": [{"card": "x", "outcome": "accepted", "outcomeTimestamp": "t"}]},
    ],
)
def test_bad_feedback_is_400(hooks: FlaskClient, body: Any) -> None:
    assert post(hooks, "/cds-services/oud-pathway/feedback", body).status_code == 400


def test_feedback_for_unknown_service_is_404(hooks: FlaskClient) -> None:
    assert post(hooks, "/cds-services/nope/feedback", {"feedback": []}).status_code == 404


# ------------------------------------------------------------------ caller authentication

AUD = f"{PUBLIC}/cds-services/oud-pathway"


def _pv() -> dict[str, Any]:
    return empty_patient_view(patient())


def test_valid_es384_token(secure: FlaskClient, signer: Signer) -> None:
    assert post(secure, "/cds-services/oud-pathway", _pv(), signer.token(AUD)).status_code == 200


def test_valid_rs384_token_with_allow_listed_jku(secure: FlaskClient, rsa_signer: Signer) -> None:
    jku = "https://other-ehr.example.org/jwks.json"
    with responses.RequestsMock() as rsps:
        rsps.get(jku, json=rsa_signer.jwks)
        for _ in range(2):  # the key set is cached: fetched once
            token = rsa_signer.token(AUD, _headers={"jku": jku})
            assert post(secure, "/cds-services/oud-pathway", _pv(), token).status_code == 200
        assert len(rsps.calls) == 1


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda s: None, "Bearer"),
        (lambda s: s.token("https://cds.example.org/cds-services/other"), "aud"),
        (lambda s: s.token(AUD, exp=1_000_000_000, iat=999_999_000), "expired"),
        (lambda s: s.token(AUD, iat=4_000_000_000, exp=4_000_000_300), "iat in the future"),
        (lambda s: s.token(AUD, nbf=4_000_000_000), "not valid yet"),
        (lambda s: s.token(AUD, iss="https://unknown.example.org"), "issuer"),
        (lambda s: s.token(AUD, _headers={"kid": "other"}), "kid"),
        (lambda s: s.token(AUD, jti=None), "jti"),
        (lambda s: s.token(AUD, _headers={"jku": "https://attacker.example.net/jwks"}), "jku"),
        (lambda s: "not.a.jwt", "malformed"),
    ],
)
def test_bad_tokens_are_401(secure: FlaskClient, signer: Signer, make: Any, why: str) -> None:
    """Every refusal is the same generic 401; the reason is in the log, never the token."""
    token = make(signer)
    with pathway_log() as logged:
        resp = post(secure, "/cds-services/oud-pathway", _pv(), token)
    outcome(resp, 401)
    assert resp.get_json()["issue"][0]["diagnostics"] == UNAUTHENTICATED
    refusals = [m for m in logged if "caller refused" in m]
    assert len(refusals) == 1 and why.lower() in refusals[0].lower(), refusals
    if token:
        assert all(token not in m for m in logged)


def test_hmac_and_none_algorithms_are_refused(secure: FlaskClient, signer: Signer) -> None:
    import jwt as pyjwt

    claims = {"iss": signer.iss, "aud": AUD, "exp": 4_000_000_000, "iat": 1_700_000_000, "jti": "j"}
    hs = pyjwt.encode(
        claims,
        "a-shared-secret-that-is-long-enough-for-hs384-000",
        algorithm="HS384",
        headers={"kid": "k1"},
    )
    none = pyjwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})  # type: ignore[arg-type]
    for token in (hs, none):
        with pathway_log() as logged:
            resp = post(secure, "/cds-services/oud-pathway", _pv(), token)
        outcome(resp, 401, UNAUTHENTICATED)
        assert any("algorithm" in m for m in logged), logged


def test_replayed_jti_is_refused(secure: FlaskClient, signer: Signer) -> None:
    token = signer.token(AUD)
    assert post(secure, "/cds-services/oud-pathway", _pv(), token).status_code == 200
    with pathway_log() as logged:
        outcome(post(secure, "/cds-services/oud-pathway", _pv(), token), 401, UNAUTHENTICATED)
    assert any("jti already used" in m for m in logged), logged


@pytest.mark.parametrize(
    ("service", "hook"),
    [("oud-pathway", "patient-view"), *ORDER_SERVICES],
)
def test_every_service_url_takes_tokens_for_itself_only(
    secure_app: Flask, secure: FlaskClient, signer: Signer, service: str, hook: str
) -> None:
    """JWT `aud` is the exact endpoint URL called: each id's URL works, and a token for one
    service is refused at another."""
    at(secure_app, "2025-06-15T12:00:00Z")
    if hook == "patient-view":
        request = _pv()
    else:
        request = _order_request(hook, [med(NALTREXONE_TABLET)], condition())
    path = f"/cds-services/{service}"
    assert post(secure, path, request, signer.token(PUBLIC + path)).status_code == 200
    other = (
        "/cds-services/oud-order-sign"
        if service != "oud-order-sign"
        else "/cds-services/oud-pathway"
    )
    with pathway_log() as logged:  # the generic 401 (issue 10); the reason in the log
        outcome(post(secure, path, request, signer.token(PUBLIC + other)), 401, UNAUTHENTICATED)
    assert any("aud is not this endpoint" in m for m in logged), logged


def test_feedback_needs_a_caller_too(secure: FlaskClient, signer: Signer) -> None:
    body = {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "t"}]}
    assert post(secure, "/cds-services/oud-pathway/feedback", body).status_code == 401
    token = signer.token(f"{PUBLIC}/cds-services/oud-pathway/feedback")
    assert post(secure, "/cds-services/oud-pathway/feedback", body, token).status_code == 200


def test_discovery_is_public(secure: FlaskClient) -> None:
    assert secure.get("/cds-services").status_code == 200
    # CORS only for the origins configured (tests/api/test_cors.py): none here
    browser = secure.get("/cds-services", headers={"Origin": "https://ehr-ui.example.org"})
    assert "Access-Control-Allow-Origin" not in browser.headers


# ------------------------------------------------------------------ notifications (auth)


def test_notifications_need_the_shared_token(tmp_path: Path, config: LoadedConfig) -> None:
    settings = Settings.from_mapping(
        {
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'n.db'}",
            "PATHWAY_NOTIFICATION_TOKEN": "s3cret-notification-token",
        }
    )
    client = create_app({"settings": settings, "config": config}).test_client()
    assert client.post("/notifications", json={}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/notifications", json={}, headers=wrong).status_code == 401
    right = {"Authorization": "Bearer s3cret-notification-token"}
    resp = client.post("/notifications", data=b"", headers=right)
    assert resp.status_code == 200  # an empty ping: nothing to do
    resp = client.post("/notifications", json={"resourceType": "Observation"}, headers=right)
    assert resp.status_code == 409  # no FHIR server configured to act on it
    assert "PATHWAY_FHIR_BASE_URL" in resp.get_json()["issue"][0]["diagnostics"]


def test_notifications_refused_without_a_configured_token_when_auth_is_on(
    tmp_path: Path, config: LoadedConfig
) -> None:
    settings = Settings.from_mapping({"PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'n.db'}"})
    client = create_app({"settings": settings, "config": config}).test_client()
    resp = client.post(
        "/notifications",
        json={"resourceType": "Observation"},
        headers={"Authorization": "Bearer anything"},
    )
    assert resp.status_code == 401
    # the caller is not told how the service is configured (the log says it)
    assert "PATHWAY_NOTIFICATION_TOKEN" not in resp.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "pid", ["p1&_count=100000", "../Patient/x", "a b", "x" * 65, "p1\nHost: x", "..", "."]
)
def test_patient_id_must_be_a_fhir_id(hooks: FlaskClient, pid: str) -> None:
    outcome(
        post(hooks, "/cds-services/oud-pathway", hook_request("patient-view", pid, {})),
        400,
        "FHIR id",
    )
