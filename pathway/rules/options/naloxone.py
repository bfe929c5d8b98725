"""Rescue naloxone: PATHWAY.md §4, §8."""

from __future__ import annotations

from pathway.rules import timing
from pathway.rules.catalogue import CDC_2022, FDA_NALOXONE_2020, PROJECT, Rule
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import Findings
from pathway.rules.model import MedicationOption, PatientFacts
from pathway.rules.options.common import Fired, Formula, decide, fired, label

ACTIVE = Rule(
    "naloxone.active.recent-rescue",
    "medication",
    "naloxone",
    "active",
    "A rescue naloxone product authored in the last 12 calendar months, whatever its status",
    "§4 Naloxone rescue; §8 (an old active PRN order does not count)",
    CDC_2022,
    reads=("naloxone.prescribed_lookback_months",),
)


def active(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    months = cfg.naloxone.prescribed_lookback_months
    for o in f.orders:  # kits are used, lost and expire: only a recent one counts
        if "naloxone-rescue" in o.groups and timing.surely_within_months(
            o.authored, f.as_of, months
        ):
            return fired(
                f"Rescue naloxone prescribed {timing.describe(o.authored)} "
                f"({label(o.name, o.ref)}).",
                o.ref,
            )
    return []


RECOMMENDED = Rule(
    "naloxone.recommended",
    "medication",
    "naloxone",
    "recommended",
    "OUD evidence or suspected OUD and no rescue naloxone in the last 12 calendar months",
    "§4 Naloxone rescue; §8 (suspected OUD too)",
    FDA_NALOXONE_2020,
    reads=("naloxone.prescribed_lookback_months",),
    unless=(ACTIVE.id,),
)


def recommended(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    if not f.concern:
        return []
    return fired(
        "No rescue naloxone prescribed in the last 12 months: prescribe naloxone (nasal spray or "
        "injection) and train the patient and family (task prescribe-naloxone)."
    )


NOT_INDICATED = Rule(
    "naloxone.not-indicated",
    "medication",
    "naloxone",
    "not-indicated",
    "No OUD evidence or suspicion",
    "§4 Naloxone rescue",
    PROJECT,
    unless=(ACTIVE.id, RECOMMENDED.id),
)


def not_indicated(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    return fired("No OUD evidence or suspicion.")


RULES: tuple[tuple[Rule, Formula], ...] = (
    (ACTIVE, active),
    (RECOMMENDED, recommended),
    (NOT_INDICATED, not_indicated),
)


def naloxone(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> MedicationOption:
    return decide("naloxone", RULES, f, p, cfg)
