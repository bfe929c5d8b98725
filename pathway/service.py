"""The running service's parts, built once at start: settings, clinical config, evaluator,
store. Flask keeps one of these in `app.extensions["pathway"]`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pathway.api.errors import ApiError
from pathway.cards import CardBuilder, CardSettings
from pathway.config import LoadedConfig, load_config
from pathway.evaluation import Evaluation, Evaluator, evidence_dates
from pathway.fhir.careplan import careplan_urn, task_urn
from pathway.fhir.client import FhirClient, FhirError, FhirNotFound
from pathway.fhir.prefetch import render
from pathway.fhir.writeback import Desired, changes, desired
from pathway.metrics import Metrics
from pathway.rules.model import Decision
from pathway.settings import Settings
from pathway.store.db import Store, StoreError

log = logging.getLogger("pathway.service")


class Service:
    def __init__(
        self, settings: Settings, config: LoadedConfig | None = None, store: Store | None = None
    ) -> None:
        self.settings = settings
        self.config = config or load_config(settings.config_dir, settings.profiles_dir)
        self.evaluator = Evaluator(self.config)
        self.store = store or Store(settings.database_url)
        self.started_at = datetime.now(UTC)
        self.cards = CardBuilder(
            CardSettings.from_services(self.config.services), self.evaluator.writer
        )
        self.metrics = Metrics()
        from pathway.outbox import WriteBack

        self.writeback = WriteBack(self)
        # The clock is an edge concern: the rules get `as_of`; tests freeze this.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def fhir_client(
        self, base_url: str, token: str | None = None, hook: bool = False
    ) -> FhirClient:
        if hook:
            return FhirClient(
                base_url,
                token=token,
                timeout=self.settings.hook_fetch_timeout_seconds,
                retries=1,
                backoff=0.1,
                max_pages=10,
                max_retry_after=0.2,  # a hook cannot wait out the EHR's back-off
            )
        return FhirClient(base_url, token=token, timeout=self.settings.http_timeout_seconds)

    def read_patient(self, client: FhirClient, patient_id: str) -> dict[str, Any]:
        """Read a patient's data from a FHIR server with the prefetch queries of the
        patient-view service; returns prefetch-shaped results."""
        templates = next(
            s["prefetch"] for s in self.config.services["services"] if s["hook"] == "patient-view"
        )
        return {
            key: client.query(render(t, {"patientId": patient_id})) for key, t in templates.items()
        }

    def read_patient_from_server(self, patient_id: str) -> list[Any]:
        base = self.settings.fhir_base_url
        if not base:
            raise ApiError(
                400,
                "No 'data' was given and no FHIR server is configured "
                "(PATHWAY_FHIR_BASE_URL): send the patient's Bundle as 'data'.",
                expression=["Parameters.parameter[data]"],
            )
        try:
            found = self.read_patient(self.fhir_client(base), patient_id)
        except FhirNotFound as e:
            raise ApiError(404, f"Patient/{patient_id} was not found on the FHIR server.") from e
        except FhirError as e:
            log.warning("reading the FHIR server failed: %s", type(e).__name__)
            raise ApiError(
                502 if e.status is None or e.status >= 500 else 424,
                f"The FHIR server could not be read: {e}",
                "transient",
            ) from e
        return list(found.values())

    def desired_state(self, ev: Evaluation) -> Desired:
        d = ev.decision
        return desired(
            self.evaluator.writer, d, ev.notes, evidence_dates(ev.reading.facts, d.evidence)
        )

    def after_hook(
        self,
        ev: Evaluation,
        base: str | None,
        token: str | None,
        existing: tuple[dict[str, Any] | None, list[dict[str, Any]]] | None = None,
    ) -> list[Any]:
        """Write-back after a patient-view, as configured; returns systemActions (if any).
        Never delays the answer: direct writes are queued in the outbox and run behind."""
        mode = self.settings.writeback
        base = base or self.settings.fhir_base_url
        if mode == "off" or base is None:
            return []
        if ev.decision.phase == "not-applicable" and mode == "system-actions":
            return []
        want = self.desired_state(ev)
        if mode == "system-actions":
            return self.system_actions(want)
        if mode == "direct" and existing is not None:
            plan, tasks = existing
            if (
                ev.decision.phase != "not-applicable"
                and changes(want, plan, tasks, self.config.pathway.canonical).unchanged
            ):
                # The EHR already holds this plan (per the request): nothing to write, no call.
                self.metrics.writeback.labels("unchanged-in-prefetch").inc()
                return []
        if mode == "direct" and self.settings.writeback_fallback == "system-actions":
            try:
                caps = self.writeback.capabilities(base)
            except FhirError:
                caps = None  # unknown: queue the write, the outbox finds out
            if caps is not None and not caps.can_write_plan():
                return self.system_actions(want)
        try:
            self.writeback.queue(base, want, token)
        except StoreError:
            # The cards matter more than this write: it is redone at the next view or
            # notification of this patient. Counted, logged (without patient data).
            self.metrics.writeback.labels("not-queued").inc()
            log.error("write-back not queued: the store is unavailable")
        return []

    def evaluate_from_server(self, patient_id: str, client: FhirClient | None = None) -> Evaluation:
        base = self.settings.fhir_base_url
        if client is None:
            if not base:
                raise FhirError("no FHIR server configured (PATHWAY_FHIR_BASE_URL)")
            client = self.writeback.client(base)
        data = list(self.read_patient(client, patient_id).values())
        return self.evaluator.evaluate(data, self.clock(), patient_id=patient_id)

    def reevaluate(self, patient_id: str) -> None:
        """Read the patient from the configured FHIR server, evaluate now, write back."""
        base = self.settings.fhir_base_url
        if not base:
            return
        client = self.writeback.client(base)
        ev = self.evaluate_from_server(patient_id, client)
        self.record_decision(ev.decision, "notification")
        if self.settings.writeback != "off":
            self.writeback.enqueue(base, self.desired_state(ev))
            self.writeback.run()

    def reevaluate_later(self, patient_id: str) -> None:
        def job() -> None:
            try:
                self.reevaluate(patient_id)
            except FhirError as e:
                log.warning("re-evaluation after a notification failed: %s", type(e).__name__)

        self.writeback.submit(job)

    def system_actions(self, want: Desired) -> list[Any]:
        if want.phase == "not-applicable":
            return []
        canon = self.config.pathway.canonical
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

    def metrics_decision(self, service_id: str, phase: str) -> None:
        self.metrics.decisions.labels(service_id, phase).inc()

    def record_decision(self, decision: Decision, action: str) -> None:
        self.store.add_audit(
            action,
            decision.patient_id,
            {
                "phase": decision.phase,
                "returnToUse": decision.return_to_use,
                "suspectedOud": decision.suspected_oud,
                "tasks": len(decision.tasks),
                "flags": [f.code for f in decision.flags],
            },
        )
