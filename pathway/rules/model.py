"""Plain typed inputs ("facts") and outputs ("decision") of the clinical core.

Nothing here knows FHIR, HTTP or the clock: the FHIR adapter (pathway.fhir.facts) turns resources
into these values, and the pathway (pathway.rules.pathway) turns them into a Decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import NamedTuple


class When(NamedTuple):
    """A point in time that may be known only partly.

    A full dateTime has earliest == latest. A date-only value spans its calendar day (UTC), a
    year-month its month, a year its year. Rules that raise concern ask whether the value *may*
    fall in a window; rules that reassure ask whether it *surely* does (unknown is not negative).
    (A NamedTuple rather than a frozen dataclass: one is built for every date read, and tuples
    are several times cheaper to build; it is just as immutable. The facts below are
    NamedTuples for the same reason: a prefetch of 500 resources builds hundreds of them.)
    """

    earliest: datetime
    latest: datetime
    precision: str = "instant"  # instant | day | month | year

    @property
    def date_only(self) -> bool:
        return self.precision != "instant"


class Result(Enum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PatientFacts:
    id: str
    birth_date: When | None = None
    gender: str | None = None


class ConditionFact(NamedTuple):
    ref: str
    tags: frozenset[
        str
    ]  # oud, oud-remission-code, oud-mild, oud-moderate-severe, withdrawal, pregnancy
    clinical_status: str | None  # active | recurrence | relapse | inactive | remission | resolved
    when: When | None  # recordedDate, else onset


class MedicationOrder(NamedTuple):
    ref: str
    groups: frozenset[
        str
    ]  # value-set ids: buprenorphine-oud, methadone, opioid-analgesic-oxycodone, ...
    status: str  # active | completed | stopped | on-hold | unknown | draft
    authored: When | None
    reason_tags: frozenset[str] = frozenset()  # oud, withdrawal (from reasonCode)
    name: str = ""


class DrugScreen(NamedTuple):
    ref: str
    analyte: str  # opiates | fentanyl | 6mam | oxycodone | buprenorphine | methadone | eddp | ...
    result: Result
    when: When | None


class Measurement(NamedTuple):
    """A numeric or coded observation: cows, severity, alt, ast, qtc, sbp, hr, hcg, pregnancy."""

    ref: str
    kind: str
    value: float | None
    when: When | None
    upper_limit: float | None = None  # referenceRange.high for ALT/AST
    result: Result = Result.UNKNOWN  # for hcg and pregnancy status (positive = pregnant)


class LastUse(NamedTuple):
    ref: str
    used: When | None  # the valueDateTime
    opioid_type: str | None  # short-acting | long-acting | fentanyl | None (counts as long-acting)


class StageOfChange(NamedTuple):
    ref: str
    stage: str | None  # precontemplation ... maintenance; None when the code is unreadable
    when: When | None


class TaskRecord(NamedTuple):
    """A Task of ours already in the EHR (completed ones satisfy a task inside its interval)."""

    ref: str
    code: str
    status: str
    when: When | None


@dataclass(frozen=True, slots=True)
class Facts:
    patient: PatientFacts
    conditions: tuple[ConditionFact, ...] = ()
    orders: tuple[MedicationOrder, ...] = ()
    screens: tuple[DrugScreen, ...] = ()
    measurements: tuple[Measurement, ...] = ()
    last_uses: tuple[LastUse, ...] = ()
    stages: tuple[StageOfChange, ...] = ()
    tasks: tuple[TaskRecord, ...] = ()
    draft_orders: tuple[MedicationOrder, ...] = ()  # order-select / order-sign context


# ---------------------------------------------------------------- decision


class MedicationOption(NamedTuple):
    medication: str  # buprenorphine | methadone | naltrexone | naloxone | lofexidine | clonidine
    status: (
        str  # active | suitable | caution | not-yet | contraindicated | recommended | not-indicated
    )
    reasons: tuple[str, ...]
    evidence: tuple[str, ...]
    rules: tuple[str, ...] = ()  # the id of the rule behind each reason, in the same order


class PlannedTask(NamedTuple):
    code: str
    reason: str
    due: date
    priority: str  # routine | urgent | asap | stat
    evidence: tuple[str, ...] = ()
    rule: str = ""  # the id of the rule that made it due


class SafetyFlag(NamedTuple):
    code: str
    indicator: str  # info | warning | critical
    summary: str
    detail: str
    evidence: tuple[str, ...] = ()
    suggest_naloxone: bool = False
    order_ref: str | None = None  # the draft order that raised it
    rule: str = ""  # the id of the rule that raised it


@dataclass(frozen=True, slots=True)
class Decision:
    patient_id: str
    as_of: datetime
    phase: str
    phase_reasons: tuple[str, ...]
    return_to_use: bool
    suspected_oud: bool
    oud_evidence: bool
    severity: str | None  # mild | moderate | severe | moderate-or-severe | None
    stage: str | None
    medications: tuple[MedicationOption, ...]
    tasks: tuple[PlannedTask, ...]
    flags: tuple[SafetyFlag, ...]
    evidence: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())  # conservative choices the rules made
    phase_rule: str = ""  # the id of the §3 rule that decided the phase
    fact_rules: tuple[str, ...] = field(default=())  # the derived facts (§2) that hold

    def medication(self, name: str) -> MedicationOption | None:
        return next((m for m in self.medications if m.medication == name), None)

    def status_of(self, name: str) -> str | None:
        option = self.medication(name)
        return option.status if option is not None else None

    @property
    def task_codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.tasks)

    @property
    def rules_fired(self) -> tuple[str, ...]:
        """Every rule behind this decision: facts, phase, options, flags and tasks."""
        ids = [*self.fact_rules, self.phase_rule]
        for m in self.medications:
            ids.extend(m.rules)
        ids.extend(fl.rule for fl in self.flags)
        ids.extend(t.rule for t in self.tasks)
        return tuple(dict.fromkeys(i for i in ids if i))
