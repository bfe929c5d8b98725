"""PATHWAY.md §2 (OUD evidence, active MOUD) with the §8 definitions of evidence, remission and
MedicationRequest status, and the §1 trap cases (methadone for pain, naltrexone for alcohol)."""

from __future__ import annotations

import pytest
from builders import (
    BUP_NALOXONE_FILM,
    ICD10,
    METHADONE_TABLET,
    SNOMED,
    condition,
    day_ago,
    med,
    oud_condition,
    severity,
    with_onset,
)
from rulekit import (
    ALCOHOL_REASON,
    BUP_PATCH,
    CLONIDINE_TABLET,
    NALTREXONE_TABLET,
    OUD_REASON,
    OUD_REASON_SNOMED,
    option,
    ref,
)

# ------------------------------------------------------------------ OUD Condition


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (ICD10, "F11.20"),
        (ICD10, "F11.10"),
        (ICD10, "F11.90"),
        (SNOMED, "5602001"),
        (SNOMED, "75544000"),
    ],
)
def test_oud_condition_is_oud_evidence(decide, system, code):
    """§2/§1: an OUD Condition (ICD-10-CM F11.*, SNOMED OUD codes) is OUD evidence."""
    c = condition(code, system, recorded="2024-03-01")
    d = decide(c)
    assert d.oud_evidence is True
    assert d.phase == "assessment"
    assert ref(c) in d.evidence


@pytest.mark.parametrize("status", ["active", "recurrence", "relapse"])
def test_oud_condition_active_recurrence_relapse_is_active_disease(decide, status):
    """§1: clinicalStatus active / recurrence / relapse is OUD (not remission): rule 3d."""
    d = decide(oud_condition(status=status))
    assert d.oud_evidence is True
    assert d.phase == "assessment"
    assert d.return_to_use is False


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_or_entered_in_error_condition_counts_as_nothing(decide, verification):
    """§1/§8: verificationStatus refuted / entered-in-error: the Condition counts as nothing."""
    c = condition("F11.20", recorded="2025-01-10", verification=verification)
    d = decide(c)
    assert d.oud_evidence is False
    assert d.phase == "not-applicable"
    assert ref(c) not in d.evidence


def test_confirmed_condition_counts(decide):
    """§1 (control for the test above): a confirmed OUD Condition is evidence."""
    d = decide(condition("F11.20", recorded="2025-01-10", verification="confirmed"))
    assert d.phase == "assessment"


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_condition_does_not_decide_between_oud_conditions(decide, verification):
    """§8: a refuted / entered-in-error Condition is not "the most recently recorded" one: the
    older remission Condition decides (recovery)."""
    remission = oud_condition(status="remission", recorded="2024-06-01")
    newer_refuted = condition(
        "F11.20", status="active", recorded="2025-05-01", verification=verification
    )
    d = decide(remission, newer_refuted)
    assert d.phase == "recovery"


# ------------------------------------------------------------------ remission


@pytest.mark.parametrize("status", ["remission", "inactive", "resolved"])
def test_inactive_resolved_remission_condition_is_oud_in_remission(decide, status):
    """§8: an OUD Condition that is inactive or resolved counts as OUD in remission (history,
    still OUD evidence): rule 3b recovery."""
    d = decide(oud_condition(status=status))
    assert d.oud_evidence is True
    assert d.phase == "recovery"


@pytest.mark.parametrize("code", ["F11.21", "F11.11"])
@pytest.mark.parametrize("status", ["active", None])
def test_remission_icd10_code_is_oud_in_remission(decide, code, status):
    """§1: ICD-10-CM F11.11 / F11.21 mean OUD in remission whatever the clinicalStatus."""
    d = decide(oud_condition(code=code, status=status))
    assert d.oud_evidence is True
    assert d.phase == "recovery"


@pytest.mark.parametrize(
    ("active_recorded", "remission_recorded", "phase"),
    [
        ("2024-01-10", "2025-01-10", "recovery"),  # remission is newer: it decides
        ("2025-01-10", "2024-01-10", "assessment"),  # active is newer: it decides
        ("2025-01-10T08:00:00Z", "2025-01-10T09:00:00Z", "recovery"),
        ("2025-01-10T09:00:00Z", "2025-01-10T08:00:00Z", "assessment"),
    ],
)
def test_most_recently_recorded_oud_condition_decides(
    decide, active_recorded, remission_recorded, phase
):
    """§8: when several OUD Conditions disagree, the most recently recorded decides."""
    active = oud_condition(status="active", recorded=active_recorded)
    remission = oud_condition(status="remission", recorded=remission_recorded)
    assert decide(active, remission).phase == phase
    assert decide(remission, active).phase == phase


@pytest.mark.parametrize("remission_code", ["F11.21", None])
@pytest.mark.parametrize("active_first", [True, False])
def test_tie_between_oud_conditions_active_wins(decide, remission_code, active_first):
    """§8: on a tie (same recorded date) active wins over remission, whatever the order."""
    active = oud_condition(status="active", recorded="2025-01-10")
    if remission_code:
        remission = oud_condition(code=remission_code, status="active", recorded="2025-01-10")
    else:
        remission = oud_condition(status="remission", recorded="2025-01-10")
    items = (active, remission) if active_first else (remission, active)
    d = decide(*items)
    assert d.phase == "assessment"
    assert d.return_to_use is False


def test_condition_date_is_onset_when_no_recorded_date(decide):
    """§8: a Condition's date is its recordedDate, else its onset: a remission Condition with a
    newer onset (and no recordedDate) decides over an older active one."""
    active = oud_condition(status="active", recorded="2024-06-01")
    remission = with_onset(oud_condition(status="remission", recorded=None), "2025-03-01T00:00:00Z")
    assert decide(active, remission).phase == "recovery"


def test_condition_date_is_recorded_date_before_onset(decide):
    """§8: recordedDate wins over onset: a remission Condition recorded 2024-01-01 (onset
    2025-05-01) is older than an active one recorded 2024-06-01."""
    active = oud_condition(status="active", recorded="2024-06-01")
    remission = with_onset(
        oud_condition(status="remission", recorded="2024-01-01"), "2025-05-01T00:00:00Z"
    )
    assert decide(active, remission).phase == "assessment"


# ------------------------------------------------------------------ severity observation


@pytest.mark.parametrize(
    ("count", "evidence"), [(0, False), (1, False), (2, True), (3, True), (6, True), (11, True)]
)
def test_severity_count_of_two_or_more_is_oud_evidence(decide, count, evidence):
    """§2: a DSM-5 criteria count >= 2 in the last 12 months is OUD evidence; 1 is not."""
    s = severity(count, day_ago(30))
    d = decide(s)
    assert d.oud_evidence is evidence
    assert d.phase == ("assessment" if evidence else "not-applicable")
    if evidence:
        assert ref(s) in d.evidence


@pytest.mark.parametrize(("days", "evidence"), [(0, True), (365, True), (366, False)])
def test_severity_evidence_window_is_12_months_in_calendar_days(decide, days, evidence):
    """§2/§8: "in the last 12 months" (365 days, calendar dates): 365 is in, 366 is out."""
    d = decide(severity(4, day_ago(days)))
    assert d.oud_evidence is evidence


def test_any_severity_of_two_or_more_in_12_months_is_evidence_even_if_latest_is_lower(decide):
    """§2: "an OUD severity observation >= 2 in the last 12 months" is evidence: a later count
    of 1 does not erase an earlier count of 3 inside the window."""
    d = decide(severity(3, day_ago(200)), severity(1, day_ago(10)))
    assert d.oud_evidence is True
    assert d.phase == "assessment"


# ------------------------------------------------------------------ buprenorphine for OUD


@pytest.mark.parametrize(
    ("status", "days", "evidence"),
    [
        ("completed", 365, True),
        ("completed", 366, False),
        ("stopped", 200, True),
        ("on-hold", 100, True),
        ("unknown", 100, True),
    ],
)
def test_buprenorphine_for_oud_prescribed_in_12_months_is_evidence(decide, status, days, evidence):
    """§2: an OUD-specific buprenorphine product prescribed in the last 12 months (any
    prescription that is history, §8, counts as prescribed) is OUD evidence."""
    m = med(BUP_NALOXONE_FILM, status=status, authored=day_ago(days))
    d = decide(m)
    assert d.oud_evidence is evidence
    if evidence:
        assert ref(m) in d.evidence
    else:
        assert d.phase == "not-applicable"


def test_active_buprenorphine_for_oud_is_evidence_even_if_authored_long_ago(decide):
    """§2 (reading: an active request is prescribed now): active bup authored two years ago."""
    d = decide(med(BUP_NALOXONE_FILM, authored="2023-06-01"))
    assert d.oud_evidence is True
    assert option(d, "buprenorphine").status == "active"


def test_buprenorphine_pain_product_is_not_oud_evidence(decide):
    """§1: transdermal / buccal buprenorphine pain products are not buprenorphine for OUD."""
    d = decide(med(BUP_PATCH, authored=day_ago(20)))
    assert d.oud_evidence is False
    assert d.phase == "not-applicable"


# ------------------------------------------------------------------ MOUD reasonCode OUD


@pytest.mark.parametrize("drug", [METHADONE_TABLET, NALTREXONE_TABLET])
@pytest.mark.parametrize("reason", [OUD_REASON, OUD_REASON_SNOMED])
def test_moud_request_with_oud_reason_code_is_oud_evidence_and_moud(decide, drug, reason):
    """§8: a MOUD MedicationRequest whose reasonCode is in the OUD value set is OUD evidence
    (and so methadone / naltrexone are MOUD): rule 2a."""
    m = med(drug, authored=day_ago(10), reason=reason)
    d = decide(m)
    assert d.oud_evidence is True
    assert d.phase == "stabilization"
    assert ref(m) in d.evidence
    name = "methadone" if drug == METHADONE_TABLET else "naltrexone"
    assert option(d, name).status == "active"


def test_past_moud_request_with_oud_reason_code_is_evidence(decide):
    """§8: the reasonCode rule has no time window; a completed one is a past episode (3b)."""
    d = decide(med(METHADONE_TABLET, status="completed", authored=day_ago(500), reason=OUD_REASON))
    assert d.oud_evidence is True
    assert d.phase == "recovery"


def test_oud_reason_code_on_a_non_moud_drug_is_not_evidence(decide):
    """§8: only a MOUD request's reasonCode counts (clonidine for OUD is not MOUD)."""
    d = decide(med(CLONIDINE_TABLET, authored=day_ago(2), reason=OUD_REASON))
    assert d.oud_evidence is False
    assert d.phase == "not-applicable"


# ------------------------------------------------------------------ trap cases (§1)


@pytest.mark.parametrize("status", ["active", "completed", "stopped"])
def test_methadone_for_pain_without_oud_evidence_is_not_moud(decide, status):
    """§1/§2: methadone is MOUD only with OUD evidence or an OUD reasonCode: methadone for pain
    alone is no evidence, no active MOUD and no past episode: not-applicable, nothing written."""
    d = decide(med(METHADONE_TABLET, status=status, authored=day_ago(40)))
    assert d.oud_evidence is False
    assert d.phase == "not-applicable"
    assert d.tasks == ()
    assert option(d, "methadone").status != "active"


@pytest.mark.parametrize("reason", [None, ALCOHOL_REASON])
def test_naltrexone_without_oud_evidence_is_not_moud(decide, reason):
    """§1/§2: naltrexone (e.g. for alcohol use disorder) is MOUD only with OUD evidence."""
    d = decide(med(NALTREXONE_TABLET, authored=day_ago(40), reason=reason))
    assert d.oud_evidence is False
    assert d.phase == "not-applicable"
    assert option(d, "naltrexone").status != "active"


@pytest.mark.parametrize(
    ("drug", "name"), [(METHADONE_TABLET, "methadone"), (NALTREXONE_TABLET, "naltrexone")]
)
def test_methadone_or_naltrexone_with_oud_condition_is_active_moud(decide, drug, name):
    """§2: active methadone / naltrexone with OUD evidence (a Condition) is active MOUD."""
    m = med(drug, authored=day_ago(60))
    d = decide(oud_condition(), m)
    assert d.phase == "maintenance"
    assert option(d, name).status == "active"
    assert ref(m) in option(d, name).evidence


# ------------------------------------------------------------------ MedicationRequest status


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("completed", "recovery"),
        ("stopped", "recovery"),
        ("on-hold", "assessment"),
        ("unknown", "assessment"),
    ],
)
def test_history_statuses_are_not_active_moud(decide, status, phase):
    """§8: only `active` is current; completed / stopped / on-hold / unknown are history.
    Completed and stopped make a past MOUD episode (3b); on-hold and unknown do not (3d)."""
    d = decide(oud_condition(), med(BUP_NALOXONE_FILM, status=status, authored=day_ago(100)))
    assert option(d, "buprenorphine").status != "active"
    assert d.phase == phase


@pytest.mark.parametrize("status", ["draft", "cancelled", "entered-in-error"])
def test_ignored_statuses_count_as_nothing(decide, status):
    """§8: draft, cancelled and entered-in-error MedicationRequests are ignored: no evidence."""
    m = med(BUP_NALOXONE_FILM, status=status, authored=day_ago(10))
    d = decide(m)
    assert d.oud_evidence is False
    assert d.phase == "not-applicable"
    assert ref(m) not in d.evidence


@pytest.mark.parametrize("status", ["draft", "cancelled", "entered-in-error"])
def test_ignored_statuses_are_not_a_past_episode(decide, status):
    """§8: an ignored request is neither MOUD nor a past episode: rule 3d, not 3b."""
    d = decide(oud_condition(), med(BUP_NALOXONE_FILM, status=status, authored=day_ago(100)))
    assert d.phase == "assessment"
    assert option(d, "buprenorphine").status != "active"
