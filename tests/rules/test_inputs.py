"""PATHWAY.md §1 inputs and the §8 input definitions, as the rules see them: UDS result
normalisation (unknown is never negative), severity bands and codes, valueQuantity for own
scores, last-use typing, prefetch shapes, and the codes the rule tests rely on."""

from __future__ import annotations

from typing import Any

import pytest
from builders import (
    ALPRAZOLAM_TABLET,
    AS_OF,
    BUP_NALOXONE_FILM,
    LOINC,
    METHADONE_SOLUTION,
    METHADONE_TABLET,
    OXYCODONE_TABLET,
    RXNORM,
    SNOMED,
    ago,
    bundle,
    coded,
    day_ago,
    interpreted,
    last_use,
    med,
    oud_condition,
    own_obs,
    patient,
    severity,
    uds,
)
from rulekit import (
    ALT,
    AST,
    BUP_NX_TABLET,
    BUP_PATCH,
    BUP_SL_TABLET,
    CLONIDINE_TABLET,
    CODEINE_APAP,
    FENTANYL_PATCH,
    HCG_URINE,
    HCV_SCREEN,
    HIV_SCREEN,
    HR,
    HYDROCODONE_APAP,
    HYDROMORPHONE_TABLET,
    LOFEXIDINE_TABLET,
    MORPHINE_TABLET,
    NALOXONE_NASAL,
    NALTREXONE_TABLET,
    NALTREXONE_XR,
    OXYMORPHONE_TABLET,
    PREGNANCY_STATUS,
    PREGNANT,
    QTC,
    SBP,
    TRAMADOL_TABLET,
    UDS_6MAM,
    UDS_BENZODIAZEPINES,
    UDS_BUPRENORPHINE,
    UDS_CANNABINOIDS,
    UDS_EDDP,
    UDS_FENTANYL,
    UDS_METHADONE,
    UDS_OPIATES,
    UDS_OXYCODONE,
    UDS_STIMULANTS,
    ZOLPIDEM_TABLET,
    option,
    ref,
)


@pytest.mark.parametrize(
    ("system", "code", "group"),
    [
        (RXNORM, BUP_NALOXONE_FILM, "buprenorphine-oud"),
        (RXNORM, BUP_SL_TABLET, "buprenorphine-oud"),
        (RXNORM, BUP_NX_TABLET, "buprenorphine-oud"),
        (RXNORM, BUP_PATCH, "buprenorphine-pain"),
        (RXNORM, METHADONE_SOLUTION, "methadone"),
        (RXNORM, METHADONE_TABLET, "methadone"),
        (RXNORM, NALTREXONE_TABLET, "naltrexone"),
        (RXNORM, NALTREXONE_XR, "naltrexone"),
        (RXNORM, NALOXONE_NASAL, "naloxone-rescue"),
        (RXNORM, LOFEXIDINE_TABLET, "lofexidine"),
        (RXNORM, CLONIDINE_TABLET, "clonidine"),
        (RXNORM, ALPRAZOLAM_TABLET, "benzodiazepines"),
        (RXNORM, ZOLPIDEM_TABLET, "cns-depressants"),
        (RXNORM, OXYCODONE_TABLET, "opioid-analgesic-oxycodone"),
        (RXNORM, OXYMORPHONE_TABLET, "opioid-analgesic-oxymorphone"),
        (RXNORM, FENTANYL_PATCH, "opioid-analgesic-fentanyl"),
        (RXNORM, HYDROCODONE_APAP, "opioid-analgesic-hydrocodone"),
        (RXNORM, MORPHINE_TABLET, "opioid-analgesic-morphine"),
        (RXNORM, HYDROMORPHONE_TABLET, "opioid-analgesic-hydromorphone"),
        (RXNORM, CODEINE_APAP, "opioid-analgesic-codeine"),
        (RXNORM, TRAMADOL_TABLET, "opioid-analgesic-other"),
        (LOINC, UDS_OPIATES, "uds-opiates"),
        (LOINC, UDS_FENTANYL, "uds-fentanyl"),
        (LOINC, UDS_6MAM, "uds-6mam"),
        (LOINC, UDS_OXYCODONE, "uds-oxycodone"),
        (LOINC, UDS_BUPRENORPHINE, "uds-buprenorphine"),
        (LOINC, UDS_METHADONE, "uds-methadone"),
        (LOINC, UDS_EDDP, "uds-eddp"),
        (LOINC, UDS_BENZODIAZEPINES, "uds-benzodiazepines"),
        (LOINC, UDS_STIMULANTS, "uds-stimulants"),
        (LOINC, UDS_CANNABINOIDS, "uds-any"),
        (LOINC, ALT, "alt"),
        (LOINC, AST, "ast"),
        (LOINC, QTC, "qtc"),
        (LOINC, SBP, "systolic-bp"),
        (LOINC, HR, "heart-rate"),
        (LOINC, HCG_URINE, "hcg"),
        (LOINC, PREGNANCY_STATUS, "pregnancy-status"),
        (LOINC, PREGNANT, "pregnant-answers"),
        (LOINC, HIV_SCREEN, "hiv-screening"),
        (LOINC, HCV_SCREEN, "hcv-screening"),
    ],
)
def test_codes_used_by_the_rule_tests_are_in_their_value_sets(config, system, code, group):
    """Guard for the tests themselves: each code is in the value set the tests assume."""
    assert group in config.terminology.lookup(system, code)


@pytest.mark.parametrize(
    "code",
    [
        "58379-9",
        "40839-3",
        "59673-4",
        "19295-5",
        "3879-4",
        "3414-0",
        "93494-3",
        "19550-3",
        "3773-9",
        "93495-0",
        "10976-9",
        "19591-7",
        "10998-3",
        "58430-0",
    ],
)
def test_pathway_uds_loincs_are_read_as_drug_screens(decide, code):
    """§1 / §8: every UDS LOINC named in PATHWAY.md is an opioid drug screen (a positive with
    no explaining prescription is illicit: rule 1a)."""
    d = decide(uds(code, "POS", day_ago(2)))
    assert (d.phase, d.suspected_oud) == ("assessment", True)


# ------------------------------------------------------------------ result normalisation


POSITIVE_STRINGS = [
    "POS",
    "pos",
    "Positive",
    "POSITIVE",
    "detected",
    "Detected",
    "presumptive positive",
    "Presumptive Positive",
]
NEGATIVE_STRINGS = [
    "NEG",
    "neg",
    "Negative",
    "not detected",
    "Not Detected",
    "none detected",
    "NONE DETECTED",
]
UNKNOWN_STRINGS = ["trace", "pending", "inconclusive", "see comment", "", "invalid"]


@pytest.mark.parametrize("text", POSITIVE_STRINGS)
def test_positive_result_strings_any_case(decide, text):
    """§8: "pos", "positive", "detected", "presumptive positive" are positive, any case."""
    d = decide(uds(UDS_FENTANYL, text, day_ago(2)))
    assert d.suspected_oud is True


@pytest.mark.parametrize("text", NEGATIVE_STRINGS + UNKNOWN_STRINGS)
def test_negative_or_unknown_result_strings_are_not_positive(decide, text):
    """§8: negative words and anything else are not positive."""
    d = decide(uds(UDS_FENTANYL, text, day_ago(2)))
    assert d.phase == "not-applicable"


@pytest.mark.parametrize("text", NEGATIVE_STRINGS)
def test_negative_result_strings_any_case_document_opioid_free_interval(decide, text):
    """§8: "neg", "negative", "not detected", "none detected" are negative, any case: with a
    negative opiates and fentanyl result naltrexone is suitable."""
    d = decide(
        oud_condition(), uds(UDS_OPIATES, text, day_ago(1)), uds(UDS_FENTANYL, text, day_ago(1))
    )
    assert option(d, "naltrexone").status == "suitable"


@pytest.mark.parametrize("text", UNKNOWN_STRINGS)
def test_unknown_result_is_never_negative(decide, text):
    """§1 / §8: anything else is unknown, never negative: it cannot document the opioid-free
    interval for naltrexone."""
    d = decide(
        oud_condition(), uds(UDS_OPIATES, "NEG", day_ago(1)), uds(UDS_FENTANYL, text, day_ago(1))
    )
    assert option(d, "naltrexone").status == "not-yet"


@pytest.mark.parametrize(
    ("system", "code", "positive"),
    [
        (SNOMED, "10828004", True),
        (LOINC, "LA6576-8", True),
        (SNOMED, "260385009", False),
        (LOINC, "LA6577-6", False),
    ],
)
def test_coded_results(decide, system, code, positive):
    """§1: valueCodeableConcept SNOMED 10828004 / 260385009, LOINC LA6576-8 / LA6577-6."""
    d = decide(coded(UDS_FENTANYL, system, code, day_ago(2)))
    assert d.suspected_oud is positive


@pytest.mark.parametrize(("system", "code"), [(SNOMED, "260385009"), (LOINC, "LA6577-6")])
def test_coded_negatives_document_opioid_free_interval(decide, system, code):
    """§1: coded negatives are negatives."""
    d = decide(
        oud_condition(),
        coded(UDS_OPIATES, system, code, day_ago(1)),
        coded(UDS_FENTANYL, system, code, day_ago(1)),
    )
    assert option(d, "naltrexone").status == "suitable"


@pytest.mark.parametrize(
    ("code", "positive"), [("POS", True), ("A", True), ("NEG", False), ("N", False)]
)
def test_interpretation_only_results(decide, code, positive):
    """§1: a result given only as interpretation (POS/NEG, A/N) is read."""
    d = decide(interpreted(UDS_FENTANYL, code, day_ago(2)))
    assert d.suspected_oud is positive


@pytest.mark.parametrize("code", ["NEG", "N"])
def test_interpretation_only_negatives_document_opioid_free_interval(decide, code):
    """§1: interpretation-only negatives are negatives."""
    d = decide(
        oud_condition(),
        interpreted(UDS_OPIATES, code, day_ago(1)),
        interpreted(UDS_FENTANYL, code, day_ago(1)),
    )
    assert option(d, "naltrexone").status == "suitable"


# ------------------------------------------------------------------ severity


@pytest.mark.parametrize(
    ("count", "band"),
    [
        (0, None),
        (1, None),
        (2, "mild"),
        (3, "mild"),
        (4, "moderate"),
        (5, "moderate"),
        (6, "severe"),
        (11, "severe"),
    ],
)
def test_severity_bands(decide, count, band):
    """§1: DSM-5 criteria count 2-3 mild, 4-5 moderate, >= 6 severe."""
    assert decide(oud_condition(), severity(count, day_ago(10))).severity == band


@pytest.mark.parametrize(
    ("code", "band"),
    [("F11.10", "mild"), ("F11.20", "moderate-or-severe"), ("F11.23", "moderate-or-severe")],
)
def test_severity_derived_from_icd10_code(decide, code, band):
    """§1 / §8: mild from F11.1x, moderate-or-severe from F11.2x (never "severe" alone)."""
    assert decide(oud_condition(code=code)).severity == band


def test_severity_count_wins_over_code(decide):
    """§8: severe means a criteria count >= 6 (with F11.20 on file)."""
    assert decide(oud_condition(code="F11.20"), severity(7, day_ago(10))).severity == "severe"


@pytest.mark.parametrize("kind", ["cows-total", "dsm5-oud-criteria-count"])
def test_own_scores_accept_value_quantity(decide, kind):
    """§8: cows-total and dsm5-oud-criteria-count are valueInteger; accept valueQuantity too."""
    o = own_obs(kind, ago(hours=2), valueQuantity={"value": 9, "unit": "{score}"})
    d = decide(oud_condition(), o)
    if kind == "cows-total":
        assert d.phase == "stabilization"
        assert ref(o) in d.evidence
    else:
        assert d.severity == "severe"


# ------------------------------------------------------------------ last use typing


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("short-acting", "suitable"),
        ("long-acting", "not-yet"),
        (None, "not-yet"),
        ("something-else", "not-yet"),
    ],
)
def test_last_use_without_a_known_type_counts_as_long_acting(decide, kind, status):
    """§8: a last use with no type counts as long-acting (the conservative reading): 18 h ago is
    recent for long-acting (24 h) but not for short-acting (12 h)."""
    d = decide(oud_condition(), last_use(ago(hours=18), kind))
    assert option(d, "buprenorphine").status == status


# ------------------------------------------------------------------ prefetch shapes


def test_prefetch_entries_wrapped_as_bundle_entries(evaluator):
    """§1 trap: prefetch entries wrapped as bundle entries (a list of {fullUrl, resource})."""
    items: list[Any] = [patient(), oud_condition(), med(BUP_NALOXONE_FILM, authored=day_ago(60))]
    wrapped = [{"fullUrl": f"urn:uuid:{i}", "resource": r} for i, r in enumerate(items)]
    d = evaluator.evaluate(wrapped, AS_OF).decision
    assert d.phase == "maintenance"
    nested = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": bundle(*items)}],
    }
    assert evaluator.evaluate(nested, AS_OF).decision.phase == "maintenance"


def test_missing_authored_on_active_moud_is_conservative_stabilization(decide):
    """§1 trap "missing dates" / "choose the conservative option": active MOUD with no
    authoredOn cannot show 30 days of treatment: stabilization."""
    d = decide(oud_condition(), med(BUP_NALOXONE_FILM))
    assert d.phase == "stabilization"
    assert d.notes


def test_pregnancy_status_pregnant_is_known_pregnant(decide):
    """§8: pregnancy status 82810-3 = LA15173-0 is known pregnant (buprenorphine's reason)."""
    p = coded(PREGNANCY_STATUS, LOINC, PREGNANT, day_ago(2))
    d = decide(oud_condition(), p, patient_resource=patient(gender="female", birth="1996-01-01"))
    assert "pregnancy-test" not in d.task_codes
    assert ref(p) in option(d, "buprenorphine").evidence
