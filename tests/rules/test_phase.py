"""PATHWAY.md §3 (phase, first matching rule wins) with §2 (illicit positives, episode start)
and the §8 definitions (explained positives, episode chain, return to use only via 2b / 3c,
withdrawal treatment, calendar-day and hour windows, future-dated data)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import (
    AS_OF,
    BUP_NALOXONE_FILM,
    ICD10,
    METHADONE_SOLUTION,
    METHADONE_TABLET,
    OXYCODONE_TABLET,
    SNOMED,
    ago,
    condition,
    cows,
    day_ago,
    iso,
    med,
    oud_condition,
    uds,
)
from rulekit import (
    BUP_PATCH,
    CLONIDINE_TABLET,
    CODEINE_APAP,
    FENTANYL_PATCH,
    HYDROCODONE_APAP,
    HYDROMORPHONE_TABLET,
    HYPERTENSION_REASON,
    LOFEXIDINE_TABLET,
    MORPHINE_TABLET,
    NALTREXONE_TABLET,
    OUD_REASON,
    OXYMORPHONE_TABLET,
    TRAMADOL_TABLET,
    UDS_6MAM,
    UDS_BENZODIAZEPINES,
    UDS_BUPRENORPHINE,
    UDS_EDDP,
    UDS_FENTANYL,
    UDS_METHADONE,
    UDS_OPIATES,
    UDS_OXYCODONE,
    UDS_STIMULANTS,
    WITHDRAWAL_REASON,
    ref,
)


def future(days: float = 0, hours: float = 0, minutes: float = 0) -> str:
    return iso(AS_OF + timedelta(days=days, hours=hours, minutes=minutes))


# ------------------------------------------------------------------ rule 1: no OUD evidence


@pytest.mark.parametrize(
    "when",
    [ago(hours=1), day_ago(0), day_ago(30), ago(days=30, hours=11)],
    ids=["1h", "today-date", "30d-date", "30d11h-instant-same-calendar-day"],
)
def test_rule_1a_illicit_positive_in_30_days_is_suspected_oud(decide, when):
    """§3 1a: no OUD evidence and an illicit opioid-positive UDS in the last 30 days (calendar
    days, §8) -> assessment, flagged suspected OUD."""
    u = uds(UDS_FENTANYL, "POS", when)
    d = decide(u)
    assert d.phase == "assessment"
    assert d.suspected_oud is True
    assert d.oud_evidence is False
    assert d.return_to_use is False
    assert ref(u) in d.evidence
    assert d.phase_reasons and "DSM-5" in " ".join(d.phase_reasons)


@pytest.mark.parametrize(
    "when",
    [day_ago(31), ago(days=30, hours=13)],
    ids=["31d-date", "30d13h-instant-previous-calendar-day"],
)
def test_rule_1a_positive_older_than_30_days_is_not_applicable(decide, when):
    """§3 1a / §8: 31 calendar days ago is outside "the last 30 days" -> 1b."""
    d = decide(uds(UDS_FENTANYL, "POS", when))
    assert d.phase == "not-applicable"
    assert d.suspected_oud is False


@pytest.mark.parametrize(
    "loinc",
    [
        UDS_OPIATES,
        UDS_FENTANYL,
        UDS_6MAM,
        UDS_OXYCODONE,
        UDS_BUPRENORPHINE,
        UDS_METHADONE,
        UDS_EDDP,
    ],
)
def test_rule_1a_every_unexplained_opioid_analyte_is_illicit(decide, loinc):
    """§2: a positive opioid result not explained by an active prescription is illicit."""
    d = decide(uds(loinc, "positive", day_ago(5)))
    assert (d.phase, d.suspected_oud) == ("assessment", True)


@pytest.mark.parametrize("loinc", [UDS_STIMULANTS, UDS_BENZODIAZEPINES])
def test_rule_1b_non_opioid_positive_is_not_suspected_oud(decide, loinc):
    """§3 1a concerns opioid positives only."""
    d = decide(uds(loinc, "POS", day_ago(5)))
    assert d.phase == "not-applicable"


@pytest.mark.parametrize("result", ["NEG", "negative", "pending", "inconclusive"])
def test_rule_1b_negative_or_unknown_opioid_result_is_not_suspected_oud(decide, result):
    """§3 1a needs a positive; negative and unknown results are not positives."""
    d = decide(uds(UDS_FENTANYL, result, day_ago(2)))
    assert d.phase == "not-applicable"


def test_rule_1b_not_applicable_writes_nothing(decide):
    """§3 1b: no OUD evidence and no illicit positive -> not-applicable: no card, nothing
    written (no tasks, no chart flags)."""
    d = decide()
    assert d.phase == "not-applicable"
    assert d.suspected_oud is False
    assert d.return_to_use is False
    assert d.tasks == ()
    assert d.flags == ()


# ------------------------------------------------------------------ explained positives


@pytest.mark.parametrize(
    ("loinc", "rx", "explained"),
    [
        (UDS_OPIATES, MORPHINE_TABLET, True),
        (UDS_OPIATES, CODEINE_APAP, True),
        (UDS_OPIATES, HYDROCODONE_APAP, True),
        (UDS_OPIATES, HYDROMORPHONE_TABLET, True),
        (UDS_OPIATES, OXYCODONE_TABLET, False),
        (UDS_OPIATES, TRAMADOL_TABLET, False),
        (UDS_OPIATES, FENTANYL_PATCH, False),
        (UDS_OXYCODONE, OXYCODONE_TABLET, True),
        (UDS_OXYCODONE, OXYMORPHONE_TABLET, True),
        (UDS_OXYCODONE, HYDROCODONE_APAP, False),
        (UDS_OXYCODONE, MORPHINE_TABLET, False),
        (UDS_FENTANYL, FENTANYL_PATCH, True),
        (UDS_FENTANYL, OXYCODONE_TABLET, False),
        (UDS_FENTANYL, MORPHINE_TABLET, False),
        (UDS_6MAM, MORPHINE_TABLET, False),
        (UDS_6MAM, CODEINE_APAP, False),
        (UDS_METHADONE, METHADONE_TABLET, True),
        (UDS_EDDP, METHADONE_TABLET, True),
        (UDS_METHADONE, OXYCODONE_TABLET, False),
        (UDS_BUPRENORPHINE, BUP_PATCH, True),
        (UDS_BUPRENORPHINE, MORPHINE_TABLET, False),
    ],
)
def test_positive_is_explained_only_by_an_active_prescription_of_the_same_drug_group(
    decide, loinc, rx, explained
):
    """§8: a positive is explained only by an active prescription of the same drug group
    (opiates by morphine/codeine/hydrocodone/hydromorphone; oxycodone by oxycodone/oxymorphone;
    fentanyl by fentanyl; methadone/EDDP by methadone; buprenorphine by buprenorphine); 6-MAM is
    always illicit; fentanyl is illicit unless fentanyl is prescribed. No OUD evidence, so an
    unexplained positive is rule 1a."""
    d = decide(med(rx, authored=day_ago(40)), uds(loinc, "POS", day_ago(3)))
    if explained:
        assert d.phase == "not-applicable"
        assert d.suspected_oud is False
    else:
        assert d.phase == "assessment"
        assert d.suspected_oud is True


@pytest.mark.parametrize("status", ["completed", "stopped", "on-hold"])
def test_positive_is_not_explained_by_a_prescription_that_is_not_active(decide, status):
    """§2: only the patient's own *active* prescriptions explain a positive."""
    d = decide(
        med(OXYCODONE_TABLET, status=status, authored=day_ago(40)),
        uds(UDS_OXYCODONE, "POS", day_ago(3)),
    )
    assert (d.phase, d.suspected_oud) == ("assessment", True)


# ------------------------------------------------------------------ rule 2: active MOUD


@pytest.mark.parametrize(
    ("days", "phase"),
    [(0, "stabilization"), (29, "stabilization"), (30, "maintenance"), (200, "maintenance")],
)
def test_rule_2a_episode_start_under_30_days_is_stabilization(decide, days, phase):
    """§3 2a / 2c: episode start < 30 days ago -> stabilization; 30 or more -> maintenance."""
    d = decide(oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(days)))
    assert d.phase == phase
    assert d.return_to_use is False


@pytest.mark.parametrize(("days", "phase"), [(29, "stabilization"), (30, "maintenance")])
def test_rule_2a_methadone_episode_boundary(decide, days, phase):
    """§3 2a / 2c with methadone as the MOUD."""
    d = decide(oud_condition(), med(METHADONE_SOLUTION, authored=day_ago(days)))
    assert d.phase == phase


@pytest.mark.parametrize("loinc", [UDS_FENTANYL, UDS_6MAM, UDS_OPIATES])
def test_rule_2a_positive_in_first_30_days_sets_no_return_to_use(decide, loinc):
    """§8: a positive in the first 30 days of treatment (2a) is expected and sets no flag."""
    d = decide(
        oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(10)), uds(loinc, "POS", day_ago(2))
    )
    assert d.phase == "stabilization"
    assert d.return_to_use is False


@pytest.mark.parametrize(("days_on", "return_to_use"), [(29, False), (30, True)])
def test_rule_2a_2b_boundary_29_vs_30_days_of_treatment_with_a_positive(
    decide, days_on, return_to_use
):
    """§3 2a / 2b: the same illicit positive is expected on day 29 and a return to use on
    day 30 (both stabilization)."""
    d = decide(
        oud_condition(),
        med(BUP_NALOXONE_FILM, authored=day_ago(days_on)),
        uds(UDS_FENTANYL, "POS", day_ago(1)),
    )
    assert d.phase == "stabilization"
    assert d.return_to_use is return_to_use


@pytest.mark.parametrize(
    ("uds_days", "phase", "flag"),
    [(0, "stabilization", True), (30, "stabilization", True), (31, "maintenance", False)],
)
def test_rule_2b_illicit_positive_in_last_30_days_is_return_to_use(decide, uds_days, phase, flag):
    """§3 2b: >= 30 days on MOUD and an illicit positive in the last 30 days (calendar days)
    -> stabilization with return to use; 31 days ago -> 2c maintenance."""
    u = uds(UDS_FENTANYL, "POS", day_ago(uds_days))
    d = decide(oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(90)), u)
    assert d.phase == phase
    assert d.return_to_use is flag
    assert d.suspected_oud is False
    if flag:
        assert ref(u) in d.evidence


@pytest.mark.parametrize(
    ("moud", "extra", "loinc", "return_to_use"),
    [
        (BUP_NALOXONE_FILM, None, UDS_BUPRENORPHINE, False),
        (METHADONE_SOLUTION, None, UDS_METHADONE, False),
        (METHADONE_SOLUTION, None, UDS_EDDP, False),
        (BUP_NALOXONE_FILM, None, UDS_METHADONE, True),
        (BUP_NALOXONE_FILM, None, UDS_EDDP, True),
        (METHADONE_SOLUTION, None, UDS_BUPRENORPHINE, True),
        (BUP_NALOXONE_FILM, None, UDS_6MAM, True),
        (BUP_NALOXONE_FILM, MORPHINE_TABLET, UDS_6MAM, True),
        (BUP_NALOXONE_FILM, None, UDS_FENTANYL, True),
        (BUP_NALOXONE_FILM, FENTANYL_PATCH, UDS_FENTANYL, False),
        (METHADONE_SOLUTION, None, UDS_OPIATES, True),
        (METHADONE_SOLUTION, HYDROCODONE_APAP, UDS_OPIATES, False),
        (METHADONE_SOLUTION, HYDROCODONE_APAP, UDS_OXYCODONE, True),
    ],
)
def test_rule_2b_explained_positives_are_not_return_to_use(
    decide, moud, extra, loinc, return_to_use
):
    """§2 / §8: buprenorphine positive on buprenorphine, methadone or EDDP positive on methadone,
    opiates positive with an active hydrocodone are explained; 6-MAM always illicit; fentanyl
    illicit unless fentanyl is prescribed; a different drug group never explains."""
    items = [oud_condition(), med(moud, authored=day_ago(90)), uds(loinc, "POS", day_ago(3))]
    if extra:
        items.append(med(extra, authored=day_ago(60)))
    d = decide(*items)
    assert d.return_to_use is return_to_use
    assert d.phase == ("stabilization" if return_to_use else "maintenance")


def test_rule_2c_maintenance(decide):
    """§3 2c: >= 30 days on MOUD and no illicit positive in 30 days -> maintenance."""
    m = med(BUP_NALOXONE_FILM, authored=day_ago(120))
    d = decide(oud_condition(), m, uds(UDS_FENTANYL, "NEG", day_ago(5)))
    assert d.phase == "maintenance"
    assert d.return_to_use is False
    assert ref(m) in d.evidence


def test_rule_2_takes_precedence_over_withdrawal(decide):
    """§3: first matching rule wins: active MOUD (2) before withdrawal (3a)."""
    d = decide(
        oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(60)), cows(12, ago(hours=2))
    )
    assert d.phase == "maintenance"


# ------------------------------------------------------------------ episode chain (§8)


@pytest.mark.parametrize(
    ("gap", "phase"), [(29, "maintenance"), (30, "maintenance"), (31, "stabilization")]
)
def test_episode_chain_gap_30_days_joins_31_days_breaks(decide, gap, phase):
    """§2 / §8: consecutive MOUD requests at most 30 days apart are one episode; the start is
    the earliest of the chain. Active request 10 days ago, the previous one `gap` days before."""
    d = decide(
        oud_condition(),
        med(BUP_NALOXONE_FILM, status="completed", authored=day_ago(10 + gap)),
        med(BUP_NALOXONE_FILM, authored=day_ago(10)),
    )
    assert d.phase == phase


def test_episode_chain_has_several_links(decide):
    """§8: the chain follows every link: 55 -> 28 -> 5 days ago (gaps 27 and 23) starts 55 days
    ago (maintenance), though the nearest previous request alone would give 28 days."""
    d = decide(
        oud_condition(),
        med(BUP_NALOXONE_FILM, status="completed", authored=day_ago(55)),
        med(BUP_NALOXONE_FILM, status="completed", authored=day_ago(28)),
        med(BUP_NALOXONE_FILM, authored=day_ago(5)),
    )
    assert d.phase == "maintenance"


def test_episode_chain_stops_at_the_first_gap_over_30_days(decide):
    """§8: 70 -> (gap 35) -> 35 -> (gap 25) -> 10: the episode starts 35 days ago, not 70."""
    d = decide(
        oud_condition(),
        med(BUP_NALOXONE_FILM, status="completed", authored=day_ago(70)),
        med(BUP_NALOXONE_FILM, status="completed", authored=day_ago(35)),
        med(BUP_NALOXONE_FILM, authored=day_ago(10)),
        uds(UDS_FENTANYL, "POS", day_ago(2)),
    )
    # Started 35 days ago (>= 30): the positive is a return to use (2b).
    assert d.phase == "stabilization"
    assert d.return_to_use is True


@pytest.mark.parametrize(
    ("earlier", "status"),
    [
        (METHADONE_SOLUTION, "stopped"),
        (NALTREXONE_TABLET, "completed"),
        (METHADONE_SOLUTION, "active"),
    ],
)
def test_episode_chain_spans_moud_drugs(decide, earlier, status):
    """§8: the chain is made of MOUD requests of any MOUD drug: methadone 45 days ago then
    buprenorphine 20 days ago is one 45-day episode (maintenance)."""
    d = decide(
        oud_condition(),
        med(earlier, status=status, authored=day_ago(45)),
        med(BUP_NALOXONE_FILM, authored=day_ago(20)),
    )
    assert d.phase == "maintenance"


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("completed", "maintenance"),
        ("stopped", "maintenance"),
        ("active", "maintenance"),
        ("on-hold", "stabilization"),
        ("unknown", "stabilization"),
        ("cancelled", "stabilization"),
        ("entered-in-error", "stabilization"),
        ("draft", "stabilization"),
    ],
)
def test_episode_chain_uses_active_completed_stopped_only(decide, status, phase):
    """§8: the chain holds MOUD requests with status active, completed or stopped only."""
    d = decide(
        oud_condition(),
        med(BUP_NALOXONE_FILM, status=status, authored=day_ago(40)),
        med(BUP_NALOXONE_FILM, authored=day_ago(10)),
    )
    assert d.phase == phase


# ------------------------------------------------------------------ rule 3a: withdrawal


@pytest.mark.parametrize(
    ("score", "when", "phase"),
    [
        (5, ago(hours=1), "stabilization"),
        (4, ago(hours=1), "assessment"),
        (20, ago(hours=72), "stabilization"),
        (20, iso(AS_OF - timedelta(hours=72, minutes=1)), "assessment"),
    ],
)
def test_rule_3a_cows_5_or_more_in_72_hours_is_withdrawal(decide, score, when, phase):
    """§3 3a / §8: no active MOUD and COWS >= 5 in the last 72 h (edge included) ->
    stabilization; COWS 4, or 72 h 1 min ago -> not withdrawal (3d)."""
    c = cows(score, when)
    d = decide(oud_condition(), c)
    assert d.phase == phase
    assert d.return_to_use is False
    if phase == "stabilization":
        assert ref(c) in d.evidence


def test_rule_3a_any_cows_of_5_in_72_hours_counts(decide):
    """§3 3a: "COWS >= 5 in the last 72 h": a later lower score does not cancel it."""
    d = decide(oud_condition(), cows(7, ago(hours=40)), cows(2, ago(hours=2)))
    assert d.phase == "stabilization"


@pytest.mark.parametrize(
    ("status", "phase"),
    [("active", "stabilization"), ("completed", "assessment"), ("on-hold", "assessment")],
)
def test_rule_3a_active_lofexidine_is_withdrawal(decide, status, phase):
    """§3 3a / §8: an active lofexidine request (any reason) is withdrawal treatment."""
    m = med(LOFEXIDINE_TABLET, status=status, authored=day_ago(1))
    d = decide(oud_condition(), m)
    assert d.phase == phase
    if phase == "stabilization":
        assert ref(m) in d.evidence


@pytest.mark.parametrize(
    ("reason", "phase"),
    [
        (None, "assessment"),
        (HYPERTENSION_REASON, "assessment"),
        (WITHDRAWAL_REASON, "stabilization"),
        ((ICD10, "F11.23"), "stabilization"),
        (OUD_REASON, "stabilization"),
    ],
)
def test_rule_3a_clonidine_only_with_withdrawal_or_oud_reason_code(decide, reason, phase):
    """§8: an active clonidine request is withdrawal treatment only when its reasonCode is
    opioid withdrawal or OUD (clonidine is also a blood-pressure drug)."""
    d = decide(oud_condition(), med(CLONIDINE_TABLET, authored=day_ago(1), reason=reason))
    assert d.phase == phase


def test_rule_3a_completed_clonidine_for_withdrawal_is_not_withdrawal(decide):
    """§3 3a: the clonidine request must be active."""
    d = decide(
        oud_condition(),
        med(CLONIDINE_TABLET, status="completed", authored=day_ago(3), reason=WITHDRAWAL_REASON),
    )
    assert d.phase == "assessment"


@pytest.mark.parametrize(
    ("system", "code"),
    [(SNOMED, "87132004"), (ICD10, "F11.13"), (ICD10, "F11.23"), (ICD10, "F11.93")],
)
@pytest.mark.parametrize(
    ("days", "phase"), [(0, "stabilization"), (7, "stabilization"), (8, "assessment")]
)
def test_rule_3a_withdrawal_condition_in_last_7_days(decide, system, code, days, phase):
    """§3 3a / §1: an opioid withdrawal Condition (SNOMED 87132004, F11.13 / F11.23 / F11.93)
    recorded in the last 7 days (calendar days) -> stabilization; 8 days -> not."""
    w = condition(code, system, recorded=day_ago(days))
    d = decide(oud_condition(), w)
    assert d.phase == phase
    if phase == "stabilization":
        assert ref(w) in d.evidence


def test_rule_3a_before_3b(decide):
    """§3: first matching rule wins: withdrawal (3a) before remission (3b)."""
    d = decide(oud_condition(status="remission"), cows(6, ago(hours=3)))
    assert d.phase == "stabilization"


def test_rule_3a_sets_no_return_to_use_even_with_an_illicit_positive(decide):
    """§8: return to use is set only by 2b and 3c; remission + illicit positive + withdrawal is
    3a stabilization without the flag."""
    d = decide(
        oud_condition(status="remission"),
        uds(UDS_FENTANYL, "POS", day_ago(4)),
        cows(10, ago(hours=2)),
    )
    assert d.phase == "stabilization"
    assert d.return_to_use is False


# ------------------------------------------------------------------ rules 3b / 3c / 3d


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(lambda: [oud_condition(status="remission")], id="remission-condition"),
        pytest.param(lambda: [oud_condition(code="F11.21")], id="F11.21"),
        pytest.param(
            lambda: [
                oud_condition(),
                med(BUP_NALOXONE_FILM, status="completed", authored=day_ago(200)),
            ],
            id="past-bup-completed",
        ),
        pytest.param(
            lambda: [
                oud_condition(),
                med(METHADONE_SOLUTION, status="stopped", authored=day_ago(200)),
            ],
            id="past-methadone-stopped",
        ),
        pytest.param(
            lambda: [med(BUP_NALOXONE_FILM, status="stopped", authored=day_ago(100))],
            id="past-bup-only",
        ),
    ],
)
def test_rule_3b_remission_or_past_episode_without_illicit_positive_is_recovery(decide, items):
    """§3 3b: OUD in remission or a past MOUD episode (completed / stopped, §8), not on MOUD,
    no illicit positive in 90 days -> recovery."""
    d = decide(*items())
    assert d.phase == "recovery"
    assert d.return_to_use is False


@pytest.mark.parametrize(
    ("days", "phase", "flag"),
    [(0, "assessment", True), (90, "assessment", True), (91, "recovery", False)],
)
def test_rule_3c_illicit_positive_in_90_days_is_return_to_use(decide, days, phase, flag):
    """§3 3b / 3c: as 3b but with an illicit positive in the last 90 days (calendar days) ->
    assessment with return to use; 91 days -> recovery."""
    u = uds(UDS_OPIATES, "positive", day_ago(days))
    d = decide(oud_condition(status="remission"), u)
    assert d.phase == phase
    assert d.return_to_use is flag
    if flag:
        assert ref(u) in d.evidence


def test_rule_3c_past_episode_with_illicit_positive(decide):
    """§3 3c via a past MOUD episode."""
    d = decide(
        oud_condition(),
        med(BUP_NALOXONE_FILM, status="completed", authored=day_ago(150)),
        uds(UDS_6MAM, "POS", day_ago(60)),
    )
    assert (d.phase, d.return_to_use) == ("assessment", True)


def test_rule_3c_explained_positive_is_recovery(decide):
    """§2: an oxycodone positive with an active oxycodone prescription is explained: 3b."""
    d = decide(
        oud_condition(status="remission"),
        med(OXYCODONE_TABLET, authored=day_ago(20)),
        uds(UDS_OXYCODONE, "POS", day_ago(5)),
    )
    assert (d.phase, d.return_to_use) == ("recovery", False)


def test_rule_3d_oud_not_on_moud_is_assessment(decide):
    """§3 3d: OUD evidence, no MOUD, no withdrawal, no remission or past episode."""
    c = oud_condition()
    d = decide(c)
    assert d.phase == "assessment"
    assert d.return_to_use is False
    assert d.suspected_oud is False
    assert ref(c) in d.evidence


def test_rule_3d_active_oud_with_illicit_positive_sets_no_flag(decide):
    """§8: return to use only via 2b / 3c: an active OUD with an illicit positive is 3d."""
    d = decide(oud_condition(), uds(UDS_FENTANYL, "POS", day_ago(3)))
    assert (d.phase, d.return_to_use, d.suspected_oud) == ("assessment", False, False)


@pytest.mark.parametrize("status", ["on-hold", "unknown"])
def test_rule_3d_on_hold_or_unknown_moud_is_not_a_past_episode(decide, status):
    """§8: a past MOUD episode is a completed or stopped request: on-hold / unknown is 3d."""
    d = decide(oud_condition(), med(BUP_NALOXONE_FILM, status=status, authored=day_ago(200)))
    assert d.phase == "assessment"


# ------------------------------------------------------------------ future-dated data


@pytest.mark.parametrize("when", [future(minutes=1), future(days=1)[:10], future(days=3)])
def test_future_dated_positive_is_ignored(decide, when):
    """§1 / §8: evaluation is as of `as_of`; a UDS dated after it is not yet known."""
    assert decide(uds(UDS_FENTANYL, "POS", when)).phase == "not-applicable"


def test_future_dated_oud_condition_is_ignored(decide):
    """Data after as_of is ignored: an OUD Condition recorded tomorrow is no evidence."""
    assert decide(oud_condition(recorded=future(days=1)[:10])).phase == "not-applicable"


def test_future_dated_moud_request_is_ignored(decide):
    """Data after as_of is ignored: buprenorphine authored tomorrow is not active MOUD."""
    d = decide(oud_condition(), med(BUP_NALOXONE_FILM, authored=future(days=1)))
    assert d.phase == "assessment"


def test_future_dated_cows_is_ignored(decide):
    """Data after as_of is ignored: a COWS 10 taken in an hour is not withdrawal now."""
    d = decide(oud_condition(), cows(10, future(hours=1)))
    assert d.phase == "assessment"


def test_future_dated_positive_does_not_set_return_to_use(decide):
    """Data after as_of is ignored: a positive in 1 minute is not a return to use."""
    d = decide(
        oud_condition(),
        med(BUP_NALOXONE_FILM, authored=day_ago(90)),
        uds(UDS_FENTANYL, "POS", future(minutes=1)),
    )
    assert (d.phase, d.return_to_use) == ("maintenance", False)


def test_as_of_is_the_only_clock(decide):
    """§1: as_of is an input: the same data evaluated 10 days earlier does not see a positive
    recorded 5 days before the default as_of."""
    data = (oud_condition(status="remission"), uds(UDS_FENTANYL, "POS", day_ago(5)))
    assert decide(*data).phase == "assessment"
    assert decide(*data, as_of=AS_OF - timedelta(days=10)).phase == "recovery"
