"""The Spark engine: the same evaluation, beyond one machine (optional extra `spark`).

    pip install ".[spark]"
    pathway population --ndjson DIR --out DIR --engine spark [--workers N]   # local[N]
    spark-submit --master yarn … pathway/population/spark.py --ndjson … --out …  # a cluster

The plan: read every NDJSON line (Spark reads .gz itself); key each by its patient (the same
`patient_key` as the local engine), Medications by `Medication/<id>` and each MedicationRequest's
reference by the Medication it names; join the Medications to the patients whose requests
reference them; then a shuffle by patient (`groupByKey`) and, inside `mapPartitions`, the
unchanged rules: `PatientJob.run`, the same call the local engine makes. Lines come back sorted by
patient id (as the local engine writes them); the tallies are added up on the driver.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from pathway.population.firstpass import FirstPass, UnreadableLine
from pathway.population.local import (
    LocalResult,
    Paths,
    _init_worker,
    evaluate_groups,
    first_pass,
)
from pathway.population.measures import Tally
from pathway.population.ndjson import referenced_medication

_PAYLOAD = "P"  # (pid, line)
_MEDICATION = "M"  # (medication key, line)
_REFERENCE = "R"  # (medication key, pid)
_TALLY = "T"  # (tally rows, None)


def key_lines(
    lines: Iterable[str], first: FirstPass | None = None
) -> Iterator[tuple[str, str, Any]]:
    """Phase 1 of the plan, per partition: each line -> what it is and its key, as the local
    engine's first pass reads it (`first`, fast where the C extension is built; without one,
    every line is parsed whole and carried). A resource the reader would make nothing of
    travels as an empty line: counted, never shuffled whole or parsed again."""
    read = (first if first is not None else FirstPass(None, None, None)).read
    tally = Tally()
    n_lines = n_bad = n_resources = n_meds = n_unread = 0  # plain ints in the loop
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        n_lines += 1
        try:
            data = line.encode()
            rtype, key, keep = read(data)
        except (UnicodeEncodeError, UnreadableLine):
            n_bad += 1
            continue
        if key is None:
            tally.note("no-patient", rtype)
            continue
        if rtype == "Medication":
            n_meds += 1
            yield _MEDICATION, key, line
            continue
        n_resources += 1
        if not keep:
            n_unread += 1
            yield _PAYLOAD, key, ""
            continue
        yield _PAYLOAD, key, line
        ref = referenced_medication(orjson.loads(data))
        if ref is not None:
            yield _REFERENCE, ref, key
    for name, n in (
        ("lines", n_lines),
        ("unreadable", n_bad),
        ("resources", n_resources),
        ("medications", n_meds),
        ("not-read", n_unread),
    ):
        if n:
            tally.note(name, n=n)
    yield _TALLY, "", tally.to_json()


_worker_key: tuple[Paths, datetime] | None = None


def evaluate_partition(
    paths: Paths, as_of: datetime
) -> Callable[[Iterable[tuple[str, Iterable[str]]]], Iterator[tuple[str, Any]]]:
    def run(groups: Iterable[tuple[str, Iterable[str]]]) -> Iterator[tuple[str, Any]]:
        global _worker_key
        from pathway.population import local

        if _worker_key != (paths, as_of):  # once per Python worker (Spark reuses them)
            _init_worker(paths, as_of, None)
            _worker_key = (paths, as_of)
        assert local._job is not None
        tally = Tally()
        failed: list[str] = []
        batch = {pid: [line.encode() for line in lines] for pid, lines in groups}
        for result in evaluate_groups(local._job, batch, lambda _k: None, tally, failed):
            yield result.patient, result.line.decode()
        yield "\uffff", orjson.dumps([tally.to_json(), failed]).decode()  # sorts last

    return run


def run_spark(
    files: list[Path],
    out_dir: Path,
    as_of: datetime,
    paths: Paths,
    workers: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
    master: str | None = None,
) -> LocalResult:
    spark, local = spark_session(workers, master)  # says so when PySpark is missing
    from pyspark import StorageLevel

    try:
        return _plan(spark, files, out_dir, as_of, paths, workers, progress, StorageLevel)
    finally:
        if local:
            spark.stop()


def spark_session(workers: int = 1, master: str | None = None) -> tuple[Any, bool]:
    """The engine's SparkSession, and whether it runs in local mode (then the caller stops it)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise ImportError("the spark engine needs PySpark: pip install '.[spark]'") from e

    # Local mode runs the workers on this interpreter (and this PYTHONPATH: the compiled build
    # when that is what runs here).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    local = master is None and not os.environ.get("SPARK_MASTER_SET_BY_SUBMIT")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # local mode stays on loopback
        # Spark starts its Python workers with `-m pyspark.daemon`, which puts their working
        # directory (the driver's) first on sys.path: run from a checkout, they imported its
        # sources, not PYTHONPATH=build/compiled. With safe paths they import what the driver
        # does (tests/population/test_spark_build.py).
        os.environ.setdefault("PYTHONSAFEPATH", "1")
    builder = (
        SparkSession.builder.appName("oud-pathway-population")
        .config("spark.log.level", "ERROR")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", os.environ.get("PATHWAY_SPARK_DRIVER_MEMORY", "2g"))
        .config("spark.python.worker.reuse", "true")
    )
    if local:
        builder = (
            builder.master(f"local[{workers}]")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
        )
    elif master:
        builder = builder.master(master)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark, local


def _plan(
    spark: Any,
    files: list[Path],
    out_dir: Path,
    as_of: datetime,
    paths: Paths,
    workers: int,
    progress: Callable[[str, int, int], None] | None,
    storage: Any,
) -> LocalResult:
    sc = spark.sparkContext
    tick = progress or (lambda _s, _d, _t: None)
    partitions = max(2 * workers, sc.defaultParallelism)
    lines = sc.textFile(",".join(str(f) for f in files), minPartitions=partitions)
    keyed = lines.mapPartitions(lambda part: key_lines(part, first_pass(paths, as_of))).persist(
        storage.MEMORY_AND_DISK
    )
    tally = Tally()
    for rows in keyed.filter(lambda t: t[0] == _TALLY).map(lambda t: t[2]).collect():
        tally.merge(Tally.from_json(rows))
    tick("reading", 1, 2)
    payload = keyed.filter(lambda t: t[0] == _PAYLOAD).map(lambda t: (t[1], t[2]))
    meds = keyed.filter(lambda t: t[0] == _MEDICATION).map(lambda t: (t[1], t[2]))
    refs = keyed.filter(lambda t: t[0] == _REFERENCE).map(lambda t: (t[1], t[2])).distinct()
    # The Medications each patient's requests reference, joined to that patient.
    joined = refs.join(meds).map(lambda kv: (kv[1][0], kv[1][1]))
    grouped = payload.union(joined).groupByKey(numPartitions=partitions)  # the shuffle
    results = grouped.mapPartitions(evaluate_partition(paths, as_of)).persist(
        storage.MEMORY_AND_DISK
    )
    failed: list[str] = []
    for _, blob in results.filter(lambda kv: kv[0] == "\uffff").collect():
        part_tally, part_failed = orjson.loads(blob)
        tally.merge(Tally.from_json(part_tally))
        failed.extend(part_failed)
    tick("evaluating", 2, 2)
    patients_file = out_dir / "patients.ndjson"
    tmp = patients_file.with_name(f".{patients_file.name}.tmp")
    ordered = results.filter(lambda kv: kv[0] != "\uffff").sortByKey(numPartitions=partitions)
    with tmp.open("wb") as f:
        for _pid, line in ordered.toLocalIterator():  # one partition at a time on the driver
            f.write(line.encode() + b"\n")
    os.replace(tmp, patients_file)
    keyed.unpersist()
    results.unpersist()
    return LocalResult(tally, patients_file, [], failed)


def main(argv: list[str] | None = None) -> int:
    """Entry point for `spark-submit pathway/population/spark.py --ndjson DIR --out DIR …`
    (the cluster's master and resources come from spark-submit)."""
    os.environ["SPARK_MASTER_SET_BY_SUBMIT"] = "1"
    from pathway.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["population", *args, "--engine", "spark"])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
