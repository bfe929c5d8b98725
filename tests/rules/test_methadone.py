"""PATHWAY.md §4 Methadone with §8 (QTc validity 12 months, severe = count >= 6, precedence)."""

from __future__ import annotations

import pytest
from builders import (
    ALPRAZOLAM_TABLET,
    METHADONE_SOLUTION,
    birth_for_age,
    day_ago,
    med,
    oud_condition,
    patient,
    quantity,
    severity,
)
from rulekit import QTC, ZOLPIDEM_TABLET, mentions, option, ref


def meth(d):
    return option(d, "methadone")


def qtc(ms: float, days: int = 30) -> dict:
    return quantity(QTC, ms, day_ago(days), unit="ms")


@pytest.mark.parametrize(
    ("ms", "status"),
    [
        (420, "suitable"),
        (449, "suitable"),
        (450, "caution"),
        (480, "caution"),
        (500, "caution"),
        (501, "contraindicated"),
        (560, "contraindicated"),
    ],
)
def test_qtc_bands(decide, ms, status):
    """§4: latest QTc in 12 months > 500 ms -> contraindicated (choose buprenorphine);
    450-500 ms -> caution; under 450 -> suitable. Boundaries 449/450/500/501."""
    q = qtc(ms)
    m = meth(decide(oud_condition(), q))
    assert m.status == status
    if status != "suitable":
        assert ref(q) in m.evidence
        assert mentions(m.reasons, "QTc")
    if status == "contraindicated":
        assert mentions(m.reasons, "buprenorphine")


@pytest.mark.parametrize(("days", "status"), [(365, "contraindicated"), (366, "suitable")])
def test_qtc_counts_for_12_months(decide, days, status):
    """§8: a QTc counts for 12 months (365 calendar days); older is "no QTc"."""
    d = decide(oud_condition(), qtc(520, days))
    assert meth(d).status == status
    if status == "suitable":
        assert "order-ecg" in d.task_codes


@pytest.mark.parametrize(
    ("older", "newer", "status"),
    [(510, 440, "suitable"), (440, 510, "contraindicated"), (510, 470, "caution")],
)
def test_latest_qtc_decides(decide, older, newer, status):
    """§4: the *latest* QTc in the last 12 months decides."""
    assert meth(decide(oud_condition(), qtc(older, 200), qtc(newer, 10))).status == status


def test_no_qtc_is_suitable_with_order_ecg(decide):
    """§4: no QTc on file -> suitable plus Task order-ecg."""
    d = decide(oud_condition())
    assert meth(d).status == "suitable"
    assert mentions(meth(d).reasons, "ECG")
    assert "order-ecg" in d.task_codes


@pytest.mark.parametrize("rx", [ALPRAZOLAM_TABLET, ZOLPIDEM_TABLET])
def test_caution_with_active_benzodiazepine_or_cns_depressant(decide, rx):
    """§4: an active benzodiazepine or CNS depressant -> caution, citing it."""
    m = med(rx, authored=day_ago(10))
    o = meth(decide(oud_condition(), m, qtc(420)))
    assert o.status == "caution"
    assert ref(m) in o.evidence


@pytest.mark.parametrize(
    ("birth", "status"),
    [
        (birth_for_age(17, birthday_tomorrow=True), "caution"),
        (birth_for_age(18), "suitable"),
    ],
)
def test_caution_under_age_18(decide, birth, status):
    """§4: age < 18 -> caution (extra federal conditions for minors in an OTP)."""
    o = meth(decide(oud_condition(), qtc(420), patient_resource=patient(birth=birth)))
    assert o.status == status
    if status == "caution":
        assert mentions(o.reasons, "18")


def test_age_caution_cites_the_patient(decide):
    """§4: every status carries the ids of the resources that led to it (Patient.birthDate)."""
    o = meth(
        decide(
            oud_condition(),
            qtc(420),
            patient_resource=patient(birth=birth_for_age(17, birthday_tomorrow=True)),
        )
    )
    assert o.status == "caution"
    assert "Patient/p1" in o.evidence


@pytest.mark.parametrize(("count", "severe"), [(5, False), (6, True), (11, True)])
def test_well_suited_to_severe_oud_reason(decide, count, severe):
    """§4 / §8: reason "well suited to severe OUD" when severity is severe (count >= 6)."""
    s = severity(count, day_ago(20))
    o = meth(decide(s, qtc(420)))
    assert o.status == "suitable"
    assert mentions(o.reasons, "severe OUD") is severe
    if severe:
        assert ref(s) in o.evidence


def test_f11_2x_alone_is_not_severe(decide):
    """§8: F11.2x alone is "moderate or severe", not severe: no severe-OUD reason."""
    d = decide(oud_condition(code="F11.20"), qtc(420))
    assert d.severity == "moderate-or-severe"
    assert not mentions(meth(d).reasons, "severe OUD")


def test_active_methadone_is_active(decide):
    """§4: already prescribed (with OUD evidence) -> active, citing the request."""
    m = med(METHADONE_SOLUTION, authored=day_ago(60))
    o = meth(decide(oud_condition(), m, qtc(420)))
    assert o.status == "active"
    assert ref(m) in o.evidence


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        (lambda: qtc(480), "QTc"),
        (lambda: med(ALPRAZOLAM_TABLET, authored=day_ago(10)), "benzodiazepine"),
    ],
)
def test_active_with_caution_stays_active_and_lists_it(decide, extra, word):
    """§8: an active medication that meets a caution rule stays active and lists the caution."""
    e = extra()
    o = meth(decide(oud_condition(), med(METHADONE_SOLUTION, authored=day_ago(60)), e))
    assert o.status == "active"
    assert mentions(o.reasons, word)
    assert ref(e) in o.evidence


def test_contraindicated_wins_over_active(decide):
    """§8: precedence contraindicated > active: on methadone with QTc 510 ms."""
    o = meth(decide(oud_condition(), med(METHADONE_SOLUTION, authored=day_ago(60)), qtc(510)))
    assert o.status == "contraindicated"


def test_contraindicated_wins_over_caution(decide):
    """§8: precedence contraindicated > caution (QTc 501 and a benzodiazepine)."""
    benzo = med(ALPRAZOLAM_TABLET, authored=day_ago(10))
    o = meth(decide(oud_condition(), qtc(501), benzo))
    assert o.status == "contraindicated"
    assert mentions(o.reasons, "benzodiazepine")
