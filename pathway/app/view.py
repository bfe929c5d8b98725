"""What the clinician's page shows, built from one evaluation (the same one the hook makes).

Pure: an Evaluation, its facts and the config in; plain values for the template out. Nothing here
decides anything clinical: statuses, reasons, tasks and flags are the decision's, read as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pathway.app import timeline
from pathway.evaluation import Evaluation
from pathway.fhir.careplan import PHASE_TITLES, STATUS_WORDS, PlanWriter
from pathway.rules import timing
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import find
from pathway.rules.model import Facts, When

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
STAGES = ("precontemplation", "contemplation", "preparation", "action", "maintenance")
OPEN_TASK = frozenset({"draft", "requested", "received", "accepted", "ready", "in-progress"})


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    ref: str
    kind: str  # the resource type
    when: str  # "" when unknown
    value: str


@dataclass(frozen=True, slots=True)
class Reason:
    text: str
    rule: str


@dataclass(frozen=True, slots=True)
class MedicationRow:
    name: str
    status: str
    status_text: str
    reasons: tuple[Reason, ...]
    evidence: tuple[EvidenceItem, ...]


@dataclass(frozen=True, slots=True)
class FlagRow:
    code: str
    indicator: str
    summary: str
    detail: str
    rule: str
    evidence: tuple[EvidenceItem, ...]


@dataclass(frozen=True, slots=True)
class TaskRow:
    code: str
    title: str
    due: date
    overdue: bool
    priority: str
    reason: str
    rule: str
    status: str  # the EHR Task's status, or "not saved"
    task_id: str | None  # an open Task of ours in the EHR, which can be marked done


@dataclass(frozen=True, slots=True)
class StageRow:
    stage: str
    current: bool
    interventions: tuple[tuple[str, str, bool], ...]  # (code, title, planned)


@dataclass(frozen=True, slots=True)
class Page:
    patient_id: str
    phase: str
    phase_title: str
    phase_reasons: tuple[str, ...]
    phase_rule: str
    return_to_use: bool
    suspected_oud: bool
    severity: str | None
    as_of: datetime
    as_of_source: str  # "card" | "now"
    flags: tuple[FlagRow, ...]
    medications: tuple[MedicationRow, ...]
    tasks: tuple[TaskRow, ...]
    done_tasks: tuple[tuple[str, str, str], ...]  # (title, status, date)
    stage: str | None
    psychosocial: tuple[StageRow, ...]
    timeline: timeline.Timeline
    notes: tuple[str, ...]
    naloxone_recommended: bool
    resource_count: int

    @property
    def applicable(self) -> bool:
        return self.phase != "not-applicable"


def _when(w: When | None) -> str:
    return timing.describe(w) if w is not None else ""


def evidence_index(facts: Facts) -> dict[str, EvidenceItem]:
    """Every resource the facts came from, with its date and what it said."""
    out: dict[str, EvidenceItem] = {}

    def put(ref: str, when: When | None, value: str) -> None:
        if ref not in out:
            out[ref] = EvidenceItem(ref, ref.split("/", 1)[0], _when(when), value)

    for c in facts.conditions:
        tags = ", ".join(sorted(c.tags)) or "condition"
        put(c.ref, c.when, f"{tags}; {c.clinical_status or 'status unknown'}")
    for o in (*facts.orders, *facts.draft_orders):
        put(o.ref, o.authored, f"{o.name or ', '.join(sorted(o.groups))} ({o.status})")
    for s in facts.screens:
        put(s.ref, s.when, f"{s.analyte} screen {s.result.value}")
    for m in facts.measurements:
        if m.value is not None:
            value = f"{m.kind.upper()} {m.value:g}"
            if m.upper_limit:
                value += f" (upper limit {m.upper_limit:g})"
        else:
            value = f"{m.kind.upper()} {m.result.value}"
        put(m.ref, m.when, value)
    for u in facts.last_uses:
        put(u.ref, u.used, f"last opioid use ({u.opioid_type or 'type not recorded'})")
    for st in facts.stages:
        put(st.ref, st.when, f"stage of change: {st.stage or 'unreadable'}")
    for t in facts.tasks:
        put(t.ref, t.when, f"task {t.code} ({t.status})")
    return out


def _items(refs: tuple[str, ...], index: dict[str, EvidenceItem]) -> tuple[EvidenceItem, ...]:
    return tuple(
        index.get(r) or EvidenceItem(r, r.split("/", 1)[0] if "/" in r else r, "", "")
        for r in dict.fromkeys(refs)
    )


def build(
    ev: Evaluation,
    cfg: PathwayConfig,
    writer: PlanWriter,
    as_of_source: str = "now",
    resource_count: int = 0,
) -> Page:
    d = ev.decision
    facts = ev.reading.facts
    index = evidence_index(facts)
    findings = find(facts, d.as_of, cfg)
    flags = tuple(
        FlagRow(
            f.code,
            f.indicator,
            f.summary,
            f.detail,
            str(getattr(f, "rule", "") or ""),
            _items(f.evidence, index),
        )
        for f in sorted(d.flags, key=lambda f: SEVERITY_ORDER.get(f.indicator, 3))
    )
    meds = []
    for m in d.medications:
        rules = tuple(getattr(m, "rules", ()) or ())
        reasons = tuple(
            Reason(text, str(rules[i]) if i < len(rules) else "")
            for i, text in enumerate(m.reasons)
        )
        meds.append(
            MedicationRow(
                m.medication,
                m.status,
                STATUS_WORDS.get(m.status, m.status),
                reasons,
                _items(m.evidence, index),
            )
        )
    ehr_tasks: dict[str, tuple[str, str]] = {}  # code -> (status, id) of our newest open Task
    done = []
    for rec in sorted(facts.tasks, key=lambda r: timing.sort_key(r.when), reverse=True):
        tid = rec.ref.split("/", 1)[1] if rec.ref.startswith("Task/") else None
        if rec.status in OPEN_TASK and tid:
            ehr_tasks.setdefault(rec.code, (rec.status, tid))
        elif rec.status == "completed":
            done.append(
                (writer.action_display.get(rec.code, rec.code), rec.status, _when(rec.when))
            )
    today = d.as_of.date()
    tasks = []
    for t in d.tasks:
        status, tid = ehr_tasks.get(t.code, ("not saved", None))
        tasks.append(
            TaskRow(
                t.code,
                writer.action_display.get(t.code, t.code),
                t.due,
                t.due < today,
                t.priority,
                t.reason,
                str(getattr(t, "rule", "") or ""),
                status,
                tid,
            )
        )
    tasks.sort(key=lambda r: (not r.overdue, r.due, r.code))
    planned = set(d.task_codes)
    by_stage = cfg.psychosocial.by_stage
    psych = tuple(
        StageRow(
            stage,
            stage == (d.stage or "unknown"),
            tuple(
                (code, writer.action_display.get(code, code), code in planned)
                for code in by_stage.get(stage, ())
            ),
        )
        for stage in (*STAGES, "unknown")
        if stage in by_stage
    )
    nal = d.medication("naloxone")
    return Page(
        patient_id=d.patient_id,
        phase=d.phase,
        phase_title=PHASE_TITLES.get(d.phase, d.phase),
        phase_reasons=d.phase_reasons,
        phase_rule=str(getattr(d, "phase_rule", "") or ""),
        return_to_use=d.return_to_use,
        suspected_oud=d.suspected_oud,
        severity=d.severity,
        as_of=d.as_of,
        as_of_source=as_of_source,
        flags=flags,
        medications=tuple(meds),
        tasks=tuple(tasks),
        done_tasks=tuple(done[:10]),
        stage=d.stage,
        psychosocial=psych,
        timeline=timeline.build(facts, findings, d.as_of, cfg),
        notes=tuple(dict.fromkeys((*d.notes, *ev.notes[:10]))),
        naloxone_recommended=nal is not None and nal.status == "recommended",
        resource_count=resource_count,
    )


def as_dict(page: Page) -> dict[str, Any]:
    """The machine-readable summary (for tests and the benchmark): what the page says."""
    return {
        "phase": page.phase,
        "medications": {m.name: m.status for m in page.medications},
        "tasks": {t.code: t.due.isoformat() for t in page.tasks},
    }
