"""The running service's parts, built once at start: settings, clinical config, evaluator,
store. Flask keeps one of these in `app.extensions["pathway"]`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pathway.api.errors import ApiError
from pathway.config import LoadedConfig, load_config
from pathway.evaluation import Evaluator
from pathway.fhir.client import FhirClient, FhirError, FhirNotFound
from pathway.rules.model import Decision
from pathway.settings import Settings
from pathway.store.db import Store

log = logging.getLogger("pathway.service")


def patient_queries(canonical: str, patient_id: str) -> dict[str, tuple[str, dict[str, str]]]:
    """The searches that read one patient's pathway data (the same keys as the prefetch)."""
    return {
        "conditions": ("Condition", {"patient": patient_id, "_count": "200"}),
        "observations": ("Observation", {"patient": patient_id, "_count": "500"}),
        "medicationRequests": (
            "MedicationRequest",
            {"patient": patient_id, "_include": "MedicationRequest:medication", "_count": "200"},
        ),
        "carePlans": (
            "CarePlan",
            {"patient": patient_id, "identifier": f"{canonical}/careplan|{patient_id}"},
        ),
        "tasks": (
            "Task",
            {
                "patient": patient_id,
                "_count": "200",
                "code": f"{canonical}/CodeSystem/oud-pathway-action|",
            },
        ),
    }


class Service:
    def __init__(
        self, settings: Settings, config: LoadedConfig | None = None, store: Store | None = None
    ) -> None:
        self.settings = settings
        self.config = config or load_config(settings.config_dir, settings.profiles_dir)
        self.evaluator = Evaluator(self.config)
        self.store = store or Store(settings.database_url)
        self.started_at = datetime.now(UTC)

    def fhir_client(self, base_url: str, token: str | None = None) -> FhirClient:
        return FhirClient(base_url, token=token, timeout=self.settings.http_timeout_seconds)

    def read_patient(
        self, client: FhirClient, patient_id: str, keys: tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        """Read a patient's data from a FHIR server; returns prefetch-shaped results."""
        out: dict[str, Any] = {}
        if keys is None or "patient" in keys:
            out["patient"] = client.read("Patient", patient_id)
        for key, (rtype, params) in patient_queries(
            self.config.pathway.canonical, patient_id
        ).items():
            if keys is None or key in keys:
                out[key] = client.search(rtype, params)
        return out

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
