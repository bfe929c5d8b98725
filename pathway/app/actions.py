"""What a clinician can do from the app, each written with the clinician's own token, with the
clinician (fhirUser) as a Provenance agent beside the service's Device, and an audit row.

- order the suggested rescue naloxone: a draft MedicationRequest (the EHR signs it), created once
  per patient and day (If-None-Exist on an identifier of ours);
- save or update the care plan and its Tasks: the write-back's own Reconciler (idempotent:
  nothing written when nothing changed), under the write-back's per-patient lock;
- mark one of our open Tasks done (If-Match on its version).

Each action re-reads and re-evaluates the patient first: a form never says what to write.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pathway.app.smart import allows
from pathway.evaluation import Evaluation
from pathway.fhir.careplan import DEVICE_REF, SECURITY
from pathway.fhir.client import FhirClient, FhirNotFound
from pathway.fhir.writeback import OPEN_TASK_STATUSES, Reconciler

if TYPE_CHECKING:
    from pathway.service import Service

log = logging.getLogger("pathway.app.actions")
REF = re.compile(r"(?:.*/)?([A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/.*)?")
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


class ActionError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Actions:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.canon = svc.config.pathway.canonical

    # ------------------------------------------------------------------ shared
    def _now(self) -> str:
        return _iso(self.svc.clock())  # the service's clock (tests freeze it)

    def _need(self, granted: str, *needs: tuple[str, str]) -> None:
        missing = [f"{r}.{op}" for r, op in needs if not allows(granted, r, op)]
        if missing:
            raise ActionError(403, "Your access to the EHR does not allow this change.")

    def _clinician(self, auth: dict[str, Any]) -> str:
        user = str(auth.get("fhirUser") or "")
        if not user:
            raise ActionError(
                403, "The EHR did not say who you are (fhirUser): changes cannot be signed."
            )
        return user

    def _evaluate(self, client: FhirClient, pid: str, as_of: datetime) -> Evaluation:
        data = self.svc.workflow.read_patient(client, pid)
        return self.svc.evaluator.evaluate(list(data.values()), as_of, patient_id=pid)

    def provenance(
        self, targets: list[str], clinician: str, activity: str, reason: str
    ) -> dict[str, Any]:
        return {
            "resourceType": "Provenance",
            "meta": {"security": SECURITY},
            "target": [{"reference": t} for t in targets],
            "recorded": self._now(),
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                        "code": activity,
                    }
                ]
            },
            "reason": [{"text": reason}],
            "agent": [
                {
                    "type": {"coding": [{"system": PARTICIPANT, "code": "author"}]},
                    "who": {"reference": clinician},
                },
                {
                    "type": {"coding": [{"system": PARTICIPANT, "code": "assembler"}]},
                    "who": DEVICE_REF,
                },
            ],
        }

    # ------------------------------------------------------------------ naloxone
    def order_naloxone(
        self, client: FhirClient, auth: dict[str, Any], granted: str, as_of: datetime
    ) -> str:
        self._need(granted, ("MedicationRequest", "c"), ("Provenance", "c"))
        clinician = self._clinician(auth)
        pid = str(auth["patient"])
        ev = self._evaluate(client, pid, as_of)
        nal = ev.decision.medication("naloxone")
        if nal is None or nal.status != "recommended":
            raise ActionError(409, "Rescue naloxone is not suggested for this patient now.")
        suggestion = self.svc.cards.naloxone_suggestion(ev.decision)
        body = dict(suggestion["actions"][0]["resource"])
        ident = f"{pid}:{as_of.date().isoformat()}"
        body["identifier"] = [{"system": f"{self.canon}/naloxone-order", "value": ident}]
        body["meta"] = {"security": SECURITY}
        body["authoredOn"] = self._now()
        if clinician.split("/", 1)[0] in ("Practitioner", "PractitionerRole"):
            body["requester"] = {"reference": clinician}
        resp = client.request(
            "POST",
            "MedicationRequest",
            body=body,
            headers={"If-None-Exist": f"identifier={self.canon}/naloxone-order|{ident}"},
        )
        created = resp.status == 201
        ref = _ref_of(resp, "MedicationRequest")
        if created and ref:
            client.request(
                "POST",
                "Provenance",
                body=self.provenance(
                    [ref], clinician, "CREATE", "Rescue naloxone suggested by the OUD pathway"
                ),
            )
        self.svc.store.add_audit(
            "app-order-naloxone", pid, {"created": created, "user": clinician.split("/")[0]}
        )
        return (
            "A draft naloxone order was created: sign it in the EHR."
            if created
            else "A draft naloxone order from today already exists: sign it in the EHR."
        )

    # ------------------------------------------------------------------ care plan
    def save_plan(
        self, client: FhirClient, auth: dict[str, Any], granted: str, as_of: datetime
    ) -> str:
        self._need(
            granted, ("CarePlan", "c"), ("CarePlan", "u"), ("Task", "c"), ("Provenance", "c")
        )
        clinician = self._clinician(auth)
        pid = str(auth["patient"])
        ev = self._evaluate(client, pid, as_of)
        if ev.decision.phase == "not-applicable":
            raise ActionError(409, "The pathway does not apply to this patient: no plan to save.")
        want = self.svc.desired_state(ev)
        wb = self.svc.writeback
        base = client.base_url
        with wb.patient_lock(wb.key(base, pid)):
            caps = wb.capabilities(base, client)
            if not caps.can_write_plan():
                raise ActionError(409, "This EHR does not accept care plans and tasks.")
            reconciler = Reconciler(
                self.svc.evaluator.writer,
                client,
                caps,
                self.svc.settings.writeback_fallback,
                clock=self.svc.clock,
            )
            result = reconciler.apply(want)
        targets = [m.group(1) for w in result.written if (m := REF.fullmatch(w.split(" ", 1)[1]))]
        if targets:
            client.request(
                "POST",
                "Provenance",
                body=self.provenance(
                    targets, clinician, "UPDATE", "Care plan saved by a clinician from the app"
                ),
            )
        self.svc.store.add_audit(
            "app-save-plan",
            pid,
            {"written": len(result.written), "kept": len(result.kept), "mode": result.mode},
        )
        if not result.written:
            return "The care plan in the EHR is already up to date: nothing was changed."
        return f"The care plan was saved ({len(result.written)} changes)."

    # ------------------------------------------------------------------ tasks
    def complete_task(
        self, client: FhirClient, auth: dict[str, Any], granted: str, task_id: str
    ) -> str:
        self._need(granted, ("Task", "u"), ("Provenance", "c"))
        clinician = self._clinician(auth)
        pid = str(auth["patient"])
        try:
            task = client.read("Task", task_id)
        except FhirNotFound as e:
            raise ActionError(404, "That task no longer exists.") from e
        ident = next(
            (
                str(i.get("value", ""))
                for i in task.get("identifier") or []
                if isinstance(i, dict) and i.get("system") == f"{self.canon}/task"
            ),
            "",
        )
        subject = str((task.get("for") or {}).get("reference", ""))
        if (
            not ident.startswith(f"{pid}:")
            or REF.fullmatch(subject) is None
            or (subject.rsplit("/", 1)[-1] != pid)
        ):
            raise ActionError(403, "That task is not one of this patient's pathway tasks.")
        if task.get("status") not in OPEN_TASK_STATUSES:
            return "That task was already closed."
        body = dict(task)
        body["status"] = "completed"
        body["lastModified"] = self._now()
        body["executionPeriod"] = {**(task.get("executionPeriod") or {}), "end": self._now()}
        version = (task.get("meta") or {}).get("versionId")
        headers = {"If-Match": f'W/"{version}"'} if version else {}
        client.request("PUT", f"Task/{task_id}", body=body, headers=headers)
        client.request(
            "POST",
            "Provenance",
            body=self.provenance(
                [f"Task/{task_id}"], clinician, "UPDATE", "Task marked done from the app"
            ),
        )
        code = ident.split(":", 1)[1]
        self.svc.store.add_audit("app-task-done", pid, {"task": code})
        return "The task was marked done."


def _ref_of(resp: Any, rtype: str) -> str | None:
    body = resp.body if isinstance(resp.body, dict) else {}
    if body.get("resourceType") == rtype and body.get("id"):
        return f"{rtype}/{body['id']}"
    loc = resp.headers.get("Location") or resp.headers.get("location") or ""
    m = REF.fullmatch(str(loc))
    return m.group(1) if m else None
