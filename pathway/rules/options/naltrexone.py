"""Naltrexone (extended-release injection preferred; oral): PATHWAY.md §4, §8."""

from __future__ import annotations

from pathway.rules import timing
from pathway.rules.catalogue import ASAM_2020, FDA_NALTREXONE, PROJECT, TIP_63, Rule
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import Findings
from pathway.rules.model import MedicationOption, PatientFacts
from pathway.rules.options.common import (
    Fired,
    Formula,
    decide,
    fired,
    label,
    liver_ratio,
    negative_opioid_screen,
)

ACTIVE = Rule(
    "naltrexone.active",
    "medication",
    "naltrexone",
    "active",
    "Already on naltrexone for OUD: continue",
    "§2 Active MOUD; §4",
    TIP_63,
)


def active(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    o = f.active_moud.get("naltrexone")
    if o is None:
        return []
    return fired(f"On naltrexone ({label(o.name, o.ref)}): continue.", o.ref)


OPIOID_AGONIST = Rule(
    "naltrexone.contraindicated.opioid-agonist",
    "medication",
    "naltrexone",
    "contraindicated",
    "An active opioid agonist (methadone, buprenorphine or a full-agonist analgesic)",
    "§4 Naltrexone",
    FDA_NALTREXONE,
    reads=("drug_groups.full_agonist_analgesics",),
)


def opioid_agonist(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    groups = (
        "methadone",
        "buprenorphine-oud",
        "buprenorphine-pain",
        *cfg.drug_groups.full_agonist_analgesics,
    )
    return [
        Fired(
            f"Active opioid agonist ({label(a.name, a.ref)}): naltrexone would precipitate "
            "withdrawal and block treatment.",
            (a.ref,),
        )
        for a in f.has_active(groups)
    ]


LIVER_CONTRAINDICATED = Rule(
    "naltrexone.contraindicated.liver",
    "medication",
    "naltrexone",
    "contraindicated",
    "ALT or AST over 5 x the upper limit of normal (last 90 days)",
    "§4 Naltrexone; §8 (liver tests count for 90 days)",
    FDA_NALTREXONE,
    reads=(
        "naltrexone.liver_contraindicated_uln_multiple",
        "labs.liver_valid_days",
        "labs.default_uln_u_per_l",
    ),
)


def liver_contraindicated(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    multiple = cfg.naltrexone.liver_contraindicated_uln_multiple
    r = liver_ratio(f, cfg)
    if r is None or r.ratio <= multiple:
        return []
    return fired(
        f"{r.name} {r.measurement.value:g} U/L is {r.ratio:.1f} x the upper limit of normal "
        f"(over {multiple:g} x).",
        r.measurement.ref,
    )


LIVER_CAUTION = Rule(
    "naltrexone.caution.liver",
    "medication",
    "naltrexone",
    "caution",
    "ALT or AST 3-5 x the upper limit of normal (last 90 days): monitor liver function",
    "§4 Naltrexone",
    FDA_NALTREXONE,
    reads=(
        "naltrexone.liver_caution_uln_multiple",
        "naltrexone.liver_contraindicated_uln_multiple",
        "labs.liver_valid_days",
        "labs.default_uln_u_per_l",
    ),
)


def liver_caution(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    n = cfg.naltrexone
    r = liver_ratio(f, cfg)
    if (
        r is None
        or not n.liver_caution_uln_multiple <= r.ratio <= n.liver_contraindicated_uln_multiple
    ):
        return []
    return fired(
        f"{r.name} {r.measurement.value:g} U/L is {r.ratio:.1f} x the upper limit of normal "
        f"({n.liver_caution_uln_multiple:g}-{n.liver_contraindicated_uln_multiple:g} x): monitor "
        "liver function.",
        r.measurement.ref,
    )


RECENT_USE = Rule(
    "naltrexone.not-yet.recent-use",
    "medication",
    "naltrexone",
    "not-yet",
    "Opioid use in the last 7 days (10 after long-acting opioids; untyped counts as long-acting)",
    "§4 Naltrexone; §8 (untyped last use is long-acting)",
    ASAM_2020,
    reads=("naltrexone.opioid_free_days_short", "naltrexone.opioid_free_days_long"),
    unless=(ACTIVE.id,),
)


def recent_use(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    # A use recorded without a date may be the latest, whatever dated ones say.
    undated = next((u for u in f.last_uses if u.used is None), None)
    use = undated or f.last_use
    if use is None:
        return []
    n = cfg.naltrexone
    kind = use.opioid_type or "long-acting"
    days = n.opioid_free_days_long if kind == "long-acting" else n.opioid_free_days_short
    if use.used is not None and not timing.may_be_within_days(use.used, f.as_of, days):
        return []
    when = timing.describe(use.used) if use.used else "at an unknown time"
    return fired(f"Last {kind} opioid use {when}: needs {days} opioid-free days first.", use.ref)


ILLICIT_UDS = Rule(
    "naltrexone.not-yet.illicit-uds",
    "medication",
    "naltrexone",
    "not-yet",
    "An illicit opioid-positive drug screen in the last 7 days",
    "§4 Naltrexone; §2 Illicit opioid-positive UDS",
    ASAM_2020,
    reads=("naltrexone.illicit_uds_days",),
    unless=(ACTIVE.id,),
)


def illicit_uds(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    days = cfg.naltrexone.illicit_uds_days
    return [
        Fired(
            f"Illicit {s.analyte}-positive drug screen {timing.describe(s.when)} (within {days} "
            "days).",
            (s.ref,),
        )
        for s in f.illicit_within(days)
    ]


WITHDRAWAL = Rule(
    "naltrexone.not-yet.withdrawal",
    "medication",
    "naltrexone",
    "not-yet",
    "COWS of 5 or more in the last 72 h: still in withdrawal",
    "§4 Naltrexone",
    ASAM_2020,
    reads=("cows.withdrawal_min", "cows.withdrawal_window_hours"),
    unless=(ACTIVE.id,),
)


def withdrawal(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    c = f.withdrawal_cows
    if c is None or c.value is None:
        return []
    return fired(
        f"COWS {c.value:g} ({timing.describe(c.when)}) in the last "
        f"{cfg.cows.withdrawal_window_hours} h: still in withdrawal.",
        c.ref,
    )


NO_NEGATIVE_UDS = Rule(
    "naltrexone.not-yet.no-negative-uds",
    "medication",
    "naltrexone",
    "not-yet",
    "No negative opioid drug screen (opiates and fentanyl) in the last 7 days: the opioid-free "
    "interval must be documented",
    "§4 Naltrexone; §8 Negative opioid UDS",
    ASAM_2020,
    reads=("naltrexone.negative_uds_days",),
    unless=(ACTIVE.id,),
)


def no_negative_uds(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    days = cfg.naltrexone.negative_uds_days
    negative, _ = negative_opioid_screen(f, cfg, days)
    if negative:
        return []
    return fired(
        f"No negative opioid drug screen (opiates and fentanyl) in the last {days} days: "
        "document the opioid-free interval with a drug screen."
    )


PREGNANCY = Rule(
    "naltrexone.caution.pregnancy",
    "medication",
    "naltrexone",
    "caution",
    "Pregnancy: limited data; agonist treatment preferred",
    "§4 Naltrexone; §8 Known pregnant",
    TIP_63,
    reads=("labs.hcg_valid_days",),
)


def pregnancy(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    if not f.known_pregnant:
        return []
    return fired(
        "Pregnancy: limited data for naltrexone; agonist treatment preferred.", *f.pregnancy_refs
    )


SEVERE_NOT_READY = Rule(
    "naltrexone.caution.severe-not-ready",
    "medication",
    "naltrexone",
    "caution",
    "Severe OUD with a stage of change before action, or unknown: not in place of agonist "
    "treatment",
    "§4 Naltrexone; §8 (an unknown stage is no evidence of readiness)",
    ASAM_2020,
    reads=("severity.severe_min", "naltrexone.stages_ready", "labs.stage_valid_days"),
)


def severe_not_ready(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    if f.severity != "severe":
        return []
    stage = f.stage.stage if f.stage else None
    if stage in cfg.naltrexone.stages_ready:
        return []
    return fired(
        "Severe OUD with a stage of change before action"
        + (f" ({stage})" if stage else " (stage not known)")
        + ": do not offer naltrexone in place of agonist treatment.",
        f.severity_ref or "",
        f.stage.ref if f.stage else "",
    )


SUITABLE = Rule(
    "naltrexone.suitable",
    "medication",
    "naltrexone",
    "suitable",
    "Opioid-free interval documented by a negative drug screen",
    "§4 Naltrexone",
    PROJECT,
    reads=("naltrexone.negative_uds_days",),
    unless=(
        ACTIVE.id,
        OPIOID_AGONIST.id,
        LIVER_CONTRAINDICATED.id,
        RECENT_USE.id,
        ILLICIT_UDS.id,
        WITHDRAWAL.id,
        NO_NEGATIVE_UDS.id,
    ),
)


def suitable(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    _, refs = negative_opioid_screen(f, cfg, cfg.naltrexone.negative_uds_days)
    return fired(
        "Opioid-free interval documented by a negative drug screen; extended-release injection "
        "preferred.",
        *refs,
    )


RULES: tuple[tuple[Rule, Formula], ...] = (
    (ACTIVE, active),
    (OPIOID_AGONIST, opioid_agonist),
    (LIVER_CONTRAINDICATED, liver_contraindicated),
    (LIVER_CAUTION, liver_caution),
    (RECENT_USE, recent_use),
    (ILLICIT_UDS, illicit_uds),
    (WITHDRAWAL, withdrawal),
    (NO_NEGATIVE_UDS, no_negative_uds),
    (PREGNANCY, pregnancy),
    (SEVERE_NOT_READY, severe_not_ready),
    (SUITABLE, suitable),
)


def naltrexone(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> MedicationOption:
    return decide("naltrexone", RULES, f, p, cfg)
