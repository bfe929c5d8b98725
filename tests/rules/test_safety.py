"""PATHWAY.md §5 (safety flags on the chart and on draft orders) with §8 (order-select /
order-sign applies §5 to every patient's drafts, OUD or not; the pathway card carries the chart
flags). Reading taken: a row that says "ordered" is judged on draft orders; "active or ordered"
/ "ordered or active" rows on both the chart and drafts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import (
    ALPRAZOLAM_TABLET,
    AS_OF,
    BUP_NALOXONE_FILM,
    METHADONE_SOLUTION,
    METHADONE_TABLET,
    OXYCODONE_TABLET,
    cows,
    day_ago,
    iso,
    med,
    oud_condition,
    quantity,
    uds,
)
from rulekit import (
    ALT,
    BUP_PATCH,
    FENTANYL_PATCH,
    HYDROCODONE_APAP,
    NALOXONE_NASAL,
    NALTREXONE_TABLET,
    NALTREXONE_XR,
    OUD_REASON,
    QTC,
    TRAMADOL_TABLET,
    UDS_BUPRENORPHINE,
    UDS_EDDP,
    UDS_METHADONE,
    UDS_OPIATES,
    ZOLPIDEM_TABLET,
    advises_stopping_moud,
    flags_of,
    ref,
)


def draft(code: str, **kw) -> dict:
    return med(code, status="draft", authored=iso(AS_OF), **kw)


def qtc(ms: float, days: int = 20) -> dict:
    return quantity(QTC, ms, day_ago(days), unit="ms")


def naloxone() -> dict:
    return med(NALOXONE_NASAL, authored=day_ago(30))


def one(d, code: str):
    found = flags_of(d, code)
    assert len(found) == 1, f"expected one {code} flag, got {[f.code for f in d.flags]}"
    return found[0]


# ------------------------------------------------------------------ row 1: naltrexone


@pytest.mark.parametrize(
    "why",
    [
        pytest.param(lambda: med(BUP_NALOXONE_FILM, authored=day_ago(60)), id="on-buprenorphine"),
        pytest.param(lambda: med(METHADONE_SOLUTION, authored=day_ago(60)), id="on-methadone"),
        pytest.param(lambda: med(OXYCODONE_TABLET, authored=day_ago(5)), id="on-oxycodone"),
        pytest.param(lambda: quantity(ALT, 300, day_ago(5)), id="alt-7.5x-uln"),
    ],
)
def test_row1_naltrexone_ordered_while_contraindicated_is_critical(decide, why):
    """§5: naltrexone ordered while `contraindicated` -> critical, on the draft, citing the
    reason."""
    w = why()
    dr = draft(NALTREXONE_XR)
    d = decide(oud_condition(), w, naloxone(), drafts=[dr])
    f = one(d, "naltrexone-contraindicated")
    assert f.indicator == "critical"
    assert f.order_ref == ref(dr)
    assert ref(w) in f.evidence


def test_row1_naltrexone_ordered_with_an_agonist_order_is_critical(decide):
    """§5: naltrexone ordered together with a buprenorphine order (contraindicated once both
    are signed) -> critical."""
    dr = draft(NALTREXONE_TABLET)
    d = decide(oud_condition(), naloxone(), drafts=[dr, draft(BUP_NALOXONE_FILM)])
    f = one(d, "naltrexone-contraindicated")
    assert f.indicator == "critical"
    assert f.order_ref == ref(dr)


def test_row1_naltrexone_ordered_when_suitable_is_not_critical(decide):
    """§5 (control): naltrexone ordered when suitable raises no critical flag."""
    d = decide(
        oud_condition(),
        naloxone(),
        uds(UDS_OPIATES, "NEG", day_ago(1)),
        uds("59673-4", "NEG", day_ago(1)),
        drafts=[draft(NALTREXONE_XR)],
    )
    assert not [f for f in d.flags if f.indicator == "critical"]


# ------------------------------------------------------------------ rows 2 and 4: methadone QTc


@pytest.mark.parametrize(
    ("ms", "indicator"),
    [(449, None), (450, "warning"), (500, "warning"), (501, "critical"), (540, "critical")],
)
def test_rows2_4_methadone_ordered_with_qtc(decide, ms, indicator):
    """§5: methadone ordered with QTc > 500 ms -> critical; QTc 450-500 ms -> warning; under
    450 -> no QTc flag. The flag cites the QTc and names the draft."""
    q = qtc(ms)
    dr = draft(METHADONE_SOLUTION)
    d = decide(oud_condition(), q, naloxone(), drafts=[dr])
    found = flags_of(d, "methadone-qtc")
    if indicator is None:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].indicator == indicator
        assert found[0].order_ref == ref(dr)
        assert ref(q) in found[0].evidence


def test_row2_qtc_older_than_12_months_raises_no_flag(decide):
    """§8: a QTc older than 12 months is "no QTc"."""
    d = decide(oud_condition(), qtc(530, 366), naloxone(), drafts=[draft(METHADONE_SOLUTION)])
    assert flags_of(d, "methadone-qtc") == []


def test_row2_methadone_for_pain_ordered_with_long_qtc_warns_anyone(decide):
    """§8: §5 applies to every patient's draft orders, OUD or not (QTc 520, no OUD)."""
    d = decide(qtc(520), drafts=[draft(METHADONE_TABLET)])
    assert d.phase == "not-applicable"
    assert one(d, "methadone-qtc").indicator == "critical"


# ------------------------------------------------------------------ row 3: buprenorphine not-yet


def test_row3_buprenorphine_ordered_while_not_yet_is_warning(decide):
    """§5: buprenorphine ordered while `not-yet` -> warning (on the draft)."""
    oxy = med(OXYCODONE_TABLET, authored=day_ago(5))
    dr = draft(BUP_NALOXONE_FILM)
    d = decide(oud_condition(), oxy, naloxone(), drafts=[dr])
    f = one(d, "buprenorphine-not-yet")
    assert f.indicator == "warning"
    assert f.order_ref == ref(dr)
    assert ref(oxy) in f.evidence


def test_row3_buprenorphine_ordered_with_cows_8_is_not_flagged(decide):
    """§5 / §4: with COWS >= 8 in 24 h buprenorphine is no longer not-yet: no flag."""
    d = decide(
        oud_condition(),
        med(OXYCODONE_TABLET, authored=day_ago(5)),
        cows(8, iso(AS_OF - timedelta(hours=2))),
        naloxone(),
        drafts=[draft(BUP_NALOXONE_FILM)],
    )
    assert flags_of(d, "buprenorphine-not-yet") == []


# ------------------------------------------------------------------ row 4: bup on methadone


def test_row4_buprenorphine_ordered_while_on_methadone_is_warning(decide):
    """§5: bup ordered while on methadone -> warning, citing the methadone request."""
    m = med(METHADONE_SOLUTION, authored=day_ago(90))
    dr = draft(BUP_NALOXONE_FILM)
    d = decide(oud_condition(), m, naloxone(), drafts=[dr])
    f = one(d, "buprenorphine-on-methadone")
    assert f.indicator == "warning"
    assert f.order_ref == ref(dr)
    assert ref(m) in f.evidence


def test_row4_buprenorphine_ordered_without_methadone_is_not_flagged(decide):
    """§5 (control)."""
    d = decide(oud_condition(), naloxone(), drafts=[draft(BUP_NALOXONE_FILM)])
    assert flags_of(d, "buprenorphine-on-methadone") == []


# ------------------------------------------------------------------ row 5: opioid analgesic


@pytest.mark.parametrize(
    "rx", [OXYCODONE_TABLET, HYDROCODONE_APAP, FENTANYL_PATCH, TRAMADOL_TABLET, BUP_PATCH]
)
def test_row5_opioid_analgesic_ordered_for_oud_patient_is_warning(decide, rx):
    """§5: an opioid analgesic ordered for a patient with OUD evidence -> warning, citing the
    OUD evidence."""
    c = oud_condition()
    dr = draft(rx)
    d = decide(c, naloxone(), drafts=[dr])
    f = one(d, "opioid-analgesic-with-oud")
    assert f.indicator == "warning"
    assert f.order_ref == ref(dr)
    assert ref(c) in f.evidence


def test_row5_methadone_for_pain_ordered_for_oud_patient_is_moud(decide):
    """§1: with OUD evidence methadone is MOUD, not an analgesic: no analgesic warning."""
    d = decide(oud_condition(), naloxone(), drafts=[draft(METHADONE_SOLUTION)])
    assert flags_of(d, "opioid-analgesic-with-oud") == []


@pytest.mark.parametrize("rx", [BUP_NALOXONE_FILM, NALOXONE_NASAL])
def test_row5_draft_buprenorphine_or_naloxone_is_not_an_analgesic(decide, rx):
    """§5 / §1: draft bup/naloxone is MOUD and rescue naloxone is not an opioid: neither is an
    opioid analgesic ordered for a patient with OUD."""
    d = decide(oud_condition(), drafts=[draft(rx)])
    assert flags_of(d, "opioid-analgesic-with-oud") == []


def test_row5_opioid_analgesic_ordered_without_oud_evidence_is_not_flagged(decide):
    """§5: the analgesic warning needs OUD evidence."""
    d = decide(drafts=[draft(OXYCODONE_TABLET)])
    assert flags_of(d, "opioid-analgesic-with-oud") == []


# ------------------------------------------------------------------ row 6: opioid + depressant


@pytest.mark.parametrize(
    ("opioid", "depressant"),
    [
        (BUP_NALOXONE_FILM, ALPRAZOLAM_TABLET),
        (METHADONE_SOLUTION, ALPRAZOLAM_TABLET),
        (OXYCODONE_TABLET, ZOLPIDEM_TABLET),
        (BUP_NALOXONE_FILM, ZOLPIDEM_TABLET),
    ],
)
def test_row6_active_opioid_with_depressant_on_chart_is_warning(decide, opioid, depressant):
    """§5: an active opioid (analgesic or MOUD) together with a benzodiazepine / CNS
    depressant -> warning on the chart, citing both, never advising to stop MOUD; Task
    review-cns-depressants (§7)."""
    o, dep = med(opioid, authored=day_ago(60)), med(depressant, authored=day_ago(20))
    d = decide(oud_condition(), o, dep, naloxone())
    f = one(d, "opioid-cns-depressant")
    assert f.indicator == "warning"
    assert {ref(o), ref(dep)} <= set(f.evidence)
    assert not advises_stopping_moud(f.summary + " " + f.detail)
    assert "review-cns-depressants" in d.task_codes


@pytest.mark.parametrize(
    ("chart", "drafts"),
    [
        pytest.param([ALPRAZOLAM_TABLET], [OXYCODONE_TABLET], id="draft-opioid-active-benzo"),
        pytest.param([OXYCODONE_TABLET], [ALPRAZOLAM_TABLET], id="draft-benzo-active-opioid"),
        pytest.param([], [OXYCODONE_TABLET, ALPRAZOLAM_TABLET], id="both-drafts"),
        pytest.param([], [HYDROCODONE_APAP, ZOLPIDEM_TABLET], id="both-drafts-z-drug"),
    ],
)
def test_row6_opioid_with_depressant_ordered_warns_patient_without_oud(decide, chart, drafts):
    """§5 / §8: order-select / order-sign apply §5 to every patient's drafts: an opioid ordered
    with a benzodiazepine warns a patient with no OUD evidence."""
    dr = [draft(c) for c in drafts]
    d = decide(*[med(c, authored=day_ago(20)) for c in chart], drafts=dr)
    assert d.oud_evidence is False
    f = one(d, "opioid-cns-depressant")
    assert f.indicator == "warning"
    assert f.order_ref in {ref(x) for x in dr}
    assert not advises_stopping_moud(f.summary + " " + f.detail)


def test_row6_moud_ordered_with_active_benzodiazepine_warns_without_stopping_moud(decide):
    """§5: ordered MOUD + active benzodiazepine -> warning (never "stop MOUD")."""
    d = decide(
        oud_condition(),
        med(ALPRAZOLAM_TABLET, authored=day_ago(20)),
        naloxone(),
        drafts=[draft(BUP_NALOXONE_FILM)],
    )
    f = one(d, "opioid-cns-depressant")
    assert f.indicator == "warning"
    assert not advises_stopping_moud(f.summary + " " + f.detail)


def test_row6_no_depressant_no_flag(decide):
    """§5 (control): an opioid alone raises no combination flag."""
    d = decide(
        oud_condition(),
        med(BUP_NALOXONE_FILM, authored=day_ago(60)),
        naloxone(),
        drafts=[draft(OXYCODONE_TABLET)],
    )
    assert flags_of(d, "opioid-cns-depressant") == []


def test_row6_depressant_that_is_history_is_no_combination(decide):
    """§8: a completed benzodiazepine is history, not "active"."""
    d = decide(
        oud_condition(),
        med(BUP_NALOXONE_FILM, authored=day_ago(60)),
        naloxone(),
        med(ALPRAZOLAM_TABLET, status="completed", authored=day_ago(60)),
    )
    assert flags_of(d, "opioid-cns-depressant") == []


# ------------------------------------------------------------------ row 7: naloxone


@pytest.mark.parametrize("moud", [BUP_NALOXONE_FILM, METHADONE_SOLUTION, NALTREXONE_XR])
def test_row7_active_moud_without_rescue_naloxone_is_info(decide, moud):
    """§5: MOUD active and no rescue naloxone -> info, with a suggestion to order naloxone."""
    m = med(moud, authored=day_ago(60))
    d = decide(oud_condition(), m)
    f = one(d, "no-rescue-naloxone")
    assert f.indicator == "info"
    assert f.suggest_naloxone is True
    assert ref(m) in f.evidence


def test_row7_active_moud_with_rescue_naloxone_is_not_flagged(decide):
    """§5: with rescue naloxone prescribed in 12 months: no flag."""
    d = decide(oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(60)), naloxone())
    assert flags_of(d, "no-rescue-naloxone") == []


@pytest.mark.parametrize("moud", [BUP_NALOXONE_FILM, METHADONE_SOLUTION, NALTREXONE_XR])
def test_row7_moud_ordered_without_rescue_naloxone_is_info(decide, moud):
    """§5: MOUD ordered and no rescue naloxone -> info on the draft, suggesting naloxone."""
    dr = draft(moud)
    d = decide(oud_condition(), drafts=[dr])
    f = one(d, "no-rescue-naloxone")
    assert f.indicator == "info"
    assert f.suggest_naloxone is True
    assert f.order_ref == ref(dr)


def test_row7_naloxone_info_names_what_is_ordered_and_what_is_taken(decide):
    """Issue 13: naltrexone ordered for a patient on buprenorphine: the info card names the
    drug being ordered, and apart what the patient takes (never "MOUD (naltrexone)")."""
    bup = med(BUP_NALOXONE_FILM, authored=day_ago(60))
    dr = draft(NALTREXONE_XR)
    d = decide(oud_condition(), bup, drafts=[dr])
    ordered = [f for f in flags_of(d, "no-rescue-naloxone") if f.order_ref == ref(dr)]
    (f,) = ordered
    assert f.detail.startswith("Naltrexone ordered")
    assert "The patient is on buprenorphine." in f.detail
    assert "MOUD (naltrexone)" not in f.detail
    assert f.rule == "flag.no-rescue-naloxone.order"
    chart = [f for f in flags_of(d, "no-rescue-naloxone") if f.order_ref is None]
    assert [c.detail.split(" without")[0] for c in chart] == ["On MOUD (buprenorphine)"]


def test_row7_moud_ordered_with_naloxone_ordered_is_not_flagged(decide):
    """§5: naloxone ordered together with the MOUD: no flag."""
    d = decide(oud_condition(), drafts=[draft(BUP_NALOXONE_FILM), draft(NALOXONE_NASAL)])
    assert flags_of(d, "no-rescue-naloxone") == []


def test_row7_methadone_for_pain_ordered_is_not_moud(decide):
    """§1: methadone ordered for a patient with no OUD evidence is not MOUD: no naloxone flag."""
    d = decide(drafts=[draft(METHADONE_TABLET)])
    assert flags_of(d, "no-rescue-naloxone") == []


def test_row7_methadone_ordered_with_oud_reason_is_moud(decide):
    """§8: a methadone order with an OUD reasonCode is MOUD: naloxone info flag."""
    d = decide(drafts=[draft(METHADONE_TABLET, reason=OUD_REASON)])
    assert one(d, "no-rescue-naloxone").indicator == "info"


# ------------------------------------------------------------------ row 8: analyte missing


@pytest.mark.parametrize(("days_on", "flagged"), [(6, False), (7, True), (40, True)])
def test_row8_expected_buprenorphine_missing_from_latest_uds(decide, days_on, flagged):
    """§2 / §5: on buprenorphine for >= 7 days and the latest UDS is negative for it ->
    warning (adherence or diversion review) and Task review-adherence; 6 days -> none."""
    m = med(BUP_NALOXONE_FILM, authored=day_ago(days_on))
    u = uds(UDS_BUPRENORPHINE, "NEG", day_ago(0))
    d = decide(oud_condition(), m, u, naloxone())
    found = flags_of(d, "moud-analyte-missing")
    if flagged:
        assert len(found) == 1
        assert found[0].indicator == "warning"
        assert {ref(m), ref(u)} <= set(found[0].evidence)
        assert not advises_stopping_moud(found[0].summary + " " + found[0].detail)
        assert "review-adherence" in d.task_codes
    else:
        assert found == []
        assert "review-adherence" not in d.task_codes


@pytest.mark.parametrize(
    ("screens", "flagged"),
    [
        pytest.param(lambda: [uds(UDS_BUPRENORPHINE, "POS", day_ago(1))], False, id="positive"),
        pytest.param(
            lambda: [
                uds(UDS_BUPRENORPHINE, "NEG", day_ago(10)),
                uds(UDS_BUPRENORPHINE, "POS", day_ago(1)),
            ],
            False,
            id="older-negative-latest-positive",
        ),
        pytest.param(
            lambda: [
                uds(UDS_BUPRENORPHINE, "POS", day_ago(10)),
                uds(UDS_BUPRENORPHINE, "NEG", day_ago(1)),
            ],
            True,
            id="older-positive-latest-negative",
        ),
        pytest.param(lambda: [uds(UDS_METHADONE, "NEG", day_ago(1))], False, id="other-analyte"),
    ],
)
def test_row8_latest_buprenorphine_result_decides(decide, screens, flagged):
    """§2: the *latest* UDS for the expected analyte decides."""
    d = decide(
        oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(60)), *screens(), naloxone()
    )
    assert bool(flags_of(d, "moud-analyte-missing")) is flagged


@pytest.mark.parametrize("loinc", [UDS_METHADONE, UDS_EDDP])
def test_row8_expected_methadone_missing_from_latest_uds(decide, loinc):
    """§2 / §5: on methadone for >= 7 days and the latest UDS is negative for it -> warning."""
    d = decide(
        oud_condition(),
        med(METHADONE_SOLUTION, authored=day_ago(60)),
        uds(loinc, "negative", day_ago(2)),
        naloxone(),
    )
    f = one(d, "moud-analyte-missing")
    assert f.indicator == "warning"


# ------------------------------------------------------------------ never "stop MOUD"


def test_no_flag_ever_advises_stopping_moud(decide):
    """§5: safety flags never advise stopping MOUD (a busy chart raising most flags)."""
    d = decide(
        oud_condition(),
        med(METHADONE_SOLUTION, authored=day_ago(90)),
        med(ALPRAZOLAM_TABLET, authored=day_ago(20)),
        med(OXYCODONE_TABLET, authored=day_ago(5)),
        uds(UDS_METHADONE, "NEG", day_ago(1)),
        qtc(520),
        drafts=[
            draft(BUP_NALOXONE_FILM),
            draft(NALTREXONE_XR),
            draft(METHADONE_SOLUTION),
            draft(ZOLPIDEM_TABLET),
            draft(HYDROCODONE_APAP),
        ],
    )
    assert len(d.flags) >= 6
    for f in d.flags:
        assert not advises_stopping_moud(f.summary + " " + f.detail), f


def test_stop_detector_sanity():
    """The helper used above: it catches advice to stop and accepts its negation."""
    assert advises_stopping_moud("Stop buprenorphine now.")
    assert advises_stopping_moud("Consider discontinuing... no. Discontinue methadone.")
    assert not advises_stopping_moud("Do not stop MOUD because of it.")
    assert not advises_stopping_moud("This is not by itself a reason to stop treatment.")
