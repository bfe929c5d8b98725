from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

sys.path.insert(0, str(Path(__file__).parent))

from builders import AS_OF, bundle, patient

from pathway import create_app
from pathway.config import LoadedConfig, load_config
from pathway.evaluation import Evaluator
from pathway.rules.model import Decision
from pathway.settings import Settings

DATA = Path(__file__).parent / "data"

# Every property test, whatever its own @settings: no per-example deadline and no "too slow"
# health check. CI runs on a shared 2-core machine where any example can stall for a second;
# hypothesis's 200 ms default then fails a test that is right (DeadlineExceeded / Flaky).
# Speed is the benchmarks' business, not the tests'.
hypothesis_settings.register_profile(
    "pathway", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("pathway")


def pathway_build() -> str:
    """Which build of the service the suite is testing: `make test` runs it against both."""
    import pathway

    kind = "compiled (mypyc)" if pathway.build() == "compiled" else "pure Python"
    return f"{kind}, from {Path(pathway.__file__ or '').parent.parent}"


@pytest.fixture(scope="session")
def config() -> LoadedConfig:
    return load_config()


@pytest.fixture(scope="session")
def evaluator(config: LoadedConfig) -> Evaluator:
    return Evaluator(config)


@pytest.fixture
def decide(evaluator: Evaluator) -> Any:
    """decide(*resources, as_of=AS_OF, with_patient=True) -> Decision."""

    def run(
        *resources: dict[str, Any],
        as_of: datetime = AS_OF,
        with_patient: bool = True,
        patient_resource: dict[str, Any] | None = None,
        drafts: list[dict[str, Any]] | None = None,
    ) -> Decision:
        items = list(resources)
        if with_patient:
            items.insert(0, patient_resource or patient())
        return evaluator.evaluate(bundle(*items), as_of, drafts=drafts).decision

    return run


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_mapping(
        {
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite3'}",
        }
    )


@pytest.fixture
def app(settings: Settings, config: LoadedConfig) -> Flask:
    return create_app({"settings": settings, "config": config, "TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from fuzz_counts import ATTACKS, COUNTS

    terminalreporter.write_line(f"pathway build tested: {pathway_build()}")
    if COUNTS:
        total = sum(v for k, v in COUNTS.items() if "refused" not in k)  # refused: a subset
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(COUNTS.items()))
        terminalreporter.write_line(f"property-based cases tried: {total} ({parts})")
    if ATTACKS:
        terminalreporter.write_line(
            f"security attacks played against pathway serve: {sum(ATTACKS.values())}"
        )
