"""Benchmark: time from request bytes to the decision, and to the FHIR output.

    python scripts/benchmark.py [--iterations N]

Prints median and p99 for synthetic patients of 100 and 500 resources (a realistic mix:
conditions, drug screens in every result form, labs, vitals, COWS, medication requests by code
and by reference). Figures are printed, never asserted: they depend on the machine.
Targets (2-core development machine): decision for 100 resources <= 1.5 ms median, for 500
resources <= 6 ms median.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pathway.config import load_config
from pathway.evaluation import Evaluator

AS_OF = datetime(2025, 6, 15, 12, tzinfo=UTC)
CANON = "https://oud-pathway.github.io/fhir"
UDS = ["59673-4", "19295-5", "3414-0", "19550-3", "93495-0", "10998-3", "3349-8"]
RESULTS: list[dict[str, Any]] = [
    {"valueString": "POS"},
    {"valueString": "neg"},
    {"valueString": "Not Detected"},
    {
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]
        }
    },
    {"interpretation": [{"coding": [{"code": "NEG"}]}]},
]
MEDS = ["1010604", "864706", "1049621", "308047", "197591", "310965"]


def patient_bundle(n: int) -> dict[str, Any]:
    """One patient with about n resources."""
    entries: list[dict[str, Any]] = [
        {
            "resource": {
                "resourceType": "Patient",
                "id": "p1",
                "gender": "female",
                "birthDate": "1988-03-02",
            }
        }
    ]

    def add(r: dict[str, Any]) -> None:
        r["id"] = f"{r['resourceType'][:3].lower()}-{len(entries)}"
        r["subject"] = {"reference": "Patient/p1"}
        entries.append(
            {
                "fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
            }
        )

    add(
        {
            "resourceType": "Condition",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F11.20"}]},
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "recordedDate": "2024-01-10",
        }
    )
    i = 0
    while len(entries) < n:
        when = (AS_OF - timedelta(days=i % 400, hours=i % 24)).isoformat()
        kind = i % 10
        if kind < 4:
            add(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": UDS[i % len(UDS)]}]},
                    "effectiveDateTime": when,
                    **RESULTS[i % len(RESULTS)],
                }
            )
        elif kind < 6:
            add(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {
                        "coding": [
                            {
                                "system": "http://loinc.org",
                                "code": ["1742-6", "8480-6", "8867-4", "2160-0"][i % 4],
                            }
                        ]
                    },
                    "effectiveDateTime": when,
                    "valueQuantity": {"value": 40 + i % 50},
                }
            )
        elif kind == 6:
            add(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {
                        "coding": [
                            {"system": f"{CANON}/CodeSystem/oud-observation", "code": "cows-total"}
                        ]
                    },
                    "effectiveDateTime": when,
                    "valueInteger": i % 20,
                }
            )
        elif kind < 9:
            add(
                {
                    "resourceType": "MedicationRequest",
                    "status": ["active", "completed"][i % 2],
                    "intent": "order",
                    "authoredOn": when[:10],
                    "medicationCodeableConcept": {
                        "coding": [
                            {
                                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                "code": MEDS[i % len(MEDS)],
                            }
                        ]
                    },
                }
            )
        else:
            add(
                {
                    "resourceType": "Condition",
                    "code": {
                        "coding": [{"system": "http://snomed.info/sct", "code": str(38341003 + i)}]
                    },
                    "clinicalStatus": {"coding": [{"code": "active"}]},
                    "recordedDate": when[:10],
                }
            )
        i += 1
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def measure(fn: Callable[[], Any], iterations: int) -> tuple[float, float]:
    for _ in range(min(50, iterations)):
        fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    evaluator = Evaluator(load_config())
    gc.collect()
    gc.freeze()  # as the gunicorn workers do after start
    print(f"{'resources':>9}  {'step':<34} {'median ms':>10} {'p99 ms':>8}")
    for n, target in ((100, 1.5), (500, 6.0)):
        raw = orjson.dumps(patient_bundle(n))
        iterations = args.iterations if n == 100 else max(200, args.iterations // 4)

        def to_decision(raw: bytes = raw) -> Any:
            return evaluator.evaluate(orjson.loads(raw), AS_OF).decision

        def to_fhir(raw: bytes = raw) -> bytes:
            ev = evaluator.evaluate(orjson.loads(raw), AS_OF)
            return orjson.dumps(evaluator.apply_bundle(ev))

        med, p99 = measure(to_decision, iterations)
        print(
            f"{n:>9}  {'bytes -> decision':<34} {med:>10.3f} {p99:>8.3f}"
            f"   (target <= {target} ms median)"
        )
        med, p99 = measure(to_fhir, iterations)
        print(f"{n:>9}  {'bytes -> CarePlan/Task Bundle bytes':<34} {med:>10.3f} {p99:>8.3f}")


if __name__ == "__main__":
    main()
