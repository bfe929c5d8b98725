"""The running service's parts, built once at start: settings, clinical config, evaluator,
store, metrics, the write-back and the use cases (`pathway.workflow`). Flask keeps one of these
in `app.extensions["pathway"]`; the CLI builds its own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pathway.cards import CardBuilder, CardSettings
from pathway.config import LoadedConfig, load_config
from pathway.evaluation import Evaluation, Evaluator
from pathway.fhir.client import FhirClient
from pathway.fhir.writeback import Desired, desired
from pathway.metrics import Metrics
from pathway.outbox import WriteBack
from pathway.settings import Settings
from pathway.store.db import Store
from pathway.workflow import Workflow


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
        self.writeback = WriteBack(settings, self.store, self.metrics, self.evaluator.writer)
        self.workflow = Workflow(
            settings,
            self.config,
            self.evaluator,
            self.cards,
            self.store,
            self.metrics,
            self.writeback,
        )

    @property
    def clock(self) -> Callable[[], datetime]:
        """Now, for the use cases (tests and `--as-of` freeze it)."""
        return self.workflow.clock

    @clock.setter
    def clock(self, value: Callable[[], datetime]) -> None:
        self.workflow.clock = value

    # Shortcuts for the command line and the sweep.
    def evaluate_from_server(self, patient_id: str, client: FhirClient | None = None) -> Evaluation:
        return self.workflow.evaluate_from_server(patient_id, client)

    def desired_state(self, ev: Evaluation) -> Desired:
        return desired(self.evaluator.writer, ev)
