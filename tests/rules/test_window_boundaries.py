"""Every window of config/pathway.yaml, probed at its edge (PATHWAY.md §8), generated from the
config itself.

For each key whose name is a number of days, hours or months (`*_days`, `*_hours`, `*_months`,
`min_days_on_moud`, the task intervals, per phase where the YAML gives them per phase) there is a
probe: a small patient whose decision shows whether one dated resource counted, and the value
placed one unit inside the window, exactly on its edge, and one unit outside. What the spec says:
- "in the last N days": 0 <= (as_of date - value date) <= N, calendar days in UTC: the edge counts
  whatever the time of day, and an instant counts by its UTC date (a time with an offset is
  converted first);
- "in the last N months": calendar months, both ends included, a missing day clamps to the
  month's last day (as_of 2024-11-20 reaches back to 2023-11-20, 366 days; as_of 2024-03-31
  one month back is 2024-02-29); several as_of dates around 29 February are probed;
- "in the last N h": instants, the edge included (also the last-use bounds of §4); one second
  either side of the edge is probed;
- where §3 says "< 30 days" (stabilization) or §2 "for >= 7 days" (adherence) the probe states
  which side the edge falls on.
Each probe runs with the shipped value and again with a changed one (months: 1, across a short
February; days: +3; hours: +5) to show the rule reads the key, not a constant.
`test_every_window_key_has_a_probe` fails when a window key is added to the YAML without a probe
(or a probe names a key that no longer exists), so the probes stay complete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import (
    ALPRAZOLAM_TABLET,
    BUP_NALOXONE_FILM,
    ICD10,
    LOINC,
    METHADONE_TABLET,
    SNOMED,
    bundle,
    coded,
    condition,
    cows,
    last_use,
    med,
    patient,
    quantity,
    severity,
    stage,
    task,
    uds,
)
from metakit import (
    Key,
    config_value,
    instant,
    months_back,
    parse_as_of,
    raw_config,
    raw_value,
    unit_of,
    window_keys,
    with_value,
)
from rulekit import (
    ALT,
    AST,
    HCG_URINE,
    HCV_SCREEN,
    HIV_SCREEN,
    HR,
    NALOXONE_NASAL,
    NOT_PREGNANT,
    PREGNANCY_STATUS,
    QTC,
    SBP,
    UDS_BENZODIAZEPINES,
    UDS_BUPRENORPHINE,
    UDS_FENTANYL,
    UDS_OPIATES,
    UDS_OXYCODONE,
    UDS_STIMULANTS,
)

from pathway.config import LoadedConfig, load_pathway_config
from pathway.evaluation import Evaluator
from pathway.rules.config import PathwayConfig
from pathway.rules.model import Decision

RAW = raw_config()

Resources = list[dict[str, Any]]
Build = Callable[[datetime, str], Resources]  # (as_of, the probed value) -> the patient's data
Counted = Callable[[Decision], bool]  # did the probed resource count?


@dataclass(frozen=True)
class Variant:
    name: str
    build: Build
    counted: Counted


@dataclass(frozen=True)
class Probe:
    says: str  # what PATHWAY.md says, in short
    variants: tuple[Variant, ...]
    edge_counts: bool = True  # is a value exactly on the edge inside?
    anchor_days: int = 0  # the window is measured back from this many days before as_of
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ small patients


def man() -> dict[str, Any]:
    return patient(gender="male", birth="1990-01-01")


def woman() -> dict[str, Any]:
    return patient(gender="female", birth="1994-01-01")


def oud() -> dict[str, Any]:
    """An active OUD diagnosis: counts whatever its date (§2)."""
    return condition("F11.20", ICD10, status="active", recorded="2020-01-01")


def remission() -> dict[str, Any]:
    return condition("F11.21", ICD10, status="remission", recorded="2020-01-01")


def hours_before(as_of: datetime, hours: float) -> str:
    return instant(as_of - timedelta(hours=hours))


def days_before(as_of: datetime, days: int) -> str:
    return (as_of.date() - timedelta(days=days)).isoformat()


def negatives(as_of: datetime) -> Resources:
    """A negative opiates and a negative fentanyl screen an hour ago (§8 negative opioid UDS)."""
    now = hours_before(as_of, 1)
    return [uds(UDS_OPIATES, "neg", now), uds(UDS_FENTANYL, "Negative", now)]


def high_alt(as_of: datetime) -> dict[str, Any]:
    """ALT 6.25 x ULN an hour ago: naltrexone contraindicated (so it is never `not-yet`)."""
    return quantity(ALT, 250, hours_before(as_of, 1))


def on_bup(as_of: datetime, days: int = 200) -> dict[str, Any]:
    return med(BUP_NALOXONE_FILM, "active", days_before(as_of, days))


def status(d: Decision, name: str) -> str:
    option = d.medication(name)
    assert option is not None, name
    return option.status


def has_task(d: Decision, code: str) -> bool:
    return code in d.task_codes


def phase_patient(phase: str, as_of: datetime) -> Resources:
    """A patient in `phase` whose naltrexone is never `not-yet` (so the only collect-uds rule
    in play is the phase interval)."""
    if phase == "assessment":
        return [man(), oud(), high_alt(as_of)]
    if phase == "stabilization":
        return [man(), oud(), high_alt(as_of), cows(10, hours_before(as_of, 1))]
    if phase == "maintenance":
        return [man(), oud(), on_bup(as_of)]
    if phase == "recovery":
        return [man(), remission(), high_alt(as_of)]
    raise AssertionError(phase)


def v(name: str, build: Build, counted: Counted) -> Variant:
    return Variant(name, build, counted)


def phase_probes() -> dict[Key, Probe]:
    out: dict[Key, Probe] = {}
    for ph in RAW["tasks"]["collect-uds"]["interval_days"]:

        def uds_build(a: datetime, x: str, ph: str = ph) -> Resources:
            return [*phase_patient(ph, a), uds(UDS_BENZODIAZEPINES, "neg", x)]

        def visit_build(a: datetime, x: str, ph: str = ph) -> Resources:
            return [*phase_patient(ph, a), task("follow-up-visit", "completed", end=x)]

        def in_phase(d: Decision, ph: str = ph) -> None:
            assert d.phase == ph, (d.phase, ph)

        def no_uds_task(d: Decision, ph: str = ph) -> bool:
            in_phase(d, ph)
            return not has_task(d, "collect-uds")

        def no_visit_task(d: Decision, ph: str = ph) -> bool:
            in_phase(d, ph)
            return not has_task(d, "follow-up-visit")

        out[("tasks", "collect-uds", "interval_days", ph)] = Probe(
            f"§7/§8 collect-uds in {ph}: any readable drug screen inside the interval satisfies it",
            (v("benzodiazepine-negative screen", uds_build, no_uds_task),),
        )
        out[("tasks", "follow-up-visit", "interval_days", ph)] = Probe(
            f"§7 follow-up-visit in {ph}: a completed visit Task inside the interval satisfies it",
            (v("completed follow-up Task", visit_build, no_visit_task),),
        )
    return out


PROBES: dict[Key, Probe] = {
    # ---------------------------------------------------------------- §2 evidence
    ("evidence", "severity_lookback_months"): Probe(
        "§2 a DSM-5 criteria count >= 2 in the last 12 months is OUD evidence",
        (
            v(
                "count 4",
                lambda a, x: [man(), severity(4, x)],
                lambda d: d.phase != "not-applicable",
            ),
        ),
    ),
    ("evidence", "buprenorphine_lookback_months"): Probe(
        "§2/§8 a completed or stopped buprenorphine-for-OUD request in the last 12 months is "
        "OUD evidence (an active one counts whatever its date)",
        (
            v(
                "completed",
                lambda a, x: [man(), med(BUP_NALOXONE_FILM, "completed", x)],
                lambda d: d.phase != "not-applicable",
            ),
            v(
                "stopped",
                lambda a, x: [man(), med(BUP_NALOXONE_FILM, "stopped", x)],
                lambda d: d.phase != "not-applicable",
            ),
        ),
    ),
    # ---------------------------------------------------------------- COWS
    ("cows", "withdrawal_window_hours"): Probe(
        "§3 rule 3a: COWS >= 5 in the last 72 h is withdrawal (stabilization)",
        (
            v(
                "COWS 6",
                lambda a, x: [man(), oud(), cows(6, x)],
                lambda d: d.phase == "stabilization",
            ),
        ),
    ),
    ("cows", "buprenorphine_window_hours"): Probe(
        "§4 buprenorphine not-yet unless the latest COWS in the last 24 h is >= 8",
        (
            v(
                "COWS 10 after short-acting use 2 h ago",
                lambda a, x: [
                    man(),
                    oud(),
                    last_use(hours_before(a, 2), "short-acting"),
                    cows(10, x),
                ],
                lambda d: status(d, "buprenorphine") != "not-yet",
            ),
        ),
    ),
    ("cows", "assess_window_hours"): Probe(
        "§8 assess-cows: not on MOUD, assessment or stabilization, and no COWS in the last 24 h",
        (
            v(
                "COWS 2",
                lambda a, x: [man(), oud(), cows(2, x)],
                lambda d: not has_task(d, "assess-cows"),
            ),
        ),
    ),
    # ---------------------------------------------------------------- §3 phase
    ("phase", "suspected_oud_uds_days"): Probe(
        "§3 rule 1a: no OUD evidence and an illicit opioid-positive screen in the last 30 days",
        (
            v(
                "opiates positive",
                lambda a, x: [man(), uds(UDS_OPIATES, "POS", x)],
                lambda d: d.suspected_oud and d.phase == "assessment",
            ),
        ),
    ),
    ("phase", "stabilization_days"): Probe(
        "§3 rule 2a: episode start < 30 days ago is stabilization (exactly 30 days is not)",
        (
            v(
                "active buprenorphine",
                lambda a, x: [man(), oud(), med(BUP_NALOXONE_FILM, "active", x)],
                lambda d: d.phase == "stabilization",
            ),
        ),
        edge_counts=False,
    ),
    ("phase", "return_to_use_uds_days"): Probe(
        "§3 rule 2b: on MOUD >= 30 days and an illicit opioid-positive screen in the last 30 days",
        (
            v(
                "opiates positive",
                lambda a, x: [man(), oud(), on_bup(a), uds(UDS_OPIATES, "positive", x)],
                lambda d: d.return_to_use and d.phase == "stabilization",
            ),
        ),
    ),
    ("phase", "recovery_uds_days"): Probe(
        "§3 rules 3b/3c: in remission, an illicit opioid-positive screen in 90 days is return "
        "to use (assessment), none is recovery",
        (
            v(
                "opiates positive",
                lambda a, x: [man(), remission(), uds(UDS_OPIATES, "POS", x)],
                lambda d: d.return_to_use and d.phase == "assessment",
            ),
        ),
    ),
    ("phase", "withdrawal_condition_days"): Probe(
        "§3 rule 3a: an opioid withdrawal Condition recorded in the last 7 days",
        (
            v(
                "SNOMED 87132004",
                lambda a, x: [
                    man(),
                    oud(),
                    condition("87132004", SNOMED, status="active", recorded=x),
                ],
                lambda d: d.phase == "stabilization",
            ),
        ),
    ),
    ("phase", "episode_gap_days"): Probe(
        "§8 episode chain: requests at most 30 days apart are one episode (the gap is measured "
        "from the active request, authored 5 days ago)",
        (
            v(
                "completed buprenorphine before the active one",
                lambda a, x: [
                    man(),
                    oud(),
                    med(BUP_NALOXONE_FILM, "active", days_before(a, 5)),
                    med(BUP_NALOXONE_FILM, "completed", x),
                ],
                lambda d: d.phase == "maintenance",
            ),
            v(
                "stopped methadone before active buprenorphine (any MOUD drug)",
                lambda a, x: [
                    man(),
                    oud(),
                    med(BUP_NALOXONE_FILM, "active", days_before(a, 5)),
                    med(METHADONE_TABLET, "stopped", x),
                ],
                lambda d: d.phase == "maintenance",
            ),
        ),
        anchor_days=5,
    ),
    # ---------------------------------------------------------------- §4 buprenorphine
    ("buprenorphine", "illicit_uds_days"): Probe(
        "§4 buprenorphine not-yet: an illicit opioid-positive screen in the last 3 days",
        (
            v(
                "opiates positive",
                lambda a, x: [man(), oud(), uds(UDS_OPIATES, "POS", x)],
                lambda d: status(d, "buprenorphine") == "not-yet",
            ),
            v(
                "oxycodone positive",
                lambda a, x: [man(), oud(), uds(UDS_OXYCODONE, "detected", x)],
                lambda d: status(d, "buprenorphine") == "not-yet",
            ),
        ),
    ),
    ("buprenorphine", "short_acting_hours"): Probe(
        "§4/§8 buprenorphine not-yet: short-acting use 12 h ago or less (the edge included)",
        (
            v(
                "short-acting use",
                lambda a, x: [man(), oud(), last_use(x, "short-acting")],
                lambda d: status(d, "buprenorphine") == "not-yet",
            ),
        ),
    ),
    ("buprenorphine", "long_acting_hours"): Probe(
        "§4/§8 buprenorphine not-yet: long-acting use 24 h ago or less (the edge included); a "
        "use with no type counts as long-acting",
        (
            v(
                "long-acting use",
                lambda a, x: [man(), oud(), last_use(x, "long-acting")],
                lambda d: status(d, "buprenorphine") == "not-yet",
            ),
            v(
                "use with no type",
                lambda a, x: [man(), oud(), last_use(x, None)],
                lambda d: status(d, "buprenorphine") == "not-yet",
            ),
        ),
    ),
    ("buprenorphine", "fentanyl_days"): Probe(
        "§8 a last use typed fentanyl, or a fentanyl-positive screen, in the last 7 days needs "
        "COWS >= 8 whatever the hours",
        (
            v(
                "fentanyl use",
                lambda a, x: [man(), oud(), last_use(x, "fentanyl")],
                lambda d: status(d, "buprenorphine") == "not-yet",
            ),
            v(
                "fentanyl-positive screen",
                lambda a, x: [man(), oud(), uds(UDS_FENTANYL, "Positive", x)],
                lambda d: status(d, "buprenorphine") == "not-yet",
            ),
        ),
    ),
    # ---------------------------------------------------------------- §4 naltrexone
    ("naltrexone", "opioid_free_days_short"): Probe(
        "§4 naltrexone not-yet: opioid use in the last 7 days",
        (
            v(
                "short-acting use, negative screens an hour ago",
                lambda a, x: [man(), oud(), last_use(x, "short-acting"), *negatives(a)],
                lambda d: status(d, "naltrexone") == "not-yet",
            ),
        ),
    ),
    ("naltrexone", "opioid_free_days_long"): Probe(
        "§4 naltrexone not-yet: long-acting use in the last 10 days (no type = long-acting)",
        (
            v(
                "long-acting use",
                lambda a, x: [man(), oud(), last_use(x, "long-acting"), *negatives(a)],
                lambda d: status(d, "naltrexone") == "not-yet",
            ),
            v(
                "use with no type",
                lambda a, x: [man(), oud(), last_use(x, None), *negatives(a)],
                lambda d: status(d, "naltrexone") == "not-yet",
            ),
        ),
    ),
    ("naltrexone", "illicit_uds_days"): Probe(
        "§4 naltrexone not-yet: an illicit opioid-positive screen in the last 7 days",
        (
            v(
                "oxycodone positive",
                lambda a, x: [man(), oud(), uds(UDS_OXYCODONE, "POS", x), *negatives(a)],
                lambda d: status(d, "naltrexone") == "not-yet",
            ),
        ),
    ),
    ("naltrexone", "negative_uds_days"): Probe(
        "§4/§8 naltrexone needs a negative opiates and a negative fentanyl screen in 7 days",
        (
            v(
                "both negatives",
                lambda a, x: [
                    man(),
                    oud(),
                    uds(UDS_OPIATES, "neg", x),
                    uds(UDS_FENTANYL, "NEG", x),
                ],
                lambda d: status(d, "naltrexone") == "suitable",
            ),
        ),
    ),
    # ---------------------------------------------------------------- naloxone, adjuncts
    ("naloxone", "prescribed_lookback_months"): Probe(
        "§8 naloxone is active only when a rescue product was authored in the last 12 months, "
        "whatever its status",
        (
            v(
                "active order",
                lambda a, x: [man(), oud(), med(NALOXONE_NASAL, "active", x)],
                lambda d: status(d, "naloxone") == "active",
            ),
            v(
                "completed order",
                lambda a, x: [man(), oud(), med(NALOXONE_NASAL, "completed", x)],
                lambda d: status(d, "naloxone") == "active",
            ),
        ),
    ),
    ("adjuncts", "vitals_window_hours"): Probe(
        "§4/§8 withdrawal adjuncts: caution when systolic BP < 90 or heart rate < 55 in 24 h",
        (
            v(
                "systolic BP 85 (lofexidine)",
                lambda a, x: [
                    man(),
                    oud(),
                    cows(10, hours_before(a, 1)),
                    quantity(SBP, 85, x, unit="mm[Hg]"),
                ],
                lambda d: status(d, "lofexidine") == "caution",
            ),
            v(
                "heart rate 50 (clonidine)",
                lambda a, x: [
                    man(),
                    oud(),
                    cows(10, hours_before(a, 1)),
                    quantity(HR, 50, x, unit="/min"),
                ],
                lambda d: status(d, "clonidine") == "caution",
            ),
        ),
    ),
    # ---------------------------------------------------------------- labs
    ("labs", "liver_valid_days"): Probe(
        "§8 liver tests count for 90 days (ALT or AST > 5 x ULN: buprenorphine caution)",
        (
            v(
                "ALT 250, default ULN 40",
                lambda a, x: [man(), oud(), quantity(ALT, 250, x)],
                lambda d: status(d, "buprenorphine") == "caution",
            ),
            v(
                "AST 160, referenceRange high 30",
                lambda a, x: [man(), oud(), quantity(AST, 160, x, high=30)],
                lambda d: status(d, "buprenorphine") == "caution",
            ),
        ),
    ),
    ("labs", "qtc_valid_months"): Probe(
        "§8 a QTc counts for 12 months (older is 'no QTc')",
        (
            v(
                "QTc 520: methadone contraindicated",
                lambda a, x: [man(), oud(), quantity(QTC, 520, x, unit="ms")],
                lambda d: status(d, "methadone") == "contraindicated",
            ),
            v(
                "QTc 470: methadone caution",
                lambda a, x: [man(), oud(), quantity(QTC, 470, x, unit="ms")],
                lambda d: status(d, "methadone") == "caution",
            ),
        ),
    ),
    ("labs", "stage_valid_days"): Probe(
        "§8 a stage of change counts for 90 days (older is 'unknown')",
        (
            v(
                "action: CBT offered (§6)",
                lambda a, x: [man(), oud(), stage("action", x)],
                lambda d: has_task(d, "cbt"),
            ),
            v(
                "severe OUD, action: no naltrexone caution (§8 unknown stage is caution)",
                lambda a, x: [
                    man(),
                    oud(),
                    severity(7, hours_before(a, 1)),
                    stage("action", x),
                    *negatives(a),
                ],
                lambda d: status(d, "naltrexone") == "suitable",
            ),
        ),
    ),
    ("labs", "hcg_valid_days"): Probe(
        "§8 known pregnant: a positive hCG in the last 30 days (naltrexone caution)",
        (
            v(
                "hCG positive",
                lambda a, x: [woman(), oud(), uds(HCG_URINE, "positive", x), *negatives(a)],
                lambda d: status(d, "naltrexone") == "caution",
            ),
        ),
    ),
    ("adherence", "min_days_on_moud"): Probe(
        "§2/§8 expected analyte missing only when on the drug for >= 7 days (so inside the first "
        "7 days, the 7th excluded, a negative buprenorphine screen raises no review)",
        (
            v(
                "active buprenorphine, buprenorphine-negative screen an hour ago",
                lambda a, x: [
                    man(),
                    oud(),
                    med(BUP_NALOXONE_FILM, "active", x),
                    uds(UDS_BUPRENORPHINE, "neg", hours_before(a, 1)),
                ],
                lambda d: not has_task(d, "review-adherence"),
            ),
        ),
        edge_counts=False,
    ),
    ("psychosocial", "illicit_uds_days"): Probe(
        "§6 an illicit opioid or stimulant-positive screen in the last 30 days: contingency "
        "management",
        (
            v(
                "stimulant positive, stage action",
                lambda a, x: [
                    man(),
                    oud(),
                    stage("action", hours_before(a, 1)),
                    uds(UDS_STIMULANTS, "POS", x),
                ],
                lambda d: has_task(d, "contingency-management"),
            ),
            v(
                "opiates positive, stage action",
                lambda a, x: [
                    man(),
                    oud(),
                    stage("action", hours_before(a, 1)),
                    uds(UDS_OPIATES, "POS", x),
                ],
                lambda d: has_task(d, "contingency-management"),
            ),
        ),
    ),
    # ---------------------------------------------------------------- tasks
    ("task_repeat_after_days",): Probe(
        "tasks without a §7 interval are not planned again within 30 days of a completed one",
        (
            v(
                "prescribe-naloxone",
                lambda a, x: [man(), oud(), task("prescribe-naloxone", "completed", end=x)],
                lambda d: not has_task(d, "prescribe-naloxone"),
            ),
            v(
                "discuss-moud-options",
                lambda a, x: [man(), oud(), task("discuss-moud-options", "completed", end=x)],
                lambda d: not has_task(d, "discuss-moud-options"),
            ),
        ),
    ),
    ("tasks", "collect-uds", "naltrexone_not_yet_days"): Probe(
        "§8 collect-uds also when naltrexone is not-yet and there is no screen in 7 days",
        (
            v(
                "recovery, benzodiazepine-negative screen",
                lambda a, x: [man(), remission(), uds(UDS_BENZODIAZEPINES, "neg", x)],
                lambda d: not has_task(d, "collect-uds"),
            ),
        ),
    ),
    ("tasks", "assess-oud-severity", "interval_months"): Probe(
        "§7 assess-oud-severity: no severity observation (12 months) and no OUD Condition",
        (
            v(
                "evidence from active buprenorphine, a count of 1",
                lambda a, x: [man(), on_bup(a, 100), severity(1, x)],
                lambda d: not has_task(d, "assess-oud-severity"),
            ),
        ),
    ),
    ("tasks", "assess-readiness", "interval_days"): Probe(
        "§7 assess-readiness: no stage of change observation in 90 days",
        (
            v(
                "stage action",
                lambda a, x: [man(), oud(), stage("action", x)],
                lambda d: not has_task(d, "assess-readiness"),
            ),
        ),
    ),
    ("tasks", "order-lft", "interval_days"): Probe(
        "§8 order-lft: naltrexone under consideration with no ALT/AST in 90 days",
        (
            v(
                "ALT 30",
                lambda a, x: [man(), oud(), quantity(ALT, 30, x)],
                lambda d: not has_task(d, "order-lft"),
            ),
        ),
    ),
    ("tasks", "order-lft", "buprenorphine_interval_months"): Probe(
        "§8 order-lft: buprenorphine active with no ALT/AST in 12 months",
        (
            v(
                "AST 25",
                lambda a, x: [man(), oud(), on_bup(a), quantity(AST, 25, x)],
                lambda d: not has_task(d, "order-lft"),
            ),
        ),
    ),
    ("tasks", "order-ecg", "interval_months"): Probe(
        "§8 order-ecg: methadone suitable with no QTc in 12 months",
        (
            v(
                "QTc 420",
                lambda a, x: [man(), oud(), quantity(QTC, 420, x, unit="ms")],
                lambda d: not has_task(d, "order-ecg"),
            ),
        ),
    ),
    ("tasks", "pregnancy-test", "interval_days"): Probe(
        "§7 pregnancy-test: female 12-50, pregnancy status not known in 30 days",
        (
            v(
                "hCG negative",
                lambda a, x: [woman(), oud(), uds(HCG_URINE, "negative", x)],
                lambda d: not has_task(d, "pregnancy-test"),
            ),
            v(
                "pregnancy status: not pregnant",
                lambda a, x: [woman(), oud(), coded(PREGNANCY_STATUS, LOINC, NOT_PREGNANT, x)],
                lambda d: not has_task(d, "pregnancy-test"),
            ),
        ),
    ),
    ("tasks", "hiv-hcv-screening", "interval_months"): Probe(
        "§7 hiv-hcv-screening: every patient with OUD evidence, 12 months",
        (
            v(
                "both screens",
                lambda a, x: [
                    man(),
                    oud(),
                    coded(HIV_SCREEN, SNOMED, "260385009", x),
                    coded(HCV_SCREEN, SNOMED, "260385009", x),
                ],
                lambda d: not has_task(d, "hiv-hcv-screening"),
            ),
            v(
                "HIV now, HCV probed",
                lambda a, x: [
                    man(),
                    oud(),
                    coded(HIV_SCREEN, SNOMED, "260385009", hours_before(a, 1)),
                    coded(HCV_SCREEN, SNOMED, "260385009", x),
                ],
                lambda d: not has_task(d, "hiv-hcv-screening"),
            ),
        ),
    ),
    **phase_probes(),
}

# Which patient plans each task whose due date is `due_in_days` after as_of (PATHWAY §7; the due
# offset is a key in days too, so it is probed: the Task's due date moves with it).
DUE_TRIGGERS: dict[str, Callable[[datetime], Resources]] = {
    code: build
    for build, codes in [
        (
            lambda a: [woman(), oud()],
            (
                "collect-uds",
                "assess-cows",
                "assess-readiness",
                "order-lft",
                "order-ecg",
                "pregnancy-test",
                "hiv-hcv-screening",
                "prescribe-naloxone",
                "discuss-moud-options",
                "motivational-interviewing",
                "family-support",
            ),
        ),
        (
            lambda a: [
                man(),
                on_bup(a),
                med(ALPRAZOLAM_TABLET, "active", days_before(a, 20)),
                uds(UDS_BUPRENORPHINE, "neg", hours_before(a, 1)),
                uds(UDS_STIMULANTS, "POS", hours_before(a, 1)),
                stage("action", hours_before(a, 1)),
            ],
            (
                "assess-oud-severity",
                "review-adherence",
                "review-cns-depressants",
                "contingency-management",
                "cbt",
                "case-management",
                "mutual-help",
                "peer-support",
            ),
        ),
        (
            lambda a: [man(), oud(), med(METHADONE_TABLET, "active", days_before(a, 200))],
            ("addiction-counseling",),
        ),
    ]
    for code in codes
}

DAYS_AS_OF = ("2025-03-01T00:30:00Z", "2024-11-20T16:45:00Z")
HOURS_AS_OF = ("2025-03-01T00:30:00Z", "2024-11-20T16:45:00Z")
# Around 29 February and months of different lengths (PATHWAY §8 examples included).
MONTHS_AS_OF = (
    "2024-11-20T16:45:00Z",  # 12 months back: 2023-11-20, 366 days
    "2024-02-29T08:30:00Z",  # 12 months back: 2023-02-28
    "2025-02-28T12:00:00Z",  # 12 months back: 2024-02-28 (29 Feb 2024 is inside)
    "2025-03-01T00:30:00Z",  # 12 months back: 2024-03-01 (29 Feb 2024 is outside)
    "2025-03-31T23:10:00Z",  # 1 month back: 2025-02-28
    "2024-03-31T10:00:00Z",  # 1 month back: 2024-02-29
)


# ------------------------------------------------------------------ placing the probed value


@dataclass(frozen=True)
class Placement:
    text: str  # the FHIR date or dateTime
    where: str  # for the failure message
    counts: bool  # what the spec says


def date_forms(d: date, as_of: datetime) -> list[tuple[str, date]]:
    """The same calendar day written five ways, with the UTC date each one denotes: a date, the
    first and last second of the day in UTC, and times with an offset whose UTC date is the day
    before / after (§8: date-only values are UTC calendar dates; instants count by UTC date)."""
    forms = [
        (d.isoformat(), d),
        (f"{d.isoformat()}T00:00:00Z", d),
        (f"{d.isoformat()}T23:59:59Z", d),
        (f"{d.isoformat()}T01:00:00+03:00", d - timedelta(days=1)),
        (f"{d.isoformat()}T22:00:00-05:00", d + timedelta(days=1)),
    ]
    out = []
    for text, utc_day in forms:
        moment = datetime.fromisoformat(text) if "T" in text else None
        if moment is not None and moment > as_of:
            continue  # a value after as_of is not yet known: not a window question
        out.append((text, utc_day))
    return out


def placements(probe: Probe, unit: str, n: int, as_of: datetime) -> list[Placement]:
    anchor = as_of - timedelta(days=probe.anchor_days)
    if unit == "hours":
        edge = anchor - timedelta(hours=n)
        out = []
        for delta, where in ((1, "1 s inside"), (0, "on the edge"), (-1, "1 s outside")):
            t = edge + timedelta(seconds=delta)
            counts = t > edge or (t == edge and probe.edge_counts)
            for text in (instant(t), t.astimezone(_PLUS_0530).isoformat()):
                out.append(Placement(text, f"{where} ({text})", counts))
        return out
    today = anchor.date()
    edge_day = months_back(today, n) if unit == "months" else today - timedelta(days=n)
    out = []
    for d, where in (
        (edge_day + timedelta(days=1), "1 day inside"),
        (edge_day, "on the edge"),
        (edge_day - timedelta(days=1), "1 day outside"),
    ):
        for text, utc_day in date_forms(d, as_of):
            if utc_day > today:
                continue
            counts = utc_day > edge_day or (utc_day == edge_day and probe.edge_counts)
            out.append(Placement(text, f"{where} ({text}, UTC date {utc_day})", counts))
    return out


_PLUS_0530 = datetime.fromisoformat("2000-01-01T00:00:00+05:30").tzinfo


def changed(unit: str, n: int) -> int:
    return {"months": 1, "days": n + 3, "hours": n + 5}[unit]


def as_ofs(unit: str) -> tuple[str, ...]:
    return {"months": MONTHS_AS_OF, "days": DAYS_AS_OF, "hours": HOURS_AS_OF}[unit]


def evaluator_for(config: LoadedConfig, cfg: PathwayConfig) -> Evaluator:
    return Evaluator(dataclasses.replace(config, pathway=cfg))


def run_probe(key: Key, config: LoadedConfig, change: bool) -> list[str]:
    """Every placement of the probe, with the shipped value (or a changed one); the mismatches."""
    probe = PROBES[key]
    unit = unit_of(key)
    shipped = config_value(config.pathway, key)
    assert shipped == raw_value(RAW, key)
    failures: list[str] = []
    for n in [changed(unit, shipped) if change else shipped]:
        ev = evaluator_for(config, with_value(config.pathway, key, n))
        for as_of_text in as_ofs(unit):
            as_of = parse_as_of(as_of_text)
            for p in placements(probe, unit, n, as_of):
                for variant in probe.variants:
                    d = ev.evaluate(bundle(*variant.build(as_of, p.text)), as_of).decision
                    if variant.counted(d) is not p.counts:
                        failures.append(
                            f"{'.'.join(key)}={n}, as_of {as_of_text}, {variant.name}, value "
                            f"{p.where}: spec says {'counts' if p.counts else 'does not count'}, "
                            f"service: phase {d.phase}, "
                            + ", ".join(f"{m.medication} {m.status}" for m in d.medications[:3])
                            + f", tasks {sorted(d.task_codes)}"
                        )
    return failures


# ------------------------------------------------------------------ the tests


def test_calendar_months_helper_reads_the_spec() -> None:
    """The tests' own calendar (PATHWAY §8 examples), so the probes below can be trusted."""
    assert months_back(date(2024, 11, 20), 12) == date(2023, 11, 20)
    assert (date(2024, 11, 20) - months_back(date(2024, 11, 20), 12)).days == 366
    assert months_back(date(2024, 2, 29), 12) == date(2023, 2, 28)
    assert months_back(date(2025, 3, 31), 1) == date(2025, 2, 28)
    assert months_back(date(2024, 3, 31), 1) == date(2024, 2, 29)
    assert months_back(date(2025, 2, 28), 12) == date(2024, 2, 28)
    assert months_back(date(2025, 3, 1), 12) == date(2024, 3, 1)
    assert months_back(date(2025, 1, 31), 2) == date(2024, 11, 30)
    assert months_back(date(2025, 1, 15), 13) == date(2023, 12, 15)


def test_every_window_key_has_a_probe() -> None:
    """A window key added to config/pathway.yaml without a probe here fails (and a probe for a
    key that is gone fails too): the boundary tests stay as complete as the config."""
    keys = set(window_keys(RAW))
    probed = set(PROBES) | {("tasks", code, "due_in_days") for code in DUE_TRIGGERS}
    assert sorted(keys - probed) == [], "window keys without a probe"
    assert sorted(probed - keys) == [], "probes for keys the config does not have"
    # Every task with a due offset has a trigger (follow-up-visit's due is its phase interval).
    due = {k[1] for k in keys if k[0] == "tasks" and k[-1] == "due_in_days"}
    assert due == set(DUE_TRIGGERS)


def test_probe_paths_are_the_loaders_fields(tmp_path: Path, config: LoadedConfig) -> None:
    """The probes change the loaded config by YAML key (with dataclasses.replace): check that
    mapping against the loader. Every window key is changed in a copy of the YAML, the copy is
    loaded, and the result equals the shipped config with the same keys replaced."""
    raw = raw_config()
    expected = config.pathway
    for i, key in enumerate(sorted(window_keys(raw))):
        node: Any = raw
        for part in key[:-1]:
            node = node[part]
        node[key[-1]] = node[key[-1]] + 1 + i  # distinct values: a swapped field shows
        expected = with_value(expected, key, node[key[-1]])
    file = tmp_path / "pathway.yaml"
    file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    loaded, _aliases = load_pathway_config(file)
    assert loaded == expected


WINDOW_KEYS = sorted(PROBES)


def assert_no_failures(failures: list[str]) -> None:
    assert not failures, f"{len(failures)} placements disagree with the spec:\n" + "\n".join(
        failures[:12]
    )


@pytest.mark.parametrize("key", WINDOW_KEYS, ids=[".".join(k) for k in WINDOW_KEYS])
def test_window_edge(key: Key, config: LoadedConfig) -> None:
    """With the shipped value: one unit inside counts, the edge counts (unless the spec says
    '<'), one unit outside does not, in every written form of the value."""
    assert_no_failures(run_probe(key, config, change=False))


# Keys whose changed value the rules do not follow (defects, reported to the lead): the key is in
# the config, documented as the interval, yet another key decides.
NOT_READ: dict[Key, str] = {}  # keys a rule ignores (a defect): none left


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=NOT_READ[k]))
        if k in NOT_READ
        else k
        for k in WINDOW_KEYS
    ],
    ids=[".".join(k) for k in WINDOW_KEYS],
)
def test_window_key_is_read(key: Key, config: LoadedConfig) -> None:
    """The same probe with the key changed (months: 1, across a short February; days: +3;
    hours: +5): the edge moves with the config, so the rule reads the key, not a constant."""
    assert_no_failures(run_probe(key, config, change=True))


@pytest.mark.parametrize("code", sorted(DUE_TRIGGERS))
def test_task_due_in_days(code: str, config: LoadedConfig) -> None:
    """§7 due dates: a planned Task is due `due_in_days` after the as_of date (also after the
    value is changed: the planner reads the key)."""
    key: Key = ("tasks", code, "due_in_days")
    shipped = config_value(config.pathway, key)
    for n in (shipped, shipped + 3):
        ev = evaluator_for(config, with_value(config.pathway, key, n))
        for as_of_text in DAYS_AS_OF:
            as_of = parse_as_of(as_of_text)
            d = ev.evaluate(bundle(*DUE_TRIGGERS[code](as_of)), as_of).decision
            planned = [t for t in d.tasks if t.code == code]
            assert planned, f"{code} not planned for its trigger patient: {d.task_codes}"
            assert planned[0].due == as_of.date() + timedelta(days=n), (code, n, as_of_text)


@pytest.mark.parametrize("phase", sorted(RAW["tasks"]["follow-up-visit"]["interval_days"]))
def test_follow_up_due_is_the_phase_interval(phase: str, config: LoadedConfig) -> None:
    """§7 follow-up-visit has no due offset: it is due one phase interval after as_of."""
    key: Key = ("tasks", "follow-up-visit", "interval_days", phase)
    shipped = config_value(config.pathway, key)
    for n in (shipped, shipped + 3):
        ev = evaluator_for(config, with_value(config.pathway, key, n))
        as_of = parse_as_of(DAYS_AS_OF[0])
        d = ev.evaluate(bundle(*phase_patient(phase, as_of)), as_of).decision
        assert d.phase == phase
        (visit,) = [t for t in d.tasks if t.code == "follow-up-visit"]
        assert visit.due == as_of.date() + timedelta(days=n)
