"""FHIR -> facts (PATHWAY.md §1, §8): the shapes and traps of real EHR data."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import (
    AS_OF,
    BUP_NALOXONE_FILM,
    CANON,
    ICD10,
    LOINC,
    RXNORM,
    SNOMED,
    bundle,
    condition,
    cows,
    day_ago,
    lab,
    med,
    medication,
    patient,
    quantity,
    uds,
)

from pathway.evaluation import Evaluator
from pathway.fhir.bundle import flatten
from pathway.fhir.facts import FactReader, NoPatientError, observation_when
from pathway.rules.model import Result
from pathway.rules.timing import may_be_within_hours


@pytest.fixture
def reader(evaluator: Evaluator) -> FactReader:
    return evaluator.reader


def read(reader: FactReader, *items: Any, pid: str | None = None) -> Any:
    return reader.read(flatten(list(items)), pid)


# Dates (parse_when) are tested in tests/rules/test_timing.py, with the §8 windows.


# ----------------------------------------------------------------- drug screen results


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"valueString": "POS"}, Result.POSITIVE),
        ({"valueString": "positive"}, Result.POSITIVE),
        ({"valueString": "Positive"}, Result.POSITIVE),
        ({"valueString": "  DETECTED "}, Result.POSITIVE),
        ({"valueString": "Presumptive Positive"}, Result.POSITIVE),
        ({"valueString": "Neg"}, Result.NEGATIVE),
        ({"valueString": "negative"}, Result.NEGATIVE),
        ({"valueString": "Not Detected"}, Result.NEGATIVE),
        ({"valueString": "none detected"}, Result.NEGATIVE),
        ({"valueString": "see note"}, Result.UNKNOWN),
        ({"valueString": "inconclusive"}, Result.UNKNOWN),
        (
            {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "10828004"}]}},
            Result.POSITIVE,
        ),
        (
            {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "260385009"}]}},
            Result.NEGATIVE,
        ),
        (
            {"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6576-8"}]}},
            Result.POSITIVE,
        ),
        (
            {"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6577-6"}]}},
            Result.NEGATIVE,
        ),
        ({"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "123"}]}}, Result.UNKNOWN),
        ({"interpretation": [{"coding": [{"code": "POS"}]}]}, Result.POSITIVE),
        ({"interpretation": [{"coding": [{"code": "NEG"}]}]}, Result.NEGATIVE),
        ({"interpretation": [{"coding": [{"code": "A"}]}]}, Result.POSITIVE),
        ({"interpretation": [{"coding": [{"code": "N"}]}]}, Result.NEGATIVE),
        ({}, Result.UNKNOWN),
        ({"valueQuantity": {"value": 300, "unit": "ng/mL"}}, Result.UNKNOWN),
        # value and interpretation disagree: unknown, never negative
        ({"valueString": "neg", "interpretation": [{"coding": [{"code": "POS"}]}]}, Result.UNKNOWN),
    ],
)
def test_every_drug_screen_result_form(
    reader: FactReader, value: dict[str, Any], expected: Result
) -> None:
    r = read(reader, patient(), lab("59673-4", day_ago(1), **value))
    (screen,) = r.facts.screens
    assert screen.analyte == "fentanyl"
    assert screen.result is expected


def test_unreadable_result_is_noted_not_negative(reader: FactReader) -> None:
    r = read(reader, patient(), lab("19295-5", day_ago(1), valueString="???"))
    assert r.facts.screens[0].result is Result.UNKNOWN
    assert any("unreadable" in n for n in r.notes)


# ----------------------------------------------------------------- input shapes


def test_bare_resources_bundle_entries_searchsets_and_outcomes(reader: FactReader) -> None:
    c = condition()
    m = med(BUP_NALOXONE_FILM, authored=day_ago(3))
    searchset = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"fullUrl": "x", "resource": m}],
    }
    entry = {"fullUrl": "https://ehr/fhir/Condition/c", "resource": c}
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "warning", "code": "processing", "diagnostics": "some results withheld"}
        ],
    }
    r = read(reader, patient(), entry, searchset, outcome, None, 5)
    assert [c.ref for c in r.facts.conditions] == [f"Condition/{c['id']}"]
    assert [o.groups for o in r.facts.orders] == [frozenset({"buprenorphine-oud"})]
    assert any("some results withheld" in n for n in r.notes)
    assert any("int" in n for n in r.notes)


def test_resources_of_other_patients_are_not_read(reader: FactReader) -> None:
    r = read(reader, patient("p1"), condition(pid="p1"), condition(pid="someone-else"), pid="p1")
    assert len(r.facts.conditions) == 1


def test_absolute_and_urn_subject_references(reader: FactReader) -> None:
    p = patient("p1")
    c1 = condition()
    c1["subject"] = {"reference": "https://ehr.example.org/fhir/Patient/p1"}
    c2 = condition()
    c2["subject"] = {"reference": "urn:uuid:1234"}
    data = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1234", "resource": p},
            {"fullUrl": "urn:uuid:a", "resource": c1},
            {"fullUrl": "urn:uuid:b", "resource": c2},
        ],
    }
    assert len(reader.read(flatten(data)).facts.conditions) == 2


def test_several_patients_need_a_subject(reader: FactReader) -> None:
    with pytest.raises(NoPatientError):
        read(reader, patient("a"), patient("b"))


def test_no_patient_and_nothing_for_them(reader: FactReader) -> None:
    with pytest.raises(NoPatientError):
        read(reader, condition(pid="other"), pid="p1")


def test_patient_missing_but_referenced_reads_with_a_note(reader: FactReader) -> None:
    r = read(reader, condition(pid="p1"), pid="p1")
    assert r.facts.patient.birth_date is None
    assert any("age and sex are unknown" in n for n in r.notes)


# ----------------------------------------------------------------- medications


def _medication(mid: str, code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "Medication",
        "id": mid,
        "code": {"coding": [{"system": RXNORM, "code": code}], "text": text},
    }


def _by_reference(reference: str) -> dict[str, Any]:
    m = med("0")
    del m["medicationCodeableConcept"]
    m["medicationReference"] = {"reference": reference, "display": "naloxone"}
    return m


def test_medication_reference_in_the_data(reader: FactReader) -> None:
    r = read(
        reader, patient(), _medication("m1", "351267", "naloxone"), _by_reference("Medication/m1")
    )
    # The trap: a Medication *named* naloxone that is buprenorphine/naloxone.
    assert r.facts.orders[0].groups == frozenset({"buprenorphine-oud"})


def test_medication_reference_contained(reader: FactReader) -> None:
    m = _by_reference("#med")
    m["contained"] = [_medication("med", "864706", "methadone")]
    assert read(reader, patient(), m).facts.orders[0].groups == frozenset({"methadone"})


def test_medication_reference_absolute_url(reader: FactReader) -> None:
    r = read(
        reader,
        patient(),
        _medication("m2", "864706", "methadone"),
        _by_reference("https://ehr.example.org/fhir/Medication/m2"),
    )
    assert r.facts.orders[0].groups == frozenset({"methadone"})


def test_unresolved_medication_reference_is_unknown_and_noted(reader: FactReader) -> None:
    r = read(reader, patient(), _by_reference("Medication/missing"))
    assert r.facts.orders[0].groups == frozenset()
    assert any("not in the data" in n for n in r.notes)


def test_medication_text_alone_never_classifies(reader: FactReader) -> None:
    m = med("0")
    m["medicationCodeableConcept"] = {"text": "naloxone 4 mg nasal spray"}
    assert read(reader, patient(), m).facts.orders[0].groups == frozenset()


@pytest.mark.parametrize("status", ["draft", "cancelled", "entered-in-error"])
def test_ignored_request_statuses(reader: FactReader, status: str) -> None:
    assert read(reader, patient(), med(BUP_NALOXONE_FILM, status=status)).facts.orders == ()


def test_reason_code_and_reason_reference(reader: FactReader) -> None:
    c = condition("F11.20")
    m = med("864706", reason=(ICD10, "F11.20"))
    m2 = med("864706")
    m2["reasonReference"] = [{"reference": f"Condition/{c['id']}"}]
    orders = read(reader, patient(), c, m, m2).facts.orders
    assert all(o.reason_tags == frozenset({"oud"}) for o in orders)


# ----------------------------------------------------------------- observations


def test_values_as_quantity_or_integer_and_reference_range(reader: FactReader) -> None:
    alt = lab(
        "1742-6",
        day_ago(1),
        valueQuantity={"value": 80, "unit": "U/L"},
        referenceRange=[{"high": {"value": 35}}],
    )
    cows_q = {
        "resourceType": "Observation",
        "id": "cq",
        "status": "final",
        "code": {
            "coding": [{"system": f"{CANON}/CodeSystem/oud-observation", "code": "cows-total"}]
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": day_ago(0),
        "valueQuantity": {"value": 9},
    }
    ms = {m.kind: m for m in read(reader, patient(), alt, cows_q).facts.measurements}
    assert ms["alt"].value == 80 and ms["alt"].upper_limit == 35
    assert ms["cows"].value == 9


def test_out_of_range_cows_is_ignored_with_a_note(reader: FactReader) -> None:
    bad = {
        "resourceType": "Observation",
        "id": "c",
        "status": "final",
        "code": {
            "coding": [{"system": f"{CANON}/CodeSystem/oud-observation", "code": "cows-total"}]
        },
        "effectiveDateTime": day_ago(0),
        "valueInteger": 99,
    }
    r = read(reader, patient(), bad)
    assert r.facts.measurements == ()
    assert any("outside 0-48" in n for n in r.notes)


def test_blood_pressure_panel_component(reader: FactReader) -> None:
    panel = lab(
        "85354-9",
        day_ago(0),
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 85, "unit": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 50, "unit": "mm[Hg]"},
            },
        ],
    )
    (sbp,) = read(reader, patient(), panel).facts.measurements
    assert (sbp.kind, sbp.value) == ("sbp", 85)


def test_entered_in_error_observation_is_ignored(reader: FactReader) -> None:
    o = lab("59673-4", day_ago(1), valueString="POS", status="entered-in-error")
    assert read(reader, patient(), o).facts.screens == ()


def test_site_alias_for_cows(evaluator: Evaluator, config: Any) -> None:
    from dataclasses import replace

    from pathway.config import LocalAlias

    aliased = replace(config, aliases=(LocalAlias("http://loinc.org", "X-COWS", "cows-total"),))
    r = FactReader(aliased).read(flatten([patient(), lab("X-COWS", day_ago(0), valueInteger=12)]))
    assert [(m.kind, m.value) for m in r.facts.measurements] == [("cows", 12)]


def test_refuted_condition_counts_as_nothing(reader: FactReader) -> None:
    r = read(
        reader,
        patient(),
        condition(verification="refuted"),
        condition(verification="entered-in-error"),
    )
    assert r.facts.conditions == ()


def test_condition_date_is_recorded_else_onset(reader: FactReader) -> None:
    c = condition(recorded=None)
    c["onsetDateTime"] = "2025-06-01"
    c2 = condition(recorded="2025-06-10")
    c2["onsetDateTime"] = "2020-01-01"
    whens = sorted(
        x.when.earliest.date().isoformat() for x in read(reader, patient(), c, c2).facts.conditions
    )
    assert whens == ["2025-06-01", "2025-06-10"]


def test_snomed_oud_and_pregnancy_codes(reader: FactReader) -> None:
    tags = [
        c.tags
        for c in read(
            reader,
            patient(),
            condition("5602001", SNOMED),
            condition("Z34.80"),
            condition("O99.321"),
        ).facts.conditions
    ]
    assert "oud" in tags[0]
    assert "pregnancy" in tags[1] and "pregnancy" in tags[2]
    # O99.32x is "drug use complicating pregnancy": pregnancy, not (by code) OUD
    assert "oud" not in tags[2]


def test_as_of_is_an_input(evaluator: Evaluator) -> None:
    b = bundle(patient(), condition())
    early = evaluator.evaluate(b, AS_OF).decision
    assert early.as_of == AS_OF


def test_an_id_that_is_no_fhir_id_is_not_put_into_a_reference() -> None:
    """Found by the property tests: an id of "/" made the evidence reference "Observation//"."""
    from pathway.fhir.bundle import ref_of

    obs = {"resourceType": "Observation", "id": "/"}
    assert ref_of(obs, "https://ehr.example.org/fhir/Observation/o1") == (
        "https://ehr.example.org/fhir/Observation/o1"
    )
    assert ref_of(obs) == "Observation/(no id)"
    assert ref_of({"resourceType": "Observation", "id": "o-1.2"}) == "Observation/o-1.2"
    assert ref_of({"resourceType": "Observation", "id": "o1\n"}) == "Observation/(no id)"


def test_may_read_refuses_only_what_becomes_no_fact(reader: FactReader) -> None:
    """What a population run leaves behind after its first pass (FactReader.may_read); the
    property that this changes no decision is in tests/rules/test_metamorphic.py."""
    when = day_ago(3)
    bp_panel = lab("85354-9", when)  # no code of ours, but a component (systolic) is read
    bp_panel["component"] = [
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 90}}
    ]
    cancelled = uds("58379-9", "POS", when)
    cancelled["status"] = "cancelled"
    unknown_status = uds("58379-9", "POS", when)
    unknown_status["status"] = "preliminary"
    kept = {
        "Patient": patient(),
        "Condition": condition("F11.20"),
        "MedicationRequest": med(BUP_NALOXONE_FILM, "active", when),
        "Medication": medication(BUP_NALOXONE_FILM),
        "fentanyl screen": uds("58379-9", "POS", when),
        "screen of an unlisted status": unknown_status,
        "systolic blood pressure": quantity("8480-6", 95, when, unit="mm[Hg]"),
        "COWS (our code)": cows(9, when),
        "panel with a read component": bp_panel,
    }
    refused = {
        "creatinine": quantity("2160-0", 1.1, when, unit="mg/dL"),
        "no code": {"resourceType": "Observation", "id": "o-x", "status": "final"},
        "cancelled screen": cancelled,
        "Encounter": {
            "resourceType": "Encounter",
            "id": "e1",
            "subject": {"reference": "Patient/p1"},
        },
    }
    assert [k for k, r in kept.items() if not reader.may_read(r)] == []
    assert [k for k, r in refused.items() if reader.may_read(r)] == []
    # and what it refuses, the reader indeed makes nothing of
    reading = read(reader, patient(), *refused.values(), pid="p1")
    facts = reading.facts
    assert (facts.screens, facts.measurements, facts.conditions, facts.orders) == ((), (), (), ())
    assert reading.notes == []


# ------------------------------------------------------------------ may_read as of a time


@pytest.mark.parametrize(
    "when",
    [
        "2025-06-14T12:00:00Z",  # exactly the vitals window (24 h before AS_OF): kept
        "2025-06-14T11:59:59.999999Z",  # 1 µs past it: left behind
        "2025-06-14T11:59:59Z",
        "2025-06-14T13:00:00+02:00",  # 11:00 UTC: past it
        "2025-06-14",  # the day spans the edge: may be within, kept
        "2025-06-13",
        "2025-06",  # the month spans it: kept
        "2025-05",
        "2024",
        "2025-06-16T00:00:00Z",  # after AS_OF: not "older", kept (the rules decide)
        "2025-06-14T11:00:00",  # no zone: read as UTC (as parse_when does), past it
        "2025-06-14T13:00:00",
        " 2025-06-14T11:00:00Z ",  # spaces around: read as parse_when reads it
        "2025-06-14T12:00:00.000001+00:00",
    ],
)
@pytest.mark.parametrize(("loinc", "unit"), [("8867-4", "/min"), ("8480-6", "mm[Hg]")])
def test_may_read_as_of_leaves_behind_exactly_the_vitals_no_rule_looks_at(
    reader: FactReader, when: str, loinc: str, unit: str
) -> None:
    """A population run reads as of one time: heart rate and systolic BP surely older than the
    vitals window (the only rules that read them look 24 h back) are left behind. The edge is
    the rules' own test (`timing.may_be_within_hours`), on each date form."""
    hours = reader.cfg.pathway.adjuncts.vitals_window_hours
    obs = quantity(loinc, 40, when, unit=unit)
    parsed = observation_when(obs)
    assert parsed is not None
    older = parsed.latest < AS_OF - timedelta(hours=hours)
    assert reader.may_read(obs) is True  # without a time: kept
    assert reader.may_read(obs, AS_OF) is not older
    assert reader.first_pass_filter(AS_OF)(obs) is not older
    if not older and parsed.earliest <= AS_OF:
        assert may_be_within_hours(parsed, AS_OF, hours)
    if older:
        assert not may_be_within_hours(parsed, AS_OF, hours)


def test_may_read_as_of_keeps_everything_else_whatever_its_age(reader: FactReader) -> None:
    """Only kinds with a bounded look-back are left behind by age: screens, COWS, QTc, liver
    tests, panels with components and undated vitals are kept however old."""
    old = "2019-01-01T00:00:00Z"
    panel = lab("85354-9", old)
    panel["component"] = [
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 80}}
    ]
    undated = quantity("8867-4", 40, old, unit="/min")
    del undated["effectiveDateTime"]
    by_period = quantity("8867-4", 40, old, unit="/min")
    del by_period["effectiveDateTime"]
    by_period["effectivePeriod"] = {"start": "2025-06-13T00:00:00Z", "end": "2025-06-15T00:00:00Z"}
    issued = quantity("8867-4", 40, old, unit="/min")
    del issued["effectiveDateTime"]
    issued["issued"] = "2025-06-15T08:00:00Z"
    kept = {
        "fentanyl screen": uds("58379-9", "POS", old),
        "COWS": cows(9, old),
        "QTc": quantity("8636-3", 520, old, unit="ms"),
        "ALT": quantity("1742-6", 300, old),
        "BP panel (component)": panel,
        "undated heart rate": undated,
        "heart rate over a period ending in the window": by_period,
        "heart rate issued in the window": issued,
        "Condition": condition("F11.20"),
        "MedicationRequest": med(BUP_NALOXONE_FILM, "active", "2019-01-01"),
    }
    unreadable = quantity("8867-4", 40, "2025-06-14T25:00:00Z", unit="/min")
    unreadable["effectiveInstant"] = "2025-06-15T08:00:00Z"  # what the reader reads instead
    kept["heart rate with an unreadable dateTime, an instant in the window"] = unreadable
    assert [k for k, r in kept.items() if not reader.may_read(r, AS_OF)] == []
    assert [k for k, r in kept.items() if not reader.first_pass_filter(AS_OF)(r)] == []
    unreadable["effectiveInstant"] = "2025-06-13T08:00:00Z"
    assert not reader.may_read(unreadable, AS_OF)
    issued["issued"] = "2025-06-13T08:00:00Z"
    by_period["effectivePeriod"]["end"] = "2025-06-14T00:00:00Z"
    assert not reader.may_read(issued, AS_OF)
    assert not reader.may_read(by_period, AS_OF)


def test_only_the_adjunct_rules_read_heart_rate_and_blood_pressure() -> None:
    """`FactReader.horizon` says heart rate and systolic BP matter only within the vitals
    window, because only the adjunct low-vital rules read them. A rule elsewhere that names
    these kinds must extend the horizon first (else a population run would drop data it
    reads): this fails until it does."""
    import pathway.rules as rules_pkg

    root = Path(rules_pkg.__file__).parent
    naming = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if re.search(r"""["'](hr|sbp)["']""", p.read_text())
    )
    assert naming == ["findings.py", "options/adjuncts.py"]
    findings = (root / "findings.py").read_text()
    assert len(re.findall(r"""["'](hr|sbp)["']""", findings)) == 2  # _LOWER_IS_WORSE only
