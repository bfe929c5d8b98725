"""evaluate(facts, as_of, config) -> Decision: the whole pathway, a pure function."""

from __future__ import annotations

from datetime import datetime

from pathway.rules import timing
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import find
from pathway.rules.model import Decision, Facts, MedicationOption
from pathway.rules.options.adjuncts import clonidine, lofexidine
from pathway.rules.options.buprenorphine import buprenorphine
from pathway.rules.options.methadone import methadone
from pathway.rules.options.naloxone import naloxone
from pathway.rules.options.naltrexone import naltrexone
from pathway.rules.phase import decide_phase
from pathway.rules.safety import chart_flags, order_flags
from pathway.rules.tasks import plan_tasks

MEDICATIONS = ("buprenorphine", "methadone", "naltrexone", "naloxone", "lofexidine", "clonidine")


def evaluate(facts: Facts, as_of: datetime, config: PathwayConfig) -> Decision:
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    f = find(facts, as_of, config)
    phase = decide_phase(f, config)
    p = facts.patient
    options: dict[str, MedicationOption] = {
        "buprenorphine": buprenorphine(f, p, config),
        "methadone": methadone(f, p, config),
        "naltrexone": naltrexone(f, p, config),
        "naloxone": naloxone(f, p, config),
        "lofexidine": lofexidine(f, p, config),
        "clonidine": clonidine(f, p, config),
    }
    # Chart flags belong to the pathway card; draft orders are judged for every patient (§8).
    flags = chart_flags(f, options, config) if f.concern else []
    flags += order_flags(f, facts.draft_orders, options, config)
    tasks = plan_tasks(f, facts, config, phase.phase, phase.return_to_use, options, flags)
    evidence = tuple(
        dict.fromkeys(
            [
                *phase.evidence,
                *f.evidence_refs,
                *(e for o in options.values() for e in o.evidence),
                *(e for t in tasks for e in t.evidence),
            ]
        )
    )
    notes: list[str] = []
    # The note belongs to an untyped last use that a rule read: undated, or inside the longest
    # window any rule gives a last use (naltrexone's after long-acting opioids).
    relevant = [
        u
        for u in f.last_uses[:1] + tuple(u for u in f.last_uses if u.used is None)
        if u.used is None
        or timing.may_be_within_days(u.used, as_of, config.naltrexone.opioid_free_days_long)
    ]
    if any(u.opioid_type is None for u in relevant):
        notes.append(
            "Last opioid use has no type: counted as long-acting (the conservative reading)."
        )
    if f.active_moud and f.episode_start is None:
        notes.append("MOUD start date unknown: treated as the first 30 days.")
    return Decision(
        patient_id=facts.patient.id,
        as_of=as_of,
        phase=phase.phase,
        phase_reasons=phase.reasons,
        return_to_use=phase.return_to_use,
        suspected_oud=phase.suspected_oud,
        oud_evidence=f.oud_evidence,
        severity=f.severity,
        stage=f.stage.stage if f.stage else None,
        medications=tuple(options[m] for m in MEDICATIONS),
        tasks=tasks,
        flags=tuple(flags),
        evidence=evidence,
        notes=tuple(notes),
        phase_rule=phase.rule,
        fact_rules=f.fired,
    )
