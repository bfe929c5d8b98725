"""Write-back on servers that behave like real EHRs: the current Medplum router configured to
offer no transactions, no conditional create (If-None-Exist ignored, or refused), no If-Match,
or read-only CarePlan and Task (as Epic and Oracle Health today). On each: the first write, the
same data again (nothing written), changed data (an update, obsolete Tasks cancelled), and for
the fallbacks the DocumentReference or the systemActions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from builders import iso, stage, uds
from medplum_server import MedplumServer
from wb_support import (
    CANON,
    assert_consistent,
    hook,
    if_matches,
    make_app,
    open_codes,
    ours,
    recording,
    search,
    seed,
    seed_case,
    svc_of,
    versions,
)

from pathway.config import LoadedConfig

pytestmark = pytest.mark.integration

WRITABLE = (
    "medplum",
    "no-transaction",
    "no-conditional-create",
    "conditional-create-refused",
    "no-if-match",
)


@pytest.fixture(scope="module", params=WRITABLE)
def server(request: pytest.FixtureRequest) -> Iterator[MedplumServer]:
    with MedplumServer(profile=request.param) as s:
        yield s


@pytest.fixture
def fhir(server: MedplumServer) -> MedplumServer:
    server.reset()
    return server


def test_write_again_and_change(tmp_path: Path, config: LoadedConfig, fhir: MedplumServer) -> None:
    app = make_app(tmp_path, config, fhir.base)
    when = seed_case(fhir, "oud-dx-no-moud")
    with recording() as sent:
        hook(app, fhir, when)
    assert_consistent(fhir)
    plans, tasks = ours(fhir)
    assert "assess-readiness" in open_codes(tasks)
    assert fhir.count("Provenance") >= 1
    if fhir.profile in ("no-conditional-create", "conditional-create-refused"):
        # The CapabilityStatement says no conditional create: search, then create.
        assert not any("If-None-Exist" in s.headers for s in sent)
    if fhir.profile == "no-transaction":
        assert not any(s.method == "POST" and s.path == "" for s in sent)

    # The same data again: nothing is written.
    before_writes = fhir.writes()
    before = versions(fhir, plans + tasks)
    hook(app, fhir, when + timedelta(minutes=5))
    assert fhir.writes() == before_writes
    assert versions(fhir, [*ours(fhir)[0], *ours(fhir)[1]]) == before

    # Changed data: one update of the plan, obsolete Tasks cancelled, new ones created.
    new = [
        stage("action", iso(when - timedelta(days=1))),
        uds("19295-5", "neg", iso(when - timedelta(days=1))),
    ]
    for i, r in enumerate(new):
        r["id"] = f"new-{i}"
    seed(fhir, *new)
    with recording() as sent:
        hook(app, fhir, when + timedelta(hours=1))
    assert_consistent(fhir)
    (plan,), tasks2 = ours(fhir)
    cancelled = {t["code"]["coding"][0]["code"] for t in tasks2 if t["status"] == "cancelled"}
    assert "assess-readiness" in cancelled
    assert "cbt" in open_codes(tasks2)
    matches = if_matches(sent)
    assert matches, "obsolete Tasks are updated (cancelled)"
    if fhir.profile == "no-if-match":
        assert matches == [None] * len(matches)  # the server does not offer it
    else:
        assert all((m or "").startswith('W/"') for m in matches)
    # ... and again: nothing more.
    writes = fhir.writes()
    hook(app, fhir, when + timedelta(hours=2))
    assert fhir.writes() == writes
    assert plan["id"] == ours(fhir)[0][0]["id"]


def test_eight_concurrent_hooks_make_one_careplan(
    tmp_path: Path, config: LoadedConfig, fhir: MedplumServer
) -> None:
    app = make_app(tmp_path, config, fhir.base)
    when = seed_case(fhir, "bup-day10-stabilization")
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def view() -> None:
        try:
            barrier.wait(10)
            hook(app, fhir, when, drain=False)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=view) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    svc_of(app).writeback.drain()
    svc_of(app).writeback.run()  # whatever waited for the patient's lock
    assert not errors
    assert_consistent(fhir)
    assert fhir.count("CarePlan") == 1


# ------------------------------------------------------------------ read-only CarePlan/Task


@pytest.fixture(scope="module")
def read_only() -> Iterator[MedplumServer]:
    with MedplumServer(profile="read-only-careplan") as s:
        yield s


def test_read_only_server_gets_a_document_reference(
    tmp_path: Path, config: LoadedConfig, read_only: MedplumServer
) -> None:
    read_only.reset()
    app = make_app(tmp_path, config, read_only.base)
    when = seed_case(read_only, "oud-dx-no-moud")
    hook(app, read_only, when)
    assert read_only.count("CarePlan") == 0 and read_only.count("Task") == 0
    docs = search(read_only, f"DocumentReference?identifier={CANON}/careplan-document|p1")
    assert len(docs) == 1
    assert docs[0]["content"][0]["attachment"]["contentType"] == "text/html"
    writes = read_only.writes()
    hook(app, read_only, when + timedelta(minutes=1))
    assert read_only.writes() == writes  # unchanged: nothing written
    assert {r["status"] for r in svc_of(app).store.outbox_list()} == {"done"}
    assert (
        'pathway_writeback_total{outcome="fallback-document-reference"} 1.0'
        in svc_of(app).metrics.render().decode()
    )


def test_read_only_server_with_system_actions_fallback(
    tmp_path: Path, config: LoadedConfig, read_only: MedplumServer
) -> None:
    read_only.reset()
    app = make_app(tmp_path, config, read_only.base, PATHWAY_WRITEBACK_FALLBACK="system-actions")
    when = seed_case(read_only, "oud-dx-no-moud")
    seeded = read_only.writes()
    body = hook(app, read_only, when)
    kinds = [a["resource"]["resourceType"] for a in body["systemActions"]]
    assert kinds[0] == "CarePlan" and set(kinds[1:]) == {"Task"}
    assert read_only.count("DocumentReference") == 0
    assert read_only.writes() == seeded
    assert svc_of(app).store.outbox_list() == []  # nothing queued: the EHR applies them
    assert (
        'pathway_writeback_total{outcome="fallback-system-actions"} 1.0'
        in svc_of(app).metrics.render().decode()
    )
    # Without a hook to carry them (a notification, a sweep), the entry is dead at once and
    # says why.
    svc = svc_of(app)
    svc.clock = lambda: when
    outcome = svc.writeback.write_now(
        read_only.base, svc.desired_state(svc.evaluate_from_server("p1"))
    )
    assert not outcome.ok
    (row,) = svc.store.outbox_list("dead")
    assert row["error_interaction"] == "capabilities: CarePlan/Task read-only"
