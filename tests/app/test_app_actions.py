"""Acting from the app, in the browser, against the loopback FHIR server through the test EHR:
the draft naloxone order, saving the care plan (idempotent), marking a Task done; each with the
clinician as a Provenance agent and an audit row; offered only when the token allows the write;
refused without the CSRF token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import requests
from sqlalchemy import select

from app.conftest import check_state, wait_main
from app.ehr import ALL_SCOPES, FakeEhr
from app.harness import SCENARIOS, ServiceServer, parse_time, prefixed, seed
from pathway.store.db import audit

pytestmark = pytest.mark.browser
CANON = "https://oud-pathway.github.io/fhir"
CLINICIAN = "Practitioner/dr-1"


def search(ehr: FakeEhr, query: str) -> list[dict[str, Any]]:
    r = requests.get(f"{ehr.fhir_upstream}/{query}", timeout=30)
    assert r.status_code == 200, r.text
    return [
        e["resource"]
        for e in r.json().get("entry", [])
        if e.get("search", {}).get("mode", "match") == "match"
    ]


def provenances_by(ehr: FakeEhr, target: str) -> list[dict[str, Any]]:
    found = []
    for p in search(ehr, "Provenance?_count=1000"):
        targets = {t["reference"].split("/_history")[0] for t in p["target"]}
        if target in targets:
            found.append(p)
    return found


def actions_of(svc: Any) -> list[str]:
    svc.store.flush_audit()
    with svc.store.engine.begin() as c:
        return [r.action for r in c.execute(select(audit.c.action)).all()]


_SEEN: list[int] = []


@pytest.fixture
def rtu_patient(service: ServiceServer, fresh_ehr: FakeEhr) -> Any:
    """A fresh copy of a return-to-use patient (ids of its own) for each test."""
    _SEEN.append(1)
    prefix = f"act{len(_SEEN)}-"
    case = orjson.loads((SCENARIOS / "bup-day45-fentanyl-return-to-use.json").read_bytes())
    resources = prefixed([e["resource"] for e in case["bundle"]["entry"]], prefix)
    seed(fresh_ehr.fhir_upstream, resources)
    as_of = parse_time(case["asOf"])
    service.svc.clock = lambda: as_of
    yield f"{prefix}p1", as_of
    service.svc.clock = lambda: datetime.now(UTC)


def open_app(page: Any, service: ServiceServer, ehr: FakeEhr, patient: str) -> None:
    launch = ehr.new_launch(patient)
    page.goto(f"{service.origin}/app/launch?iss={quote(ehr.iss, safe='')}&launch={launch}")
    wait_main(page)


def test_order_naloxone_save_plan_and_mark_a_task_done(
    page: Any, service: ServiceServer, fresh_ehr: FakeEhr, rtu_patient: Any
) -> None:
    pid, as_of = rtu_patient
    open_app(page, service, fresh_ehr, pid)
    assert (
        page.locator('[data-medication="naloxone"]').get_attribute("data-status") == "recommended"
    )
    assert page.locator("[data-action=task-done]").count() == 0  # nothing saved yet

    # 1. the draft naloxone order, once per patient and day
    page.click("[data-action=order-naloxone]")
    wait_main(page)
    assert "draft naloxone order was created" in page.inner_text(".notice")
    check_state(page, "action-naloxone-ordered")
    ident = f"{CANON}/naloxone-order|{pid}:{as_of.date().isoformat()}"
    orders = search(fresh_ehr, f"MedicationRequest?identifier={ident}")
    assert len(orders) == 1
    mr = orders[0]
    assert mr["status"] == "draft" and mr["intent"] == "order"
    assert mr["subject"]["reference"] == f"Patient/{pid}"
    assert mr["requester"]["reference"] == CLINICIAN
    prov = provenances_by(fresh_ehr, f"MedicationRequest/{mr['id']}")
    assert len(prov) == 1
    agents = {a["who"]["reference"] for a in prov[0]["agent"]}
    assert agents == {CLINICIAN, "Device/oud-pathway-service"}
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    again = page.request.post(
        f"{service.origin}/app/actions/naloxone",
        form={"csrf": csrf},
        headers={"Origin": service.origin},
    )
    assert again.ok
    assert "already exists" in again.text() or "not suggested" in again.text()
    assert len(search(fresh_ehr, f"MedicationRequest?identifier={ident}")) == 1

    # 2. save the care plan and its tasks; saving again writes nothing
    page.goto(f"{service.origin}/app/")
    page.click("[data-action=save-careplan]")
    wait_main(page)
    assert "care plan was saved" in page.inner_text(".notice")
    plans = search(fresh_ehr, f"CarePlan?identifier={CANON}/careplan|{pid}")
    assert len(plans) == 1
    tasks = search(fresh_ehr, f"Task?patient={pid}")
    assert tasks and all(t["status"] == "requested" for t in tasks)
    prov = provenances_by(fresh_ehr, f"CarePlan/{plans[0]['id']}")
    assert any(a["who"].get("reference") == CLINICIAN for p in prov for a in p["agent"]), (
        "the clinician is an agent of the save"
    )
    versions = plans[0]["meta"]["versionId"]
    page.click("[data-action=save-careplan]")
    wait_main(page)
    assert "already up to date" in page.inner_text(".notice")
    plan_now = search(fresh_ehr, f"CarePlan?identifier={CANON}/careplan|{pid}")[0]
    assert plan_now["meta"]["versionId"] == versions
    statuses = page.eval_on_selector_all("[data-task]", "els => els.map(e => e.cells[2].innerText)")
    assert statuses and all(s == "requested" for s in statuses)
    check_state(page, "action-plan-saved")

    # 3. mark one task done
    # (not prescribe-naloxone: the rules plan it again while no naloxone is on file)
    row = (
        page.locator("[data-task]:not([data-task=prescribe-naloxone])")
        .filter(has=page.locator("[data-action=task-done]"))
        .first
    )
    code = row.get_attribute("data-task")
    title = row.locator("th").inner_text()
    row.locator("[data-action=task-done]").click()
    wait_main(page)
    assert "marked done" in page.inner_text(".notice")
    done = [
        t
        for t in search(fresh_ehr, f"Task?patient={pid}")
        if t["code"]["coding"][0]["code"] == code
    ]
    assert [t["status"] for t in done] == ["completed"]
    assert provenances_by(fresh_ehr, f"Task/{done[0]['id']}")
    assert page.locator(f'[data-task="{code}"]').count() == 0
    assert title.split(" (")[0] in page.inner_text("ul.done")
    check_state(page, "action-task-done")

    acted = actions_of(service.svc)
    for a in ("app-launch", "app-order-naloxone", "app-save-plan", "app-task-done"):
        assert a in acted


def test_post_without_csrf_token_or_from_another_origin_is_refused(
    page: Any, service: ServiceServer, fresh_ehr: FakeEhr, rtu_patient: Any
) -> None:
    pid, _ = rtu_patient
    open_app(page, service, fresh_ehr, pid)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    r = page.request.post(
        f"{service.origin}/app/actions/careplan",
        form={"csrf": "forged"},
        headers={"Origin": service.origin},
    )
    assert r.status == 403
    r = page.request.post(
        f"{service.origin}/app/actions/careplan",
        form={"csrf": csrf},
        headers={"Origin": "https://attacker.example"},
    )
    assert r.status == 403
    r = page.request.post(
        f"{service.origin}/app/actions/tasks/..%2Fx/done",
        form={"csrf": csrf},
        headers={"Origin": service.origin},
    )
    assert r.status in (400, 404)
    assert search(fresh_ehr, f"CarePlan?identifier={CANON}/careplan|{pid}") == []


def test_actions_are_offered_only_when_the_token_allows_the_write(
    page: Any, service: ServiceServer, fresh_ehr: FakeEhr, rtu_patient: Any
) -> None:
    pid, _ = rtu_patient
    fresh_ehr.grantable = "launch openid fhirUser patient/*.rs"
    open_app(page, service, fresh_ehr, pid)
    assert page.locator("section.actions").count() == 0
    assert page.locator("[data-action]").count() == 0
    check_state(page, "read-only-access")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    r = page.request.post(
        f"{service.origin}/app/actions/naloxone",
        form={"csrf": csrf},
        headers={"Origin": service.origin},
    )
    assert r.status == 403
    assert "does not allow" in r.text()
    fresh_ehr.grantable = ALL_SCOPES
