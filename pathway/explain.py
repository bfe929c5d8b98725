"""`pathway evaluate --explain`: for an integration engineer, what the service made of a Bundle.

Which resources were read as which facts, which were ignored and why (a type the pathway does not
read, another patient, refuted, entered-in-error, a code in no value set, an unreadable value),
which read resources no rule cites (older than every window, or superseded by newer data), and
which rules fired. The explaining reader traces what it does; the service's reader does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pathway.config import LoadedConfig
from pathway.fhir.bundle import flatten
from pathway.fhir.facts import FactReader, Traced
from pathway.rules import timing
from pathway.rules.catalogue import by_id
from pathway.rules.config import PathwayConfig
from pathway.rules.model import Decision, Facts, When
from pathway.rules.pathway import evaluate


def longest_window_days(cfg: PathwayConfig) -> int:
    """The longest look-back any rule uses, in days (a calendar month counted as 31 days)."""
    longest = max(
        cfg.evidence.severity_lookback_months * 31,
        cfg.evidence.buprenorphine_lookback_months * 31,
        cfg.naloxone.prescribed_lookback_months * 31,
        cfg.labs.qtc_valid_months * 31,
        cfg.labs.liver_valid_days,
        cfg.labs.stage_valid_days,
        cfg.phase.recovery_uds_days,
    )
    for rule in cfg.tasks.values():
        longest = max(
            longest,
            (rule.interval_months or 0) * 31,
            rule.interval_days or 0,
            (rule.buprenorphine_interval_months or 0) * 31,
            max((rule.interval_by_phase or {}).values(), default=0),
        )
    return longest


def _dates(facts: Facts) -> dict[str, When | None]:
    out: dict[str, When | None] = {}
    for c in facts.conditions:
        out.setdefault(c.ref, c.when)
    for o in facts.orders:
        out.setdefault(o.ref, o.authored)
    for s in facts.screens:
        out.setdefault(s.ref, s.when)
    for m in facts.measurements:
        out.setdefault(m.ref, m.when)
    for u in facts.last_uses:
        out.setdefault(u.ref, u.used)
    for st in facts.stages:
        out.setdefault(st.ref, st.when)
    for t in facts.tasks:
        out.setdefault(t.ref, t.when)
    return out


def _cited_by(d: Decision) -> dict[str, list[str]]:
    """Which outputs cite each resource: the phase, an option, a flag, a task."""
    out: dict[str, list[str]] = {}

    def cite(refs: tuple[str, ...], what: str) -> None:
        for r in refs:
            out.setdefault(r, [])
            if what not in out[r]:
                out[r].append(what)

    for m in d.medications:
        cite(m.evidence, f"{m.medication} {m.status}")
    for fl in d.flags:
        cite(fl.evidence, f"flag {fl.code}")
    for t in d.tasks:
        cite(t.evidence, f"task {t.code}")
    cite(tuple(r for r in d.evidence if r not in out), f"phase {d.phase}")
    return out


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    resources: list[dict[str, Any]]
    rules: list[dict[str, str]]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient": self.decision.patient_id,
            "asOf": self.decision.as_of.isoformat().replace("+00:00", "Z"),
            "phase": self.decision.phase,
            "resources": self.resources,
            "rulesFired": self.rules,
            "notes": self.notes,
        }


def explain(
    config: LoadedConfig, data: Any, as_of: datetime, patient_id: str | None = None
) -> Explanation:
    reading = FactReader(config, explain=True).read(flatten(data), patient_id)
    d = evaluate(reading.facts, as_of, config.pathway)
    dates = _dates(reading.facts)
    cited = _cited_by(d)
    longest = longest_window_days(config.pathway)
    rows: list[dict[str, Any]] = []
    for t in reading.trace:
        rows.append(_row(t, dates, cited, as_of, longest))
    catalogue = by_id()
    rules = [
        {"id": rid, "effect": catalogue[rid].effect, "title": catalogue[rid].title}
        for rid in d.rules_fired
        if rid in catalogue
    ]
    return Explanation(d, rows, rules, [*reading.notes, *d.notes])


def _row(
    t: Traced,
    dates: dict[str, When | None],
    cited: dict[str, list[str]],
    as_of: datetime,
    longest: int,
) -> dict[str, Any]:
    row: dict[str, Any] = {"resource": t.ref, "type": t.resource_type}
    when = dates.get(t.ref)
    if when is not None:
        row["date"] = timing.describe(when)
    if t.read_as:
        row["readAs"] = list(t.read_as)
    if t.notes:
        row["notes"] = list(t.notes)
    if t.ignored is not None:
        row["outcome"] = "ignored"
        row["why"] = t.ignored
    elif t.ref in cited:
        row["outcome"] = "used"
        row["citedBy"] = cited[t.ref]
    elif t.resource_type in ("Patient", "Medication"):
        row["outcome"] = "used"
    elif when is not None and timing.days_before(when, as_of) > longest:
        row["outcome"] = "not used"
        row["why"] = f"older than every window of the pathway ({longest} days)"
    elif when is not None and when.earliest > as_of:
        row["outcome"] = "not used"
        row["why"] = "dated after the evaluation time"
    else:
        row["outcome"] = "not used"
        row["why"] = (
            "read, but no rule that fired cites it (superseded by newer data, outside the "
            "window of the rules that read it, or not needed for this patient)"
        )
    return row


def as_text(e: Explanation) -> str:
    d = e.decision
    lines = [
        f"Patient/{d.patient_id} as of {d.as_of.isoformat().replace('+00:00', 'Z')}: phase "
        f"{d.phase} (rule {d.phase_rule})",
        "",
        "Resources:",
    ]
    for r in e.resources:
        head = f"  {r['resource']}" + (f" ({r['date']})" if "date" in r else "")
        lines.append(f"{head}: {r['outcome']}")
        for fact in r.get("readAs", []):
            lines.append(f"      read as {fact}")
        if "citedBy" in r:
            lines.append(f"      cited by {', '.join(r['citedBy'])}")
        if "why" in r:
            lines.append(f"      why: {r['why']}")
    lines.append("")
    lines.append("Rules fired:")
    for rule in e.rules:
        lines.append(f"  {rule['id']:<46} {rule['effect']}")
    if e.notes:
        lines.append("")
        lines.append("Notes:")
        lines.extend(f"  - {n}" for n in e.notes)
    return "\n".join(lines)
