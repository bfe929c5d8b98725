"""PATHWAY.md §4 Buprenorphine with §8 (recent full-agonist exposure, precedence, methadone
transition, hour edges, calendar days)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import (
    ALPRAZOLAM_TABLET,
    AS_OF,
    BUP_NALOXONE_FILM,
    LOINC,
    METHADONE_SOLUTION,
    OXYCODONE_TABLET,
    ago,
    birth_for_age,
    coded,
    cows,
    day_ago,
    iso,
    last_use,
    med,
    oud_condition,
    patient,
    quantity,
    uds,
)
from rulekit import (
    ALT,
    AST,
    CODEINE_APAP,
    FENTANYL_PATCH,
    HYDROCODONE_APAP,
    HYDROMORPHONE_TABLET,
    MORPHINE_TABLET,
    OXYMORPHONE_TABLET,
    PREGNANCY_STATUS,
    PREGNANT,
    TRAMADOL_TABLET,
    UDS_6MAM,
    UDS_FENTANYL,
    UDS_OPIATES,
    UDS_OXYCODONE,
    ZOLPIDEM_TABLET,
    mentions,
    option,
    ref,
)


def before(hours: float = 0, minutes: float = 0, days: float = 0) -> str:
    return iso(AS_OF - timedelta(days=days, hours=hours, minutes=minutes))


def bup(d):
    return option(d, "buprenorphine")


# ------------------------------------------------------------------ suitable


def test_suitable_by_default_office_based(decide):
    """§4: otherwise `suitable`, with the office-based reason."""
    b = bup(decide(oud_condition()))
    assert b.status == "suitable"
    assert mentions(b.reasons, "office-based")


def test_suitable_in_pregnancy_names_it_with_its_evidence(decide):
    """§4: suitable, reason "appropriate in pregnancy" when known pregnant (§8 82810-3 =
    LA15173-0), citing the pregnancy observation."""
    p = coded(PREGNANCY_STATUS, LOINC, PREGNANT, day_ago(3))
    d = decide(oud_condition(), p, patient_resource=patient(gender="female", birth="1995-02-02"))
    assert bup(d).status == "suitable"
    assert mentions(bup(d).reasons, "pregnan")
    assert ref(p) in bup(d).evidence


# ------------------------------------------------------------------ not-yet: exposure


@pytest.mark.parametrize(
    "rx",
    [
        OXYCODONE_TABLET,
        HYDROCODONE_APAP,
        MORPHINE_TABLET,
        HYDROMORPHONE_TABLET,
        CODEINE_APAP,
        OXYMORPHONE_TABLET,
        FENTANYL_PATCH,
        TRAMADOL_TABLET,
    ],
)
def test_not_yet_with_active_full_agonist_analgesic_and_no_cows(decide, rx):
    """§4: an active full-agonist analgesic is recent exposure; with no COWS in 24 h ->
    `not-yet` (risk of precipitated withdrawal), naming COWS, citing the request; Task
    assess-cows."""
    m = med(rx, authored=day_ago(20))
    d = decide(oud_condition(), m)
    b = bup(d)
    assert b.status == "not-yet"
    assert mentions(b.reasons, "precipitated withdrawal")
    assert mentions(b.reasons, "COWS")
    assert ref(m) in b.evidence
    assert "assess-cows" in d.task_codes


@pytest.mark.parametrize("status", ["completed", "stopped", "on-hold", "unknown"])
def test_analgesic_that_is_history_is_not_recent_exposure(decide, status):
    """§8: only `active` requests are current: a completed / stopped / on-hold / unknown
    full-agonist analgesic is history, not recent exposure."""
    d = decide(oud_condition(), med(OXYCODONE_TABLET, status=status, authored=day_ago(20)))
    assert bup(d).status == "suitable"


@pytest.mark.parametrize("loinc", [UDS_OPIATES, UDS_OXYCODONE, UDS_6MAM])
@pytest.mark.parametrize(("days", "status"), [(0, "not-yet"), (3, "not-yet"), (4, "suitable")])
def test_not_yet_with_illicit_positive_in_last_3_days(decide, loinc, days, status):
    """§4: an illicit opioid-positive UDS in the last 3 days (calendar days) -> not-yet; 4 days
    ago -> suitable."""
    u = uds(loinc, "POS", day_ago(days))
    b = bup(decide(oud_condition(), u))
    assert b.status == status
    if status == "not-yet":
        assert ref(u) in b.evidence


def test_explained_positive_is_not_recent_illicit_exposure_but_its_analgesic_is(decide):
    """§2 / §4: an opiates positive explained by hydrocodone is not illicit, but the active
    hydrocodone itself is full-agonist exposure."""
    m = med(HYDROCODONE_APAP, authored=day_ago(30))
    u = uds(UDS_OPIATES, "POS", day_ago(1))
    b = bup(decide(oud_condition(), m, u))
    assert b.status == "not-yet"
    assert ref(m) in b.evidence


@pytest.mark.parametrize(
    ("kind", "used", "status"),
    [
        ("short-acting", before(hours=2), "not-yet"),
        ("short-acting", before(hours=12), "not-yet"),
        ("short-acting", before(hours=12, minutes=1), "suitable"),
        ("long-acting", before(hours=12, minutes=1), "not-yet"),
        ("long-acting", before(hours=24), "not-yet"),
        ("long-acting", before(hours=24, minutes=1), "suitable"),
        (None, before(hours=20), "not-yet"),
        (None, before(hours=24), "not-yet"),
        (None, before(hours=24, minutes=1), "suitable"),
    ],
)
def test_not_yet_with_recent_last_use_by_opioid_type(decide, kind, used, status):
    """§4 / §8: last use < 12 h ago (short-acting) or < 24 h (long-acting; a use with no type
    counts as long-acting) is recent exposure. A window bound in hours includes its edge (§8):
    exactly 12 h / 24 h is still recent; 12 h 1 min / 24 h 1 min is not."""
    u = last_use(used, kind)
    b = bup(decide(oud_condition(), u))
    assert b.status == status
    if status == "not-yet":
        assert ref(u) in b.evidence


@pytest.mark.parametrize(
    ("used", "status"),
    [
        (before(hours=30), "not-yet"),
        (before(days=7), "not-yet"),
        (day_ago(7), "not-yet"),
        (before(days=7, hours=11), "not-yet"),  # 2025-06-08T01:00: 7 calendar days
        (day_ago(8), "suitable"),
        (before(days=7, hours=13), "suitable"),  # 2025-06-07T23:00: 8 calendar days
    ],
)
def test_fentanyl_last_use_in_last_7_days_needs_cows_8_whatever_the_hours(decide, used, status):
    """§8: a last use typed fentanyl at any time in the last 7 days (calendar days) is recent
    exposure: it needs COWS >= 8 whatever the hours."""
    b = bup(decide(oud_condition(), last_use(used, "fentanyl")))
    assert b.status == status


def test_fentanyl_last_use_with_unknown_timing_is_recent_exposure(decide):
    """§4: "unknown timing for fentanyl" is recent exposure -> not-yet without COWS >= 8."""
    u = last_use(day_ago(1), "fentanyl")
    del u["valueDateTime"]
    b = bup(decide(oud_condition(), u))
    assert b.status == "not-yet"
    assert ref(u) in b.evidence


def test_fentanyl_use_in_7_days_counts_even_when_a_later_use_was_short_acting(decide):
    """§8: "a last use typed fentanyl at any time in the last 7 days" is exposure; a later
    short-acting use 20 h ago (itself outside 12 h) does not cancel it (conservative)."""
    fent = last_use(before(days=3), "fentanyl")
    later = last_use(before(hours=20), "short-acting")
    b = bup(decide(oud_condition(), fent, later))
    assert b.status == "not-yet"
    assert ref(fent) in b.evidence


@pytest.mark.parametrize(("days", "status"), [(4, "not-yet"), (7, "not-yet"), (8, "suitable")])
def test_fentanyl_positive_in_last_7_days_needs_cows_8(decide, days, status):
    """§8: a fentanyl-positive UDS in the last 7 days is recent exposure (beyond the 3-day
    illicit window); 8 days ago it is not."""
    u = uds(UDS_FENTANYL, "POS", day_ago(days))
    b = bup(decide(oud_condition(), u))
    assert b.status == status
    if status == "not-yet":
        assert ref(u) in b.evidence


# ------------------------------------------------------------------ the COWS half


@pytest.mark.parametrize(
    ("score", "status"), [(0, "not-yet"), (7, "not-yet"), (8, "suitable"), (20, "suitable")]
)
def test_cows_8_or_more_in_24_hours_lifts_not_yet(decide, score, status):
    """§4: not-yet needs recent exposure AND the latest COWS in 24 h < 8 (or absent):
    COWS 7 -> not-yet, COWS 8 -> start (suitable)."""
    m = med(OXYCODONE_TABLET, authored=day_ago(10))
    c = cows(score, before(hours=1))
    b = bup(decide(oud_condition(), m, c))
    assert b.status == status
    if status == "not-yet":
        assert ref(c) in b.evidence
        assert mentions(b.reasons, "COWS")


@pytest.mark.parametrize(
    ("when", "status"), [(before(hours=24), "suitable"), (before(hours=24, minutes=1), "not-yet")]
)
def test_cows_window_24_hours_includes_its_edge(decide, when, status):
    """§8: a COWS exactly 24 h old is "in the last 24 h"; 24 h 1 min old is absent."""
    b = bup(decide(oud_condition(), med(OXYCODONE_TABLET, authored=day_ago(10)), cows(9, when)))
    assert b.status == status


def test_latest_cows_decides(decide):
    """§4: "the latest COWS in the last 24 h": COWS 9 at 10 h then 6 at 1 h -> not-yet."""
    b = bup(
        decide(
            oud_condition(),
            med(OXYCODONE_TABLET, authored=day_ago(10)),
            cows(9, before(hours=10)),
            cows(6, before(hours=1)),
        )
    )
    assert b.status == "not-yet"


def test_low_cows_without_exposure_is_suitable(decide):
    """§4: a low COWS alone (no recent full-agonist exposure) does not make it not-yet."""
    assert bup(decide(oud_condition(), cows(2, before(hours=1)))).status == "suitable"


# ------------------------------------------------------------------ caution


def test_caution_on_methadone_not_not_yet(decide):
    """§4 / §8: buprenorphine for a patient on methadone is `caution` (planned transition with
    taper and specialist input), not `not-yet`, citing the methadone request."""
    m = med(METHADONE_SOLUTION, authored=day_ago(90))
    b = bup(decide(oud_condition(), m))
    assert b.status == "caution"
    assert mentions(b.reasons, "methadone")
    assert ref(m) in b.evidence


@pytest.mark.parametrize("rx", [ALPRAZOLAM_TABLET, ZOLPIDEM_TABLET])
def test_caution_with_active_benzodiazepine_or_cns_depressant(decide, rx):
    """§4: an active benzodiazepine or other CNS depressant -> caution, citing it."""
    m = med(rx, authored=day_ago(30))
    b = bup(decide(oud_condition(), m))
    assert b.status == "caution"
    assert ref(m) in b.evidence


def test_depressant_that_is_history_is_no_caution(decide):
    """§8: a completed benzodiazepine request is history, not "active"."""
    b = bup(
        decide(oud_condition(), med(ALPRAZOLAM_TABLET, status="completed", authored=day_ago(30)))
    )
    assert b.status == "suitable"


@pytest.mark.parametrize(
    ("loinc", "value", "high", "status"),
    [
        (ALT, 200, None, "suitable"),  # exactly 5 x 40
        (ALT, 201, None, "caution"),
        (AST, 200, None, "suitable"),
        (AST, 201, None, "caution"),
        (ALT, 250, 50, "suitable"),  # exactly 5 x referenceRange.high
        (ALT, 251, 50, "caution"),
        (AST, 160, 30, "caution"),  # 5.3 x a lower ULN
    ],
)
def test_caution_when_alt_or_ast_over_5_times_uln(decide, loinc, value, high, status):
    """§4: ALT or AST > 5 x ULN -> caution; ULN from referenceRange.high, else 40 U/L (§1)."""
    q = quantity(loinc, value, day_ago(10), high=high)
    b = bup(decide(oud_condition(), q))
    assert b.status == status
    if status == "caution":
        assert ref(q) in b.evidence


@pytest.mark.parametrize(("days", "status"), [(90, "caution"), (91, "suitable")])
def test_liver_tests_count_for_90_days(decide, days, status):
    """§8: liver tests count for 90 days (calendar days)."""
    b = bup(decide(oud_condition(), quantity(ALT, 400, day_ago(days))))
    assert b.status == status


@pytest.mark.parametrize(
    ("birth", "status"),
    [
        (birth_for_age(15, birthday_tomorrow=True), "caution"),
        (birth_for_age(16), "suitable"),
        (birth_for_age(12), "caution"),
    ],
)
def test_caution_under_age_16(decide, birth, status):
    """§4: age < 16 -> caution (15 the day before the 16th birthday; 16 on the birthday)."""
    b = bup(decide(oud_condition(), patient_resource=patient(birth=birth)))
    assert b.status == status
    if status == "caution":
        assert mentions(b.reasons, "16")


def test_age_caution_cites_the_patient(decide):
    """§4: "every status carries its reasons and the ids of the resources that led to it": the
    age caution comes from Patient.birthDate."""
    b = bup(
        decide(
            oud_condition(),
            patient_resource=patient(birth=birth_for_age(15, birthday_tomorrow=True)),
        )
    )
    assert b.status == "caution"
    assert "Patient/p1" in b.evidence


# ------------------------------------------------------------------ precedence


def test_not_yet_wins_over_caution_and_lists_it(decide):
    """§8: precedence not-yet > caution; the caution is still listed among the reasons."""
    benzo = med(ALPRAZOLAM_TABLET, authored=day_ago(30))
    b = bup(decide(oud_condition(), med(OXYCODONE_TABLET, authored=day_ago(10)), benzo))
    assert b.status == "not-yet"
    assert mentions(b.reasons, "benzodiazepine")
    assert ref(benzo) in b.evidence


def test_active_buprenorphine_is_active(decide):
    """§4: already prescribed -> `active` (continue), citing the request."""
    m = med(BUP_NALOXONE_FILM, authored=day_ago(60))
    b = bup(decide(oud_condition(), m))
    assert b.status == "active"
    assert ref(m) in b.evidence


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        (lambda: med(ALPRAZOLAM_TABLET, authored=day_ago(30)), "benzodiazepine"),
        (lambda: quantity(ALT, 300, day_ago(5)), "ALT"),
    ],
)
def test_active_with_a_caution_rule_stays_active_and_lists_the_caution(decide, extra, word):
    """§8: an active medication that meets a caution rule stays `active` and lists the caution
    among its reasons (with its evidence)."""
    e = extra()
    b = bup(decide(oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(60)), e))
    assert b.status == "active"
    assert mentions(b.reasons, word)
    assert ref(e) in b.evidence


def test_active_wins_over_not_yet(decide):
    """§8: precedence active > not-yet: on buprenorphine with an active oxycodone and no COWS."""
    b = bup(
        decide(
            oud_condition(),
            med(BUP_NALOXONE_FILM, authored=day_ago(60)),
            med(OXYCODONE_TABLET, authored=day_ago(5)),
        )
    )
    assert b.status == "active"


def test_not_yet_task_is_assess_cows(decide):
    """§4: not-yet names a Task to meet the precondition: assess-cows (no COWS in 24 h)."""
    d = decide(oud_condition(), last_use(before(hours=3), "short-acting"))
    assert bup(d).status == "not-yet"
    assert "assess-cows" in d.task_codes


def test_exposure_precedes_age(decide):
    """§8 precedence: a 15-year-old with recent exposure is not-yet (over the age caution)."""
    d = decide(
        oud_condition(),
        last_use(ago(hours=2), "short-acting"),
        patient_resource=patient(birth=birth_for_age(15)),
    )
    assert bup(d).status == "not-yet"
    assert mentions(bup(d).reasons, "16")
