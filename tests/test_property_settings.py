"""The suite's hypothesis profile (tests/conftest.py) is in force for every property test."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def test_no_deadline_and_no_too_slow_check_by_default() -> None:
    default = settings.default
    assert default is not None
    assert default.deadline is None
    assert HealthCheck.too_slow in default.suppress_health_check
    # a test's own @settings start from the profile: they keep its deadline
    assert settings(max_examples=3).deadline is None
