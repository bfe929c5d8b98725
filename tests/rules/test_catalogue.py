"""The rule catalogue (issue 9 §3): every rule a named unit with a stable id, its section, its
source and the config keys it reads; every reason in every output carries a rule id from it;
docs/RULES.md is generated from it."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from pathway import rulebook
from pathway.evaluation import Evaluator
from pathway.rules import catalogue, findings, phase, safety, tasks
from pathway.rules.catalogue import KINDS, Rule, all_rules, by_id
from pathway.rules.options import adjuncts, buprenorphine, methadone, naloxone, naltrexone

ROOT = Path(__file__).parent.parent.parent
SCENARIOS = sorted((ROOT / "tests" / "data" / "scenarios").glob("*.json"))
RAW = rulebook.load_raw(ROOT / "config")
ID = re.compile(r"^[a-z0-9]+(\.[a-z0-9-]+)+$")
STATUSES = {"active", "suitable", "caution", "not-yet", "contraindicated", "recommended"}
STATUSES |= {"not-indicated"}


def test_ids_are_unique_and_well_formed() -> None:
    ids = [r.id for r in all_rules()]
    assert len(ids) == len(set(ids))
    assert all(ID.match(i) for i in ids), [i for i in ids if not ID.match(i)]


def test_every_rule_states_its_section_source_and_effect() -> None:
    for r in all_rules():
        assert r.kind in KINDS, r.id
        assert r.title and r.source, r.id
        assert r.section.startswith("§"), r.id
        if r.kind == "medication":
            assert r.outcome in STATUSES, r.id
            assert r.id.split(".")[0] in {"bup", r.target}, r.id
        if r.kind == "flag":
            assert r.outcome in {"info", "warning", "critical"}, r.id


def test_every_config_key_a_rule_reads_exists_in_the_shipped_config() -> None:
    for r in all_rules():
        for key in r.reads:
            rulebook.config_value(RAW, key)  # raises MissingKey


def test_exceptions_name_rules_of_the_same_option() -> None:
    rules = by_id()
    for r in all_rules():
        for other in r.unless:
            assert other in rules, (r.id, other)
            assert rules[other].target == r.target, (r.id, other)


@pytest.mark.parametrize(
    "module",
    [findings, phase, safety, tasks, buprenorphine, methadone, naltrexone, naloxone],
    ids=lambda m: m.__name__.rsplit(".", 1)[-1],
)
def test_every_rule_a_module_defines_is_in_the_catalogue(module: object) -> None:
    """A rule defined but not listed would fire without being in the catalogue."""
    defined = {v.id for v in vars(module).values() if isinstance(v, Rule)}
    assert defined <= set(by_id())


def test_adjunct_rules_are_in_the_catalogue() -> None:
    ids = {r.id for r, _ in (*adjuncts.LOFEXIDINE_RULES, *adjuncts.CLONIDINE_RULES)}
    assert ids <= set(by_id())
    assert "clonidine.caution.other-indication" in ids


def test_on_methadone_is_an_explicit_exception_to_buprenorphine_not_yet() -> None:
    rule = by_id()["bup.not-yet.recent-full-agonist"]
    assert "bup.caution.on-methadone" in rule.unless
    assert "bup.active" in rule.unless


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_reason_of_every_scenario_carries_a_catalogue_rule(
    path: Path, evaluator: Evaluator
) -> None:
    case = orjson.loads(path.read_bytes())
    as_of = datetime.fromisoformat(case["asOf"].replace("Z", "+00:00"))
    d = evaluator.evaluate(case["bundle"], as_of).decision
    rules = by_id()
    assert rules[d.phase_rule].kind == "phase"
    assert rules[d.phase_rule].outcome == d.phase
    for m in d.medications:
        assert len(m.rules) == len(m.reasons), m
        for rid in m.rules:
            assert rules[rid].kind == "medication" and rules[rid].target == m.medication
        # The status is the outcome of the first rule listed.
        assert rules[m.rules[0]].outcome == m.status
    for t in d.tasks:
        assert rules[t.rule].kind == "task"
        assert rules[t.rule].target in (t.code, "psychosocial")
    for f in d.flags:
        assert rules[f.rule].target == f.code and rules[f.rule].outcome == f.indicator
    for rid in d.fact_rules:
        assert rules[rid].kind == "fact"


def test_rules_md_is_generated_and_current() -> None:
    """docs/RULES.md is `pathway rules --format markdown`: regenerate it when a rule changes."""
    current = (ROOT / "docs" / "RULES.md").read_text(encoding="utf-8")
    assert current == rulebook.as_markdown(RAW), (
        "docs/RULES.md is stale: run `pathway rules --format markdown > docs/RULES.md`"
    )


def test_rules_command_prints_the_catalogue_with_config_values() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pathway.cli", "rules"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert "bup.not-yet.recent-full-agonist  ->  buprenorphine: not-yet" in out
    assert "reads buprenorphine.short_acting_hours = 12 h" in out
    assert "reads labs.qtc_valid_months = 12 months" in out
    assert out.count("  ->  ") == len(all_rules())


def test_rules_command_json_lists_every_rule_with_its_values() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pathway.cli", "rules", "--format", "json"],
        capture_output=True,
        check=True,
        cwd=ROOT,
    ).stdout
    rules = {r["id"]: r for r in orjson.loads(out)}
    assert set(rules) == set(by_id())
    assert rules["methadone.contraindicated.qtc"]["reads"] == {
        "methadone.qtc_contraindicated_above_ms": 500,
        "labs.qtc_valid_months": 12,
    }
    assert catalogue.ASAM_2020 in rules["bup.not-yet.recent-full-agonist"]["source"]
