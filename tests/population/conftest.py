from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import synth

from pathway.config import DEFAULT_CONFIG_DIR, DEFAULT_PROFILES_DIR
from pathway.population.local import Paths
from pathway.population.run import PopulationRun, default_paths, population

N_PATIENTS = 360


@pytest.fixture(scope="session")
def paths() -> Paths:
    return default_paths(DEFAULT_CONFIG_DIR, DEFAULT_PROFILES_DIR)


@pytest.fixture(scope="session")
def truths() -> list[synth.Truth]:
    return synth.population(N_PATIENTS, seed=12)


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory, truths: list[synth.Truth]) -> Path:
    folder = tmp_path_factory.mktemp("export")
    synth.write_export(folder, truths, files_per_type=3)
    return folder


@pytest.fixture(scope="session")
def local_run(
    tmp_path_factory: pytest.TempPathFactory, export_dir: Path, paths: Paths
) -> PopulationRun:
    """The generated population through the local engine, two worker processes."""
    out = tmp_path_factory.mktemp("out")
    return population(export_dir, out, synth.AS_OF, paths, workers=2, progress=False)
