"""Benchmark: `pathway population` on generated Bulk Data exports of 100-resource patients.

    python scripts/benchmark_population.py [--patients 100000] [--small 20000] [--workers 2]
                                           [--spark-patients 20000] [--skip-spark]

Prints, for the local engine, patients per second per core (one worker: one core; evaluation,
grouping, the medication join and the output files all included) and with N workers, and the
peak memory (largest process's maximum resident set) for two population sizes: the design
keeps it bounded by a bucket, not by the population. Then the Spark engine in local mode.
Figures are printed, never asserted (this 2-core machine is shared). `make bench-population`
runs it on the compiled build (PYTHONPATH=build/compiled), which production runs.

The export is made from a few hundred generated patients (tests/population/synth.py: clinical
situations, Medication references across files, some files gzipped), copied under new patient
ids up to the size asked for, so that making 10 million lines takes seconds, not the run.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # last: PYTHONPATH=build/compiled (make bench-population) wins
sys.path.insert(0, str(ROOT / "tests" / "population"))
import probe  # noqa: E402  (scripts/, first on sys.path when run as a script)
import synth  # noqa: E402

TEMPLATES = 400
FILES_PER_TYPE = 4


def make_export(folder: Path, patients: int, resources: int) -> int:
    """Write `patients` patients of about `resources` resources each; returns lines written."""
    folder.mkdir(parents=True, exist_ok=True)
    truths = synth.population(TEMPLATES, seed=7, extra_observations=resources)
    # per template: its lines by type, with its patient id to substitute
    per_template: list[tuple[bytes, dict[str, list[bytes]]]] = []
    for t in truths:
        lines: dict[str, list[bytes]] = {}
        for r in t.resources:
            lines.setdefault(r["resourceType"], []).append(orjson.dumps(r))
        per_template.append((t.pid.encode(), lines))
    total = 0
    types = sorted({ty for _, lines in per_template for ty in lines})
    with contextlib.ExitStack() as stack:
        writers: dict[tuple[str, int], IO[bytes]] = {}
        for ty in types:
            for k in range(FILES_PER_TYPE):
                name = folder / f"{ty}.{k:03d}.ndjson{'.gz' if k % 2 else ''}"
                opened = gzip.open(name, "wb", 1) if k % 2 else name.open("wb")  # noqa: SIM115
                writers[(ty, k)] = stack.enter_context(opened)  # type: ignore[arg-type]
        for i in range(patients):
            pid, lines = per_template[i % TEMPLATES]
            new = f"bp{i:07d}".encode()
            for ty, rows in lines.items():
                out = writers[(ty, i % FILES_PER_TYPE)]
                for row in rows:
                    out.write(row.replace(pid, new) + b"\n")
                    total += 1
    with (folder / "Medication.ndjson").open("wb") as f:
        for m in synth.medication_resources():
            f.write(orjson.dumps(m) + b"\n")
    return total


def run(export: Path, out: Path, engine: str, workers: int) -> tuple[float, float, float, str]:
    """One `pathway population` in a fresh process: (seconds, CPU seconds of every process
    of it, peak MiB of the largest process, the summary line). CPU seconds make the per-core
    figure fair on a shared machine: wall time there includes other people's work."""
    code = (
        "import resource, sys, pathway; from pathway.cli import main; "
        "print(f'build {pathway.build()}', file=sys.stderr); "
        "rc = main(['population','--ndjson',sys.argv[1],'--out',sys.argv[2],"
        "'--as-of','2025-06-15T12:00:00Z','--engine',sys.argv[3],'--workers',sys.argv[4]]); "
        "me, kids = (resource.getrusage(w) for w in "
        "(resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)); "
        # Not ru_maxrss for this process: Linux carries the parent's peak across fork and exec,
        # so it would report this benchmark's own memory. VmHWM is this image's own peak.
        "hwm = [int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:')]; "
        "print(f'peak-kib {max(hwm[0] if hwm else me.ru_maxrss, kids.ru_maxrss)}'); "
        "print(f'cpu-seconds {me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime}'); "
        "sys.exit(rc)"
    )
    started = time.perf_counter()
    # -P: no current directory first on sys.path (with -c it would be, and the checkout's
    # sources would shadow PYTHONPATH=build/compiled: the compiled build would not be measured)
    proc = subprocess.run(
        [sys.executable, "-P", "-c", code, str(export), str(out), engine, str(workers)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ.copy(),
    )
    total = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"the {engine} run failed (exit {proc.returncode})")
    out_lines = proc.stdout.splitlines()
    # the largest single process of this run (the driver or a worker; for Spark the Python
    # side only, the JVM is a child too and counted among the children)
    peak = int(next(x for x in out_lines if x.startswith("peak-kib")).split()[1]) / 1024
    # "patients: N evaluated in S s": the run itself (reading, grouping, joining, evaluating,
    # writing the four files), without the process start and imports (a few seconds, once)
    cpu = float(next(x for x in out_lines if x.startswith("cpu-seconds")).split()[1])
    ran = next((x.split()[1] for x in proc.stderr.splitlines() if x.startswith("build ")), "?")
    if ran != build_name():
        raise SystemExit(f"the {engine} run imported the {ran} build, not the {build_name()} one")
    said = out_lines[0]
    seconds = float(said.split(" evaluated in ")[1].split(" s")[0])
    return seconds, cpu, peak, f"{said} [{total:.1f} s with the process start]"


def build_name() -> str:
    import pathway

    return pathway.build()


def build() -> str:
    if build_name() == "compiled":
        return "compiled with mypyc (production)"
    return "pure Python (`make bench-population` measures the compiled build)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--resources", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--spark-patients", type=int, default=20_000)
    parser.add_argument("--skip-spark", action="store_true")
    args = parser.parse_args()
    print(f"pathway build: {build()}; {os.cpu_count()} cores")
    print(probe.describe())
    tmp = Path(tempfile.mkdtemp(prefix="pathway-bench-"))
    try:
        rows = []
        for n in sorted({args.small, args.patients}):
            export = tmp / f"export-{n}"
            t0 = time.perf_counter()
            lines = make_export(export, n, args.resources)
            size = sum(p.stat().st_size for p in export.iterdir()) / 2**20
            print(
                f"export of {n:,} patients: {lines:,} lines, {size:,.0f} MiB on disk "
                f"(made in {time.perf_counter() - t0:.0f} s)"
            )
            # fresh processes: each peak is its own. One worker on the smaller size (one
            # core's figure), `--workers` on the larger (the whole machine)
            w = 1 if n == args.small and args.small != args.patients else args.workers
            secs, cpu, peak, said = run(export, tmp / f"out-{n}-1", "local", w)
            rows.append(("local", n, w, secs, cpu, peak))
            print(f"  local, {w} worker(s): {said}")
            shutil.rmtree(tmp / f"out-{n}-1", ignore_errors=True)
            if n != args.spark_patients or args.skip_spark:
                shutil.rmtree(export, ignore_errors=True)
        if not args.skip_spark:
            n = args.spark_patients
            export = tmp / f"export-{n}"
            if not export.exists():
                make_export(export, n, args.resources)
            secs, cpu, peak, said = run(export, tmp / "out-spark", "spark", args.workers)
            rows.append(("spark", n, args.workers, secs, cpu, peak))
            print(f"  spark local[{args.workers}]: {said}")
        print()
        print(
            f"{'engine':<7} {'patients':>9} {'workers':>7} {'seconds':>8} {'patients/s':>11} "
            f"{'/s/core':>8} {'CPU s':>8} {'/CPU-s':>7} {'peak MiB':>9}"
        )
        for engine, n, w, secs, cpu, peak in rows:
            # Spark's Python workers are children of the JVM, not of ours: their CPU time is
            # not in the figure, so no per-CPU-second rate is printed for Spark.
            cpu_cols = (
                f"{cpu:>8.1f} {n / cpu:>7,.0f}" if engine != "spark" else f"{'-':>8} {'-':>7}"
            )
            print(
                f"{engine:<7} {n:>9,} {w:>7} {secs:>8.1f} {n / secs:>11,.0f} "
                f"{n / secs / w:>8,.0f} {cpu_cols} {peak:>9,.0f}"
            )
        print(
            "\n/s/core: patients per wall second per worker; /CPU-s: patients per CPU second "
            "of all the run's processes (what one core does when it is not shared); not for "
            "Spark (its Python workers run under the JVM, which is not a child of ours to "
            "measure reliably); peak: the largest single process (for Spark, the driver's "
            "Python side)"
        )
        print(
            "\ntarget: >= 1,200 patients/s/core (local engine, 100-resource patients); "
            "peak memory bounded (the same for both sizes)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
