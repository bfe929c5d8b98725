"""Buprenorphine (sublingual, buprenorphine/naloxone, extended-release): PATHWAY.md §4, §8."""

from __future__ import annotations

from pathway.rules import timing
from pathway.rules.catalogue import ASAM_2020, FDA_BUPRENORPHINE, FDA_OPIOID_BENZO, TIP_63, Rule
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
    recent_full_agonist_exposure,
    youngest_age,
)

ACTIVE = Rule(
    "bup.active",
    "medication",
    "buprenorphine",
    "active",
    "Already on buprenorphine for OUD: continue",
    "§4, §8 Medication status",
    TIP_63,
)


def active(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    o = f.active_moud.get("buprenorphine")
    if o is None:
        return []
    return fired(f"On buprenorphine ({label(o.name, o.ref)}): continue.", o.ref)


ON_METHADONE = Rule(
    "bup.caution.on-methadone",
    "medication",
    "buprenorphine",
    "caution",
    "On methadone (any indication): a transition needs a taper and specialist input",
    "§4 Buprenorphine; §8 Medication status",
    ASAM_2020,
)


def on_methadone(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    # §8: any active methadone request, whatever its indication (pain included).
    for o in f.has_active(("methadone",))[:1]:
        return fired(
            f"Currently on methadone ({label(o.name, o.ref)}): a transition to buprenorphine "
            "needs a taper and specialist input.",
            o.ref,
        )
    return []


NOT_YET_RECENT_FULL_AGONIST = Rule(
    "bup.not-yet.recent-full-agonist",
    "medication",
    "buprenorphine",
    "not-yet",
    "Recent full-agonist exposure and no COWS at the start threshold in the window: risk of "
    "precipitated withdrawal",
    "§4 Buprenorphine; §8 (hour bounds include their edge; fentanyl in 7 days)",
    ASAM_2020,
    reads=(
        "buprenorphine.short_acting_hours",
        "buprenorphine.long_acting_hours",
        "buprenorphine.illicit_uds_days",
        "buprenorphine.fentanyl_days",
        "cows.buprenorphine_start_min",
        "cows.buprenorphine_window_hours",
    ),
    # Not-yet is about starting: it says nothing about a drug already taken, and a patient on
    # methadone is a planned transition (caution), whatever other exposure exists (§8).
    unless=(ACTIVE.id, ON_METHADONE.id),
)


def not_yet_recent_full_agonist(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    exposure, refs = recent_full_agonist_exposure(f, cfg)
    if not exposure:
        return []
    window = cfg.cows.buprenorphine_window_hours
    start_min = cfg.cows.buprenorphine_start_min
    cows = f.latest.get("cows")
    if (
        cows is not None
        and cows.value is not None
        and cows.value >= start_min
        and timing.surely_within_hours(cows.when, f.as_of, window)
    ):
        return []  # withdrawal is established: buprenorphine can start
    recent_cows = (
        cows is not None
        and cows.value is not None
        and timing.may_be_within_hours(cows.when, f.as_of, window)
    )
    cows_text = (
        f"latest COWS {int(cows.value)} ({timing.describe(cows.when)})"
        if cows is not None and cows.value is not None and recent_cows
        else f"no COWS in the last {window} h"
    )
    return fired(
        "Risk of precipitated withdrawal: " + "; ".join(exposure) + f"; {cows_text}. "
        f"Reassess COWS and start when it is {start_min} or more, or consider a low-dose "
        "initiation.",
        *refs,
        cows.ref if cows is not None and recent_cows else "",
    )


CNS_DEPRESSANT = Rule(
    "bup.caution.cns-depressant",
    "medication",
    "buprenorphine",
    "caution",
    "Active benzodiazepine or other CNS depressant: respiratory depression risk (do not withhold "
    "MOUD)",
    "§4 Buprenorphine",
    FDA_OPIOID_BENZO,
    reads=("drug_groups.cns_depressants",),
)


def cns_depressant(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    return [
        Fired(
            f"Active benzodiazepine or other CNS depressant ({label(d.name, d.ref)}): "
            "respiratory depression risk; do not withhold MOUD, review the depressant.",
            (d.ref,),
        )
        for d in f.has_active(cfg.drug_groups.cns_depressants)
    ]


LIVER = Rule(
    "bup.caution.liver",
    "medication",
    "buprenorphine",
    "caution",
    "ALT or AST over 5 x the upper limit of normal (last 90 days): monitor liver function",
    "§4 Buprenorphine; §8 (liver tests count for 90 days)",
    FDA_BUPRENORPHINE,
    reads=(
        "buprenorphine.liver_caution_uln_multiple",
        "labs.liver_valid_days",
        "labs.default_uln_u_per_l",
    ),
)


def liver(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    multiple = cfg.buprenorphine.liver_caution_uln_multiple
    r = liver_ratio(f, cfg)
    if r is None or r.ratio <= multiple:
        return []
    return fired(
        f"{r.name} {r.measurement.value:g} U/L is {r.ratio:.1f} x the upper limit of normal "
        f"(over {multiple:g} x): monitor liver function.",
        r.measurement.ref,
    )


AGE = Rule(
    "bup.caution.age",
    "medication",
    "buprenorphine",
    "caution",
    "Age under 16: specialist input for adolescent treatment",
    "§4 Buprenorphine",
    FDA_BUPRENORPHINE,
    reads=("buprenorphine.min_age",),
)


def age(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    youngest = youngest_age(f, p)
    limit = cfg.buprenorphine.min_age
    if youngest is None or youngest >= limit:
        return []
    return fired(
        f"Age under {limit}: specialist input for adolescent treatment.", f"Patient/{p.id}"
    )


FIRST_LINE = Rule(
    "bup.suitable.first-line",
    "medication",
    "buprenorphine",
    "suitable",
    "First-line agonist treatment; office-based, no daily clinic visits",
    "§4 Buprenorphine",
    ASAM_2020,
    unless=(ACTIVE.id,),
)


def first_line(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    return fired("First-line agonist treatment; office-based, no daily clinic visits.")


PREGNANCY = Rule(
    "bup.suitable.pregnancy",
    "medication",
    "buprenorphine",
    "suitable",
    "Appropriate in pregnancy",
    "§4 Buprenorphine; §8 Known pregnant",
    TIP_63,
    reads=("labs.hcg_valid_days",),
)


def pregnancy(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    if not f.known_pregnant:
        return []
    return fired("Appropriate in pregnancy.", *f.pregnancy_refs)


RULES: tuple[tuple[Rule, Formula], ...] = (
    (ACTIVE, active),
    (NOT_YET_RECENT_FULL_AGONIST, not_yet_recent_full_agonist),
    (ON_METHADONE, on_methadone),
    (CNS_DEPRESSANT, cns_depressant),
    (LIVER, liver),
    (AGE, age),
    (FIRST_LINE, first_line),
    (PREGNANCY, pregnancy),
)


def buprenorphine(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> MedicationOption:
    return decide("buprenorphine", RULES, f, p, cfg)
