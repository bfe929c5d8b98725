"""`pathway population`: input -> engine -> the four output files (CONTRACT.md §7)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pathway.config import load_config
from pathway.population.html import render
from pathway.population.local import LocalResult, Paths, run_local
from pathway.population.measures import DEFAULT_FILE, Tally, load_population_config
from pathway.population.ndjson import input_files
from pathway.population.progress import Progress
from pathway.population.reports import write_atomic, write_measures


@dataclass(slots=True)
class PopulationRun:
    tally: Tally
    out_dir: Path
    seconds: float
    problems: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def default_paths(config_dir: Path, profiles_dir: Path) -> Paths:
    return Paths(config_dir, profiles_dir, config_dir / DEFAULT_FILE.name)


def population(
    ndjson_dir: Path,
    out_dir: Path,
    as_of: datetime,
    paths: Paths,
    engine: str = "local",
    workers: int = 1,
    source: str | None = None,
    progress: bool | None = None,
) -> PopulationRun:
    # An output folder inside the input folder (or the same one) must not be read back.
    src, dest = ndjson_dir.resolve(), out_dir.resolve()
    files = [
        f
        for f in input_files(
            ndjson_dir, exclude=dest if dest != src and dest.is_relative_to(src) else None
        )
        if f.resolve() != dest / "patients.ndjson"
    ]
    if not files:
        raise FileNotFoundError(f"{ndjson_dir}: no .ndjson or .ndjson.gz files")
    config = load_config(paths.config_dir, paths.profiles_dir)
    pc = load_population_config(paths.population_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    bar = Progress(enabled=progress)
    if engine == "spark":
        from pathway.population.spark import run_spark

        result: LocalResult = run_spark(files, out_dir, as_of, paths, workers, bar.update)
    else:
        result = run_local(files, out_dir, as_of, paths, workers, bar.update)
    bar.close()
    write_measures(out_dir, result.tally, as_of, config.pathway.canonical, pc)
    write_atomic(
        out_dir / "report.html",
        render(
            result.tally,
            as_of,
            pc,
            config.pathway.plan_definition,
            source or f"{len(files)} NDJSON files",
            result.problems,
        ),
    )
    if result.failed:
        write_atomic(out_dir / "failed.tsv", "patient\terror\n" + "\n".join(result.failed) + "\n")
    return PopulationRun(
        result.tally, out_dir, time.monotonic() - started, result.problems, result.failed
    )


def summary_text(run: PopulationRun) -> str:
    t = run.tally
    lines = [
        f"patients: {t.get('patients'):,} evaluated in {run.seconds:.1f} s "
        f"({t.get('resources'):,} resources, {t.get('medications'):,} medications)",
        "phases: "
        + ", ".join(
            f"{k[1]} {v:,}" for k, v in sorted(t.counts.items()) if len(k) == 2 and k[0] == "phase"
        ),
    ]
    if t.get("unreadable") or t.get("orphan-resources") or t.get("failed"):
        lines.append(
            f"problems: {t.get('unreadable'):,} unreadable lines, "
            f"{t.get('orphan-resources'):,} resources of patients not in the input, "
            f"{t.get('failed'):,} patients failed (see failed.tsv)"
        )
    lines.append(f"wrote {run.out_dir}/patients.ndjson, measures.json, summary.csv, report.html")
    return "\n".join(lines)


def eprint(*args: object) -> None:
    print(*args, file=sys.stderr)
