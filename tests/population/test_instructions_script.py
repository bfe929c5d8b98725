"""scripts/instructions_population.py measures the engine's own loops: its measured part runs
here without valgrind, on a small export made the benchmark's way, so that the script cannot
drift from pathway.population.buckets unnoticed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # gone after the test
    spec.loader.exec_module(module)
    return module


def test_the_measured_part_evaluates_every_patient_of_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the scripts change sys.path when imported: a copy, restored after the test
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # as when run: its neighbours import
    bench = _script("benchmark_population", monkeypatch)
    instr = _script("instructions_population", monkeypatch)
    lines = bench.make_export(tmp_path / "export", 12, 30)
    assert lines >= 12 * 30
    assert instr.run_once(tmp_path / "export") == 12
