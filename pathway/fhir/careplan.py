"""Decision -> the CarePlan, Tasks and `$apply` Bundle of CONTRACT.md §2-3, as plain dicts.

Built as dicts (about 5 µs) rather than through the fhir.resources models (about 1 ms); the tests
validate every output against the R4B models and the profiles in fhir_profiles/.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from pathway.config import LoadedConfig
from pathway.rules.model import Decision, MedicationOption, PlannedTask

DEVICE_REF = {"reference": "Device/oud-pathway-service", "display": "OUD care pathway service"}
US_CORE_CAREPLAN_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
SECURITY = [
    {
        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
        "code": "R",
        "display": "restricted",
    },
    {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "code": "SUD",
        "display": "substance use disorder information sensitivity",
    },
]
PHASE_TITLES = {
    "assessment": "Assessment and engagement",
    "stabilization": "Stabilization (withdrawal management, induction, re-stabilisation)",
    "maintenance": "Maintenance and relapse prevention",
    "recovery": "Continuing care and recovery support",
    "not-applicable": "Not applicable",
}
STATUS_WORDS = {
    "active": "Active (continue)",
    "suitable": "Suitable",
    "caution": "Caution",
    "not-yet": "Not yet",
    "contraindicated": "Contraindicated",
    "recommended": "Recommended",
    "not-indicated": "Not indicated",
}
DISCLAIMER = (
    "Decision support for a clinician, not an order: each option and task needs clinical judgement."
)


def escape(text: str) -> str:
    """html.escape(text, quote=True), here so the compiled build calls it without leaving C."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


def name_uuid(name: str) -> str:
    """uuid.uuid5(NAMESPACE_URL, name) as text, without building a UUID object (a hook makes one
    per task; the result is the same, which a test checks)."""
    digest = hashlib.sha1(_URL_NAMESPACE + name.encode(), usedforsecurity=False).digest()
    b = bytearray(digest[:16])
    b[6] = (b[6] & 0x0F) | 0x50  # version 5
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = b.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def careplan_urn(canonical: str, patient_id: str) -> str:
    return "urn:uuid:" + name_uuid(f"{canonical}/careplan|{patient_id}")


def task_urn(canonical: str, patient_id: str, code: str) -> str:
    return "urn:uuid:" + name_uuid(f"{canonical}/task|{patient_id}:{code}")


class PlanWriter:
    """Builds the write-back resources for one deployment's configuration."""

    def __init__(self, config: LoadedConfig) -> None:
        self.cfg = config.pathway
        canon = self.cfg.canonical
        self.canon = canon
        self.phase_system = f"{canon}/CodeSystem/oud-pathway-phase"
        self.flag_system = f"{canon}/CodeSystem/oud-pathway-flag"
        self.action_system = f"{canon}/CodeSystem/oud-pathway-action"
        self.suitability_url = f"{canon}/StructureDefinition/medication-suitability"
        self.rule_url = f"{canon}/StructureDefinition/pathway-rule"
        self.careplan_profile = f"{canon}/StructureDefinition/oud-pathway-careplan"
        self.task_profile = f"{canon}/StructureDefinition/oud-pathway-task"
        actions = config.conformance.get("CodeSystem", {}).get("oud-pathway-action", {})
        self.action_display = {
            str(c["code"]): str(c.get("display", c["code"]))
            for c in actions.get("concept", [])
            if isinstance(c, dict)
        }

    # ---------------------------------------------------------------- Task
    def task(self, d: Decision, t: PlannedTask, careplan_ref: str) -> dict[str, Any]:
        display = self.action_display.get(t.code, t.code)
        task: dict[str, Any] = {
            "resourceType": "Task",
            "meta": {"profile": [self.task_profile], "security": SECURITY},
        }
        if t.rule:
            task["extension"] = [{"url": self.rule_url, "valueCode": t.rule}]
        task |= {
            "identifier": [{"system": f"{self.canon}/task", "value": f"{d.patient_id}:{t.code}"}],
            "basedOn": [{"reference": careplan_ref}],
            "status": "requested",
            "intent": "plan",
            "priority": t.priority,
            "code": {
                "coding": [{"system": self.action_system, "code": t.code, "display": display}],
                "text": display,
            },
            "description": f"{display}: {t.reason}",
            "for": {"reference": f"Patient/{d.patient_id}"},
            "authoredOn": _iso(d.as_of),
            "requester": DEVICE_REF,
            "restriction": {"period": {"end": t.due.isoformat()}},
        }
        return task

    # ---------------------------------------------------------------- CarePlan
    def careplan(
        self,
        d: Decision,
        task_refs: dict[str, str],
        notes: list[str] | None = None,
        evidence_dates: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        categories: list[dict[str, Any]] = [
            {
                "coding": [
                    {
                        "system": US_CORE_CAREPLAN_CATEGORY,
                        "code": "assess-plan",
                        "display": "Assessment and Plan of Treatment",
                    }
                ]
            },
            {
                "coding": [
                    {"system": self.phase_system, "code": d.phase, "display": PHASE_TITLES[d.phase]}
                ]
            },
        ]
        if d.return_to_use:
            categories.append(
                {
                    "coding": [
                        {
                            "system": self.flag_system,
                            "code": "return-to-use",
                            "display": "Return to use",
                        }
                    ]
                }
            )
        if d.suspected_oud:
            categories.append(
                {
                    "coding": [
                        {
                            "system": self.flag_system,
                            "code": "suspected-oud",
                            "display": "Suspected OUD",
                        }
                    ]
                }
            )
        activity: list[dict[str, Any]] = [self._medication_activity(m) for m in d.medications]
        for t in d.tasks:
            activity.append(
                {
                    "reference": {
                        "reference": task_refs[t.code],
                        "display": self.action_display.get(t.code, t.code),
                    }
                }
            )
        plan: dict[str, Any] = {
            "resourceType": "CarePlan",
            "meta": {"profile": [self.careplan_profile], "security": SECURITY},
            "text": {
                "status": "generated",
                "div": self.narrative(d, notes or [], evidence_dates or {}),
            },
            "identifier": [{"system": f"{self.canon}/careplan", "value": d.patient_id}],
            "instantiatesCanonical": [self.cfg.plan_definition],
            "status": "revoked" if d.phase == "not-applicable" else "active",
            "intent": "plan",
            "category": categories,
            "title": f"OUD care pathway: {PHASE_TITLES[d.phase].split(' (')[0].lower()}",
            "description": " ".join(d.phase_reasons),
            "subject": {"reference": f"Patient/{d.patient_id}"},
            "created": _iso(d.as_of),
            "author": DEVICE_REF,
            "activity": activity,
        }
        support = [{"reference": r} for r in d.evidence if _is_relative(r)]
        if support:
            plan["supportingInfo"] = support
        all_notes = [*d.notes, *(notes or []), DISCLAIMER]
        plan["note"] = [{"text": n} for n in dict.fromkeys(all_notes)]
        return plan

    def _medication_activity(self, m: MedicationOption) -> dict[str, Any]:
        coding = self.cfg.medication_codes[m.medication]
        detail: dict[str, Any] = {
            "extension": [
                {"url": self.suitability_url, "valueCode": m.status},
                *({"url": self.rule_url, "valueCode": r} for r in m.rules),
            ],
            "kind": "MedicationRequest",
            "status": "in-progress" if m.status == "active" else "not-started",
            "productCodeableConcept": {
                "coding": [
                    {"system": coding.system, "code": coding.code, "display": coding.display}
                ],
                "text": coding.display,
            },
            "description": f"{STATUS_WORDS[m.status]}: " + " ".join(m.reasons),
        }
        if m.status == "contraindicated":
            detail["doNotPerform"] = True
        return {"detail": detail}

    # ---------------------------------------------------------------- narrative
    def narrative(self, d: Decision, notes: list[str], evidence_dates: dict[str, str]) -> str:
        flags = []
        if d.return_to_use:
            flags.append("return to use")
        if d.suspected_oud:
            flags.append("suspected OUD")
        head = escape(PHASE_TITLES[d.phase]) + (f" ({escape(', '.join(flags))})" if flags else "")
        parts = [
            '<div xmlns="http://www.w3.org/1999/xhtml">',
            f"<p><b>OUD care pathway phase:</b> {head}</p>",
            "<p><b>Why:</b> " + escape(" ".join(d.phase_reasons)) + "</p>",
        ]
        if d.medications:
            parts.append(
                "<table><thead><tr><th>Medication</th><th>Status</th><th>Reasons</th>"
                "</tr></thead><tbody>"
            )
            for m in d.medications:
                parts.append(
                    f"<tr><td>{escape(m.medication)}</td>"
                    f"<td>{escape(STATUS_WORDS[m.status])}</td>"
                    f"<td>{escape(' '.join(m.reasons))}</td></tr>"
                )
            parts.append("</tbody></table>")
        if d.flags:
            parts.append("<p><b>Safety:</b></p><ul>")
            parts.extend(
                f"<li>{escape(f.indicator.upper())}: {escape(f.summary)}. {escape(f.detail)}</li>"
                for f in d.flags
            )
            parts.append("</ul>")
        if d.tasks:
            parts.append("<p><b>Planned tasks:</b></p><ul>")
            for t in d.tasks:
                name = self.action_display.get(t.code, t.code)
                parts.append(
                    f"<li>{escape(name)} (due {t.due.isoformat()}, {t.priority}): "
                    f"{escape(t.reason)}</li>"
                )
            parts.append("</ul>")
        if d.evidence:
            parts.append("<p><b>Evidence used:</b></p><ul>")
            for r in d.evidence:
                when = evidence_dates.get(r)
                parts.append(f"<li>{escape(r)}" + (f" ({escape(when)})" if when else "") + "</li>")
            parts.append("</ul>")
        for n in [*d.notes, *notes]:
            parts.append(f"<p><i>{escape(n)}</i></p>")
        parts.append(f"<p><i>{escape(DISCLAIMER)}</i></p></div>")
        return "".join(parts)

    # ---------------------------------------------------------------- $apply Bundle
    def apply_bundle(
        self,
        d: Decision,
        notes: list[str] | None = None,
        evidence_dates: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if d.phase == "not-applicable":
            return {
                "resourceType": "Bundle",
                "type": "collection",
                "timestamp": _iso(d.as_of),
                "entry": [
                    {
                        "resource": {
                            "resourceType": "OperationOutcome",
                            "issue": [
                                {
                                    "severity": "information",
                                    "code": "informational",
                                    "diagnostics": "Phase not-applicable: "
                                    + " ".join(d.phase_reasons)
                                    + " No CarePlan and no Task are proposed.",
                                }
                            ],
                        }
                    }
                ],
            }
        cp_urn = careplan_urn(self.canon, d.patient_id)
        task_refs = {t.code: task_urn(self.canon, d.patient_id, t.code) for t in d.tasks}
        entries = [
            {"fullUrl": cp_urn, "resource": self.careplan(d, task_refs, notes, evidence_dates)}
        ]
        entries.extend(
            {"fullUrl": task_refs[t.code], "resource": self.task(d, t, cp_urn)} for t in d.tasks
        )
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "timestamp": _iso(d.as_of),
            "entry": entries,
        }


def _is_relative(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and parts[0][:1].isupper() and bool(parts[1]) and ":" not in ref
