"""The service's use cases, below the transport: a CDS hook (prefetch -> evaluate -> cards ->
queue the write), `$apply` from the FHIR server, re-evaluation after a notification.

Nothing here knows HTTP: failures are the domain errors of `pathway.errors`, which
`pathway/api/errors.py` alone turns into responses. Each use case evaluates once; the
`Evaluation` carries the decision, its notes and its evidence dates to the card, the plan and the
write-back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pathway.cards import CardBuilder
from pathway.config import LoadedConfig
from pathway.errors import (
    FhirServerFailed,
    FhirServerNotAllowed,
    MissingData,
    NoFhirServer,
    PatientNotFound,
)
from pathway.evaluation import Evaluation, Evaluator
from pathway.fhir.bundle import flatten
from pathway.fhir.client import FhirClient, FhirError, FhirNotFound
from pathway.fhir.prefetch import describe, render, resolve
from pathway.fhir.writeback import changes, desired, ours_in, system_actions
from pathway.metrics import Metrics
from pathway.outbox import WriteBack
from pathway.rules.model import Decision
from pathway.settings import Settings
from pathway.store.db import Store, StoreError

log = logging.getLogger("pathway.workflow")


@dataclass(frozen=True, slots=True)
class HookCall:
    """A validated CDS Hooks call (the transport checked its shape)."""

    service_id: str
    hook: str
    patient_id: str
    context: dict[str, Any]
    prefetch: dict[str, Any] | None
    drafts: list[dict[str, Any]]
    fhir_server: str | None
    token: str | None  # the hook's fhirAuthorization access token, never stored
    app_link: dict[str, Any] | None = None  # the clinician app's SMART link for the card


@dataclass(frozen=True, slots=True)
class HookAnswer:
    cards: list[dict[str, Any]]
    system_actions: list[Any]


class Workflow:
    def __init__(
        self,
        settings: Settings,
        config: LoadedConfig,
        evaluator: Evaluator,
        cards: CardBuilder,
        store: Store,
        metrics: Metrics,
        writeback: WriteBack,
    ) -> None:
        self.settings = settings
        self.config = config
        self.evaluator = evaluator
        self.cards = cards
        self.store = store
        self.metrics = metrics
        self.writeback = writeback
        # The clock is an edge concern: the rules get `as_of`; tests freeze this.
        self.clock: Callable[[], datetime] = _now

    # ------------------------------------------------------------ reading the FHIR server
    def hook_client(self, base_url: str, token: str | None) -> FhirClient:
        """A client for reads during a hook: it has a time budget (short timeout, one retry,
        never waits out the EHR's back-off), then the hook says 412."""
        return FhirClient(
            base_url,
            token=token,
            timeout=self.settings.hook_fetch_timeout_seconds,
            retries=1,
            backoff=0.1,
            max_pages=10,
            max_retry_after=0.2,
        )

    def read_patient(self, client: FhirClient, patient_id: str) -> dict[str, Any]:
        """A patient's data read with the prefetch queries of the patient-view service;
        prefetch-shaped results."""
        templates = next(
            s["prefetch"] for s in self.config.services["services"] if s["hook"] == "patient-view"
        )
        return {
            key: client.query(render(t, {"patientId": patient_id})) for key, t in templates.items()
        }

    def read_patient_from_server(self, patient_id: str) -> list[Any]:
        base = self.settings.fhir_base_url
        if not base:
            raise NoFhirServer(
                "No 'data' was given and no FHIR server is configured "
                "(PATHWAY_FHIR_BASE_URL): send the patient's Bundle as 'data'."
            )
        try:
            found = self.read_patient(self.writeback.client(base), patient_id)
        except FhirNotFound as e:
            raise PatientNotFound("The subject patient was not found on the FHIR server.") from e
        except FhirError as e:
            log.warning("reading the FHIR server failed: %s (%s)", type(e).__name__, e.status)
            # in the service's words: the server's own text may quote the request or its data
            raise FhirServerFailed(
                f"The FHIR server could not be read: {describe(e)}.", e.status
            ) from e
        return list(found.values())

    def evaluate_from_server(self, patient_id: str, client: FhirClient | None = None) -> Evaluation:
        """Read the patient (from `client`, else PATHWAY_FHIR_BASE_URL) and evaluate now.
        Raises FhirError when the server cannot be read."""
        if client is None:
            base = self.settings.fhir_base_url
            if not base:
                raise FhirError("no FHIR server configured (PATHWAY_FHIR_BASE_URL)")
            client = self.writeback.client(base)
        data = list(self.read_patient(client, patient_id).values())
        return self.evaluator.evaluate(data, self.clock(), patient_id=patient_id)

    # ------------------------------------------------------------ use cases
    def hook(self, call: HookCall) -> HookAnswer:
        """A CDS hook: prefetch (reading what is missing), evaluate, cards, queue the write."""
        fetch = None
        if call.fhir_server:
            if not self.settings.fhir_server_allowed(call.fhir_server):
                log.warning("fhirServer not on the allow-list: refused")
                raise FhirServerNotAllowed(
                    "fhirServer is not on this service's allow-list (PATHWAY_FHIR_ALLOWLIST)."
                )
            fetch = self.hook_client(call.fhir_server, call.token).query
        templates = next(
            s["prefetch"]
            for s in self.config.services["services"]
            if s["id"] == call.service_id and s["hook"] == call.hook
        )
        resolved = resolve(
            call.prefetch, templates, {**call.context, "patientId": call.patient_id}, fetch
        )
        if resolved.missing:
            why = (
                "and no fhirServer was given"
                if fetch is None
                else "and the FHIR server could not supply it"
            )
            raise MissingData(
                f"Needed data is missing: prefetch lacks {', '.join(resolved.missing)} {why}.",
                resolved.missing,
            )
        ev = self.evaluator.evaluate(
            resolved.data,
            self.clock(),
            patient_id=call.patient_id,
            drafts=call.drafts,
            strict_subject=False,
            notes=resolved.notes,
        )
        decision = ev.decision
        actions: list[Any] = []
        if call.hook == "patient-view":
            card = self.cards.pathway_card(
                decision, ev.notes, ev.evidence_dates, app_link=call.app_link
            )
            cards = [card] if card is not None else []
            existing = None
            if self.settings.writeback == "direct" and {"carePlans", "tasks"} <= resolved.known:
                # The request says what plan and tasks of ours the EHR holds: compare locally.
                existing = ours_in(
                    [r for r, _ in flatten(resolved.data).resources],
                    call.patient_id,
                    self.config.pathway.canonical,
                )
            # Outside the pathway there is something to write only if a plan of ours is active.
            if decision.phase != "not-applicable" or (
                existing is None or (existing[0] or {}).get("status") == "active"
            ):
                actions = self.after_hook(ev, call.fhir_server, call.token, existing)
        else:
            cards = self.cards.order_cards(decision)
        self.record_decision(decision, call.hook)
        self.metrics.decisions.labels(call.service_id, decision.phase).inc()
        return HookAnswer(cards, actions)

    def apply(self, patient_id: str, data: Any | None, as_of: datetime) -> dict[str, Any]:
        """`$apply`: the CarePlan and Tasks for the data given (or read from the server)."""
        if data is None:
            data = self.read_patient_from_server(patient_id)
        ev = self.evaluator.evaluate(data, as_of, patient_id=patient_id)
        self.record_decision(ev.decision, "apply")
        return self.evaluator.apply_bundle(ev)

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
        want = desired(self.evaluator.writer, ev)
        canon = self.config.pathway.canonical
        if mode == "system-actions":
            return system_actions(want, canon)
        if mode == "direct" and existing is not None:
            plan, tasks = existing
            if (
                ev.decision.phase != "not-applicable"
                and changes(want, plan, tasks, canon).unchanged
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
                self.metrics.writeback.labels("fallback-system-actions").inc()
                return system_actions(want, canon)
        try:
            self.writeback.queue(base, want, token)
        except StoreError:
            # The cards matter more than this write: it is redone at the next view or
            # notification of this patient. Counted, logged (without patient data).
            self.metrics.writeback.labels("not-queued").inc()
            log.error("write-back not queued: the store is unavailable")
        return []

    def reevaluate(self, patient_id: str) -> None:
        """Read the patient from the configured FHIR server, evaluate now, write back."""
        base = self.settings.fhir_base_url
        if not base:
            return
        ev = self.evaluate_from_server(patient_id, self.writeback.client(base))
        self.record_decision(ev.decision, "notification")
        if self.settings.writeback != "off":
            self.writeback.enqueue(base, desired(self.evaluator.writer, ev))
            self.writeback.run()

    def reevaluate_later(self, patient_id: str) -> None:
        def job() -> None:
            try:
                self.reevaluate(patient_id)
            except FhirError as e:
                log.warning("re-evaluation after a notification failed: %s", type(e).__name__)

        self.writeback.submit(job)

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


def _now() -> datetime:
    return datetime.now(UTC)
