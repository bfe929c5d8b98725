"""`pathway evaluate --explain` (issue 9 §3): which resources became which facts, which were
ignored and why, which were read but cited by no rule, and which rules fired."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import (
    AS_OF,
    ago,
    bundle,
    condition,
    cows,
    day_ago,
    lab,
    med,
    patient,
    quantity,
    uds,
)

from pathway.config import LoadedConfig
from pathway.explain import explain, longest_window_days

ROOT = Path(__file__).parent.parent
BUP_FILM = "1010604"  # buprenorphine-oud
QTC = "8636-3"
UDS_FENTANYL = "59673-4"


def _rows(config: LoadedConfig, *resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    e = explain(config, bundle(patient(), *resources), AS_OF)
    return {r["resource"]: r for r in e.resources}


def ref(r: dict[str, Any]) -> str:
    return f"{r['resourceType']}/{r['id']}"


def test_resources_read_as_facts_and_cited(config: LoadedConfig) -> None:
    oud = condition(recorded=day_ago(100))
    screen = uds(UDS_FENTANYL, "POS", ago(days=2))
    rows = _rows(config, oud, screen)
    assert rows[ref(oud)]["outcome"] == "used"
    assert rows[ref(oud)]["readAs"] == ["condition [oud, oud-moderate-severe] (active)"]
    assert rows[ref(screen)]["readAs"] == ["drug screen fentanyl: positive"]
    assert any("buprenorphine" in c for c in rows[ref(screen)]["citedBy"])


@pytest.mark.parametrize(
    ("resource", "why"),
    [
        (condition(verification="refuted"), "verificationStatus refuted"),
        (condition(code="I10"), "its code is in no value set the pathway uses"),
        (med(BUP_FILM, status="entered-in-error"), "status entered-in-error"),
        (
            {**lab(QTC, ago(days=3)), "status": "entered-in-error"},
            "status entered-in-error",
        ),
        ({"resourceType": "Encounter", "id": "e1"}, "Encounter is not a resource type"),
        (
            {**condition(), "subject": {"reference": "Patient/someone-else"}},
            "about another patient",
        ),
    ],
    ids=["refuted", "unknown-code", "request-eie", "observation-eie", "encounter", "other"],
)
def test_ignored_resources_say_why(
    config: LoadedConfig, resource: dict[str, Any], why: str
) -> None:
    rows = _rows(config, condition(recorded=day_ago(5)), resource)
    row = rows[ref(resource)]
    assert row["outcome"] == "ignored"
    assert why in row["why"]


def test_unreadable_result_is_read_as_unknown_never_negative(config: LoadedConfig) -> None:
    screen = uds(UDS_FENTANYL, "see note", ago(days=2))
    row = _rows(config, condition(recorded=day_ago(5)), screen)[ref(screen)]
    assert row["readAs"] == ["drug screen fentanyl: unknown"]
    assert any("unreadable" in n for n in row["notes"])


def test_out_of_range_cows_is_ignored_with_the_reason(config: LoadedConfig) -> None:
    bad = cows(60, ago(hours=2))
    row = _rows(config, condition(recorded=day_ago(5)), bad)[ref(bad)]
    assert row["outcome"] == "ignored"
    assert "outside 0-48" in row["why"]


def test_data_older_than_every_window_is_said_so(config: LoadedConfig) -> None:
    longest = longest_window_days(config.pathway)
    old = quantity(QTC, 520, day_ago(longest + 30), unit="ms")
    row = _rows(config, condition(recorded=day_ago(5)), old)[ref(old)]
    assert row["outcome"] == "not used"
    assert "older than every window" in row["why"]


def test_superseded_data_is_read_but_not_cited(config: LoadedConfig) -> None:
    older = cows(3, ago(hours=30))
    newer = cows(10, ago(hours=1))
    rows = _rows(config, condition(recorded=day_ago(5)), older, newer)
    assert rows[ref(newer)]["outcome"] == "used"
    assert rows[ref(older)]["outcome"] == "not used"
    assert "no rule that fired cites it" in rows[ref(older)]["why"]


def test_rules_fired_include_phase_options_and_tasks(config: LoadedConfig) -> None:
    e = explain(config, bundle(patient(), condition(recorded=day_ago(5))), AS_OF)
    ids = [r["id"] for r in e.rules]
    assert "evidence.oud-condition" in ids
    assert "phase.3d.assessment" in ids
    assert "naloxone.recommended" in ids
    assert "task.prescribe-naloxone" in ids
    assert all(r["effect"] and r["title"] for r in e.rules)


def test_cli_explain_text_and_json(tmp_path: Path) -> None:
    case = ROOT / "tests" / "data" / "scenarios" / "qtc-520-exactly-12-calendar-months.json"
    text = subprocess.run(
        [sys.executable, "-m", "pathway.cli", "evaluate", "--explain", str(case)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert "Observation/q (2023-11-20 16:45 UTC): used" in text
    assert "cited by methadone contraindicated" in text
    assert "methadone.contraindicated.qtc" in text
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pathway.cli",
            "evaluate",
            "--explain",
            "--format",
            "json",
            str(case),
        ],
        capture_output=True,
        check=True,
        cwd=ROOT,
    ).stdout
    doc = orjson.loads(out)
    assert doc["phase"] == "assessment"
    assert {r["resource"] for r in doc["resources"]} == {
        "Patient/p1",
        "Condition/c-F11.20",
        "Observation/q",
    }
    assert "methadone.contraindicated.qtc" in [r["id"] for r in doc["rulesFired"]]


def test_cli_evaluate_prints_rule_ids_beside_reasons() -> None:
    case = ROOT / "tests" / "data" / "scenarios" / "methadone-fentanyl-positive-bup-caution.json"
    text = subprocess.run(
        [sys.executable, "-m", "pathway.cli", "evaluate", str(case)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert "[bup.caution.on-methadone]" in text
    assert "[bup.not-yet" not in text
    doc = orjson.loads(
        subprocess.run(
            [sys.executable, "-m", "pathway.cli", "evaluate", "--format", "json", str(case)],
            capture_output=True,
            check=True,
            cwd=ROOT,
        ).stdout
    )
    bup = next(m for m in doc["medications"] if m["medication"] == "buprenorphine")
    assert bup["status"] == "caution"
    assert bup["rules"][0] == "bup.caution.on-methadone"
    assert len(bup["rules"]) == len(bup["reasons"])
