"""The one-way flow: FHIR data -> facts -> pure decision -> FHIR output. No Flask here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pathway.config import LoadedConfig
from pathway.fhir.bundle import flatten
from pathway.fhir.careplan import PlanWriter
from pathway.fhir.facts import FactReader, Reading
from pathway.rules import timing
from pathway.rules.model import Decision, Facts, When
from pathway.rules.pathway import evaluate


@dataclass(frozen=True, slots=True)
class Evaluation:
    decision: Decision
    reading: Reading

    @property
    def notes(self) -> list[str]:
        return self.reading.notes


def evidence_dates(facts: Facts, refs: tuple[str, ...] | None = None) -> dict[str, str]:
    """The date of each cited resource (all of them when `refs` is None)."""
    wanted = set(refs) if refs is not None else None
    out: dict[str, str] = {}

    def put(ref: str, when: When | None) -> None:
        if when is not None and (wanted is None or ref in wanted) and ref not in out:
            out[ref] = timing.describe(when)

    for c in facts.conditions:
        put(c.ref, c.when)
    for o in facts.orders:
        put(o.ref, o.authored)
    for s in facts.screens:
        put(s.ref, s.when)
    for m in facts.measurements:
        put(m.ref, m.when)
    for u in facts.last_uses:
        put(u.ref, u.used)
    for st in facts.stages:
        put(st.ref, st.when)
    return out


class Evaluator:
    def __init__(self, config: LoadedConfig) -> None:
        self.config = config
        self.reader = FactReader(config)
        self.writer = PlanWriter(config)

    def evaluate(
        self,
        data: Any,
        as_of: datetime,
        patient_id: str | None = None,
        drafts: list[dict[str, Any]] | None = None,
        strict_subject: bool = True,
    ) -> Evaluation:
        reading = self.reader.read(flatten(data), patient_id, drafts, strict_subject)
        decision = evaluate(reading.facts, as_of, self.config.pathway)
        return Evaluation(decision, reading)

    def apply_bundle(self, ev: Evaluation) -> dict[str, Any]:
        dates = evidence_dates(ev.reading.facts, ev.decision.evidence)
        return self.writer.apply_bundle(ev.decision, ev.notes, dates)
