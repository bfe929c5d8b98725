"""Public FHIR data nobody here wrote (tests/data/external; see its README for the traps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from pathway.evaluation import Evaluator
from pathway.fhir.bundle import flatten

EXTERNAL = Path(__file__).parent / "data" / "external"
SYNTHEA = sorted((EXTERNAL / "synthea-smart-r4").glob("*.json"))
CDC_REQUESTS = sorted((EXTERNAL / "opioid-cds-r4" / "requests").rglob("*.json"))
CDC_RAW = sorted((EXTERNAL / "opioid-cds-r4" / "requests-upstream-raw").rglob("*.json"))
HL7 = sorted((EXTERNAL / "hl7-cdc-opioid-cpg" / "examples").glob("*.json"))
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)

OPIOID_ABUSE = {"Darron_Feeney", "Gilberto_Orosco", "Sherman_McGlynn", "Virginia_Mercado"}
ANALGESICS_ONLY = {"Chet_Thompson", "Rudolf_Weber"}


def _load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def data_date(doc: Any) -> datetime:
    """The CDC data are written relative to their dataDateRoller `dateLastUpdated`: that date is
    the data's "today", so it is the as_of to evaluate them at (end of that day, UTC)."""
    dates: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if x.get("url") == "dateLastUpdated" and isinstance(x.get("valueDateTime"), str):
                dates.append(x["valueDateTime"][:10])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc)
    day = max(dates) if dates else "2026-11-22"
    return datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=23, minutes=59)


@pytest.mark.parametrize("path", SYNTHEA, ids=[p.stem.rsplit("_", 1)[0] for p in SYNTHEA])
def test_synthea_patients(path: Path, evaluator: Evaluator) -> None:
    ev = evaluator.evaluate(_load(path), NOW)
    name = path.stem.rsplit("_", 1)[0]
    if name in OPIOID_ABUSE:
        assert ev.decision.phase == "assessment"
        assert ev.decision.oud_evidence
        assert "discuss-moud-options" in ev.decision.task_codes
        bundle = evaluator.apply_bundle(ev)
        assert bundle["entry"][0]["resource"]["resourceType"] == "CarePlan"
    elif name in ANALGESICS_ONLY:
        assert ev.decision.phase == "not-applicable"
    else:  # the two drug-overdose patients: an overdose alone is not OUD evidence (§2)
        assert ev.decision.phase == "not-applicable"


def test_synthea_urn_uuid_references_resolve(evaluator: Evaluator) -> None:
    path = next(p for p in SYNTHEA if p.stem.startswith("Darron_Feeney"))
    reading = evaluator.reader.read(flatten(_load(path)))
    # Every Synthea resource points at its patient by urn:uuid; all of them must be read.
    assert len(reading.facts.conditions) > 0
    assert reading.facts.patient.birth_date is not None


@pytest.mark.parametrize("path", CDC_REQUESTS, ids=[p.stem for p in CDC_REQUESTS])
def test_cdc_requests_evaluate(path: Path, evaluator: Evaluator) -> None:
    request = _load(path)
    context = request.get("context") or {}
    drafts = flatten(context.get("draftOrders") or {}).resources
    prefetch = list((request.get("prefetch") or {}).values())
    ev = evaluator.evaluate(
        prefetch,
        data_date(request),
        patient_id=context.get("patientId"),
        drafts=[r for r, _ in drafts],
        strict_subject=False,
    )
    assert ev.decision.phase in (
        "assessment",
        "stabilization",
        "maintenance",
        "recovery",
        "not-applicable",
    )
    evaluator.apply_bundle(ev)  # builds without error


def test_cdc_suboxone_draft_is_moud_not_an_analgesic(evaluator: Evaluator) -> None:
    """Suboxone written as a pain-medication draft order in the CDC cases: it is buprenorphine
    for OUD (a MOUD), never an opioid analgesic (§5)."""
    path = next(p for p in CDC_REQUESTS if "rec-01-in-outpatient" in p.name)
    request = _load(path)
    context = request["context"]
    drafts = [r for r, _ in flatten(context.get("draftOrders")).resources]
    ev = evaluator.evaluate(
        list(request["prefetch"].values()),
        data_date(request),
        patient_id=context["patientId"],
        drafts=drafts,
        strict_subject=False,
    )
    (draft,) = ev.reading.facts.draft_orders
    assert draft.groups == frozenset({"buprenorphine-oud"})
    assert "opioid-analgesic-with-oud" not in {f.code for f in ev.decision.flags}
    assert "no-rescue-naloxone" in {f.code for f in ev.decision.flags}


@pytest.mark.parametrize("path", CDC_RAW, ids=[p.stem for p in CDC_RAW])
def test_cdc_raw_requests_are_json_or_named_as_broken(path: Path) -> None:
    """Most upstream requests are not valid JSON (an extra brace): the parse error must be
    precise enough to name (the CDS endpoint answers 400 with it)."""
    raw = path.read_bytes()
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        assert "line" in str(e) and "column" in str(e)


def test_hl7_examples_one_by_one(evaluator: Evaluator) -> None:
    for path in HL7:
        resource = _load(path)
        ev = (
            evaluator.evaluate([resource], NOW, patient_id="opioid-review-indicated")
            if resource.get("subject")
            else None
        )
        if ev is not None:
            assert ev.decision.patient_id == "opioid-review-indicated"


def test_hl7_examples_together(evaluator: Evaluator) -> None:
    """All 55 examples as one patient's data: medicationReference resolves to the example
    Medications; the Medication named "naloxone" is buprenorphine/naloxone; string results."""
    resources = [_load(p) for p in HL7]
    ev = evaluator.evaluate(
        resources, datetime(2025, 8, 1, tzinfo=UTC), patient_id="opioid-review-indicated"
    )
    orders = {o.ref: o for o in ev.reading.facts.orders}
    assert orders["MedicationRequest/naloxone"].groups == frozenset({"buprenorphine-oud"})
    assert orders["MedicationRequest/methadone"].groups == frozenset({"methadone"})
    assert orders["MedicationRequest/benzodiazepine"].groups == frozenset({"benzodiazepines"})
    screens = {s.ref: s for s in ev.reading.facts.screens}
    assert screens, "the drug screen examples must be read"
    assert all(s.result.value in ("positive", "negative") for s in screens.values())
    d = ev.decision
    # Active buprenorphine for OUD is OUD evidence and MOUD; rescue naloxone is not on file.
    assert d.oud_evidence
    assert d.status_of("buprenorphine") == "active"
    assert d.status_of("naloxone") == "recommended"
    assert d.status_of("naltrexone") == "contraindicated"
    assert "opioid-cns-depressant" in {f.code for f in d.flags}
