"""config/: loaded and checked once; a broken file names the file and the field."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
import yaml

from pathway.config import (
    DEFAULT_CONFIG_DIR,
    DEFAULT_PROFILES_DIR,
    REQUIRED_VALUESETS,
    ConfigError,
    LoadedConfig,
    load_config,
)


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    shutil.copytree(DEFAULT_CONFIG_DIR, tmp_path / "config")
    return tmp_path / "config"


def edit_yaml(cfg_dir: Path, change: object) -> None:
    path = cfg_dir / "pathway.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data))


def test_shipped_config_loads(config: LoadedConfig) -> None:
    assert config.pathway.version == "1.1.0"
    assert config.pathway.cows.buprenorphine_start_min == 8
    assert config.pathway.tasks["collect-uds"].interval_by_phase == {
        "assessment": 30,
        "stabilization": 7,
        "maintenance": 30,
        "recovery": 90,
    }
    for vs_id in REQUIRED_VALUESETS:
        assert vs_id in config.valuesets


def test_every_valueset_has_provenance(config: LoadedConfig) -> None:
    for vs in config.valuesets.values():
        assert vs["url"].startswith("https://oud-pathway.github.io/fhir/ValueSet/")
        assert vs["version"] and vs["description"] and vs.get("publisher")
        assert vs.get("meta", {}).get("source") or "source" in vs["description"].lower()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["cows"].pop("withdrawal_min"), "cows.withdrawal_min"),
        (lambda d: d["cows"].__setitem__("withdrawal_min", "five"), "cows.withdrawal_min"),
        (lambda d: d["cows"].__setitem__("withdrawal_min", -1), "cows.withdrawal_min"),
        (lambda d: d["methadone"].__setitem__("surprise", 1), "methadone.surprise"),
        (lambda d: d["tasks"].pop("order-ecg"), "tasks.order-ecg"),
        (
            lambda d: d["tasks"]["collect-uds"]["interval_days"].pop("recovery"),
            "tasks.collect-uds.interval_days.recovery",
        ),
        (lambda d: d["tasks"]["cbt"].__setitem__("priority", "whenever"), "tasks.cbt.priority"),
        (
            lambda d: d["psychosocial"]["by_stage"].pop("contemplation"),
            "psychosocial.by_stage.contemplation",
        ),
        (
            lambda d: d["methadone"].__setitem__("qtc_caution_min_ms", 600),
            "methadone.qtc_caution_min_ms",
        ),
        (lambda d: d.__setitem__("version", "9.9.9"), "version"),
        (lambda d: d["drug_groups"]["cns_depressants"].append("no-such-set"), "drug_groups"),
        (
            lambda d: d.__setitem__(
                "local_code_aliases", [{"system": "s", "code": "c", "means": "pulse"}]
            ),
            "local_code_aliases[0].means",
        ),
    ],
)
def test_broken_yaml_names_file_and_field(cfg_dir: Path, change: object, field: str) -> None:
    edit_yaml(cfg_dir, change)
    with pytest.raises(ConfigError) as e:
        load_config(cfg_dir, DEFAULT_PROFILES_DIR)
    assert e.value.field == field
    assert "pathway.yaml" in e.value.file


def test_yaml_syntax_error(cfg_dir: Path) -> None:
    (cfg_dir / "pathway.yaml").write_text("cows: [unclosed\n")
    with pytest.raises(ConfigError, match="syntax"):
        load_config(cfg_dir, DEFAULT_PROFILES_DIR)


def test_missing_required_valueset(cfg_dir: Path) -> None:
    (cfg_dir / "valuesets" / "naloxone-rescue.json").unlink()
    with pytest.raises(ConfigError, match=r"naloxone-rescue\.json"):
        load_config(cfg_dir, DEFAULT_PROFILES_DIR)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda v: v.__setitem__("resourceType", "CodeSystem"), "resourceType"),
        (lambda v: v.pop("url"), "url"),
        (lambda v: v.__setitem__("id", "other"), "id"),
        (
            lambda v: v["compose"]["include"][0]["concept"].append({"display": "x"}),
            "compose.include[0].concept",
        ),
        (
            lambda v: v["compose"]["include"][0].__setitem__(
                "filter", [{"property": "concept", "op": "regex", "value": "."}]
            ),
            "compose.include[0].filter[0]",
        ),
    ],
)
def test_broken_valueset_names_file_and_field(cfg_dir: Path, mutate: object, field: str) -> None:
    path = cfg_dir / "valuesets" / "methadone.json"
    vs = orjson.loads(path.read_bytes())
    mutate(vs)  # type: ignore[operator]
    path.write_bytes(orjson.dumps(vs))
    with pytest.raises(ConfigError) as e:
        load_config(cfg_dir, DEFAULT_PROFILES_DIR)
    assert e.value.file.endswith("methadone.json")
    assert e.value.field.startswith(field)


def test_malformed_valueset_json(cfg_dir: Path) -> None:
    (cfg_dir / "valuesets" / "methadone.json").write_text("{")
    with pytest.raises(ConfigError, match=r"methadone\.json: \(syntax\)"):
        load_config(cfg_dir, DEFAULT_PROFILES_DIR)


def test_icd10_filters_match_by_prefix(config: LoadedConfig) -> None:
    t = config.terminology
    assert "oud-conditions" in t.lookup("http://hl7.org/fhir/sid/icd-10-cm", "F11.20")
    assert "oud-moderate-severe-conditions" in t.lookup(
        "http://hl7.org/fhir/sid/icd-10-cm", "F11.23"
    )
    assert "opioid-withdrawal-conditions" in t.lookup("http://hl7.org/fhir/sid/icd-10-cm", "F11.23")
    assert t.lookup("http://hl7.org/fhir/sid/icd-10-cm", "F10.20") == frozenset()
    # union through compose.include.valueSet
    assert "withdrawal-treatment-reasons" in t.lookup("http://snomed.info/sct", "87132004")


def test_trap_codes_are_classified(config: LoadedConfig) -> None:
    t = config.terminology
    rx = "http://www.nlm.nih.gov/research/umls/rxnorm"
    assert t.lookup(rx, "351267") == frozenset({"buprenorphine-oud"})  # "naloxone" Medication
    assert "naloxone-rescue" not in t.lookup(rx, "1010604")
    assert t.lookup(rx, "864706") == frozenset({"methadone"})


def test_a_task_code_the_codesystem_does_not_define_is_refused(cfg_dir: Path) -> None:
    edit_yaml(
        cfg_dir,
        lambda d: d["tasks"].__setitem__("make-tea", {"due_in_days": 1, "priority": "routine"}),
    )
    with pytest.raises(ConfigError) as e:
        load_config(cfg_dir, DEFAULT_PROFILES_DIR)
    assert e.value.field == "tasks.make-tea"


@pytest.mark.parametrize(
    ("task", "name"),
    [
        ("collect-uds", "naltrexone_not_yet_days"),
        ("order-lft", "buprenorphine_interval_months"),
        ("pregnancy-test", "min_age"),
        ("pregnancy-test", "max_age"),
    ],
)
def test_task_thresholds_the_rules_read_are_required(cfg_dir: Path, task: str, name: str) -> None:
    edit_yaml(cfg_dir, lambda d: d["tasks"][task].pop(name))
    with pytest.raises(ConfigError) as e:
        load_config(cfg_dir, DEFAULT_PROFILES_DIR)
    assert e.value.field == f"tasks.{task}.{name}"
