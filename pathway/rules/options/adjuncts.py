"""Withdrawal adjuncts, lofexidine and clonidine: PATHWAY.md §4, §8.

`active` if prescribed for withdrawal; otherwise `suitable` only in withdrawal (the criteria of
rule 3a hold, whichever phase rule fired), `caution` there when systolic BP < 90 or heart rate < 55
in the last 24 h; `not-indicated` outside withdrawal. Clonidine in withdrawal is also `caution`
when an active clonidine request for another indication exists. The two options share their
formulas; each has its own rule ids.
"""

from __future__ import annotations

from pathway.rules import timing
from pathway.rules.catalogue import FDA_LOFEXIDINE, PROJECT, TIP_63, Rule
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import Findings
from pathway.rules.model import MedicationOption, MedicationOrder, PatientFacts
from pathway.rules.options.common import Fired, Formula, decide, fired, label

WITHDRAWAL_REASONS = frozenset({"withdrawal", "oud"})


def _for_withdrawal(name: str, o: MedicationOrder) -> bool:
    # Lofexidine has no other indication; clonidine is also a blood-pressure drug (§8).
    return name == "lofexidine" or bool(o.reason_tags & WITHDRAWAL_REASONS)


def _active(name: str) -> Formula:
    def formula(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
        for o in f.has_active((name,)):
            if _for_withdrawal(name, o):
                return fired(
                    f"Prescribed for opioid withdrawal ({label(o.name, o.ref)}): continue while "
                    "symptomatic.",
                    o.ref,
                )
        return []

    return formula


def _not_indicated(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    return [] if f.in_withdrawal else fired("Not in opioid withdrawal.")


def _in_withdrawal(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    if not f.in_withdrawal:
        return []
    return fired(
        "In opioid withdrawal (" + "; ".join(f.withdrawal_reasons) + "): symptomatic relief.",
        *f.withdrawal_refs,
    )


def _low_vital(kind: str) -> Formula:
    def formula(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
        if not f.in_withdrawal:
            return []
        a = cfg.adjuncts
        low = a.systolic_bp_min if kind == "sbp" else a.heart_rate_min
        # Any low reading in the window counts, not only the latest (§4: "in the last 24 h").
        for m in f.measurements:  # newest first
            if m.kind != kind or m.value is None or m.value >= low:
                continue
            if not timing.may_be_within_hours(m.when, f.as_of, a.vitals_window_hours):
                continue
            if kind == "sbp":
                text = f"Systolic BP {m.value:g} mmHg ({timing.describe(m.when)}) under {low:g}"
                return fired(text + ": hypotension risk.", m.ref)
            text = f"Heart rate {m.value:g}/min ({timing.describe(m.when)}) under {low:g}"
            return fired(text + ": bradycardia risk.", m.ref)
        return []

    return formula


def _clonidine_other_indication(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    if not f.in_withdrawal:
        return []
    return [
        Fired(
            f"Already on clonidine for another indication ({label(o.name, o.ref)}): adding more "
            "risks hypotension.",
            (o.ref,),
        )
        for o in f.has_active(("clonidine",))
        if not _for_withdrawal("clonidine", o)
    ]


def _rules(name: str) -> tuple[tuple[Rule, Formula], ...]:
    active = Rule(
        f"{name}.active",
        "medication",
        name,
        "active",
        f"{name.capitalize()} prescribed for opioid withdrawal: continue while symptomatic",
        "§4 Withdrawal adjuncts; §8",
        TIP_63,
    )
    in_withdrawal = Rule(
        f"{name}.suitable.withdrawal",
        "medication",
        name,
        "suitable",
        "In opioid withdrawal (the criteria of rule 3a): symptomatic relief",
        "§4 Withdrawal adjuncts; §3 rule 3a; §8",
        FDA_LOFEXIDINE if name == "lofexidine" else TIP_63,
        reads=(
            "cows.withdrawal_min",
            "cows.withdrawal_window_hours",
            "phase.withdrawal_condition_days",
        ),
        unless=(active.id,),
    )
    low_bp = Rule(
        f"{name}.caution.low-bp",
        "medication",
        name,
        "caution",
        "In withdrawal with a systolic BP under 90 in the last 24 h: hypotension risk",
        "§4 Withdrawal adjuncts; §8",
        FDA_LOFEXIDINE if name == "lofexidine" else TIP_63,
        reads=("adjuncts.systolic_bp_min", "adjuncts.vitals_window_hours"),
    )
    low_hr = Rule(
        f"{name}.caution.low-heart-rate",
        "medication",
        name,
        "caution",
        "In withdrawal with a heart rate under 55 in the last 24 h: bradycardia risk",
        "§4 Withdrawal adjuncts; §8",
        FDA_LOFEXIDINE if name == "lofexidine" else TIP_63,
        reads=("adjuncts.heart_rate_min", "adjuncts.vitals_window_hours"),
    )
    not_indicated = Rule(
        f"{name}.not-indicated",
        "medication",
        name,
        "not-indicated",
        "Not in opioid withdrawal",
        "§4 Withdrawal adjuncts; §8",
        PROJECT,
        unless=(active.id,),
    )
    rules: list[tuple[Rule, Formula]] = [
        (active, _active(name)),
        (in_withdrawal, _in_withdrawal),
        (low_bp, _low_vital("sbp")),
        (low_hr, _low_vital("hr")),
    ]
    if name == "clonidine":
        other = Rule(
            "clonidine.caution.other-indication",
            "medication",
            "clonidine",
            "caution",
            "In withdrawal while on clonidine for another indication: more clonidine risks "
            "hypotension",
            "§8 Withdrawal adjuncts",
            PROJECT,
        )
        rules.append((other, _clonidine_other_indication))
    rules.append((not_indicated, _not_indicated))
    return tuple(rules)


LOFEXIDINE_RULES = _rules("lofexidine")
CLONIDINE_RULES = _rules("clonidine")


def lofexidine(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> MedicationOption:
    return decide("lofexidine", LOFEXIDINE_RULES, f, p, cfg)


def clonidine(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> MedicationOption:
    return decide("clonidine", CLONIDINE_RULES, f, p, cfg)
