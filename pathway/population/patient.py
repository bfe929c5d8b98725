"""One patient's group of NDJSON lines -> the patients.ndjson line and what the patient counts for.

The same code path as `$apply` and the hook: pathway.evaluation.Evaluator reads the resources
and runs the pure rules; the line is built by the function that builds the card extension
(pathway.cards.CardBuilder.assessment), so the two shapes cannot drift. Both engines (local and
Spark) call `PatientJob.run` and nothing else, on the same lines in the same (sorted) order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from pathway.cards import CardBuilder, CardSettings
from pathway.config import LoadedConfig
from pathway.evaluation import Evaluation, Evaluator
from pathway.population.measures import PatientMeasures, PopulationConfig, patient_measures
from pathway.population.ndjson import referenced_medication

# The card extension's assessment fields that patients.ndjson carries (CONTRACT.md §7).
LINE_FIELDS = ("returnToUse", "suspectedOud", "medications", "tasks", "planDefinition")

Resolver = Callable[[str], bytes | None]


def no_resolver(_key: str) -> bytes | None:
    return None


class PatientResult(NamedTuple):
    patient: str
    line: bytes  # the patients.ndjson line (no newline)
    measures: PatientMeasures
    evaluation: Evaluation | None  # kept for write-back; dropped before results cross processes


class PatientJob:
    """Built once per worker (the config, the evaluator and the card builder are reused)."""

    def __init__(self, config: LoadedConfig, pc: PopulationConfig, as_of: datetime) -> None:
        if as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")
        self.config = config
        self.pc = pc
        self.as_of = as_of
        self.evaluator = Evaluator(config)
        self.cards = CardBuilder(CardSettings.from_services(config.services), self.evaluator.writer)

    def resources(
        self, lines: Iterable[bytes], resolve: Resolver = no_resolver
    ) -> list[dict[str, Any]]:
        """The patient's resources in a canonical order, whichever engine grouped them: their
        own (sorted lines), then the Medications their requests reference (sorted lines),
        whether the engine joined those into the group (Spark) or `resolve` finds them."""
        own: list[dict[str, Any]] = []
        meds: dict[bytes, dict[str, Any]] = {}
        for line in sorted(set(lines)):
            res = orjson.loads(line)
            if res.get("resourceType") == "Medication":
                meds[line] = res
            else:
                own.append(res)
        have = {f"Medication/{r.get('id')}" for r in meds.values()}
        for key in sorted(
            {k for r in own if (k := referenced_medication(r)) is not None and k not in have}
        ):
            raw = resolve(key)
            if raw is not None:
                meds[raw] = orjson.loads(raw)
        return own + [meds[line] for line in sorted(meds)]

    def run(
        self, patient: str, lines: Iterable[bytes], resolve: Resolver = no_resolver
    ) -> PatientResult:
        return self.evaluate(patient, self.resources(lines, resolve))

    def evaluate(self, patient: str, resources: list[dict[str, Any]]) -> PatientResult:
        """`resources` as `resources` returns them (the canonical order)."""
        ev = self.evaluator.evaluate(resources, self.as_of, patient_id=patient)
        d = ev.decision
        record: dict[str, Any] = {"patient": patient, "phase": d.phase}
        findings = None
        if d.phase != "not-applicable":
            assessment = self.cards.assessment(d)
            for key in LINE_FIELDS:
                if key in assessment:
                    record[key] = assessment[key]
            findings = ev.findings
        own = own_patient(resources, patient)
        measures = patient_measures(
            d,
            findings,
            own,
            ev.reading.facts.patient.birth_date,
            self.config.pathway.phase.episode_gap_days,
            self.pc,
        )
        return PatientResult(patient, orjson.dumps(record), measures, ev)


def own_patient(resources: list[dict[str, Any]], patient: str) -> dict[str, Any] | None:
    """The group's Patient resource (the one whose id is the group's), if the export has it."""
    for r in resources:
        if r.get("resourceType") == "Patient" and r.get("id") == patient:
            return r
    return None
