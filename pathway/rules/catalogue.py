"""The rules of the pathway, each a named unit with a stable id (PATHWAY.md, config/pathway.yaml).

A `Rule` says what one rule is for people: its id (stable: outputs, CarePlans and audits cite it),
what it concludes (`kind`, `target`, `outcome`), a one-line title, the PATHWAY.md section it
implements, the guideline it follows, and the config keys whose values it reads. The formula that
decides whether it fires lives beside it, in the module of its topic (phase.py, options/*.py,
safety.py, tasks.py, findings.py); `all_rules()` gathers them all.

Exceptions between rules are data, not the order of `if`s: `unless` names the rules that, when
they fire for the same patient, stop this one from applying (e.g. buprenorphine not-yet does not
apply to a patient on methadone). Precedence between statuses is §8's and lives in
options/common.py.
"""

from __future__ import annotations

from dataclasses import dataclass

# Sources (the guidelines and labels the thresholds come from; PATHWAY.md preamble).
ASAM_2020 = "ASAM National Practice Guideline for the Treatment of OUD, 2020 Focused Update"
TIP_63 = "SAMHSA TIP 63, Medications for Opioid Use Disorder (2021)"
CDC_2022 = "CDC Clinical Practice Guideline for Prescribing Opioids for Pain, 2022"
DSM_5 = "DSM-5 criteria for opioid use disorder"
COWS_SCALE = "Clinical Opiate Withdrawal Scale (Wesson & Ling, 2003)"
FDA_METHADONE = "FDA label, methadone (QT prolongation warning)"
FDA_BUPRENORPHINE = "FDA label, buprenorphine and buprenorphine/naloxone"
FDA_NALTREXONE = "FDA label, naltrexone extended-release injection"
FDA_LOFEXIDINE = "FDA label, lofexidine"
FDA_OPIOID_BENZO = (
    "FDA Drug Safety Communications 2016 and 2017 (opioids with benzodiazepines; do not withhold "
    "MOUD)"
)
FDA_NALOXONE_2020 = "FDA 2020 labeling: discuss and offer naloxone with opioid treatment"
CFR_42_8_12 = "42 CFR 8.12 (opioid treatment programs; admission of patients under 18)"
UPTODATE_PSYCHOSOCIAL = "UpToDate, Opioid use disorder: Psychosocial management (2024)"
CDC_HIV_HCV = "CDC HIV and hepatitis C screening recommendations for people who use drugs"
PROJECT = "This project's conservative reading where PATHWAY.md leaves room (§8)"

KINDS = ("fact", "phase", "medication", "flag", "task")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str  # stable: never renamed once released (outputs and CarePlans cite it)
    kind: str  # fact | phase | medication | flag | task
    target: str  # the medication, phase rule, flag code or task code it decides
    outcome: str  # the status, phase, indicator or "due" it concludes
    title: str
    section: str  # PATHWAY.md section(s)
    source: str
    reads: tuple[str, ...] = ()  # dotted config keys, e.g. "buprenorphine.short_acting_hours"
    unless: tuple[str, ...] = ()  # ids of rules that, when they fire, stop this one

    @property
    def effect(self) -> str:
        if self.kind == "medication":
            return f"{self.target}: {self.outcome}"
        if self.kind == "phase":
            return f"phase {self.outcome}"
        if self.kind == "flag":
            return f"flag {self.target} ({self.outcome})"
        if self.kind == "task":
            return f"task {self.target} due"
        return f"fact: {self.target}"


def all_rules() -> tuple[Rule, ...]:
    """Every rule of the pathway, in the order of PATHWAY.md (ids unique: tested)."""
    from pathway.rules import findings, phase, safety, tasks
    from pathway.rules.options import adjuncts, buprenorphine, methadone, naloxone, naltrexone

    out: list[Rule] = list(findings.RULES)
    out += [r for r, _ in phase.RULES]
    for module in (buprenorphine, methadone, naltrexone, naloxone):
        out += [r for r, _ in module.RULES]
    out += [r for r, _ in adjuncts.LOFEXIDINE_RULES]
    out += [r for r, _ in adjuncts.CLONIDINE_RULES]
    out += list(safety.RULES)
    out += list(tasks.RULES)
    return tuple(out)


def by_id() -> dict[str, Rule]:
    return {r.id: r for r in all_rules()}
