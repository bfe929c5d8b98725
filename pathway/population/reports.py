"""The tally -> measures.json (FHIR MeasureReports), summary.csv (CONTRACT.md §7)."""

from __future__ import annotations

import csv
import io
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from pathway.population.measures import (
    MEASURES,
    STRATIFIERS,
    MeasureDef,
    PopulationConfig,
    Tally,
)

POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
OMB_SYSTEM = "urn:oid:2.16.840.1.113883.6.238"
OVERALL = "all"  # the summary.csv row of the whole denominator
SUMMARY_COLUMNS = ("measure", "stratifier", "stratum", "denominator", "numerator", "rate")


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def rate(den: int, num: int) -> float | None:
    return round(num / den, 4) if den else None


def _populations(den: int, num: int) -> list[dict[str, Any]]:
    return [
        {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}, "count": count}
        for code, count in (("denominator", den), ("numerator", num))
    ]


def _scored(target: dict[str, Any], den: int, num: int) -> dict[str, Any]:
    target["population"] = _populations(den, num)
    score = rate(den, num)
    if score is not None:  # no score for an empty denominator (no element is null)
        target["measureScore"] = {"value": score}
    return target


def _stratum_value(stratifier: str, stratum: str, pc: PopulationConfig) -> dict[str, Any]:
    names = {"race": pc.races, "ethnicity": pc.ethnicities}.get(stratifier, {})
    if stratum in names:
        return {
            "coding": [{"system": OMB_SYSTEM, "code": stratum, "display": names[stratum]}],
            "text": stratum,
        }
    return {"text": stratum}


def measure_report(
    m: MeasureDef, tally: Tally, as_of: datetime, canon: str, pc: PopulationConfig
) -> dict[str, Any]:
    den, num = tally.rate(m.id)
    start = (
        as_of - timedelta(days=pc.retention_oldest_days) if m.id == "moud-retention-180" else as_of
    )
    group: dict[str, Any] = {"code": {"text": m.title}}
    _scored(group, den, num)
    group["stratifier"] = [
        {
            "code": [{"text": stratifier}],
            "stratum": [
                _scored(
                    {"value": _stratum_value(stratifier, stratum, pc)},
                    *tally.rate(m.id, stratifier, stratum),
                )
                for stratum in pc.strata(stratifier)
            ],
        }
        for stratifier in STRATIFIERS
    ]
    return {
        "resourceType": "MeasureReport",
        "id": m.id,
        "status": "complete",
        "type": "summary",
        "measure": f"{canon}/Measure/{m.id}",
        "date": iso(as_of),
        "period": {"start": iso(start), "end": iso(as_of)},
        "improvementNotation": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
                    "code": m.improvement,
                }
            ]
        },
        "group": [group],
    }


def measures_bundle(
    tally: Tally, as_of: datetime, canon: str, pc: PopulationConfig
) -> dict[str, Any]:
    reports = [measure_report(m, tally, as_of, canon, pc) for m in MEASURES]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{canon}/population/{iso(as_of)}")),
        "type": "collection",
        "timestamp": iso(as_of),
        "entry": [{"fullUrl": f"{canon}/MeasureReport/{r['id']}", "resource": r} for r in reports],
    }


def summary_rows(tally: Tally, pc: PopulationConfig) -> list[tuple[str, str, str, int, int, str]]:
    rows: list[tuple[str, str, str, int, int, str]] = []

    def row(measure: str, stratifier: str, stratum: str) -> None:
        den, num = tally.rate(measure, stratifier, stratum)
        r = rate(den, num)
        rows.append(
            (
                measure,
                stratifier or OVERALL,
                stratum or OVERALL,
                den,
                num,
                "" if r is None else f"{r:.4f}",
            )
        )

    for m in MEASURES:
        row(m.id, "", "")
        for stratifier in STRATIFIERS:
            for stratum in pc.strata(stratifier):
                row(m.id, stratifier, stratum)
    return rows


def summary_csv(tally: Tally, pc: PopulationConfig) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    w.writerows(summary_rows(tally, pc))
    return buf.getvalue()


def write_atomic(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_measures(
    out_dir: Path, tally: Tally, as_of: datetime, canon: str, pc: PopulationConfig
) -> dict[str, Any]:
    bundle = measures_bundle(tally, as_of, canon, pc)
    write_atomic(out_dir / "measures.json", orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
    write_atomic(out_dir / "summary.csv", summary_csv(tally, pc))
    return bundle
