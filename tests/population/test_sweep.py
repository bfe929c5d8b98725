"""`pathway sweep` against the loopback FHIR server (Medplum's in-memory repository).

Time passes between sweeps: a drug screen falls due, a suspected-OUD patient's positive screen
ages out of its window (the plan is revoked, its Tasks cancelled). A second sweep writes nothing;
a killed sweep resumes; a dry run writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from builders import BUP_NALOXONE_FILM, condition, med, patient, uds
from medplum_server import MedplumServer, server_available

from pathway.config import DEFAULT_PROFILES_DIR, LoadedConfig
from pathway.population.sweep import RateLimiter, Sweeper, SweepError, sweep
from pathway.service import Service
from pathway.settings import Settings

pytestmark = pytest.mark.integration
CANON = "https://oud-pathway.github.io/fhir"
T0 = datetime(2025, 6, 15, 12, tzinfo=UTC)
T1 = T0 + timedelta(days=15)


def day(n: int, at: datetime = T0) -> str:
    return (at - timedelta(days=n)).date().isoformat()


@pytest.fixture(scope="module")
def server() -> Iterator[MedplumServer]:
    why = server_available()
    if why:
        pytest.fail(f"the loopback FHIR server cannot start: {why}")
    with MedplumServer(DEFAULT_PROFILES_DIR) as s:
        yield s


@pytest.fixture
def fhir(server: MedplumServer) -> MedplumServer:
    server.reset()
    seed(
        server,
        # a: on buprenorphine 60 days, last screen 20 days before T0 (due again at T1)
        patient("a"),
        condition(pid="a", recorded="2024-01-10"),
        med(BUP_NALOXONE_FILM, "active", authored=day(60), pid="a"),
        uds("58379-9", "neg", day(20), pid="a"),
        # b: OUD, untreated
        patient("b", gender="female"),
        condition(pid="b", recorded="2024-03-01"),
        # c: suspected OUD from a fentanyl-positive screen 25 days before T0 (gone by T1)
        patient("c"),
        uds("58379-9", "POS", day(25), pid="c"),
        # d: not in the pathway
        patient("d"),
        {
            "resourceType": "Group",
            "id": "clinic",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{p}"}} for p in "abcd"],
        },
    )
    return server


def seed(fhir: MedplumServer, *resources: dict[str, Any]) -> None:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources
    ]
    r = requests.post(
        fhir.base,
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def search(fhir: MedplumServer, query: str) -> list[dict[str, Any]]:
    b = requests.get(f"{fhir.base}/{query}", timeout=10).json()
    return [e["resource"] for e in b.get("entry", [])]


def state(fhir: MedplumServer) -> dict[str, Any]:
    """Every CarePlan and Task of ours: status and version, by id."""
    out = {}
    for r in search(fhir, f"CarePlan?identifier={CANON}/careplan|&_count=100") + search(
        fhir, f"Task?identifier={CANON}/task|&_count=200"
    ):
        out[f"{r['resourceType']}/{r['id']}"] = (r["status"], r["meta"]["versionId"])
    return out


def open_tasks(fhir: MedplumServer, pid: str) -> set[str]:
    return {
        t["code"]["coding"][0]["code"]
        for t in search(fhir, f"Task?identifier={CANON}/task|&patient={pid}&_count=100")
        if t["status"] == "requested"
    }


@pytest.fixture
def settings(tmp_path: Path, fhir: MedplumServer) -> Settings:
    return Settings.from_mapping(
        {
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
            "PATHWAY_FHIR_ALLOWLIST": fhir.base,
            "PATHWAY_WRITEBACK": "direct",
        }
    )


@pytest.fixture
def svc(settings: Settings, config: LoadedConfig) -> Service:
    return Service(settings, config)


def no_wait() -> RateLimiter:
    return RateLimiter(0)


def test_sweeps_as_time_passes(fhir: MedplumServer, settings: Settings, svc: Service):
    # Enrol the clinic's Group: plans for the three in the pathway, none for d.
    first = sweep(settings, fhir.base, "clinic", T0, False, svc=svc, limiter=no_wait())
    assert (first.patients, first.changed, first.unchanged, first.failed) == (4, 3, 1, 0)
    plans = {p["identifier"][0]["value"]: p for p in search(fhir, "CarePlan")}
    assert set(plans) == {"a", "b", "c"}
    assert "collect-uds" not in open_tasks(fhir, "a")

    # The same T again, every enrolled patient (found by our CarePlan identifier): nothing.
    before = state(fhir)
    again = sweep(settings, fhir.base, None, T0, False, svc=svc, limiter=no_wait())
    assert (again.patients, again.changed, again.unchanged) == (3, 0, 3)
    assert state(fhir) == before  # no new version of anything

    # 15 days later, a dry run first: it sees the changes and writes none.
    outbox = len(svc.store.outbox_rows())
    dry = sweep(settings, fhir.base, None, T1, True, svc=svc, limiter=no_wait())
    assert (dry.changed, dry.unchanged) == (2, 1)
    assert state(fhir) == before and len(svc.store.outbox_rows()) == outbox

    later = sweep(settings, fhir.base, None, T1, False, svc=svc, limiter=no_wait())
    assert (later.patients, later.changed, later.unchanged, later.failed) == (3, 2, 1, 0)
    # a: the screen of 35 days ago no longer covers maintenance's 30 days: the Task is due
    assert "collect-uds" in open_tasks(fhir, "a")
    # c: the positive screen is 40 days old: no longer suspected OUD, the plan revoked and
    # its open Tasks cancelled
    (plan_c,) = search(fhir, f"CarePlan?identifier={CANON}/careplan|c")
    assert plan_c["status"] == "revoked"
    assert open_tasks(fhir, "c") == set()
    # b did not change: the same versions as before
    after = state(fhir)
    assert {k: v for k, v in after.items() if k in before and plans["b"]["id"] in k} == {
        k: v for k, v in before.items() if plans["b"]["id"] in k
    }

    # And a second sweep at T1 writes nothing (c is no longer enrolled: its plan is revoked).
    final = sweep(settings, fhir.base, None, T1, False, svc=svc, limiter=no_wait())
    assert (final.patients, final.changed, final.unchanged) == (2, 0, 2)
    assert state(fhir) == after


def test_a_killed_sweep_resumes_where_it_stopped(
    fhir: MedplumServer, settings: Settings, svc: Service, monkeypatch: pytest.MonkeyPatch
):
    real = Sweeper.one
    seen: list[str] = []

    def dies_on_the_third(self: Sweeper, client: Any, pid: str) -> bool:
        seen.append(pid)
        if len(seen) == 3:
            raise KeyboardInterrupt  # a kill, mid-sweep
        return real(self, client, pid)

    monkeypatch.setattr(Sweeper, "one", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        sweep(settings, fhir.base, "clinic", T0, False, svc=svc, limiter=no_wait())
    monkeypatch.setattr(Sweeper, "one", real)
    # run again without --as-of: the interrupted sweep's T is kept, a and b are not redone
    resumed = sweep(
        settings, fhir.base, "clinic", None, False, svc=svc, limiter=no_wait(), now=lambda: T1
    )
    assert resumed.resumed == 2
    assert (resumed.changed, resumed.unchanged) == (1, 1)  # c planned (as of T0), d not
    (plan_c,) = search(fhir, f"CarePlan?identifier={CANON}/careplan|c")
    assert plan_c["status"] == "active"  # evaluated as of T0, not T1
    # finished: the journal is gone, the next sweep starts afresh
    fresh = sweep(settings, fhir.base, "clinic", T0, False, svc=svc, limiter=no_wait())
    assert fresh.resumed == 0 and fresh.changed == 0


def test_refuses_a_server_off_the_allowlist(settings: Settings, svc: Service):
    with pytest.raises(SweepError, match="ALLOWLIST"):
        sweep(settings, "https://ehr.example.org/fhir", None, T0, True, svc=svc)


def test_cli(fhir: MedplumServer, settings: Settings, monkeypatch, capsys, tmp_path: Path):
    from pathway.cli import main

    monkeypatch.setenv("PATHWAY_AUTH_MODE", "off")
    monkeypatch.setenv("PATHWAY_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("PATHWAY_FHIR_ALLOWLIST", fhir.base)
    monkeypatch.setenv("PATHWAY_WRITEBACK", "direct")
    monkeypatch.setenv("PATHWAY_SWEEP_RATE", "0")
    argv = [
        "sweep",
        "--fhir-base",
        fhir.base,
        "--group",
        "clinic",
        "--as-of",
        "2025-06-15T12:00:00Z",
    ]
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "patients: 4, would change: 3, unchanged: 1, failed: 0" in out
    assert "dry run" in out
    assert main(argv) == 0
    assert "patients: 4, changed: 3, unchanged: 1, failed: 0" in capsys.readouterr().out
    assert main(argv) == 0
    assert "changed: 0, unchanged: 4" in capsys.readouterr().out
    assert main(["sweep", "--fhir-base", "https://elsewhere.example.org/fhir"]) == 2


def test_rate_limiter_paces_patients():
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(9):
        limiter.wait()
    assert now[0] == pytest.approx(2.0)  # 9 patients at 4 a second: 8 intervals of 0.25 s
    assert all(s == pytest.approx(0.25) for s in slept)


def test_population_write_back_makes_the_same_changes_as_a_sweep(
    fhir: MedplumServer, settings: Settings, svc: Service, tmp_path: Path, monkeypatch, capsys
):
    """The population run (from an export of the same server) queues the plans a sweep would
    make; a sweep right after finds nothing to change."""
    import orjson

    from pathway.cli import main

    export = tmp_path / "export"
    export.mkdir()
    by_type: dict[str, list[bytes]] = {}
    for rtype in ("Patient", "Condition", "MedicationRequest", "Observation"):
        for r in search(fhir, f"{rtype}?_count=100"):
            by_type.setdefault(rtype, []).append(orjson.dumps(r))
    for rtype, lines in by_type.items():
        (export / f"{rtype}.ndjson").write_bytes(b"".join(x + b"\n" for x in lines))
    for k, v in {
        "PATHWAY_AUTH_MODE": "off",
        "PATHWAY_DATABASE_URL": settings.database_url,
        "PATHWAY_FHIR_ALLOWLIST": fhir.base,
        "PATHWAY_WRITEBACK": "direct",
        "PATHWAY_SWEEP_RATE": "0",
    }.items():
        monkeypatch.setenv(k, v)
    argv = [
        "population",
        "--ndjson",
        str(export),
        "--out",
        str(tmp_path / "out"),
        "--workers",
        "1",
        "--as-of",
        "2025-06-15T12:00:00Z",
        "--write-back",
        "--fhir-base",
        fhir.base,
    ]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "write-back: patients: 3, changed: 3, unchanged: 0, failed: 0" in said
    plans = {p["identifier"][0]["value"] for p in search(fhir, "CarePlan")}
    assert plans == {"a", "b", "c"}
    after = sweep(settings, fhir.base, "clinic", T0, False, svc=svc, limiter=no_wait())
    assert (after.changed, after.unchanged) == (0, 4)
