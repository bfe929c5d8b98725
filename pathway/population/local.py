"""The local engine: group a Bulk Data export by patient on disk, evaluate, merge.

Never holds the population in memory:
1. *partition*: every line is read once, its patient found, and the line appended to one of K
   bucket files by a stable hash of the patient id (K grows with the input, so a bucket stays
   near `bucket_bytes` whatever the population); Medications go to an SQLite index instead.
2. *evaluate*: one bucket at a time per worker: its lines grouped by patient in memory (one
   bucket's worth), each patient evaluated with `PatientJob` (the $apply code path), the
   Medications its requests reference looked up in the index; the bucket's lines are written
   sorted by patient id, and its tally returned.
3. *merge*: the sorted bucket outputs are merged (a k-way merge, streaming) into
   patients.ndjson, and the tallies added up.
Workers (`--workers N`) are processes: phase 1 splits the files among them, phase 2 the buckets.
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
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import orjson

from pathway.config import load_config
from pathway.population.measures import Tally, load_population_config
from pathway.population.ndjson import lines, medication_key, patient_key
from pathway.population.patient import PatientJob, PatientResult

BUCKET_BYTES = 48 * 1024 * 1024  # raw NDJSON held in memory per worker in phase 2
GZIP_RATIO = 8  # an export's .ndjson.gz is about this much smaller than its lines
MAX_PROBLEMS = 20  # unreadable lines listed by file and line number (never their content)
SEP = b"\t"  # patient id (a FHIR id: no tabs) SEP line


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


def bucket_of(patient: str, buckets: int) -> int:
    return zlib.crc32(patient.encode()) % buckets


# ---------------------------------------------------------------- phase 1: partition


def partition_file(
    path: Path, work: Path, buckets: int, task: int
) -> tuple[list[list[Any]], list[str], Path | None]:
    """One input file -> bucket files `b{k}.t{task}` and a Medication spill `m.t{task}`.
    Returns the tally of what was seen (as JSON rows), problems, and the spill file."""
    tally = Tally()
    problems: list[str] = []
    handles: dict[int, IO[bytes]] = {}
    meds: IO[bytes] | None = None
    med_path = work / f"m.t{task}"
    n_lines = n_resources = n_meds = n_bad = 0  # plain ints in the loop; into the tally once
    try:
        for n, line in lines(path):
            n_lines += 1
            try:
                res = orjson.loads(line)
            except orjson.JSONDecodeError:
                n_bad += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(f"{path.name}:{n}: not a JSON resource")
                continue
            if type(res) is not dict or type(res.get("resourceType")) is not str:
                n_bad += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(f"{path.name}:{n}: no resourceType")
                continue
            rtype = res["resourceType"]
            if rtype == "Medication":
                key = medication_key(res)
                if key is None:
                    tally.note("no-patient", rtype)
                    continue
                if meds is None:
                    meds = med_path.open("wb")
                meds.write(key.encode() + SEP + line + b"\n")
                n_meds += 1
                continue
            pid = patient_key(res)
            if pid is None:
                tally.note("no-patient", rtype)
                continue
            k = bucket_of(pid, buckets)
            out = handles.get(k)
            if out is None:
                out = handles[k] = (work / f"b{k}.t{task}").open("wb", buffering=256 * 1024)
            out.write(pid.encode() + SEP + line + b"\n")
            n_resources += 1
    except (OSError, EOFError, zlib.error) as e:
        problems.append(f"{path.name}: could not be read to the end ({type(e).__name__})")
        tally.note("unreadable-files")
    finally:
        for h in handles.values():
            h.close()
        if meds is not None:
            meds.close()
    for key, count in (
        ("lines", n_lines),
        ("resources", n_resources),
        ("medications", n_meds),
        ("unreadable", n_bad),
    ):
        if count:
            tally.note(key, n=count)
    return tally.to_json(), problems, med_path if meds is not None else None


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


def group_bucket(parts: list[Path]) -> dict[str, list[bytes]]:
    groups: dict[str, list[bytes]] = {}
    for part in parts:
        with part.open("rb") as f:
            for raw in f:
                pid, line = raw.rstrip(b"\n").split(SEP, 1)
                groups.setdefault(pid.decode(), []).append(line)
    return groups


def evaluate_groups(
    job: PatientJob,
    groups: dict[str, list[bytes]],
    resolve: Callable[[str], bytes | None],
    tally: Tally,
    failed: list[str],
) -> Iterator[PatientResult]:
    """Each group that holds its Patient, in patient-id order."""
    for pid in sorted(groups):
        group = groups[pid]
        if not any(b'"Patient"' in line for line in group) or not _has_patient(group, pid):
            tally.note("orphan-patients")
            tally.note("orphan-resources", n=len(group))
            continue
        try:
            result = job.run(pid, group, resolve)
        except Exception as e:  # one patient's bad data must not stop a population run
            tally.note("failed")
            failed.append(f"{pid}\t{type(e).__name__}")
            continue
        tally.add(result.measures, job.pc)
        yield result


def _has_patient(group: list[bytes], pid: str) -> bool:
    for line in group:
        if b'"Patient"' in line:
            res = orjson.loads(line)
            if res.get("resourceType") == "Patient" and res.get("id") == pid:
                return True
    return False


def evaluate_bucket(
    k: int, parts: list[Path], out: Path, write_back: Path | None = None
) -> tuple[list[list[Any]], list[str]]:
    """Phase 2 for one bucket, in a worker. Writes `out` (patient id SEP line, sorted)."""
    assert _job is not None, "worker not initialised"
    assert _resolve is not None
    tally = Tally()
    failed: list[str] = []
    groups = group_bucket(parts)
    with out.open("wb") as f:
        for result in evaluate_groups(_job, groups, _resolve, tally, failed):
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
    tasks = [(f, work, buckets, i) for i, f in enumerate(files)]
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


def _partition_task(
    args: tuple[Path, Path, int, int],
) -> tuple[list[list[Any]], list[str], Path | None]:
    return partition_file(*args)


def _evaluate_task(args: tuple[int, list[Path], Path]) -> tuple[list[list[Any]], list[str]]:
    return evaluate_bucket(*args)
