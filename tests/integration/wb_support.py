"""Shared helpers of the write-back integration tests: apps against a loopback Medplum server,
seeding, reading back what the service wrote, and checking it against our profiles."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import requests
from flask import Flask
from medplum_server import MedplumServer

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.fhir.client import FhirClient
from pathway.fhir.profiles import load_profiles, validate_by_meta
from pathway.service import Service
from pathway.settings import Settings

CANON = "https://oud-pathway.github.io/fhir"
SCENARIOS = Path(__file__).parent.parent / "data" / "scenarios"
PROFILES = load_profiles()


def settings(tmp_path: Path, base: str, **extra: str) -> Settings:
    return Settings.from_mapping(
        {
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
            "PATHWAY_FHIR_ALLOWLIST": base,
            "PATHWAY_FHIR_BASE_URL": base,
            "PATHWAY_WRITEBACK": "direct",
            "PATHWAY_HTTP_TIMEOUT_SECONDS": "5",
            **extra,
        }
    )


def make_app(tmp_path: Path, config: LoadedConfig, base: str, **extra: str) -> Flask:
    application = create_app(
        {"settings": settings(tmp_path, base, **extra), "config": config, "START_OUTBOX": False}
    )
    svc_of(application).writeback.sleep = lambda _s: None  # client retries without waiting
    return application


def svc_of(app: Flask) -> Service:
    service: Service = app.extensions["pathway"]
    return service


def scenario(name: str) -> dict[str, Any]:
    case: dict[str, Any] = orjson.loads((SCENARIOS / f"{name}.json").read_bytes())
    return case


def seed(fhir: MedplumServer, *resources: dict[str, Any]) -> None:
    """PUT each resource with its id (single requests: every server profile takes them)."""
    with requests.Session() as s:
        for r in resources:
            resp = s.put(f"{fhir.base}/{r['resourceType']}/{r['id']}", json=r, timeout=30)
            assert resp.status_code in (200, 201), resp.text


def seed_case(fhir: MedplumServer, name: str) -> datetime:
    case = scenario(name)
    seed(fhir, *(e["resource"] for e in case["bundle"]["entry"]))
    return datetime.fromisoformat(case["asOf"].replace("Z", "+00:00"))


def hook(app: Flask, fhir: MedplumServer, when: datetime, drain: bool = True) -> dict[str, Any]:
    svc_of(app).clock = lambda: when
    resp = app.test_client().post(
        "/cds-services/oud-pathway",
        json={
            "hook": "patient-view",
            "hookInstance": "i",
            "fhirServer": fhir.base,
            "context": {"patientId": "p1", "userId": "Practitioner/x"},
        },
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    if drain:
        svc_of(app).writeback.drain()
    body: dict[str, Any] = resp.get_json()
    return body


def search(fhir: MedplumServer, query: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    url: str | None = f"{fhir.base}/{query}"
    while url:
        b = requests.get(url, timeout=10).json()
        out.extend(e["resource"] for e in b.get("entry", []))
        url = next((lk["url"] for lk in b.get("link", []) if lk["relation"] == "next"), None)
    return out


def ours(fhir: MedplumServer, pid: str = "p1") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    plans = search(fhir, f"CarePlan?identifier={CANON}/careplan|{pid}")
    tasks = search(fhir, f"Task?identifier={CANON}/task|&patient={pid}")
    return plans, tasks


def open_codes(tasks: list[dict[str, Any]]) -> set[str]:
    return {t["code"]["coding"][0]["code"] for t in tasks if t["status"] == "requested"}


def versions(fhir: MedplumServer, resources: list[dict[str, Any]]) -> dict[str, int]:
    return {
        f"{r['resourceType']}/{r['id']}": fhir.versions(r["resourceType"], r["id"])
        for r in resources
    }


def assert_valid(*resources: dict[str, Any]) -> None:
    """What the service wrote, read back, meets our profiles' FHIRPath constraints (the server
    does not check them: real servers do not know our profiles)."""
    for r in resources:
        assert validate_by_meta(r, PROFILES) == [], (r["resourceType"], r.get("id"))


def assert_consistent(fhir: MedplumServer, pid: str = "p1") -> None:
    """One CarePlan of ours, valid; its activities reference exactly its open Tasks; every Task
    is valid and based on it; one open Task per code."""
    plans, tasks = ours(fhir, pid)
    assert len(plans) == 1, [p["id"] for p in plans]
    plan = plans[0]
    assert_valid(plan, *tasks)
    open_tasks = [t for t in tasks if t["status"] == "requested"]
    codes = [t["code"]["coding"][0]["code"] for t in open_tasks]
    assert len(codes) == len(set(codes)), "one open Task per code"
    refs = {a["reference"]["reference"] for a in plan.get("activity", []) if "reference" in a}
    if plan["status"] == "active":
        assert refs == {f"Task/{t['id']}" for t in open_tasks}
    for t in tasks:
        assert t["basedOn"][0]["reference"] == f"CarePlan/{plan['id']}"


class Sent(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def if_matches(sent: list[Sent]) -> list[str | None]:
    """The If-Match of every update sent, alone or in a transaction (None: without)."""
    out: list[str | None] = [s.headers.get("If-Match") for s in sent if s.method == "PUT"]
    for s in sent:
        if s.method == "POST" and s.path == "" and isinstance(s.body, dict):
            for e in s.body.get("entry", []):
                if e["request"]["method"] == "PUT":
                    out.append(e["request"].get("ifMatch"))
    return out


@contextmanager
def recording() -> Iterator[list[Sent]]:
    """Every request the service's FHIR client sends."""
    sent: list[Sent] = []
    original = FhirClient.request

    def record(self: FhirClient, method: str, path: str, *a: Any, **kw: Any) -> Any:
        body = kw.get("body", a[0] if a else None)
        sent.append(Sent(method, path, dict(kw.get("headers") or {}), body))
        return original(self, method, path, *a, **kw)

    FhirClient.request = record  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        FhirClient.request = original  # type: ignore[method-assign]
