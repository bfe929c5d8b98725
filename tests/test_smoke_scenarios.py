"""Every worked scenario (tests/data/scenarios) through the pure evaluation."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import pytest

from pathway.evaluation import Evaluator

SCENARIOS = sorted((Path(__file__).parent / "data" / "scenarios").glob("*.json"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_decision(path: Path, evaluator: Evaluator) -> None:
    case = orjson.loads(path.read_bytes())
    as_of = datetime.fromisoformat(case["asOf"].replace("Z", "+00:00"))
    d = evaluator.evaluate(case["bundle"], as_of).decision
    expect = case["expect"]
    assert d.phase == expect["phase"]
    if "returnToUse" in expect:
        assert d.return_to_use is expect["returnToUse"]
    if "suspectedOud" in expect:
        assert d.suspected_oud is expect["suspectedOud"]
    for name, status in expect.get("medications", {}).items():
        option = d.medication(name)
        assert option is not None and option.status == status, (name, option)
    for code in expect.get("tasksInclude", []):
        assert code in d.task_codes
    for code in expect.get("tasksExclude", []):
        assert code not in d.task_codes
