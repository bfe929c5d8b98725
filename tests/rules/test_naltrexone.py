"""PATHWAY.md §4 Naltrexone with §8 (negative opioid UDS, known pregnant, liver 90 days,
severe OUD, precedence)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import (
    AS_OF,
    BUP_NALOXONE_FILM,
    ICD10,
    LOINC,
    METHADONE_SOLUTION,
    OXYCODONE_TABLET,
    SNOMED,
    coded,
    condition,
    cows,
    day_ago,
    iso,
    last_use,
    med,
    oud_condition,
    patient,
    quantity,
    severity,
    stage,
    uds,
)
from rulekit import (
    ALT,
    AST,
    BUP_PATCH,
    FENTANYL_PATCH,
    HCG_URINE,
    NALTREXONE_XR,
    NOT_PREGNANT,
    PREGNANCY_STATUS,
    PREGNANT,
    TRAMADOL_TABLET,
    UDS_6MAM,
    UDS_FENTANYL,
    UDS_OPIATES,
    UDS_OXYCODONE,
    UDS_STIMULANTS,
    mentions,
    option,
    ref,
)

FEMALE = patient(gender="female", birth="1994-03-03")


def before(hours: float = 0, minutes: float = 0, days: float = 0) -> str:
    return iso(AS_OF - timedelta(days=days, hours=hours, minutes=minutes))


def negatives(days: int = 1) -> list[dict]:
    """A negative opiates and a negative fentanyl result: the opioid-free interval (§8)."""
    return [uds(UDS_OPIATES, "NEG", day_ago(days)), uds(UDS_FENTANYL, "NEG", day_ago(days))]


def ntx(d):
    return option(d, "naltrexone")


def test_suitable_when_opioid_free_interval_is_documented(decide):
    """§4: otherwise suitable; the negative opioid UDS that documents it is its evidence."""
    neg = negatives()
    o = ntx(decide(oud_condition(), *neg))
    assert o.status == "suitable"
    assert ref(neg[0]) in o.evidence
    assert ref(neg[1]) in o.evidence


# ------------------------------------------------------------------ contraindicated


@pytest.mark.parametrize(
    "rx",
    [
        METHADONE_SOLUTION,
        BUP_NALOXONE_FILM,
        BUP_PATCH,
        OXYCODONE_TABLET,
        FENTANYL_PATCH,
        TRAMADOL_TABLET,
    ],
)
def test_contraindicated_with_active_opioid_agonist(decide, rx):
    """§4: an active opioid agonist (methadone, buprenorphine, a full-agonist analgesic) ->
    contraindicated, citing the request, even with a documented opioid-free interval."""
    m = med(rx, authored=day_ago(20))
    o = ntx(decide(oud_condition(), m, *negatives()))
    assert o.status == "contraindicated"
    assert ref(m) in o.evidence


@pytest.mark.parametrize(
    ("loinc", "value", "high", "status"),
    [
        (ALT, 119, None, "suitable"),  # 2.98 x 40
        (ALT, 120, None, "caution"),  # exactly 3 x
        (ALT, 200, None, "caution"),  # exactly 5 x
        (ALT, 201, None, "contraindicated"),
        (AST, 120, None, "caution"),
        (AST, 201, None, "contraindicated"),
        (ALT, 149, 50, "suitable"),
        (ALT, 150, 50, "caution"),
        (ALT, 250, 50, "caution"),
        (ALT, 251, 50, "contraindicated"),
    ],
)
def test_liver_bands(decide, loinc, value, high, status):
    """§4: ALT or AST > 5 x ULN -> contraindicated; 3-5 x ULN -> caution; ULN from
    referenceRange.high, else 40 U/L."""
    q = quantity(loinc, value, day_ago(10), high=high)
    o = ntx(decide(oud_condition(), q, *negatives()))
    assert o.status == status
    if status != "suitable":
        assert ref(q) in o.evidence


@pytest.mark.parametrize(("days", "status"), [(90, "contraindicated"), (91, "suitable")])
def test_liver_tests_count_for_90_days(decide, days, status):
    """§8: liver tests count for 90 days."""
    o = ntx(decide(oud_condition(), quantity(AST, 500, day_ago(days)), *negatives()))
    assert o.status == status


# ------------------------------------------------------------------ not-yet


@pytest.mark.parametrize(
    ("kind", "used", "status"),
    [
        ("short-acting", day_ago(7), "not-yet"),
        ("short-acting", before(days=7), "not-yet"),
        ("short-acting", day_ago(8), "suitable"),
        ("long-acting", day_ago(8), "not-yet"),
        ("long-acting", day_ago(10), "not-yet"),
        ("long-acting", day_ago(11), "suitable"),
        (None, day_ago(10), "not-yet"),
        (None, day_ago(11), "suitable"),
    ],
)
def test_not_yet_after_opioid_use_in_7_days_or_10_after_long_acting(decide, kind, used, status):
    """§4 / §8: opioid use in the last 7 days (10 days after long-acting; a use with no type
    counts as long-acting) -> not-yet; calendar days."""
    u = last_use(used, kind)
    o = ntx(decide(oud_condition(), u, *negatives()))
    assert o.status == status
    if status == "not-yet":
        assert ref(u) in o.evidence


@pytest.mark.parametrize("loinc", [UDS_OPIATES, UDS_6MAM, UDS_OXYCODONE])
@pytest.mark.parametrize(("days", "status"), [(7, "not-yet"), (8, "suitable")])
def test_not_yet_with_illicit_positive_in_7_days(decide, loinc, days, status):
    """§4: an illicit opioid-positive UDS in the last 7 days -> not-yet (citing it); 8 days ago
    with a negative opioid UDS since -> suitable."""
    u = uds(loinc, "POS", day_ago(days))
    o = ntx(decide(oud_condition(), u, *negatives(1)))
    assert o.status == status
    if status == "not-yet":
        assert ref(u) in o.evidence


@pytest.mark.parametrize(
    ("score", "when", "status"),
    [
        (5, before(hours=1), "not-yet"),
        (4, before(hours=1), "suitable"),
        (5, before(hours=72), "not-yet"),
        (5, before(hours=72, minutes=1), "suitable"),
    ],
)
def test_not_yet_with_cows_5_in_72_hours(decide, score, when, status):
    """§4 / §8: COWS >= 5 in the last 72 h (edge included) -> not-yet; COWS 4 or 72 h 1 min
    old -> not."""
    c = cows(score, when)
    o = ntx(decide(oud_condition(), c, *negatives()))
    assert o.status == status
    if status == "not-yet":
        assert ref(c) in o.evidence


@pytest.mark.parametrize(
    ("screens", "status"),
    [
        (lambda: [], "not-yet"),
        (lambda: [uds(UDS_OPIATES, "NEG", day_ago(1))], "not-yet"),
        (lambda: [uds(UDS_FENTANYL, "NEG", day_ago(1))], "not-yet"),
        (
            lambda: [uds(UDS_STIMULANTS, "NEG", day_ago(1)), uds(UDS_OXYCODONE, "NEG", day_ago(1))],
            "not-yet",
        ),
        (lambda: negatives(0), "suitable"),
        (lambda: negatives(7), "suitable"),
        (lambda: negatives(8), "not-yet"),
        (
            lambda: [uds(UDS_OPIATES, "NEG", day_ago(2)), uds(UDS_FENTANYL, "NEG", day_ago(6))],
            "suitable",
        ),
        (
            lambda: [uds(UDS_OPIATES, "NEG", day_ago(2)), uds(UDS_FENTANYL, "pending", day_ago(2))],
            "not-yet",
        ),
        (lambda: [*negatives(1), uds(UDS_6MAM, "POS", day_ago(3))], "not-yet"),
    ],
)
def test_not_yet_without_a_negative_opioid_uds_in_7_days(decide, screens, status):
    """§4 / §8: a negative opioid UDS in the window is a negative opiates AND a negative fentanyl
    result in the last 7 days and no positive opioid result in it; otherwise not-yet. An
    unreadable result is unknown, never negative."""
    o = ntx(decide(oud_condition(), *screens()))
    assert o.status == status
    if status == "not-yet":
        assert o.reasons


def test_not_yet_plans_collect_uds(decide):
    """§4: not-yet -> Task collect-uds (§8: and no UDS in the last 7 days)."""
    d = decide(oud_condition(), uds(UDS_OPIATES, "NEG", day_ago(20)))
    assert ntx(d).status == "not-yet"
    assert "collect-uds" in d.task_codes


# ------------------------------------------------------------------ caution


@pytest.mark.parametrize(
    "evidence",
    [
        pytest.param(lambda: coded(PREGNANCY_STATUS, LOINC, PREGNANT, day_ago(5)), id="82810-3-LA"),
        pytest.param(
            lambda: coded(PREGNANCY_STATUS, SNOMED, "77386006", day_ago(5)), id="82810-3-SNOMED"
        ),
        pytest.param(lambda: uds(HCG_URINE, "positive", day_ago(30)), id="hcg-30d"),
        pytest.param(
            lambda: condition("77386006", SNOMED, recorded=day_ago(40)), id="cond-77386006"
        ),
        pytest.param(lambda: condition("Z33.1", ICD10, recorded=day_ago(40)), id="cond-Z33.1"),
        pytest.param(lambda: condition("Z34.00", ICD10, recorded=day_ago(40)), id="cond-Z34"),
        pytest.param(lambda: condition("O09.90", ICD10, recorded=day_ago(40)), id="cond-O"),
    ],
)
def test_caution_in_pregnancy(decide, evidence):
    """§4 / §8: known pregnant (82810-3 = LA15173-0 or SNOMED 77386006; a positive hCG in the
    last 30 days; an active pregnancy Condition SNOMED 77386006, Z33.1, Z34.*, O*) -> caution
    (limited data), citing the evidence."""
    e = evidence()
    o = ntx(decide(oud_condition(), e, *negatives(), patient_resource=FEMALE))
    assert o.status == "caution"
    assert mentions(o.reasons, "pregnan")
    assert ref(e) in o.evidence


@pytest.mark.parametrize(
    "evidence",
    [
        pytest.param(lambda: uds(HCG_URINE, "positive", day_ago(31)), id="hcg-31d"),
        pytest.param(lambda: uds(HCG_URINE, "negative", day_ago(3)), id="hcg-negative"),
        pytest.param(
            lambda: coded(PREGNANCY_STATUS, LOINC, NOT_PREGNANT, day_ago(3)),
            id="not-pregnant-answer",
        ),
        pytest.param(
            lambda: condition("Z34.00", ICD10, status="resolved", recorded=day_ago(300)),
            id="resolved-pregnancy-condition",
        ),
    ],
)
def test_not_known_pregnant_is_no_caution(decide, evidence):
    """§8: an hCG older than 30 days, negative results and a resolved pregnancy Condition are
    not "known pregnant"."""
    o = ntx(decide(oud_condition(), evidence(), *negatives(), patient_resource=FEMALE))
    assert o.status == "suitable"


@pytest.mark.parametrize(
    ("stage_code", "status"),
    [
        ("precontemplation", "caution"),
        ("contemplation", "caution"),
        ("preparation", "caution"),
        ("action", "suitable"),
        ("maintenance", "suitable"),
    ],
)
def test_caution_severe_oud_with_stage_before_action(decide, stage_code, status):
    """§4 / §8: severe OUD (count >= 6) with a stage of change before action -> caution (do not
    offer it in place of agonist treatment), citing severity and stage."""
    s, st = severity(7, day_ago(20)), stage(stage_code, day_ago(5))
    o = ntx(decide(s, st, *negatives()))
    assert o.status == status
    if status == "caution":
        assert ref(s) in o.evidence
        assert ref(st) in o.evidence
        assert mentions(o.reasons, "agonist")


@pytest.mark.parametrize("count", [4, 5])
def test_moderate_oud_with_early_stage_is_no_caution(decide, count):
    """§8: severe means a count >= 6; 5 is moderate: no stage caution."""
    o = ntx(
        decide(severity(count, day_ago(20)), stage("precontemplation", day_ago(5)), *negatives())
    )
    assert o.status == "suitable"


def test_f11_2x_with_early_stage_is_no_severe_caution(decide):
    """§8: F11.2x alone is "moderate or severe", not severe."""
    o = ntx(
        decide(oud_condition(code="F11.20"), stage("precontemplation", day_ago(5)), *negatives())
    )
    assert o.status == "suitable"


# ------------------------------------------------------------------ precedence


def test_active_naltrexone_is_active(decide):
    """§4: already prescribed (with OUD evidence) -> active."""
    m = med(NALTREXONE_XR, authored=day_ago(40))
    o = ntx(decide(oud_condition(), m, *negatives()))
    assert o.status == "active"
    assert ref(m) in o.evidence


def test_active_wins_over_not_yet(decide):
    """§8: active > not-yet: on naltrexone with no recent negative UDS stays active."""
    assert ntx(decide(oud_condition(), med(NALTREXONE_XR, authored=day_ago(40)))).status == "active"


def test_active_with_caution_stays_active_and_lists_it(decide):
    """§8: an active medication that meets a caution rule (pregnancy) stays active and lists
    the caution."""
    p = coded(PREGNANCY_STATUS, LOINC, PREGNANT, day_ago(5))
    o = ntx(
        decide(
            oud_condition(),
            med(NALTREXONE_XR, authored=day_ago(40)),
            p,
            *negatives(),
            patient_resource=FEMALE,
        )
    )
    assert o.status == "active"
    assert mentions(o.reasons, "pregnan")
    assert ref(p) in o.evidence


@pytest.mark.parametrize(
    "extra",
    [
        lambda: med(BUP_NALOXONE_FILM, authored=day_ago(5)),
        lambda: quantity(ALT, 300, day_ago(5)),
    ],
)
def test_contraindicated_wins_over_active(decide, extra):
    """§8: contraindicated > active (naltrexone with buprenorphine, or ALT > 5 x ULN)."""
    o = ntx(
        decide(oud_condition(), med(NALTREXONE_XR, authored=day_ago(40)), extra(), *negatives())
    )
    assert o.status == "contraindicated"


def test_contraindicated_wins_over_not_yet(decide):
    """§8: contraindicated > not-yet (ALT 7 x ULN and no negative UDS)."""
    assert ntx(decide(oud_condition(), quantity(ALT, 280, day_ago(5)))).status == "contraindicated"


def test_not_yet_wins_over_caution_and_lists_it(decide):
    """§8: not-yet > caution; the caution (pregnancy) is still among the reasons."""
    p = coded(PREGNANCY_STATUS, LOINC, PREGNANT, day_ago(5))
    o = ntx(decide(oud_condition(), p, patient_resource=FEMALE))
    assert o.status == "not-yet"
    assert mentions(o.reasons, "pregnan")
