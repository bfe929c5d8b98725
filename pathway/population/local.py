"""The local engine: group a Bulk Data export by patient on disk, evaluate, merge.

Never holds the population in memory:
1. *partition*: every line is read once, its patient found, and the line appended to one of K
   bucket files by a stable hash of the patient id (K grows with the input, so a bucket stays
   near `bucket_bytes` whatever the population); Medications go to an SQLite index instead.
   A resource the reader would make nothing of (`FactReader.may_read`: vitals and labs outside
   every value set, Encounters, heart rate and blood pressure older than any rule looks, ...)
   is counted and left behind here: phase 2 never parses it.
2. *evaluate*: one bucket at a time per worker: its lines grouped by patient in memory (one
   bucket's worth), each patient evaluated with `PatientJob` (the $apply code path), the
   Medications its requests reference looked up in the index; the bucket's lines are written
   sorted by patient id, and its tally returned.
3. *merge*: the sorted bucket outputs are merged (a k-way merge, streaming) into
   patients.ndjson, and the tallies added up.
Workers (`--workers N`) are processes: phase 1 splits the files among them, phase 2 the buckets.
The loops over lines and patients are in pathway.population.buckets (compiled); this module
runs them.
"""

from __future__ import annotations

import heapq
import math
import multiprocessing
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from pathway.config import load_config
from pathway.fhir.facts import FactReader
from pathway.population.buckets import (
    MAX_PROBLEMS,
    SEP,
    evaluate_groups,
    group_bucket,
    partition_file,
)
from pathway.population.firstpass import FirstPass, native_members
from pathway.population.measures import Tally, load_population_config
from pathway.population.patient import PatientJob

BUCKET_BYTES = 48 * 1024 * 1024  # raw NDJSON held in memory per worker in phase 2
GZIP_RATIO = 8  # an export's .ndjson.gz is about this much smaller than its lines


@dataclass(frozen=True, slots=True)
class Paths:
    config_dir: Path
    profiles_dir: Path
    population_file: Path


@dataclass(slots=True)
class LocalResult:
    tally: Tally
    patients_file: Path
    problems: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def bucket_count(files: list[Path], workers: int, bucket_bytes: int = BUCKET_BYTES) -> int:
    size = sum(p.stat().st_size * (GZIP_RATIO if p.name.endswith(".gz") else 1) for p in files)
    return max(2 * workers, math.ceil(size / bucket_bytes), 1)


# ---------------------------------------------------------------- phase 1: partition


def build_medication_index(spills: list[Path], db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS med (key TEXT PRIMARY KEY, line BLOB NOT NULL)")
        for spill in spills:
            with spill.open("rb") as f:
                rows = (raw.rstrip(b"\n").split(SEP, 1) for raw in f)
                con.executemany(
                    "INSERT OR REPLACE INTO med VALUES (?, ?)",
                    ((k.decode(), v) for k, v in rows),
                )
            spill.unlink()
        con.commit()
    finally:
        con.close()


# ---------------------------------------------------------------- phase 2: evaluate

_job: PatientJob | None = None
_resolve: Callable[[str], bytes | None] | None = None


def _init_worker(paths: Paths, as_of: datetime, med_db: Path | None) -> None:
    global _job, _resolve
    config = load_config(paths.config_dir, paths.profiles_dir)
    _job = PatientJob(config, load_population_config(paths.population_file), as_of)
    _resolve = _medication_resolver(med_db)


def _medication_resolver(med_db: Path | None) -> Callable[[str], bytes | None]:
    if med_db is None or not med_db.exists():
        return lambda _key: None
    con = sqlite3.connect(f"file:{med_db}?mode=ro", uri=True, check_same_thread=False)

    @lru_cache(maxsize=4096)  # a formulary's worth; bounded
    def resolve(key: str) -> bytes | None:
        row = con.execute("SELECT line FROM med WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    return resolve


def evaluate_bucket(
    k: int, parts: list[Path], out: Path, write_back: Path | None = None
) -> tuple[list[list[Any]], list[str]]:
    """Phase 2 for one bucket, in a worker. Writes `out` (patient id SEP line, sorted)."""
    assert _job is not None, "worker not initialised"
    assert _resolve is not None
    tally = Tally()
    failed: list[str] = []
    groups, skipped = group_bucket(parts)
    with out.open("wb") as f:
        for result in evaluate_groups(_job, groups, _resolve, tally, failed, skipped):
            f.write(result.patient.encode() + SEP + result.line + b"\n")
    for part in parts:
        part.unlink()
    return tally.to_json(), failed


# ---------------------------------------------------------------- the run


def merge_sorted(outputs: list[Path], dest: Path) -> int:
    """k-way merge of the sorted bucket outputs into dest (atomically); returns lines written."""

    def read(p: Path) -> Iterator[tuple[bytes, bytes]]:
        with p.open("rb") as f:
            for raw in f:
                pid, line = raw.split(SEP, 1)
                yield pid, line

    tmp = dest.with_name(f".{dest.name}.tmp")
    n = 0
    with tmp.open("wb") as f:
        for _pid, line in heapq.merge(*(read(p) for p in outputs), key=lambda t: t[0].decode()):
            f.write(line)
            n += 1
    os.replace(tmp, dest)
    return n


def _executor(workers: int, paths: Paths, as_of: datetime, med_db: Path | None) -> Executor:
    # fork shares the parent's imports (fast start); 3.12+ warns about fork with threads.
    method = "fork" if sys.version_info < (3, 12) else "forkserver"
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(method),
        initializer=_init_worker,
        initargs=(paths, as_of, med_db),
    )


class _Inline(Executor):
    """`--workers 1`: the same functions, in this process."""

    def __init__(self, paths: Paths, as_of: datetime, med_db: Path | None) -> None:
        _init_worker(paths, as_of, med_db)

    def map(self, fn: Callable[..., Any], *iterables: Any, **_: Any) -> Iterator[Any]:
        return map(fn, *iterables)


def run_local(
    files: list[Path],
    out_dir: Path,
    as_of: datetime,
    paths: Paths,
    workers: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
    bucket_bytes: int = BUCKET_BYTES,
) -> LocalResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=out_dir))
    try:
        return _run(files, out_dir, work, as_of, paths, workers, progress, bucket_bytes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(
    files: list[Path],
    out_dir: Path,
    work: Path,
    as_of: datetime,
    paths: Paths,
    workers: int,
    progress: Callable[[str, int, int], None] | None,
    bucket_bytes: int,
) -> LocalResult:
    buckets = bucket_count(files, workers, bucket_bytes)
    tally = Tally()
    problems: list[str] = []
    tick = progress or (lambda _stage, _done, _total: None)

    # Phase 1 (no evaluator needed: a plain pool, or this process)
    spills: list[Path] = []
    tasks = [(f, work, buckets, i, paths, as_of) for i, f in enumerate(files)]
    pool1: Executor | None = (
        ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(
                "fork" if sys.version_info < (3, 12) else "forkserver"
            ),
        )
        if workers > 1 and len(files) > 1
        else None
    )
    try:
        results = (
            pool1.map(_partition_task, tasks) if pool1 else (_partition_task(t) for t in tasks)
        )
        for done, (rows, probs, spill) in enumerate(results, 1):
            tally.merge(Tally.from_json(rows))
            problems.extend(probs)
            if spill is not None:
                spills.append(spill)
            tick("reading", done, len(tasks))
    finally:
        if pool1 is not None:
            pool1.shutdown()
    med_db: Path | None = None
    if spills:
        med_db = work / "medications.sqlite3"
        build_medication_index(spills, med_db)

    # Phase 2
    parts: dict[int, list[Path]] = {}
    for p in work.glob("b*.t*"):
        parts.setdefault(int(p.name[1 : p.name.index(".")]), []).append(p)
    jobs = sorted(parts)
    outputs = [work / f"out{k}" for k in jobs]
    failed: list[str] = []
    pool2: Executor = (
        _executor(workers, paths, as_of, med_db)
        if workers > 1 and len(jobs) > 1
        else _Inline(paths, as_of, med_db)
    )
    try:
        for done, (rows, bad) in enumerate(
            pool2.map(
                _evaluate_task, [(k, sorted(parts[k]), outputs[i]) for i, k in enumerate(jobs)]
            ),
            1,
        ):
            tally.merge(Tally.from_json(rows))
            failed.extend(bad)
            tick("evaluating", done, len(jobs))
    finally:
        pool2.shutdown()

    # Phase 3
    patients_file = out_dir / "patients.ndjson"
    merge_sorted(outputs, patients_file)
    return LocalResult(tally, patients_file, problems[:MAX_PROBLEMS], failed)


@lru_cache(maxsize=4)
def _reader(paths: Paths) -> FactReader:
    """A reader with the deployment's value sets (once per process)."""
    return FactReader(load_config(paths.config_dir, paths.profiles_dir))


def first_pass(paths: Paths, as_of: datetime) -> FirstPass:
    """How phase 1 reads a line (both engines): the reader's own `may_read` as of the
    evaluation time (what it refuses is left behind after the first pass: types and codes no
    rule reads, vital signs older than any rule looks), in its two steps, fast where the
    production build's C extension is there (pathway.population.firstpass)."""
    reader = _reader(paths)
    return FirstPass(
        reader.first_pass_filter(as_of), reader.first_pass_class(as_of), native_members()
    )


def _partition_task(
    args: tuple[Path, Path, int, int, Paths, datetime],
) -> tuple[list[list[Any]], list[str], Path | None]:
    path, work, buckets, task, paths, as_of = args
    return partition_file(path, work, buckets, task, first_pass(paths, as_of))


def _evaluate_task(args: tuple[int, list[Path], Path]) -> tuple[list[list[Any]], list[str]]:
    return evaluate_bucket(*args)
