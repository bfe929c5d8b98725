"""PATHWAY.md §4 Naloxone rescue and withdrawal adjuncts (lofexidine, clonidine), with §8
(naloxone for suspected OUD; adjuncts active / suitable only in withdrawal / caution /
not-indicated) and the §1 trap case of a "naloxone" Medication that is buprenorphine/naloxone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import (
    AS_OF,
    BUP_NALOXONE_FILM,
    LOINC,
    condition,
    cows,
    day_ago,
    iso,
    med,
    med_ref,
    medication,
    oud_condition,
    quantity,
    uds,
)
from rulekit import (
    BUP_NX_TABLET,
    CLONIDINE_TABLET,
    HR,
    HYPERTENSION_REASON,
    LOFEXIDINE_TABLET,
    NALOXONE_NASAL,
    NALTREXONE_XR,
    OUD_REASON,
    SBP,
    UDS_FENTANYL,
    WITHDRAWAL_REASON,
    flags_of,
    mentions,
    option,
    ref,
    task_of,
)


def before(hours: float = 0, minutes: float = 0, days: float = 0) -> str:
    return iso(AS_OF - timedelta(days=days, hours=hours, minutes=minutes))


# ------------------------------------------------------------------ naloxone rescue


@pytest.mark.parametrize(
    ("status", "authored", "expected"),
    [
        ("active", day_ago(10), "active"),
        ("active", day_ago(500), "recommended"),  # §8: an old active PRN order does not count
        ("active", day_ago(366), "recommended"),
        ("completed", day_ago(365), "active"),
        ("completed", day_ago(366), "recommended"),
        ("stopped", day_ago(100), "active"),
        ("draft", day_ago(10), "recommended"),
        ("cancelled", day_ago(10), "recommended"),
        ("entered-in-error", day_ago(10), "recommended"),
    ],
)
def test_naloxone_active_if_rescue_prescribed_in_12_months(decide, status, authored, expected):
    """§4/§8: naloxone `active` if a rescue product was authored in the last 12 calendar months
    (from 2024-06-15 for AS_OF 2025-06-15), whatever its status, else `recommended` for a patient
    with OUD evidence; draft / cancelled / entered-in-error requests are ignored (§8)."""
    n = med(NALOXONE_NASAL, status=status, authored=authored)
    d = decide(oud_condition(), n)
    o = option(d, "naloxone")
    assert o.status == expected
    if expected == "active":
        assert ref(n) in o.evidence
        assert "prescribe-naloxone" not in d.task_codes
    else:
        assert "prescribe-naloxone" in d.task_codes


def test_naloxone_recommended_for_oud_with_task(decide):
    """§4 / §7: recommended for every patient with OUD evidence, Task prescribe-naloxone."""
    d = decide(oud_condition())
    o = option(d, "naloxone")
    assert o.status == "recommended"
    assert o.reasons
    t = task_of(d, "prescribe-naloxone")
    assert t.reason


def test_naloxone_recommended_for_suspected_oud(decide):
    """§8: naloxone is recommended for suspected OUD too (rule 1a)."""
    d = decide(uds(UDS_FENTANYL, "POS", day_ago(3)))
    assert d.suspected_oud is True
    assert option(d, "naloxone").status == "recommended"
    assert "prescribe-naloxone" in d.task_codes


def test_buprenorphine_naloxone_is_not_rescue_naloxone(decide):
    """§1: bup/naloxone is not rescue naloxone: on bup/nx alone naloxone is recommended and the
    MOUD-without-naloxone info flag is raised."""
    d = decide(oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(60)))
    assert option(d, "buprenorphine").status == "active"
    assert option(d, "naloxone").status == "recommended"
    assert flags_of(d, "no-rescue-naloxone")


@pytest.mark.parametrize("contained", [False, True])
def test_medication_named_naloxone_that_is_bup_naloxone(decide, contained):
    """§1 trap: a Medication named "naloxone" whose code is buprenorphine/naloxone (RxNorm
    351267) is MOUD (buprenorphine for OUD), not rescue naloxone; via medicationReference
    (contained or in the data)."""
    m = medication(BUP_NX_TABLET, text="naloxone")
    req = med_ref(m, authored=day_ago(60), contained=contained)
    items = [req] if contained else [m, req]
    d = decide(*items)
    assert d.oud_evidence is True
    assert option(d, "buprenorphine").status == "active"
    assert option(d, "naloxone").status == "recommended"
    assert d.phase == "maintenance"


def test_rescue_naloxone_by_medication_reference(decide):
    """§1: medicationReference resolved to a Medication in the data: a real rescue product."""
    m = medication(NALOXONE_NASAL, text="Narcan")
    req = med_ref(m, authored=day_ago(30))
    o = option(decide(oud_condition(), m, req), "naloxone")
    assert o.status == "active"
    assert ref(req) in o.evidence


# ------------------------------------------------------------------ withdrawal adjuncts


@pytest.mark.parametrize("name", ["lofexidine", "clonidine"])
def test_adjunct_suitable_in_withdrawal(decide, name):
    """§4 / §8: `suitable` when in withdrawal (rule 3a criteria), citing what shows it."""
    c = cows(9, before(hours=2))
    o = option(decide(oud_condition(), c), name)
    assert o.status == "suitable"
    assert ref(c) in o.evidence
    assert o.reasons


@pytest.mark.parametrize("name", ["lofexidine", "clonidine"])
def test_adjunct_suitable_in_withdrawal_whichever_phase_rule_fired(decide, name):
    """§8: suitable when the criteria of rule 3a hold, whichever phase rule fired: on
    buprenorphine for 60 days (2c maintenance) with COWS 6 two hours ago."""
    d = decide(
        oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(60)), cows(6, before(hours=2))
    )
    assert d.phase == "maintenance"
    assert option(d, name).status == "suitable"


@pytest.mark.parametrize("name", ["lofexidine", "clonidine"])
def test_adjunct_suitable_with_withdrawal_condition(decide, name):
    """§8: the 3a criteria include an opioid withdrawal Condition in the last 7 days."""
    w = condition("87132004", "http://snomed.info/sct", recorded=day_ago(3))
    o = option(decide(oud_condition(), w), name)
    assert o.status == "suitable"
    assert ref(w) in o.evidence


@pytest.mark.parametrize("name", ["lofexidine", "clonidine"])
@pytest.mark.parametrize(
    "items",
    [
        pytest.param(lambda: [], id="no-withdrawal"),
        pytest.param(lambda: [cows(4, before(hours=2))], id="cows-4"),
        pytest.param(lambda: [cows(9, before(hours=72, minutes=1))], id="cows-72h1m"),
        pytest.param(lambda: [med(NALTREXONE_XR, authored=day_ago(20))], id="naltrexone-path"),
    ],
)
def test_adjunct_not_indicated_outside_withdrawal(decide, name, items):
    """§8 (wins over §4's "or on the naltrexone path"): `not-indicated` outside withdrawal."""
    assert option(decide(oud_condition(), *items()), name).status == "not-indicated"


def test_lofexidine_active_if_prescribed(decide):
    """§8: `active` if prescribed for withdrawal (lofexidine is only that)."""
    m = med(LOFEXIDINE_TABLET, authored=day_ago(1))
    o = option(decide(oud_condition(), m), "lofexidine")
    assert o.status == "active"
    assert ref(m) in o.evidence


@pytest.mark.parametrize("reason", [WITHDRAWAL_REASON, OUD_REASON])
def test_clonidine_active_if_prescribed_for_withdrawal(decide, reason):
    """§8: clonidine `active` when its reasonCode is opioid withdrawal or OUD."""
    m = med(CLONIDINE_TABLET, authored=day_ago(1), reason=reason)
    o = option(decide(oud_condition(), m), "clonidine")
    assert o.status == "active"
    assert ref(m) in o.evidence


@pytest.mark.parametrize("reason", [None, HYPERTENSION_REASON])
def test_clonidine_for_blood_pressure_is_not_active_for_withdrawal(decide, reason):
    """§8: clonidine for blood pressure is not "prescribed for withdrawal": outside withdrawal
    it is not-indicated (and it does not put the patient in withdrawal)."""
    d = decide(oud_condition(), med(CLONIDINE_TABLET, authored=day_ago(100), reason=reason))
    assert option(d, "clonidine").status == "not-indicated"
    assert option(d, "lofexidine").status == "not-indicated"


@pytest.mark.parametrize("name", ["lofexidine", "clonidine"])
@pytest.mark.parametrize(
    ("loinc", "value", "when", "status"),
    [
        (SBP, 89, before(hours=1), "caution"),
        (SBP, 90, before(hours=1), "suitable"),
        (HR, 54, before(hours=1), "caution"),
        (HR, 55, before(hours=1), "suitable"),
        (SBP, 85, before(hours=24), "caution"),
        (SBP, 85, before(hours=24, minutes=1), "suitable"),
        (HR, 50, before(hours=24), "caution"),
        (HR, 50, before(hours=24, minutes=1), "suitable"),
    ],
)
def test_adjunct_caution_with_low_bp_or_heart_rate_in_24_hours(
    decide, evaluator, name, loinc, value, when, status
):
    """§4 / §8: in withdrawal, `caution` when systolic BP < 90 or heart rate < 55 in the last
    24 h (edge included), citing the vital sign. A population run, reading as of the same
    time, leaves the vital behind exactly when it is past the window (FactReader.may_read)."""
    v = quantity(loinc, value, when, unit="mm[Hg]" if loinc == SBP else "/min")
    o = option(decide(oud_condition(), cows(9, before(hours=2)), v), name)
    assert o.status == status
    if status == "caution":
        assert ref(v) in o.evidence
        assert mentions(o.reasons, "heart rate" if loinc == HR else "BP")
    past_window = when == before(hours=24, minutes=1)
    assert evaluator.reader.may_read(v, AS_OF) is not past_window


def test_adjunct_caution_with_any_low_bp_in_24_hours(decide):
    """§4: "systolic BP < 90 ... in the last 24 h": a reading of 85 ten hours ago is a
    caution even if a later reading is 100 (conservative)."""
    low = quantity(SBP, 85, before(hours=10), unit="mm[Hg]")
    d = decide(
        oud_condition(),
        cows(9, before(hours=2)),
        low,
        quantity(SBP, 100, before(hours=1), unit="mm[Hg]"),
    )
    assert option(d, "lofexidine").status == "caution"
    assert ref(low) in option(d, "lofexidine").evidence


def test_low_bp_outside_withdrawal_is_not_indicated(decide):
    """§8: the vital-sign caution applies in withdrawal; outside it -> not-indicated."""
    d = decide(oud_condition(), quantity(SBP, 80, before(hours=1), unit="mm[Hg]"))
    assert option(d, "lofexidine").status == "not-indicated"


def test_systolic_bp_in_a_blood_pressure_panel_component(decide):
    """§1: vitals: systolic BP 8480-6 (here as a component of a BP panel, as EHRs send it)."""
    panel = {
        "resourceType": "Observation",
        "id": "bp-panel-1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": before(hours=1),
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": SBP}]},
                "valueQuantity": {"value": 82, "unit": "mm[Hg]"},
            }
        ],
    }
    o = option(decide(oud_condition(), cows(9, before(hours=2)), panel), "clonidine")
    assert o.status == "caution"
    assert "Observation/bp-panel-1" in o.evidence
