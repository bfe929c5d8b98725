"""Write the CarePlan, Tasks and Provenance back to the EHR (CONTRACT.md §3), idempotently.

- Nothing is written when nothing changed: the CarePlan carries a fingerprint of the clinical
  content (phase, flags, medication statuses, evidence, task set); an equal fingerprint and task
  set means no write, whatever the day-count wording of the reasons.
- An open Task of ours that is still due is kept as it is; one no longer due is cancelled with a
  statusReason; a new one is a conditional create on its identifier (open statuses only, so a
  completed Task of earlier is never reopened or duplicated).
- Updates carry If-Match where the server offers it (`versioning: versioned-update`); creates
  carry If-None-Exist where it offers conditional create, otherwise we search, then create (under
  the per-patient lock); a 409/412 re-reads and tries again.
- Only resources with our identifier systems are ever changed.
- A transaction Bundle when the server offers it; a transaction it refuses as a whole (400, 413,
  422: e.g. Medplum's "too many entries" for one holding conditional creates) is written at once
  as ordered single requests, and transactions that large are not tried again on that server
  for an hour. Without transactions: single requests in a safe order.
- A Provenance for every write: targets the written resources, agent the service's Device,
  entities the evidence.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from pathway.evaluation import Evaluation
from pathway.fhir.bundle import flatten
from pathway.fhir.careplan import DEVICE_REF, SECURITY, PlanWriter, careplan_urn, task_urn
from pathway.fhir.client import FhirClient, FhirConflict, FhirError, interaction_of
from pathway.rules.model import Decision

log = logging.getLogger("pathway.writeback")
OPEN_TASK_STATUSES = (
    "draft",
    "requested",
    "received",
    "accepted",
    "ready",
    "in-progress",
    "on-hold",
)
MAX_CONFLICT_RETRIES = 3


class WriteBackImpossible(FhirError):
    """The server cannot take this write at all (nothing to retry): e.g. CarePlan and Task are
    read-only and the fallback cannot be delivered."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a server's CapabilityStatement says we may do."""

    transaction: bool
    writable: frozenset[str]  # resource types the server lets us create and update
    conditional_create: frozenset[str] = frozenset()  # types that take If-None-Exist
    if_match: frozenset[str] = frozenset()  # types that take If-Match (versioned-update)

    @classmethod
    def from_statement(cls, cs: dict[str, Any]) -> Capabilities:
        transaction = False
        writable: set[str] = set()
        conditional: set[str] = set()
        if_match: set[str] = set()
        for rest in cs.get("rest") or []:
            if not isinstance(rest, dict) or rest.get("mode", "server") != "server":
                continue
            codes = {i.get("code") for i in rest.get("interaction") or [] if isinstance(i, dict)}
            transaction = transaction or "transaction" in codes
            for r in rest.get("resource") or []:
                if not isinstance(r, dict):
                    continue
                rtype = str(r.get("type"))
                ops = {i.get("code") for i in r.get("interaction") or [] if isinstance(i, dict)}
                if {"create", "update"} <= ops:
                    writable.add(rtype)
                if r.get("conditionalCreate") is True:
                    conditional.add(rtype)
                if r.get("versioning") == "versioned-update":
                    if_match.add(rtype)
        return cls(
            transaction,
            frozenset(writable),
            frozenset(conditional),
            frozenset(if_match),
        )

    def can_write_plan(self) -> bool:
        return {"CarePlan", "Task"} <= self.writable


@dataclass(slots=True)
class Limits:
    """What a server has shown it refuses though its CapabilityStatement does not say so."""

    max_transaction_entries: int | None = None


@dataclass(slots=True)
class Desired:
    """What the EHR should hold for one patient, built from a decision."""

    patient_id: str
    phase: str
    careplan: dict[str, Any]
    tasks: dict[str, dict[str, Any]]
    evidence: tuple[str, ...]
    fingerprint: str
    narrative: str

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "patient_id": self.patient_id,
                "phase": self.phase,
                "careplan": self.careplan,
                "tasks": self.tasks,
                "evidence": list(self.evidence),
                "fingerprint": self.fingerprint,
                "narrative": self.narrative,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Desired:
        d = orjson.loads(raw)
        return cls(
            d["patient_id"],
            d["phase"],
            d["careplan"],
            d["tasks"],
            tuple(d["evidence"]),
            d["fingerprint"],
            d["narrative"],
        )


@dataclass(slots=True)
class WriteResult:
    written: list[str] = field(default_factory=list)  # "created CarePlan/..", "updated Task/.."
    kept: list[str] = field(default_factory=list)
    mode: str = "none"  # none | transaction | requests | document-reference

    @property
    def wrote(self) -> bool:
        return bool(self.written)


def fingerprint(d: Decision) -> str:
    content = {
        "phase": d.phase,
        "rtu": d.return_to_use,
        "suspected": d.suspected_oud,
        "meds": sorted((m.medication, m.status, sorted(m.evidence)) for m in d.medications),
        "tasks": sorted(t.code for t in d.tasks),
        "evidence": sorted(d.evidence),
        "flags": sorted((f.code, f.indicator) for f in d.flags if f.order_ref is None),
    }
    return hashlib.sha256(orjson.dumps(content)).hexdigest()


def desired(writer: PlanWriter, ev: Evaluation) -> Desired:
    """What the EHR should hold after this evaluation (the write-back's input)."""
    d = ev.decision
    canon = writer.canon
    task_refs = {t.code: task_urn(canon, d.patient_id, t.code) for t in d.tasks}
    plan = writer.careplan(d, task_refs, ev.notes, ev.evidence_dates)
    plan["extension"] = [
        {"url": f"{canon}/StructureDefinition/pathway-fingerprint", "valueString": fingerprint(d)}
    ]
    cp_urn = careplan_urn(canon, d.patient_id)
    tasks = {t.code: writer.task(d, t, cp_urn) for t in d.tasks}
    return Desired(
        d.patient_id, d.phase, plan, tasks, d.evidence, fingerprint(d), plan["text"]["div"]
    )


def system_actions(want: Desired, canon: str) -> list[Any]:
    """The CarePlan and its Tasks as CDS Hooks systemActions, for the EHR to apply (ids made
    from our identifiers, so the same plan always has the same ids)."""
    if want.phase == "not-applicable":
        return []
    cp_id = careplan_urn(canon, want.patient_id).removeprefix("urn:uuid:")
    plan = dict(want.careplan)
    plan["id"] = cp_id
    actions: list[Any] = [
        {"type": "create", "description": "Create the OUD pathway care plan", "resource": plan}
    ]
    for code, task in want.tasks.items():
        body = dict(task)
        body["id"] = task_urn(canon, want.patient_id, code).removeprefix("urn:uuid:")
        body["basedOn"] = [{"reference": f"CarePlan/{cp_id}"}]
        actions.append({"type": "create", "description": f"Add task {code}", "resource": body})
    for a in plan.get("activity", []):
        ref = a.get("reference", {}).get("reference", "")
        if ref.startswith("urn:uuid:"):
            a["reference"]["reference"] = "Task/" + ref.removeprefix("urn:uuid:")
    return actions


@dataclass(slots=True)
class Changes:
    """What reconciling `want` with what the EHR holds would do (pure: no I/O)."""

    creates: dict[str, dict[str, Any]]  # task code -> new Task
    cancels: list[dict[str, Any]]  # open Tasks of ours no longer due
    kept: list[str]  # "Task/<id>" still due, left as they are
    task_refs: dict[str, str]  # task code -> reference for the CarePlan's activities
    plan_changed: bool
    open_tasks: list[dict[str, Any]]

    @property
    def unchanged(self) -> bool:
        return not self.creates and not self.cancels and not self.plan_changed


def changes(
    want: Desired, plan: dict[str, Any] | None, tasks: list[dict[str, Any]], canon: str
) -> Changes:
    open_by_code: dict[str, dict[str, Any]] = {}
    for t in tasks:
        code = (_has_identifier(t, f"{canon}/task") or "").split(":", 1)[-1]
        if t.get("status") in OPEN_TASK_STATUSES and "id" in t:
            open_by_code.setdefault(code, t)
    creates = {code: task for code, task in want.tasks.items() if code not in open_by_code}
    kept = [f"Task/{t['id']}" for code, t in open_by_code.items() if code in want.tasks]
    cancels = [t for code, t in open_by_code.items() if code not in want.tasks]
    task_refs = {code: f"Task/{t['id']}" for code, t in open_by_code.items() if code in want.tasks}
    task_refs.update({code: task_urn(canon, want.patient_id, code) for code in creates})
    plan_changed = plan is None or (
        _fingerprint_of(plan, canon) != want.fingerprint
        or plan.get("status") != "active"
        or sorted(
            a.get("reference", {}).get("reference", "")
            for a in plan.get("activity") or []
            if "reference" in a
        )
        != sorted(task_refs.values())
    )
    return Changes(creates, cancels, kept, task_refs, plan_changed, list(open_by_code.values()))


def ours_in(
    resources: list[dict[str, Any]], patient_id: str, canon: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Our CarePlan (newest) and our Tasks for a patient among resources (prefetch or search)."""
    plans = [
        r
        for r in resources
        if r.get("resourceType") == "CarePlan"
        and _has_identifier(r, f"{canon}/careplan") == patient_id
    ]
    plans.sort(key=lambda r: str((r.get("meta") or {}).get("lastUpdated", "")), reverse=True)
    tasks = [
        r
        for r in resources
        if r.get("resourceType") == "Task"
        and (_has_identifier(r, f"{canon}/task") or "").startswith(f"{patient_id}:")
    ]
    return (plans[0] if plans else None), tasks


def _fingerprint_of(resource: dict[str, Any], canon: str) -> str | None:
    for ext in resource.get("extension") or []:
        if (
            isinstance(ext, dict)
            and ext.get("url") == f"{canon}/StructureDefinition/pathway-fingerprint"
        ):
            return str(ext.get("valueString"))
    return None


def _has_identifier(resource: dict[str, Any], system: str) -> str | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == system:
            value = ident.get("value")
            return str(value) if value is not None else None
    return None


def _version(resource: dict[str, Any]) -> str | None:
    v = (resource.get("meta") or {}).get("versionId")
    return str(v) if v is not None else None


REFUSED_AS_A_WHOLE = (400, 413, 422)


class Reconciler:
    def __init__(
        self,
        writer: PlanWriter,
        client: FhirClient,
        caps: Capabilities,
        fallback: str = "document-reference",
        clock: Any = None,
        limits: Limits | None = None,
    ) -> None:
        self.writer = writer
        self.canon = writer.canon
        self.client = client
        self.caps = caps
        self.fallback = fallback
        self.limits = limits or Limits()
        self._now = clock or (lambda: datetime.now(UTC))

    def _if_match(self, resource: dict[str, Any]) -> dict[str, str]:
        v = _version(resource)
        ok = v and resource.get("resourceType") in self.caps.if_match
        return {"If-Match": f'W/"{v}"'} if ok else {}

    def _if_none_exist(self, rtype: str, query: str) -> dict[str, str]:
        return {"If-None-Exist": query} if rtype in self.caps.conditional_create else {}

    # ---------------------------------------------------------------- reading
    def _search(self, query: str) -> list[dict[str, Any]]:
        return [r for r, _ in flatten(self.client.search(query)).resources]

    def current(self, pid: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        found = [
            *self._search(f"CarePlan?identifier={self.canon}/careplan|{pid}"),
            *self._search(f"Task?identifier={self.canon}/task|&patient={pid}"),
        ]
        plans = [r for r in found if r.get("resourceType") == "CarePlan"]
        if len({r.get("id") for r in plans}) > 1:
            log.warning(
                "several CarePlans carry our identifier for one patient; the newest "
                "is reconciled, the others are left alone"
            )
        return ours_in(found, pid, self.canon)

    # ---------------------------------------------------------------- writing
    def apply(self, want: Desired) -> WriteResult:
        if not self.caps.can_write_plan():
            return self._fallback(want)
        for attempt in range(MAX_CONFLICT_RETRIES):
            try:
                return self._apply_once(want)
            except FhirConflict:
                if attempt == MAX_CONFLICT_RETRIES - 1:
                    raise
                log.info("write-back: version conflict, re-reading and trying again")
            except FhirError as e:
                # The statement said writable, the server says no (405): read-only after all.
                if e.status == 405 and e.interaction.split(" ")[-1] in ("CarePlan", "Task"):
                    log.warning(
                        "write-back: %s refused with 405: using the fallback", e.interaction
                    )
                    return self._fallback(want)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _fallback(self, want: Desired) -> WriteResult:
        if self.fallback != "document-reference":
            raise WriteBackImpossible(
                "the FHIR server does not take CarePlan and Task; the fallback "
                "(system-actions) is delivered with the patient-view hook only",
                interaction="capabilities: CarePlan/Task read-only",
            )
        return self.document_reference(want)

    def _apply_once(self, want: Desired) -> WriteResult:
        plan, tasks = self.current(want.patient_id)
        result = WriteResult()
        ch = changes(want, plan, tasks, self.canon)
        if want.phase == "not-applicable":
            return self._revoke(plan, ch.open_tasks, want, result)
        result.kept.extend(ch.kept)
        if ch.unchanged:
            if plan is not None:
                result.kept.append(f"CarePlan/{plan['id']}")
            return result
        plan_body = self._plan_body(want, plan, ch.task_refs)
        if self.caps.transaction:
            return self._transaction(want, plan, plan_body, ch, result)
        return self._requests(want, plan, plan_body, ch, result)

    def _plan_body(
        self, want: Desired, plan: dict[str, Any] | None, task_refs: dict[str, str]
    ) -> dict[str, Any]:
        body = dict(want.careplan)
        activity = [a for a in body.get("activity", []) if "detail" in a]
        for code in want.tasks:
            display = self.writer.action_display.get(code, code)
            activity.append({"reference": {"reference": task_refs[code], "display": display}})
        body["activity"] = activity
        if plan is not None:
            body["id"] = plan["id"]
            if plan.get("created"):
                body["created"] = plan["created"]  # the plan was created then, not now
        return body

    def _cancelled(self, task: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in task.items() if k != "meta"}
        body["meta"] = {"profile": [self.writer.task_profile], "security": SECURITY}
        body["status"] = "cancelled"
        body["statusReason"] = {
            "text": "No longer due on the OUD care pathway (re-evaluated "
            f"{self._now().date().isoformat()})."
        }
        return body

    def _provenance(self, targets: list[str], evidence: tuple[str, ...]) -> dict[str, Any]:
        prov: dict[str, Any] = {
            "resourceType": "Provenance",
            "meta": {"security": SECURITY},
            "target": [{"reference": t} for t in targets],
            "recorded": self._now().isoformat().replace("+00:00", "Z"),
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                        "code": "UPDATE",
                        "display": "revise",
                    }
                ]
            },
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": "assembler",
                                "display": "Assembler",
                            }
                        ]
                    },
                    "who": DEVICE_REF,
                }
            ],
        }
        entities = [
            {"role": "source", "what": {"reference": r}}
            for r in evidence
            if r.count("/") == 1 and ":" not in r
        ]
        if entities:
            prov["entity"] = entities
        return prov

    def _transaction(
        self,
        want: Desired,
        plan: dict[str, Any] | None,
        plan_body: dict[str, Any],
        ch: Changes,
        result: WriteResult,
    ) -> WriteResult:
        pid = want.patient_id
        entries: list[dict[str, Any]] = []
        targets: list[str] = []
        plan_ref = f"CarePlan/{plan['id']}" if plan is not None else careplan_urn(self.canon, pid)
        if ch.plan_changed:
            if plan is None:
                req: dict[str, Any] = {"method": "POST", "url": "CarePlan"}
                req.update(
                    self._entry_if_none_exist("CarePlan", f"identifier={self.canon}/careplan|{pid}")
                )
                entries.append({"fullUrl": plan_ref, "resource": plan_body, "request": req})
            else:
                req = {"method": "PUT", "url": plan_ref, **self._entry_if_match(plan)}
                entries.append(
                    {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": plan_body, "request": req}
                )
            targets.append(entries[-1]["fullUrl"] if plan is None else plan_ref)
        for code, task in ch.creates.items():
            body = dict(task)
            body["basedOn"] = [{"reference": plan_ref}]
            url = task_urn(self.canon, pid, code)
            req = {"method": "POST", "url": "Task"}
            req.update(self._entry_if_none_exist("Task", self._task_query(pid, code)))
            entries.append({"fullUrl": url, "resource": body, "request": req})
            targets.append(url)
        for task in ch.cancels:
            req = {"method": "PUT", "url": f"Task/{task['id']}", **self._entry_if_match(task)}
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": self._cancelled(task),
                    "request": req,
                }
            )
            targets.append(f"Task/{task['id']}")
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": self._provenance(targets, want.evidence),
                "request": {"method": "POST", "url": "Provenance"},
            }
        )
        limit = self.limits.max_transaction_entries
        if limit is not None and len(entries) > limit:
            return self._requests(want, plan, plan_body, ch, result)
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        try:
            resp = self.client.request("POST", "", body=bundle)
        except FhirError as e:
            e.interaction = "transaction: " + _summary(entries)
            if e.status not in REFUSED_AS_A_WHOLE or not e.outcome:
                raise
            # Refused as a whole (nothing was written): the same changes at once as ordered
            # single requests; no transaction this large again on this server for a while.
            self.limits.max_transaction_entries = max(len(entries) - 1, 1)
            log.warning(
                "write-back: a transaction of %d entries was refused (%s, %s): writing as "
                "single requests",
                len(entries),
                e.status,
                _issue_code(e.outcome),
            )
            return self._requests(want, plan, plan_body, ch, result)
        result.mode = "transaction"
        for sent, r in zip(entries[:-1], (resp.body or {}).get("entry") or [], strict=False):
            response = r.get("response") or {}
            method = sent["request"]["method"]
            if str(response.get("status", "")).startswith("200") and method == "POST":
                continue  # a conditional create that found the resource there already
            loc = response.get("location") or sent["request"]["url"]
            verb = "updated" if method == "PUT" else "created"
            result.written.append(f"{verb} {str(loc).split('/_history')[0]}")
        return result

    def _task_query(self, pid: str, code: str) -> str:
        return f"identifier={self.canon}/task|{pid}:{code}&status={','.join(OPEN_TASK_STATUSES)}"

    def _entry_if_none_exist(self, rtype: str, query: str) -> dict[str, str]:
        return {"ifNoneExist": query} if rtype in self.caps.conditional_create else {}

    def _entry_if_match(self, resource: dict[str, Any]) -> dict[str, str]:
        header = self._if_match(resource)
        return {"ifMatch": header["If-Match"]} if header else {}

    def _requests(
        self,
        want: Desired,
        plan: dict[str, Any] | None,
        plan_body: dict[str, Any],
        ch: Changes,
        result: WriteResult,
    ) -> WriteResult:
        """Single requests in a safe order: a new CarePlan first (without references to Tasks
        that do not exist yet), then the new Tasks pointing at it, the cancellations, and the
        CarePlan with its Tasks (an existing CarePlan gets this one update only); then the
        Provenance. Each step is idempotent: a rerun after a partial write finishes it."""
        pid = want.patient_id
        result.mode = "requests"
        targets: list[str] = []
        new_ids: dict[str, str] = {}
        created_plan = plan is None
        if plan is None:
            body = dict(plan_body)
            body["activity"] = [
                a
                for a in body["activity"]
                if "detail" in a or not a["reference"]["reference"].startswith("urn:")
            ]
            # Without conditional create, the search before (under the per-patient lock) found
            # none: create.
            r = self.client.request(
                "POST",
                "CarePlan",
                body=body,
                headers=self._if_none_exist("CarePlan", f"identifier={self.canon}/careplan|{pid}"),
            )
            if not isinstance(r.body, dict) or not r.body.get("id"):
                raise FhirError("POST CarePlan: no resource in the answer", r.status)
            plan = r.body
            if r.status == 201:
                result.written.append(f"created CarePlan/{plan['id']}")
                targets.append(f"CarePlan/{plan['id']}")
        for code, task in ch.creates.items():
            tbody = dict(task)
            tbody["basedOn"] = [{"reference": f"CarePlan/{plan['id']}"}]
            r = self.client.request(
                "POST",
                "Task",
                body=tbody,
                headers=self._if_none_exist("Task", self._task_query(pid, code)),
            )
            created = r.body if isinstance(r.body, dict) else {}
            new_ids[code] = f"Task/{created.get('id')}"
            if r.status == 201:
                result.written.append(f"created Task/{created.get('id')}")
                targets.append(f"Task/{created.get('id')}")
        for task in ch.cancels:
            self.client.request(
                "PUT",
                f"Task/{task['id']}",
                body=self._cancelled(task),
                headers=self._if_match(task),
            )
            result.written.append(f"updated Task/{task['id']}")
            targets.append(f"Task/{task['id']}")
        if new_ids or (not created_plan and ch.plan_changed):
            final = dict(plan_body)
            final["id"] = plan["id"]
            if created_plan:
                final["created"] = plan.get("created", final.get("created"))
            final["activity"] = [
                a
                if "detail" in a
                else {
                    "reference": {
                        "reference": new_ids.get(
                            _code_of_urn(a["reference"]["reference"], want, self.canon),
                            a["reference"]["reference"],
                        ),
                        "display": a["reference"].get("display", ""),
                    }
                }
                for a in plan_body["activity"]
            ]
            current = self.client.read("CarePlan", plan["id"]) if created_plan else plan
            self.client.request(
                "PUT", f"CarePlan/{plan['id']}", body=final, headers=self._if_match(current)
            )
            if not created_plan:
                result.written.append(f"updated CarePlan/{plan['id']}")
            if f"CarePlan/{plan['id']}" not in targets:
                targets.append(f"CarePlan/{plan['id']}")
        if targets:
            self.client.request("POST", "Provenance", body=self._provenance(targets, want.evidence))
        return result

    def _revoke(
        self,
        plan: dict[str, Any] | None,
        open_tasks: list[dict[str, Any]],
        want: Desired,
        result: WriteResult,
    ) -> WriteResult:
        if plan is None or plan.get("status") != "active":
            return result
        body = {k: v for k, v in plan.items() if k != "meta"}
        body["meta"] = {"profile": [self.writer.careplan_profile], "security": SECURITY}
        body["status"] = "revoked"
        targets = [f"CarePlan/{plan['id']}"]
        self.client.request(
            "PUT", f"CarePlan/{plan['id']}", body=body, headers=self._if_match(plan)
        )
        result.written.append(f"updated CarePlan/{plan['id']}")
        for task in open_tasks:
            self.client.request(
                "PUT",
                f"Task/{task['id']}",
                body=self._cancelled(task),
                headers=self._if_match(task),
            )
            result.written.append(f"updated Task/{task['id']}")
            targets.append(f"Task/{task['id']}")
        self.client.request("POST", "Provenance", body=self._provenance(targets, want.evidence))
        result.mode = "requests"
        return result

    def document_reference(self, want: Desired) -> WriteResult:
        """Fallback for servers that take neither CarePlan nor Task: the narrative as a
        DocumentReference (when configured and allowed); otherwise nothing can be written."""
        result = WriteResult(mode="document-reference")
        if "DocumentReference" not in self.caps.writable:
            raise WriteBackImpossible(
                "the FHIR server accepts neither CarePlan/Task nor the configured fallback",
                interaction="capabilities: DocumentReference read-only",
            )
        import base64

        pid = want.patient_id
        system = f"{self.canon}/careplan-document"
        doc = {
            "resourceType": "DocumentReference",
            "meta": {"security": SECURITY},
            "identifier": [{"system": system, "value": pid}],
            "status": "current",
            "type": {
                "coding": [
                    {
                        "system": "http://loinc.org",
                        "code": "18776-5",
                        "display": "Plan of care note",
                    }
                ]
            },
            "subject": {"reference": f"Patient/{pid}"},
            "date": self._now().isoformat().replace("+00:00", "Z"),
            "author": [DEVICE_REF],
            "description": f"OUD care pathway ({want.phase}); fingerprint {want.fingerprint}",
            "content": [
                {
                    "attachment": {
                        "contentType": "text/html",
                        "data": base64.b64encode(want.narrative.encode()).decode(),
                        "title": "OUD care pathway",
                    }
                }
            ],
        }
        found = [
            r
            for r in self._search(f"DocumentReference?identifier={system}|{pid}")
            if r.get("resourceType") == "DocumentReference"
        ]
        if found and want.fingerprint in str(found[0].get("description", "")):
            result.kept.append(f"DocumentReference/{found[0]['id']}")
            return result
        if found:
            doc["id"] = found[0]["id"]
            self.client.request(
                "PUT", f"DocumentReference/{doc['id']}", body=doc, headers=self._if_match(found[0])
            )
            result.written.append(f"updated DocumentReference/{doc['id']}")
            target = f"DocumentReference/{doc['id']}"
        else:
            r = self.client.request(
                "POST",
                "DocumentReference",
                body=doc,
                headers=self._if_none_exist("DocumentReference", f"identifier={system}|{pid}"),
            )
            target = f"DocumentReference/{(r.body or {}).get('id')}"
            result.written.append(f"created {target}")
        if "Provenance" in self.caps.writable:
            self.client.request(
                "POST", "Provenance", body=self._provenance([target], want.evidence)
            )
        return result


def _code_of_urn(ref: str, want: Desired, canon: str) -> str:
    for code in want.tasks:
        if task_urn(canon, want.patient_id, code) == ref:
            return code
    return ""


def _summary(entries: list[dict[str, Any]]) -> str:
    """`POST CarePlan, 11 POST Task, POST Provenance`: what a transaction held (no ids)."""
    counts: dict[str, int] = {}
    for e in entries:
        key = interaction_of(str(e["request"]["method"]), str(e["request"]["url"]))
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(k if n == 1 else f"{n} {k}" for k, n in counts.items())


def _issue_code(outcome: dict[str, Any] | None) -> str:
    for issue in (outcome or {}).get("issue") or []:
        if isinstance(issue, dict) and issue.get("code"):
            return str(issue["code"])
    return "-"
