"""PATHWAY.md §6 (psychosocial care by stage of change, and the three extra rules) with §8
(stage valid for 90 days; every psychosocial item is a Task with its code)."""

from __future__ import annotations

import pytest
from builders import (
    BUP_NALOXONE_FILM,
    CANON,
    METHADONE_SOLUTION,
    METHADONE_TABLET,
    OXYCODONE_TABLET,
    ago,
    cows,
    day_ago,
    med,
    oud_condition,
    own_obs,
    stage,
    uds,
)
from rulekit import (
    NALOXONE_NASAL,
    UDS_BENZODIAZEPINES,
    UDS_BUPRENORPHINE,
    UDS_FENTANYL,
    UDS_OPIATES,
    UDS_OXYCODONE,
    UDS_STIMULANTS,
    mentions,
    psychosocial,
    ref,
    task_of,
)


def maintenance_patient() -> list[dict]:
    """On buprenorphine for 60 days, negative screen, naloxone on file: phase maintenance, no
    return to use, so no family-support / contingency-management / counselling from §6's
    extra rules."""
    return [
        oud_condition(),
        med(BUP_NALOXONE_FILM, authored=day_ago(60)),
        med(NALOXONE_NASAL, authored=day_ago(60)),
        uds(UDS_OPIATES, "NEG", day_ago(5)),
    ]


@pytest.mark.parametrize(
    ("stage_code", "expected"),
    [
        ("precontemplation", {"motivational-interviewing", "contingency-management"}),
        ("contemplation", {"motivational-interviewing", "contingency-management"}),
        ("preparation", {"cbt", "case-management"}),
        ("action", {"cbt", "case-management", "mutual-help", "peer-support"}),
        ("maintenance", {"mutual-help", "peer-support"}),
    ],
)
def test_psychosocial_offer_by_stage_of_change(decide, stage_code, expected):
    """§6 table: precontemplation / contemplation -> motivational interviewing + contingency
    management as a bridge; preparation / action -> CBT + case management; action / maintenance
    -> mutual-help groups + peer support. Each is a Task with its code (§8)."""
    st = stage(stage_code, day_ago(10))
    d = decide(*maintenance_patient(), st)
    assert d.phase == "maintenance"
    assert d.stage == stage_code
    assert psychosocial(d) == expected
    assert "assess-readiness" not in d.task_codes
    for code in expected:
        assert ref(st) in task_of(d, code).evidence


def test_unknown_stage_assess_readiness_and_motivational_interviewing(decide):
    """§6: stage unknown -> Task assess-readiness; motivational interviewing meanwhile."""
    d = decide(*maintenance_patient())
    assert d.stage is None
    assert "assess-readiness" in d.task_codes
    assert psychosocial(d) == {"motivational-interviewing"}


@pytest.mark.parametrize(("days", "known"), [(0, True), (90, True), (91, False)])
def test_stage_older_than_90_days_is_unknown(decide, days, known):
    """§8: a stage of change counts for 90 days (calendar days); older is "unknown"."""
    d = decide(*maintenance_patient(), stage("maintenance", day_ago(days)))
    if known:
        assert d.stage == "maintenance"
        assert psychosocial(d) == {"mutual-help", "peer-support"}
        assert "assess-readiness" not in d.task_codes
    else:
        assert d.stage is None
        assert psychosocial(d) == {"motivational-interviewing"}
        assert "assess-readiness" in d.task_codes


def test_unreadable_stage_is_unknown(decide):
    """§6 / §1: the stage is one of precontemplation ... maintenance; an observation whose code
    is none of them is an unknown stage (assess-readiness, motivational interviewing)."""
    bad = own_obs(
        "readiness-stage",
        day_ago(3),
        valueCodeableConcept={
            "coding": [{"system": f"{CANON}/CodeSystem/readiness-stage", "code": "ready-ish"}]
        },
    )
    d = decide(*maintenance_patient(), bad)
    assert "assess-readiness" in d.task_codes
    assert psychosocial(d) == {"motivational-interviewing"}
    assert d.stage is None


def test_newest_stage_decides(decide):
    """§6: the current stage is the newest one (action 10 days ago over precontemplation 50)."""
    d = decide(
        *maintenance_patient(), stage("precontemplation", day_ago(50)), stage("action", day_ago(10))
    )
    assert d.stage == "action"
    assert "motivational-interviewing" not in d.task_codes


# ------------------------------------------------------------------ contingency management


@pytest.mark.parametrize(
    ("loinc", "days", "expected"),
    [
        (UDS_FENTANYL, 0, True),
        (UDS_FENTANYL, 30, True),
        (UDS_FENTANYL, 31, False),
        (UDS_STIMULANTS, 0, True),
        (UDS_STIMULANTS, 30, True),
        (UDS_STIMULANTS, 31, False),
        (UDS_BENZODIAZEPINES, 3, False),
    ],
)
def test_contingency_management_on_illicit_opioid_or_stimulant_positive_in_30_days(
    decide, loinc, days, expected
):
    """§6: an illicit opioid (or stimulant) positive UDS in the last 30 days (calendar days) ->
    contingency management (12 weekly sessions), citing the screen. Stage action (which itself
    offers no contingency management)."""
    u = uds(loinc, "POS", day_ago(days))
    d = decide(*maintenance_patient(), stage("action", day_ago(5)), u)
    assert ("contingency-management" in d.task_codes) is expected
    if expected:
        t = task_of(d, "contingency-management")
        assert ref(u) in t.evidence
        assert mentions(t.reason, "12")


@pytest.mark.parametrize(
    ("chart", "loinc"),
    [
        (BUP_NALOXONE_FILM, UDS_BUPRENORPHINE),
        (OXYCODONE_TABLET, UDS_OXYCODONE),
    ],
)
def test_explained_opioid_positive_is_no_contingency_management(decide, chart, loinc):
    """§6 / §8: only an *illicit* opioid positive counts (bup on bup, oxycodone on oxycodone
    are explained)."""
    d = decide(
        *maintenance_patient(),
        stage("action", day_ago(5)),
        med(chart, authored=day_ago(40)),
        uds(loinc, "POS", day_ago(2)),
    )
    assert "contingency-management" not in d.task_codes


def test_negative_stimulant_screen_is_no_contingency_management(decide):
    """§6 (control)."""
    d = decide(
        *maintenance_patient(), stage("action", day_ago(5)), uds(UDS_STIMULANTS, "NEG", day_ago(2))
    )
    assert "contingency-management" not in d.task_codes


# ------------------------------------------------------------------ addiction counselling


@pytest.mark.parametrize(
    ("moud", "expected"), [(METHADONE_SOLUTION, True), (BUP_NALOXONE_FILM, False)]
)
def test_addiction_counseling_on_methadone(decide, moud, expected):
    """§6: on methadone -> addiction counselling (required in opioid treatment programs)."""
    m = med(moud, authored=day_ago(60))
    d = decide(oud_condition(), m, stage("maintenance", day_ago(5)))
    assert ("addiction-counseling" in d.task_codes) is expected
    if expected:
        assert ref(m) in task_of(d, "addiction-counseling").evidence


def test_methadone_for_pain_is_no_addiction_counseling(decide):
    """§1 / §6: methadone for pain without OUD evidence is not MOUD: nothing planned."""
    d = decide(med(METHADONE_TABLET, authored=day_ago(60)))
    assert "addiction-counseling" not in d.task_codes


# ------------------------------------------------------------------ family support


@pytest.mark.parametrize(
    ("items", "phase", "return_to_use", "expected"),
    [
        pytest.param(lambda: [oud_condition()], "assessment", False, True, id="3d-assessment"),
        pytest.param(
            lambda: [uds(UDS_FENTANYL, "POS", day_ago(3))],
            "assessment",
            False,
            True,
            id="1a-suspected",
        ),
        pytest.param(
            lambda: [oud_condition(status="remission"), uds(UDS_FENTANYL, "POS", day_ago(40))],
            "assessment",
            True,
            True,
            id="3c-return-to-use",
        ),
        pytest.param(
            lambda: [
                oud_condition(),
                med(BUP_NALOXONE_FILM, authored=day_ago(60)),
                uds(UDS_FENTANYL, "POS", day_ago(3)),
            ],
            "stabilization",
            True,
            True,
            id="2b-return-to-use",
        ),
        pytest.param(
            lambda: [oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(60))],
            "maintenance",
            False,
            False,
            id="2c-maintenance",
        ),
        pytest.param(
            lambda: [oud_condition(status="remission")], "recovery", False, False, id="3b-recovery"
        ),
        pytest.param(
            lambda: [
                oud_condition(),
                med(BUP_NALOXONE_FILM, authored=day_ago(10)),
                uds(UDS_FENTANYL, "POS", day_ago(3)),
            ],
            "stabilization",
            False,
            False,
            id="2a-positive-no-flag",
        ),
        pytest.param(
            lambda: [oud_condition(), cows(9, ago(hours=2))],
            "stabilization",
            False,
            False,
            id="3a-withdrawal",
        ),
    ],
)
def test_family_support_in_assessment_or_return_to_use(
    decide, items, phase, return_to_use, expected
):
    """§6: assessment phase or return to use -> family support (CRAFT, naloxone training for
    family members); not in maintenance, recovery, or stabilization without return to use."""
    d = decide(*items())
    assert (d.phase, d.return_to_use) == (phase, return_to_use)
    assert ("family-support" in d.task_codes) is expected


def test_psychosocial_tasks_carry_reasons(decide):
    """§4/§8: every output carries its reasons: each psychosocial Task has a reason."""
    d = decide(
        oud_condition(),
        stage("precontemplation", day_ago(5)),
        uds(UDS_STIMULANTS, "POS", day_ago(2)),
    )
    assert psychosocial(d) >= {
        "motivational-interviewing",
        "contingency-management",
        "family-support",
    }
    for t in d.tasks:
        assert t.reason, t
