"""The Spark engine (local mode) against the local engine: the same bytes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import synth

from pathway.population.local import Paths
from pathway.population.run import PopulationRun, population

pytest.importorskip("pyspark", reason="the optional extra `spark` is not installed")
pytestmark = pytest.mark.spark


def test_spark_and_local_engines_write_identical_patients(
    tmp_path: Path, export_dir: Path, paths: Paths, local_run: PopulationRun
):
    started = time.monotonic()
    run = population(
        export_dir,
        tmp_path / "spark",
        synth.AS_OF,
        paths,
        engine="spark",
        workers=2,
        progress=False,
    )
    print(
        f"\nspark engine, {run.tally.get('patients')} patients: {time.monotonic() - started:.1f} s"
    )
    ours = (run.out_dir / "patients.ndjson").read_bytes()
    assert ours == (local_run.out_dir / "patients.ndjson").read_bytes()
    assert run.tally.counts == local_run.tally.counts
    for name in ("measures.json", "summary.csv"):
        assert (run.out_dir / name).read_bytes() == (local_run.out_dir / name).read_bytes()
