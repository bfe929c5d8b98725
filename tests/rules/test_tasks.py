"""PATHWAY.md §7 (monitoring and follow-up tasks) with §8 (assess-cows, collect-uds,
order-lft, order-ecg definitions; qualifying results; completed Tasks of ours), due dates and
priorities from config/pathway.yaml."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import (
    ALPRAZOLAM_TABLET,
    AS_OF,
    BUP_NALOXONE_FILM,
    LOINC,
    METHADONE_SOLUTION,
    ago,
    birth_for_age,
    coded,
    cows,
    day_ago,
    iso,
    med,
    oud_condition,
    patient,
    quantity,
    severity,
    stage,
    task,
    uds,
)
from rulekit import (
    ALT,
    AST,
    HCG_URINE,
    HCV_SCREEN,
    HIV_SCREEN,
    LOFEXIDINE_TABLET,
    NALOXONE_NASAL,
    NALTREXONE_XR,
    NOT_PREGNANT,
    PREGNANCY_STATUS,
    PREGNANT,
    QTC,
    UDS_BENZODIAZEPINES,
    UDS_BUPRENORPHINE,
    UDS_CANNABINOIDS,
    UDS_FENTANYL,
    UDS_OPIATES,
    UDS_STIMULANTS,
    option,
    task_of,
)

TODAY = AS_OF.date()
FEMALE_30 = patient(gender="female", birth=birth_for_age(30))


def before(hours: float = 0, minutes: float = 0, days: float = 0) -> str:
    return iso(AS_OF - timedelta(days=days, hours=hours, minutes=minutes))


def done(code: str, days: int) -> dict:
    """A completed Task of ours, executionPeriod.end `days` calendar days ago."""
    return task(code, end=day_ago(days))


# Phase scenarios in which naltrexone is contraindicated (ALT 7.5 x ULN or an agonist), so
# that only the phase interval of collect-uds is in play (not the naltrexone not-yet rule).
PHASES = {
    "assessment": lambda: [oud_condition(), quantity(ALT, 300, day_ago(5))],
    "stabilization": lambda: [oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(10))],
    "maintenance": lambda: [oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(60))],
    "recovery": lambda: [oud_condition(status="remission"), quantity(ALT, 300, day_ago(5))],
}
UDS_INTERVAL = {"assessment": 30, "stabilization": 7, "maintenance": 30, "recovery": 90}
VISIT_INTERVAL = {"assessment": 7, "stabilization": 7, "maintenance": 28, "recovery": 90}


# ------------------------------------------------------------------ due date and priority


def _all_task_scenarios() -> list[list[dict]]:
    return [
        # 3d, female 30, nothing on file: most monitoring tasks at once.
        [oud_condition()],
        # Evidence only from a past buprenorphine episode: assess-oud-severity, recovery.
        [med(BUP_NALOXONE_FILM, status="completed", authored=day_ago(100))],
        # On bup with a benzodiazepine and a negative bup screen: review-*, order-lft.
        [
            oud_condition(),
            med(BUP_NALOXONE_FILM, authored=day_ago(60)),
            med(ALPRAZOLAM_TABLET, authored=day_ago(30)),
            uds(UDS_BUPRENORPHINE, "NEG", day_ago(1)),
            stage("action", day_ago(3)),
        ],
        # On methadone, stimulant positive, precontemplation.
        [
            oud_condition(),
            med(METHADONE_SOLUTION, authored=day_ago(10)),
            uds(UDS_STIMULANTS, "POS", day_ago(2)),
            stage("precontemplation", day_ago(3)),
        ],
        [oud_condition(status="remission"), stage("preparation", day_ago(3))],
        [oud_condition(status="remission"), stage("maintenance", day_ago(3))],
    ]


def test_every_task_due_date_and_priority_come_from_config(decide, config):
    """§7 / config: each planned task's due date is as_of + its due_in_days (follow-up-visit: +
    the phase interval) and its priority is the configured one; every task has a reason."""
    seen: set[str] = set()
    for items in _all_task_scenarios():
        d = decide(*items, patient_resource=FEMALE_30)
        for t in d.tasks:
            rule = config.pathway.tasks[t.code]
            days = rule.due_in_days
            if days is None:
                days = VISIT_INTERVAL[d.phase]
            assert t.due == TODAY + timedelta(days=days), t
            assert t.priority == rule.priority, t
            assert t.reason, t
            seen.add(t.code)
    assert seen == set(config.pathway.tasks), set(config.pathway.tasks) - seen


# ------------------------------------------------------------------ collect-uds


@pytest.mark.parametrize("phase", list(PHASES))
def test_collect_uds_phase_interval(decide, phase):
    """§7: collect-uds in every phase; a readable UDS inside the phase interval (assessment 30,
    stabilization 7, maintenance 30, recovery 90 days, calendar days) satisfies it; one day older
    does not."""
    n = UDS_INTERVAL[phase]
    inside = decide(*PHASES[phase](), uds(UDS_STIMULANTS, "NEG", day_ago(n)))
    outside = decide(*PHASES[phase](), uds(UDS_STIMULANTS, "NEG", day_ago(n + 1)))
    assert inside.phase == outside.phase == phase
    assert "collect-uds" not in inside.task_codes
    assert "collect-uds" in outside.task_codes
    t = task_of(outside, "collect-uds")
    assert t.due == TODAY + timedelta(days=7)
    assert t.priority == "routine"


@pytest.mark.parametrize("phase", list(PHASES))
def test_collect_uds_due_with_no_uds_at_all(decide, phase):
    """§7: collect-uds is due in every phase when there is no UDS."""
    d = decide(*PHASES[phase]())
    assert d.phase == phase
    assert "collect-uds" in d.task_codes


@pytest.mark.parametrize(
    ("loinc", "result"),
    [
        (UDS_STIMULANTS, "NEG"),
        (UDS_BENZODIAZEPINES, "negative"),
        (UDS_OPIATES, "neg"),
        (UDS_STIMULANTS, "POS"),
        (UDS_CANNABINOIDS, "NEG"),
        (UDS_CANNABINOIDS, "positive"),
    ],
)
def test_collect_uds_qualifying_result_is_any_readable_uds_whatever_its_analyte(
    decide, loinc, result
):
    """§8: a qualifying result is any UDS Observation with a readable (positive or negative)
    result, whatever its analyte (cannabinoids 3427-2 is a UDS of the uds-other / uds-any
    value sets)."""
    d = decide(*PHASES["maintenance"](), uds(loinc, result, day_ago(3)))
    assert "collect-uds" not in d.task_codes


@pytest.mark.parametrize("result", ["pending", "inconclusive", "see note"])
def test_collect_uds_unreadable_result_does_not_qualify(decide, result):
    """§8: only a readable result qualifies; unknown is not a result."""
    d = decide(*PHASES["maintenance"](), uds(UDS_STIMULANTS, result, day_ago(3)))
    assert "collect-uds" in d.task_codes


@pytest.mark.parametrize(
    ("record", "due"),
    [
        (lambda: task("collect-uds", end=day_ago(30)), False),
        (lambda: task("collect-uds", end=day_ago(31)), True),
        (lambda: task("collect-uds", last_modified=before(days=10)), False),
        (lambda: task("collect-uds", end=day_ago(5), ours=False), True),
        (lambda: task("collect-uds", status="in-progress", end=day_ago(5)), True),
        (lambda: task("collect-uds", status="cancelled", end=day_ago(5)), True),
        (lambda: task("order-lft", end=day_ago(5)), True),
    ],
)
def test_collect_uds_completed_task_of_ours_inside_interval(decide, record, due):
    """§7: a completed Task of ours (identifier system {canon}/task, our action code, status
    completed, dated by executionPeriod.end or lastModified) inside the interval satisfies the
    task; another system's Task, an unfinished one, or another code does not."""
    d = decide(*PHASES["maintenance"](), record())
    assert ("collect-uds" in d.task_codes) is due


@pytest.mark.parametrize(("extra_days", "due"), [(None, True), (7, False), (8, True)])
def test_collect_uds_when_naltrexone_not_yet_and_no_uds_in_7_days(decide, extra_days, due):
    """§8: collect-uds also when naltrexone is not-yet and there is no UDS in the last 7 days
    (recovery: a 20-day-old UDS satisfies the 90-day interval, not this rule)."""
    items = [oud_condition(status="remission"), uds(UDS_OPIATES, "NEG", day_ago(20))]
    if extra_days is not None:
        items.append(uds(UDS_STIMULANTS, "NEG", day_ago(extra_days)))
    d = decide(*items)
    assert d.phase == "recovery"
    assert option(d, "naltrexone").status == "not-yet"
    assert ("collect-uds" in d.task_codes) is due


# ------------------------------------------------------------------ assess-cows


@pytest.mark.parametrize(
    ("items", "due"),
    [
        pytest.param(lambda: [oud_condition()], True, id="3d-no-cows"),
        pytest.param(lambda: [uds(UDS_FENTANYL, "POS", day_ago(2))], True, id="1a-suspected"),
        pytest.param(
            lambda: [oud_condition(), med(LOFEXIDINE_TABLET, authored=day_ago(1))],
            True,
            id="3a-no-cows",
        ),
        pytest.param(lambda: [oud_condition(), cows(9, before(hours=30))], True, id="3a-cows-30h"),
        pytest.param(lambda: [oud_condition(), cows(2, before(hours=1))], False, id="low-cows-1h"),
        pytest.param(lambda: [oud_condition(), cows(6, before(hours=24))], False, id="cows-24h"),
        pytest.param(
            lambda: [oud_condition(), cows(6, before(hours=24, minutes=1))], True, id="cows-24h1m"
        ),
        pytest.param(lambda: PHASES["stabilization"](), False, id="active-moud-2a"),
        pytest.param(lambda: PHASES["maintenance"](), False, id="active-moud-2c"),
        pytest.param(lambda: [oud_condition(status="remission")], False, id="recovery"),
    ],
)
def test_assess_cows_no_active_moud_assessment_or_stabilization_no_cows_in_24h(decide, items, due):
    """§8: assess-cows when no active MOUD, phase assessment or stabilization, and no COWS in the
    last 24 h (edge included); priority and due date from config (urgent, 1 day)."""
    d = decide(*items())
    assert ("assess-cows" in d.task_codes) is due
    if due:
        t = task_of(d, "assess-cows")
        assert (t.priority, t.due) == ("urgent", TODAY + timedelta(days=1))


@pytest.mark.parametrize(("hours", "due"), [(2, False), (23, False), (24, False), (25, True)])
def test_assess_cows_completed_task_inside_24_hours(decide, hours, due):
    """§7: a completed assess-cows Task inside its 24 h interval satisfies it (an hours window
    compares instants and includes its edge, §8): 23 h and 24 h ago -> not due; 25 h -> due."""
    d = decide(oud_condition(), task("assess-cows", end=before(hours=hours)))
    assert ("assess-cows" in d.task_codes) is due


# ------------------------------------------------------------------ assess-oud-severity


PAST_BUP = med(BUP_NALOXONE_FILM, status="completed", authored=day_ago(100))


@pytest.mark.parametrize(
    ("items", "due"),
    [
        pytest.param(lambda: [PAST_BUP], True, id="bup-evidence-only"),
        pytest.param(lambda: [uds(UDS_FENTANYL, "POS", day_ago(2))], True, id="suspected-oud"),
        pytest.param(lambda: [PAST_BUP, severity(3, day_ago(100))], False, id="severity-100d"),
        pytest.param(lambda: [PAST_BUP, severity(1, day_ago(100))], False, id="severity-count-1"),
        pytest.param(lambda: [PAST_BUP, severity(3, day_ago(365))], False, id="severity-365d"),
        pytest.param(lambda: [PAST_BUP, severity(3, day_ago(366))], True, id="severity-366d"),
        pytest.param(lambda: [oud_condition()], False, id="oud-condition"),
        pytest.param(lambda: [oud_condition(status="remission")], False, id="remission-condition"),
        pytest.param(lambda: [PAST_BUP, done("assess-oud-severity", 100)], False, id="task-100d"),
        pytest.param(lambda: [PAST_BUP, done("assess-oud-severity", 366)], True, id="task-366d"),
    ],
)
def test_assess_oud_severity_without_severity_or_condition_in_12_months(decide, items, due):
    """§7: assess-oud-severity when there is no severity observation and no OUD Condition;
    interval 12 months (365 days)."""
    d = decide(*items())
    assert ("assess-oud-severity" in d.task_codes) is due


# ------------------------------------------------------------------ assess-readiness


@pytest.mark.parametrize(
    ("items", "due"),
    [
        pytest.param(lambda: [], True, id="no-stage"),
        pytest.param(lambda: [stage("action", day_ago(90))], False, id="stage-90d"),
        pytest.param(lambda: [stage("action", day_ago(91))], True, id="stage-91d"),
        pytest.param(lambda: [done("assess-readiness", 90)], False, id="task-90d"),
        pytest.param(lambda: [done("assess-readiness", 91)], True, id="task-91d"),
    ],
)
def test_assess_readiness_without_stage_in_90_days(decide, items, due):
    """§7: assess-readiness when there is no stage of change observation; interval 90 days."""
    d = decide(oud_condition(), *items())
    assert ("assess-readiness" in d.task_codes) is due


# ------------------------------------------------------------------ order-lft


def negatives() -> list[dict]:
    return [uds(UDS_OPIATES, "NEG", day_ago(1)), uds(UDS_FENTANYL, "NEG", day_ago(1))]


@pytest.mark.parametrize(
    ("items", "status", "due"),
    [
        pytest.param(lambda: [oud_condition()], "not-yet", True, id="not-yet"),
        pytest.param(lambda: [oud_condition(), *negatives()], "suitable", True, id="suitable"),
        pytest.param(
            lambda: [
                oud_condition(),
                *negatives(),
                coded(PREGNANCY_STATUS, LOINC, PREGNANT, day_ago(3)),
            ],
            "caution",
            True,
            id="caution",
        ),
        pytest.param(
            lambda: [oud_condition(), med(NALTREXONE_XR, authored=day_ago(40))],
            "active",
            True,
            id="active",
        ),
        pytest.param(
            lambda: [oud_condition(), med(METHADONE_SOLUTION, authored=day_ago(40))],
            "contraindicated",
            False,
            id="contraindicated-on-methadone",
        ),
    ],
)
def test_order_lft_when_naltrexone_active_or_considered(decide, items, status, due):
    """§8: order-lft when naltrexone is active, suitable, caution or not-yet with no ALT/AST in
    90 days (not when it is contraindicated)."""
    d = decide(*items(), patient_resource=FEMALE_30)
    assert option(d, "naltrexone").status == status
    assert ("order-lft" in d.task_codes) is due


@pytest.mark.parametrize(
    ("lab", "due"),
    [
        pytest.param(lambda: quantity(ALT, 30, day_ago(90)), False, id="alt-90d"),
        pytest.param(lambda: quantity(ALT, 30, day_ago(91)), True, id="alt-91d"),
        pytest.param(lambda: quantity(AST, 30, day_ago(30)), False, id="ast-30d"),
        pytest.param(lambda: done("order-lft", 80), False, id="task-80d"),
        pytest.param(lambda: done("order-lft", 91), True, id="task-91d"),
    ],
)
def test_order_lft_naltrexone_interval_90_days(decide, lab, due):
    """§7 / §8: order-lft (naltrexone) interval 90 days; ALT or AST qualifies."""
    d = decide(oud_condition(), lab())
    assert option(d, "naltrexone").status == "not-yet"
    assert ("order-lft" in d.task_codes) is due


@pytest.mark.parametrize(("days", "due"), [(None, True), (200, False), (365, False), (366, True)])
def test_order_lft_on_buprenorphine_interval_12_months(decide, days, due):
    """§7 / §8: order-lft when buprenorphine is active with no ALT/AST in 12 months."""
    items = [oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(400))]
    if days is not None:
        items.append(quantity(ALT, 25, day_ago(days)))
    d = decide(*items)
    assert option(d, "buprenorphine").status == "active"
    assert ("order-lft" in d.task_codes) is due


# ------------------------------------------------------------------ order-ecg


@pytest.mark.parametrize(
    ("items", "status", "due"),
    [
        pytest.param(lambda: [], "suitable", True, id="suitable-no-qtc"),
        pytest.param(
            lambda: [quantity(QTC, 430, day_ago(365), unit="ms")], "suitable", False, id="qtc-365d"
        ),
        pytest.param(
            lambda: [quantity(QTC, 430, day_ago(366), unit="ms")], "suitable", True, id="qtc-366d"
        ),
        pytest.param(
            lambda: [med(METHADONE_SOLUTION, authored=day_ago(40))],
            "active",
            True,
            id="active-no-qtc",
        ),
        pytest.param(
            lambda: [med(ALPRAZOLAM_TABLET, authored=day_ago(40))],
            "caution",
            True,
            id="caution-no-qtc",
        ),
        pytest.param(lambda: [done("order-ecg", 200)], "suitable", False, id="task-200d"),
        pytest.param(lambda: [done("order-ecg", 366)], "suitable", True, id="task-366d"),
    ],
)
def test_order_ecg_when_methadone_active_suitable_or_caution(decide, items, status, due):
    """§8: order-ecg when methadone is active, suitable or caution with no QTc in 12 months."""
    d = decide(oud_condition(), *items())
    assert option(d, "methadone").status == status
    assert ("order-ecg" in d.task_codes) is due


# ------------------------------------------------------------------ pregnancy-test


@pytest.mark.parametrize(
    ("pat", "due"),
    [
        pytest.param(
            patient(gender="female", birth=birth_for_age(11, birthday_tomorrow=True)),
            False,
            id="female-11",
        ),
        pytest.param(patient(gender="female", birth=birth_for_age(12)), True, id="female-12"),
        pytest.param(
            patient(gender="female", birth=birth_for_age(50, birthday_tomorrow=True)),
            True,
            id="female-50",
        ),
        pytest.param(patient(gender="female", birth=birth_for_age(51)), False, id="female-51"),
        pytest.param(patient(gender="male", birth=birth_for_age(30)), False, id="male-30"),
    ],
)
def test_pregnancy_test_for_female_aged_12_to_50(decide, pat, due):
    """§7: pregnancy-test for a female aged 12-50 not known pregnant."""
    d = decide(oud_condition(), patient_resource=pat)
    assert ("pregnancy-test" in d.task_codes) is due


@pytest.mark.parametrize(
    ("items", "due"),
    [
        pytest.param(
            lambda: [coded(PREGNANCY_STATUS, LOINC, PREGNANT, day_ago(3))],
            False,
            id="known-pregnant",
        ),
        pytest.param(lambda: [uds(HCG_URINE, "negative", day_ago(30))], False, id="hcg-neg-30d"),
        pytest.param(lambda: [uds(HCG_URINE, "negative", day_ago(31))], True, id="hcg-neg-31d"),
        pytest.param(
            lambda: [coded(PREGNANCY_STATUS, LOINC, NOT_PREGNANT, day_ago(10))],
            False,
            id="not-pregnant-10d",
        ),
        pytest.param(lambda: [done("pregnancy-test", 20)], False, id="task-20d"),
        pytest.param(lambda: [done("pregnancy-test", 31)], True, id="task-31d"),
    ],
)
def test_pregnancy_test_interval_30_days(decide, items, due):
    """§7: pregnancy-test interval 30 days; not for a known pregnant patient."""
    d = decide(oud_condition(), *items(), patient_resource=FEMALE_30)
    assert ("pregnancy-test" in d.task_codes) is due


# ------------------------------------------------------------------ hiv-hcv-screening


@pytest.mark.parametrize(
    ("items", "due"),
    [
        pytest.param(lambda: [oud_condition()], True, id="oud-no-results"),
        pytest.param(
            lambda: [
                oud_condition(),
                uds(HIV_SCREEN, "negative", day_ago(365)),
                uds(HCV_SCREEN, "negative", day_ago(365)),
            ],
            False,
            id="both-365d",
        ),
        pytest.param(
            lambda: [oud_condition(), uds(HIV_SCREEN, "negative", day_ago(20))], True, id="hiv-only"
        ),
        pytest.param(
            lambda: [
                oud_condition(),
                uds(HIV_SCREEN, "negative", day_ago(20)),
                uds(HCV_SCREEN, "negative", day_ago(366)),
            ],
            True,
            id="hcv-366d",
        ),
        pytest.param(
            lambda: [oud_condition(), done("hiv-hcv-screening", 100)], False, id="task-100d"
        ),
        pytest.param(lambda: [uds(UDS_FENTANYL, "POS", day_ago(2))], False, id="suspected-oud"),
    ],
)
def test_hiv_hcv_screening_for_oud_every_12_months(decide, items, due):
    """§7: hiv-hcv-screening for every patient with OUD evidence; interval 12 months (suspected
    OUD is not OUD evidence)."""
    d = decide(*items())
    assert ("hiv-hcv-screening" in d.task_codes) is due


# ------------------------------------------------------------------ no-interval tasks


@pytest.mark.parametrize(
    ("items", "due"),
    [
        pytest.param(lambda: [oud_condition()], True, id="recommended"),
        pytest.param(
            lambda: [oud_condition(), med(NALOXONE_NASAL, authored=day_ago(100))],
            False,
            id="naloxone-active",
        ),
    ],
)
def test_prescribe_naloxone_when_recommended(decide, items, due):
    """§7: prescribe-naloxone when naloxone is `recommended`; due now, urgent (config)."""
    d = decide(*items())
    assert ("prescribe-naloxone" in d.task_codes) is due
    if due:
        t = task_of(d, "prescribe-naloxone")
        assert (t.due, t.priority) == (TODAY, "urgent")


@pytest.mark.parametrize(
    ("items", "due"),
    [
        pytest.param(lambda: [oud_condition()], True, id="3d"),
        pytest.param(lambda: [uds(UDS_FENTANYL, "POS", day_ago(2))], True, id="1a"),
        pytest.param(
            lambda: [oud_condition(status="remission"), uds(UDS_FENTANYL, "POS", day_ago(40))],
            True,
            id="3c",
        ),
        pytest.param(lambda: [oud_condition(status="remission")], False, id="3b-recovery"),
        pytest.param(
            lambda: [oud_condition(), cows(9, ago(hours=1))], False, id="3a-stabilization"
        ),
        pytest.param(lambda: PHASES["maintenance"](), False, id="2c-maintenance"),
    ],
)
def test_discuss_moud_options_in_assessment_without_moud(decide, items, due):
    """§7: discuss-moud-options in the assessment phase with no active MOUD."""
    d = decide(*items())
    assert ("discuss-moud-options" in d.task_codes) is due


@pytest.mark.parametrize(("bup_result", "due"), [("NEG", True), ("POS", False)])
def test_review_adherence_when_expected_analyte_missing(decide, bup_result, due):
    """§7: review-adherence when the expected MOUD analyte is missing (urgent)."""
    d = decide(*PHASES["maintenance"](), uds(UDS_BUPRENORPHINE, bup_result, day_ago(1)))
    assert ("review-adherence" in d.task_codes) is due
    if due:
        assert task_of(d, "review-adherence").priority == "urgent"


@pytest.mark.parametrize(
    ("extra", "due"),
    [
        (lambda: [med(ALPRAZOLAM_TABLET, authored=day_ago(20))], True),
        (lambda: [med(ALPRAZOLAM_TABLET, status="stopped", authored=day_ago(20))], False),
        (lambda: [], False),
    ],
)
def test_review_cns_depressants_with_opioid_or_moud_and_depressant(decide, extra, due):
    """§7: review-cns-depressants for opioid or MOUD with a benzodiazepine / CNS depressant."""
    d = decide(*PHASES["maintenance"](), *extra())
    assert ("review-cns-depressants" in d.task_codes) is due
    if due:
        assert task_of(d, "review-cns-depressants").priority == "urgent"


# ------------------------------------------------------------------ follow-up-visit


@pytest.mark.parametrize("phase", list(PHASES))
def test_follow_up_visit_every_phase_due_by_phase_interval(decide, phase):
    """§7: follow-up-visit in every phase: assessment 7 d, stabilization 7 d, maintenance 28 d,
    recovery 90 d (due date = as_of + the interval)."""
    d = decide(*PHASES[phase]())
    assert d.phase == phase
    t = task_of(d, "follow-up-visit")
    assert t.due == TODAY + timedelta(days=VISIT_INTERVAL[phase])
    assert t.priority == "routine"


@pytest.mark.parametrize("phase", list(PHASES))
def test_follow_up_visit_completed_task_inside_phase_interval(decide, phase):
    """§7: a completed follow-up-visit Task inside the phase interval satisfies it; one day
    older does not."""
    n = VISIT_INTERVAL[phase]
    inside = decide(*PHASES[phase](), done("follow-up-visit", n))
    outside = decide(*PHASES[phase](), done("follow-up-visit", n + 1))
    assert "follow-up-visit" not in inside.task_codes
    assert "follow-up-visit" in outside.task_codes


def test_not_applicable_plans_no_task(decide):
    """§3 1b: not-applicable -> nothing written (no monitoring tasks either)."""
    d = decide(
        med(METHADONE_SOLUTION, authored=day_ago(40)),
        quantity(ALT, 30, day_ago(400)),
        patient_resource=FEMALE_30,
    )
    assert d.phase == "not-applicable"
    assert d.tasks == ()


@pytest.mark.parametrize("phase", list(PHASES))
def test_assess_readiness_in_every_phase(decide, phase):
    """§6 / §7: stage unknown -> assess-readiness whatever the phase."""
    d = decide(*PHASES[phase]())
    assert d.phase == phase
    assert "assess-readiness" in d.task_codes


def test_assess_readiness_for_suspected_oud(decide):
    """§6 / §7: a suspected-OUD patient (rule 1a, no OUD evidence) with no stage of change gets
    assess-readiness and motivational interviewing too."""
    d = decide(uds(UDS_FENTANYL, "POS", day_ago(2)))
    assert d.suspected_oud is True
    assert "assess-readiness" in d.task_codes
    assert "motivational-interviewing" in d.task_codes
