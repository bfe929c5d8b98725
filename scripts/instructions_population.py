"""Instructions per patient of `pathway population`'s local engine, for comparing code changes
on a machine whose speed varies (wall time on a shared VM swings by a third between runs;
instruction counts do not).

    make compiled
    python scripts/instructions_population.py [--patients 300] [--resources 100]

Runs the local engine's loops (phase 1 `partition_file`, phase 2 `group_bucket` and
`evaluate_groups`, one worker, in this process) under valgrind's callgrind twice, on N and 2N
generated patients (the benchmark's export: scripts/benchmark_population.py), and prints
(instructions of 2N - instructions of N) / N: the cost of one more patient, without the start,
the imports and the config. Needs valgrind (Debian package `valgrind`). The per-function split
is left in the callgrind files it names (`callgrind_annotate --inclusive=yes FILE`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AS_OF = datetime(2025, 6, 15, 12, tzinfo=UTC)


def run_once(export: Path) -> int:
    """The measured part, in the child valgrind runs: the engine's loops over one export."""
    from pathway.population import local
    from pathway.population.buckets import evaluate_groups, group_bucket, partition_file
    from pathway.population.measures import Tally
    from pathway.population.ndjson import input_files
    from pathway.population.run import default_paths

    paths = default_paths(ROOT / "config", ROOT / "fhir_profiles")
    work = Path(tempfile.mkdtemp(prefix="instr-"))
    try:
        keep = local.first_pass(paths, AS_OF)
        spills = []
        for i, f in enumerate(input_files(export)):
            _rows, _problems, spill = partition_file(f, work, 1, i, keep)
            if spill is not None:
                spills.append(spill)
        med = work / "medications.sqlite3"
        local.build_medication_index(spills, med)
        local._init_worker(paths, AS_OF, med)
        assert local._job is not None
        assert local._resolve is not None
        groups, skipped = group_bucket(sorted(work.glob("b0.t*")))
        results = evaluate_groups(local._job, groups, local._resolve, Tally(), [], skipped)
        return sum(1 for _ in results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(export: Path, out: Path) -> int:
    """Total instructions of one child run under callgrind."""
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-P",
            __file__,
            "--child",
            str(export),
        ],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    raise SystemExit(f"{out}: no totals")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--resources", type=int, default=100)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(run_once(args.child))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchmark_population import build_name, make_export

    n = args.patients
    tmp = Path(tempfile.mkdtemp(prefix="instr-"))
    try:
        totals = []
        for size in (n, 2 * n):
            make_export(tmp / f"export-{size}", size, args.resources)
            out = Path(tempfile.gettempdir()) / f"callgrind.population.{size}"
            totals.append(measure(tmp / f"export-{size}", out))
            print(f"{size} patients: {totals[-1]:,} instructions ({out})")
        per = (totals[1] - totals[0]) / n
        print(f"{build_name()} build: {per / 1e6:.2f} M instructions per patient")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
