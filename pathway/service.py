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
from pathway.evaluation import Evaluator
from pathway.fhir.client import FhirClient, FhirError, FhirNotFound
from pathway.fhir.prefetch import render
from pathway.metrics import Metrics
from pathway.rules.model import Decision
from pathway.settings import Settings
from pathway.store.db import Store

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
        # The clock is an edge concern: the rules get `as_of`; tests freeze this.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def fhir_client(self, base_url: str, token: str | None = None) -> FhirClient:
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
