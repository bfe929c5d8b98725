"""The one-way flow: FHIR data -> facts -> pure decision -> FHIR output. No Flask here.

An `Evaluation` is computed once and carries everything that follows from it: the decision, the
notes (the request's and the reader's) and the dates of the evidence, to the card, the CarePlan
and the write-back alike.
"""

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
    notes: list[str]  # what the request said about its data, then what the reader noticed
    evidence_dates: dict[str, str]  # date of each resource the decision cites


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
        notes: list[str] | None = None,
    ) -> Evaluation:
        """`notes`: what the caller knows about the data (e.g. a prefetch key it could not
        read), shown before the reader's own."""
        reading = self.reader.read(flatten(data), patient_id, drafts, strict_subject)
        decision = evaluate(reading.facts, as_of, self.config.pathway)
        return Evaluation(
            decision,
            reading,
            [*(notes or []), *reading.notes],
            evidence_dates(reading.facts, decision.evidence),
        )

    def apply_bundle(self, ev: Evaluation) -> dict[str, Any]:
        return self.writer.apply_bundle(ev.decision, ev.notes, ev.evidence_dates)
