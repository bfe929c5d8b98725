"""Spark's Python workers run the build the driver runs. `make test` runs this file on both
builds (it has no `spark` mark, unlike the engine comparison), so a worker that imported the
checkout's sources while the driver runs PYTHONPATH=build/compiled fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

import pathway

pytest.importorskip("pyspark", reason="the optional extra `spark` is not installed")


def test_spark_workers_import_the_drivers_build() -> None:
    from pathway.population.spark import spark_session

    def _build_here(_: object) -> tuple[str, str]:  # a nested function: sent by value
        import pathway as imported  # in the worker

        return imported.build(), str(Path(imported.__file__ or "").resolve().parent)

    spark, local = spark_session(workers=2)
    assert local
    try:
        seen = set(spark.sparkContext.parallelize(range(4), 2).map(_build_here).collect())
    finally:
        spark.stop()
    driver = (pathway.build(), str(Path(pathway.__file__ or "").resolve().parent))
    assert seen == {driver}
