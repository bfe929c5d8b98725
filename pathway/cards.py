"""Decision -> CDS Hooks cards (CONTRACT.md §1).

A clinician reads the summary (< 140 characters) and the Markdown detail; the EHR reads the
`io.github.oud-pathway.assessment` extension. No element is null or empty.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pathway.fhir.careplan import (
    DISCLAIMER,
    PHASE_TITLES,
    STATUS_WORDS,
    PlanWriter,
    careplan_urn,
    task_urn,
)
from pathway.rules.model import Decision, PlannedTask, SafetyFlag

EXTENSION_KEY = "io.github.oud-pathway.assessment"
SEVERITY = {"info": 0, "warning": 1, "critical": 2}
MAX_SUMMARY = 139


def _uuid() -> str:
    return str(uuid.uuid4())


def _short(text: str, limit: int = MAX_SUMMARY) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip(" ,;:.") + "…"


# Markdown punctuation that could make text from EHR data into markup (a link, HTML, emphasis,
# code, a table cell): backslash-escaped, as CommonMark allows for any ASCII punctuation.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")


def _md(text: str) -> str:
    """Plain text (from rules or EHR data) safe inside a Markdown paragraph or list item."""
    text = " ".join(text.split())
    return _MD_SPECIAL.sub(r"\\\1", text) if _MD_SPECIAL.search(text) else text


# ---------------------------------------------------------------- the patient-view detail
MAX_DETAIL_LINES = 26  # lines of the detail (not counting blank ones): README "The pathway card"
NEXT_STEPS = 3  # the most urgent tasks, shown before the options
LINE_CHARS = 96  # an option's or a next step's line, as read: one line on a card ~640 px wide
MIN_REASON = 40  # characters of its reason at the least
MAX_NOTES = 3  # notes on the data shown on the card (all of them are in the CarePlan)
GROUP_HEADINGS = ("Also due now", "This week", "Later")
PRIORITY_RANK = {"stat": 0, "asap": 1, "urgent": 2, "routine": 3}
WEEK = timedelta(days=7)
_PARENTHESES = re.compile(r"\s*\([^()]*\)")
_briefs: dict[tuple[str, int], str] = {}


def _brief(text: str, limit: int) -> str:
    """The first sentence of `text` without its parentheses, cut to `limit` characters at a
    clause (after '; ' or ', ') or else at a word. Reasons come from a small set of templates:
    cached (bounded)."""
    key = (text, limit)
    out = _briefs.get(key)
    if out is not None:
        return out
    out = " ".join(_PARENTHESES.sub("", text).split())
    stop = out.find(". ")
    if stop >= 0:
        out = out[: stop + 1]
    if len(out) > limit:
        cut = out[: limit - 1]
        at = max(cut.rfind("; "), cut.rfind(", "))
        if at <= limit // 2:
            at = cut.rfind(" ")
        out = (cut[:at] if at > limit // 2 else cut).rstrip(" ,;:.—") + "…"
    if len(_briefs) >= 4096:
        _briefs.clear()
    _briefs[key] = out
    return out


def due_group(t: PlannedTask, today: date) -> int:
    """0: due now (due today or earlier, or not routine), 1: within 7 days, 2: later."""
    if t.due <= today or t.priority != "routine":
        return 0
    return 1 if t.due <= today + WEEK else 2


def urgent_first(tasks: Sequence[PlannedTask], today: date) -> list[PlannedTask]:
    """Tasks most urgent first: by due group, then due date, then priority, then plan order."""
    keyed = [
        (due_group(t, today), t.due, PRIORITY_RANK.get(t.priority, 3), i)
        for i, t in enumerate(tasks)
    ]
    keyed.sort()
    return [tasks[k[3]] for k in keyed]


@dataclass(frozen=True)
class CardSettings:
    source: dict[str, Any]
    links: list[dict[str, Any]]
    override_reasons: list[dict[str, str]]
    naloxone_medication: dict[str, str]
    naloxone_dosage: str
    naloxone_quantity: int

    @classmethod
    def from_services(cls, doc: dict[str, Any]) -> CardSettings:
        cards = doc["cards"]
        system = cards["overrideReasonSystem"]
        return cls(
            source=dict(cards["source"]),
            links=list(cards.get("links", [])),
            override_reasons=[{"system": system, **r} for r in cards["overrideReasons"]],
            naloxone_medication=dict(cards["naloxoneOrder"]["medication"]),
            naloxone_dosage=str(cards["naloxoneOrder"]["dosage"]),
            naloxone_quantity=int(cards["naloxoneOrder"]["quantity"]),
        )


class CardBuilder:
    def __init__(self, settings: CardSettings, writer: PlanWriter) -> None:
        self.s = settings
        self.writer = writer

    # ------------------------------------------------------------ shared parts
    def assessment(self, d: Decision) -> dict[str, Any]:
        meds = []
        for m in d.medications:
            item: dict[str, Any] = {
                "medication": m.medication,
                "status": m.status,
                "reasons": list(m.reasons),
                "rules": list(m.rules),
            }
            if m.evidence:
                item["evidence"] = list(m.evidence)
            meds.append(item)
        out: dict[str, Any] = {
            "phase": d.phase,
            "returnToUse": d.return_to_use,
            "suspectedOud": d.suspected_oud,
            "medications": meds,
            "phaseRule": d.phase_rule,
            "planDefinition": self.writer.cfg.plan_definition,
        }
        if d.tasks:
            out["tasks"] = [t.code for t in d.tasks]
        return out

    def _source(self, d: Decision) -> dict[str, Any]:
        return {
            **self.s.source,
            "topic": {
                "system": self.writer.phase_system,
                "code": d.phase,
                "display": PHASE_TITLES[d.phase],
            },
        }

    def _card(
        self,
        d: Decision,
        summary: str,
        indicator: str,
        detail: str,
        suggestions: list[dict[str, Any]],
        links: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        card: dict[str, Any] = {
            "uuid": _uuid(),
            "summary": _short(summary),
            "indicator": indicator,
            "detail": detail,
            "source": self._source(d),
            "overrideReasons": self.s.override_reasons,
            "links": links if links is not None else self.s.links,
            "extension": {EXTENSION_KEY: self.assessment(d)},
        }
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = "any"
        return card

    def naloxone_suggestion(self, d: Decision) -> dict[str, Any]:
        med = self.s.naloxone_medication
        request = {
            "resourceType": "MedicationRequest",
            "status": "draft",
            "intent": "order",
            "subject": {"reference": f"Patient/{d.patient_id}"},
            "medicationCodeableConcept": {"coding": [med], "text": med["display"]},
            "dosageInstruction": [{"text": self.s.naloxone_dosage}],
            "dispenseRequest": {
                "quantity": {"value": self.s.naloxone_quantity, "unit": "spray device"}
            },
            "note": [
                {
                    "text": "Suggested by the OUD care pathway: rescue naloxone for the "
                    "patient and family, with training."
                }
            ],
        }
        return {
            "uuid": _uuid(),
            "label": "Order rescue naloxone (4 mg nasal spray, 2 devices)",
            "isRecommended": True,
            "actions": [
                {
                    "type": "create",
                    "description": "Create a draft order for rescue naloxone nasal spray",
                    "resource": request,
                }
            ],
        }

    def tasks_suggestion(self, d: Decision) -> dict[str, Any] | None:
        if not d.tasks:
            return None
        canon = self.writer.canon
        cp_id = careplan_urn(canon, d.patient_id).removeprefix("urn:uuid:")
        refs = {
            t.code: "Task/" + task_urn(canon, d.patient_id, t.code).removeprefix("urn:uuid:")
            for t in d.tasks
        }
        careplan = self.writer.careplan(d, refs)
        careplan["id"] = cp_id
        actions = [
            {
                "type": "create",
                "description": "Create the OUD pathway care plan",
                "resource": careplan,
            }
        ]
        for t in d.tasks:
            task = self.writer.task(d, t, f"CarePlan/{cp_id}")
            task["id"] = refs[t.code].removeprefix("Task/")
            display = self.writer.action_display.get(t.code, t.code)
            actions.append(
                {"type": "create", "description": f"Add task: {display}", "resource": task}
            )
        return {
            "uuid": _uuid(),
            "label": f"Save the care plan and its {len(d.tasks)} tasks",
            "actions": actions,
        }

    # ------------------------------------------------------------ patient-view
    def pathway_card(
        self,
        d: Decision,
        notes: list[str],
        evidence_dates: Mapping[str, str] | None = None,
        app_link: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """The patient-view card, or None outside the pathway.

        `app_link` is the clinician app's SMART link (CONTRACT.md §6): the card's first link, and
        the detail ends by naming it as where the full picture is. `evidence_dates` is accepted
        from callers that have them; the compact detail leaves the evidence to the app and the
        CarePlan narrative (the extension keeps it per medication)."""
        if d.phase == "not-applicable":
            return None
        flags = sorted(d.flags, key=lambda f: -SEVERITY[f.indicator])
        indicator = flags[0].indicator if flags else "info"
        if d.return_to_use and SEVERITY[indicator] < SEVERITY["warning"]:
            indicator = "warning"
        phase = d.phase.capitalize()
        tags = [
            t
            for t, on in (("return to use", d.return_to_use), ("suspected OUD", d.suspected_oud))
            if on
        ]
        head = f"OUD pathway: {phase}" + (f" ({', '.join(tags)})" if tags else "")
        if flags and flags[0].indicator != "info":
            tail = flags[0].summary
        else:
            active = [
                m.medication
                for m in d.medications
                if m.status == "active"
                and m.medication in ("buprenorphine", "methadone", "naltrexone")
            ]
            if active:
                tail = f"continue {', '.join(active)}"
            else:
                firsts = [
                    f"{m.medication} {STATUS_WORDS[m.status].lower()}"
                    for m in d.medications
                    if m.medication in ("buprenorphine", "methadone")
                ]
                tail = "; ".join(firsts)
        summary = f"{head}. {tail[0].upper()}{tail[1:]}." if tail else f"{head}."
        suggestions = []
        nal = d.medication("naloxone")
        if nal is not None and nal.status == "recommended":
            suggestions.append(self.naloxone_suggestion(d))
        tasks = self.tasks_suggestion(d)
        if tasks is not None:
            suggestions.append(tasks)
        links = [app_link, *self.s.links] if app_link else self.s.links
        return self._card(
            d, summary, indicator, self.detail(d, notes, app_link), suggestions, links
        )

    def detail(self, d: Decision, notes: list[str], app_link: dict[str, Any] | None = None) -> str:
        """The card's Markdown, read top-down in a few seconds: the phase and why (one line),
        the safety flags (critical first), the most urgent tasks; then one short line per
        medication option and per remaining task (grouped by when they are due). Every line is
        a paragraph or a list item, so clients with and without soft line breaks agree."""
        today = d.as_of.date()
        tags = [
            t
            for t, on in (("return to use", d.return_to_use), ("suspected OUD", d.suspected_oud))
            if on
        ]
        title = PHASE_TITLES[d.phase].split(" (")[0]
        lines = [
            f"**{title}**"
            + (f" ({', '.join(tags)})" if tags else "")
            + f": {_md(' '.join(d.phase_reasons))}",
            "",
        ]
        if d.flags:
            lines.append("**Safety**")
            for f in sorted(d.flags, key=lambda f: -SEVERITY[f.indicator]):
                if f.indicator == "info":
                    lines.append(f"- Info: {_md(f.summary)}")
                else:
                    label = "**CRITICAL**" if f.indicator == "critical" else "**Warning**"
                    room = LINE_CHARS - len(f.summary) - len(label) - 4
                    why = _brief(f.detail, max(MIN_REASON, room))
                    lines.append(f"- {label}: {_md(f.summary)}: {_md(why)}")
            lines.append("")
        ranked = urgent_first(d.tasks, today)
        if ranked:
            lines.append("**Next steps**")
            for i, t in enumerate(ranked[:NEXT_STEPS], 1):
                head = self._task_line(t, today)
                why = _brief(t.reason, max(MIN_REASON, LINE_CHARS - len(head) - 5))
                lines.append(f"{i}. {_md(head)}: {_md(why)}")
            lines.append("")
        lines.append("**Medication options** (agonist treatment is first-line)")
        for m in d.medications:
            head = f"{m.medication} {m.status.replace('-', ' ')}"
            why = ""
            if m.reasons:
                why = " — " + _md(_brief(m.reasons[0], max(MIN_REASON, LINE_CHARS - len(head) - 3)))
            lines.append(f"- **{m.medication}** {m.status.replace('-', ' ')}{why}")
        lines.append("")
        tail: list[str] = []  # after the tasks: notes on the data, the app, the disclaimer
        shown = list(dict.fromkeys([*d.notes, *notes]))
        tail.extend(f"_{_md(n)}_" for n in shown[:MAX_NOTES])
        if len(shown) > MAX_NOTES:
            tail.append(f"_{len(shown) - MAX_NOTES} more notes on the data: see the care plan._")
        if app_link:
            tail.append("Full plan, timeline and evidence: **open the app** (link below).")
        tail.append(f"_{DISCLAIMER}_")
        rest = ranked[NEXT_STEPS:]
        graded = [(due_group(t, today), t) for t in rest]
        groups = [[t for g, t in graded if g == k] for k in range(3)]
        used = sum(1 for x in lines if x) + len(tail) + sum(1 for g in groups if g)
        # Tasks due later than a week give way first when the card would pass its bound; the
        # ones not shown are counted on one line (all are in the care plan and the app).
        room = MAX_DETAIL_LINES - used
        if len(rest) > room and groups[2]:
            keep = max(0, room - 1 - len(groups[0]) - len(groups[1]))
            hidden = groups[2][keep:]
            groups[2] = groups[2][:keep]
            last = max(t.due for t in hidden).isoformat()
            more = f"- {len(hidden)} more, due by {last} (all in the care plan)"
        else:
            more = ""
        for heading, items in zip(GROUP_HEADINGS, groups, strict=True):
            if items or (more and heading == GROUP_HEADINGS[2]):
                lines.append(f"**{heading}**")
                lines.extend(f"- {_md(self._task_line(t, today))}" for t in items)
                if more and heading == GROUP_HEADINGS[2]:
                    lines.append(more)
                lines.append("")
        for x in tail[:-1]:
            lines.extend((x, ""))
        lines.append(f"_{DISCLAIMER}_")
        return "\n".join(lines)

    def _task_line(self, t: PlannedTask, today: date) -> str:
        """'Name (urgent), due 2024-11-27' as plain text."""
        name = self.writer.action_display.get(t.code, t.code)
        urgency = f" ({t.priority})" if t.priority != "routine" else ""
        if t.due < today:
            when = f"overdue since {t.due.isoformat()}"
        elif t.due == today:
            when = "due today"
        else:
            when = f"due {t.due.isoformat()}"
        return f"{name}{urgency}, {when}"

    # ------------------------------------------------------------ order-select / order-sign
    def order_cards(self, d: Decision) -> list[dict[str, Any]]:
        cards = []
        for f in d.flags:
            if f.order_ref is None:
                continue
            cards.append(self._flag_card(d, f))
        return cards

    def _flag_card(self, d: Decision, f: SafetyFlag) -> dict[str, Any]:
        detail = [_md(f.detail), ""]
        if f.evidence:
            detail.append(f"Evidence: {_md(', '.join(f.evidence[:20]))}.")
            detail.append("")
        detail.append(f"_{DISCLAIMER}_")
        suggestions = []
        if f.suggest_naloxone:
            nal = d.medication("naloxone")
            if nal is None or nal.status != "active":
                suggestions.append(self.naloxone_suggestion(d))
        if f.indicator == "critical" and f.order_ref and "/" in f.order_ref:
            suggestions.append(
                {
                    "uuid": _uuid(),
                    "label": "Remove this draft order",
                    "isRecommended": True,
                    "actions": [
                        {
                            "type": "delete",
                            "description": "Remove the draft order",
                            "resourceId": f.order_ref,
                        }
                    ],
                }
            )
        return self._card(d, f.summary, f.indicator, "\n".join(detail), suggestions)


# ------------------------------------------------------------ the clinician's app (CONTRACT §6)
def smart_app_link(public_url: str, hook_instance: str, as_of: str) -> dict[str, Any]:
    """The card's link to the SMART app. appContext names the hook instance and the evaluation
    time, so the app opens on the evaluation the card showed."""
    import orjson

    context = orjson.dumps({"hookInstance": hook_instance[:100], "asOf": as_of}).decode()
    return {
        "label": "Open the OUD care pathway app (timeline, evidence, actions)",
        "url": f"{public_url}/app/launch",
        "type": "smart",
        "appContext": context,
    }
