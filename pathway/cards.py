"""Decision -> CDS Hooks cards (CONTRACT.md §1).

A clinician reads the summary (< 140 characters) and the Markdown detail; the EHR reads the
`io.github.oud-pathway.assessment` extension. No element is null or empty.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pathway.fhir.careplan import (
    DISCLAIMER,
    PHASE_TITLES,
    STATUS_WORDS,
    PlanWriter,
    careplan_urn,
    task_urn,
)
from pathway.rules.model import Decision, SafetyFlag

EXTENSION_KEY = "io.github.oud-pathway.assessment"
SEVERITY = {"info": 0, "warning": 1, "critical": 2}
MAX_SUMMARY = 139


def _uuid() -> str:
    return str(uuid.uuid4())


def _short(text: str, limit: int = MAX_SUMMARY) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip(" ,;:.") + "…"


def _md(text: str) -> str:
    """Plain text safe inside a Markdown table cell or list item."""
    return " ".join(text.split()).replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


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
            }
            if m.evidence:
                item["evidence"] = list(m.evidence)
            meds.append(item)
        out: dict[str, Any] = {
            "phase": d.phase,
            "returnToUse": d.return_to_use,
            "suspectedOud": d.suspected_oud,
            "medications": meds,
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
    ) -> dict[str, Any]:
        card: dict[str, Any] = {
            "uuid": _uuid(),
            "summary": _short(summary),
            "indicator": indicator,
            "detail": detail,
            "source": self._source(d),
            "overrideReasons": self.s.override_reasons,
            "links": self.s.links,
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
        self, d: Decision, notes: list[str], evidence_dates: dict[str, str]
    ) -> dict[str, Any] | None:
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
        return self._card(d, summary, indicator, self.detail(d, notes, evidence_dates), suggestions)

    def detail(self, d: Decision, notes: list[str], evidence_dates: dict[str, str]) -> str:
        tags = [
            t
            for t, on in (
                ("return to use", d.return_to_use),
                ("suspected OUD: assess with the DSM-5 criteria", d.suspected_oud),
            )
            if on
        ]
        lines = [
            f"**Phase: {PHASE_TITLES[d.phase]}**" + (f" — {', '.join(tags)}" if tags else ""),
            "",
            _md(" ".join(d.phase_reasons)),
            "",
        ]
        if d.flags:
            lines.append("**Safety**")
            lines.append("")
            for f in sorted(d.flags, key=lambda f: -SEVERITY[f.indicator]):
                lines.append(f"- **{f.indicator.upper()}** {_md(f.summary)}: {_md(f.detail)}")
            lines.append("")
        lines.append("**Medication options** (agonist treatment is first-line)")
        lines.append("")
        lines.append("| Medication | Status | Why |")
        lines.append("|---|---|---|")
        for m in d.medications:
            lines.append(
                f"| {m.medication} | {STATUS_WORDS[m.status]} | {_md(' '.join(m.reasons))} |"
            )
        lines.append("")
        if d.tasks:
            lines.append("**Next steps**")
            lines.append("")
            for t in d.tasks:
                name = self.writer.action_display.get(t.code, t.code)
                lines.append(
                    f"- {_md(name)}, due {t.due.isoformat()}"
                    + (" (urgent)" if t.priority != "routine" else "")
                    + f": {_md(t.reason)}"
                )
            lines.append("")
        if d.evidence:
            items = [
                f"{r} ({evidence_dates[r]})" if r in evidence_dates else r for r in d.evidence[:20]
            ]
            more = f" and {len(d.evidence) - 20} more" if len(d.evidence) > 20 else ""
            lines.append(f"Evidence: {_md(', '.join(items))}{more}.")
            lines.append("")
        for n in [*d.notes, *notes[:10]]:
            lines.append(f"_{_md(n)}_")
            lines.append("")
        lines.append(f"_{DISCLAIMER}_")
        return "\n".join(lines)

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
