"""`pathway evaluate` for integration engineers."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pathway.cli import main

SCENARIOS = Path(__file__).parent / "data" / "scenarios"


def test_evaluate_prints_a_readable_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(SCENARIOS / "bup-not-yet-short-6h-cows7.json")]) == 0
    out = capsys.readouterr().out
    assert "Phase: stabilization" in out
    assert "buprenorphine  Not yet" in out
    assert "precipitated withdrawal" in out
    assert "Tasks:" in out and "follow-up-visit" in out
    assert "not an order" in out


def test_evaluate_fhir_format_and_as_of(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = orjson.loads((SCENARIOS / "oud-dx-no-moud.json").read_bytes())
    f = tmp_path / "bundle.json"
    f.write_bytes(orjson.dumps(case["bundle"]))
    assert main(["evaluate", str(f), "--as-of", case["asOf"], "--format", "fhir"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["resourceType"] == "Bundle"
    assert out["entry"][0]["resource"]["category"][1]["coding"][0]["code"] == "assessment"


def test_evaluate_not_applicable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(SCENARIOS / "na-no-oud-evidence.json")]) == 0
    assert "Phase: not-applicable" in capsys.readouterr().out


def test_evaluate_bad_input(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text("{")
    with pytest.raises(SystemExit, match="malformed JSON"):
        main(["evaluate", str(f)])
    with pytest.raises(SystemExit, match="time zone"):
        main(["evaluate", str(SCENARIOS / "na-no-oud-evidence.json"), "--as-of", "2025-01-01"])
