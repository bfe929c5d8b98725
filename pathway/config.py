"""Load and check the clinical configuration once, at start.

`config/pathway.yaml` becomes a typed `PathwayConfig`; `config/valuesets/*.json` (FHIR ValueSets)
become a `Terminology` that answers "which of our value sets hold this code?" in one dict lookup.
A broken file stops the service with a `ConfigError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from pathway.rules import config as rc

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_DIR = PROJECT_ROOT / "config"
DEFAULT_PROFILES_DIR = PROJECT_ROOT / "fhir_profiles"

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"

# Value sets the FHIR adapter and the rules rely on: a missing one is a broken deployment.
# Medication value sets the reader classifies orders by (the opioid-analgesic-* families come
# from pathway.yaml's drug_groups).
MEDICATION_VALUESETS = (
    "buprenorphine-oud",
    "buprenorphine-pain",
    "methadone",
    "naltrexone",
    "naloxone-rescue",
    "benzodiazepines",
    "cns-depressants",
    "lofexidine",
    "clonidine",
)
REQUIRED_VALUESETS = (
    "oud-conditions",
    "oud-remission-conditions",
    "oud-mild-conditions",
    "oud-moderate-severe-conditions",
    "opioid-withdrawal-conditions",
    "pregnancy-conditions",
    "withdrawal-treatment-reasons",
    "alt",
    "ast",
    "qtc",
    "pregnancy-status",
    "hcg",
    "systolic-bp",
    "heart-rate",
    "hiv-screening",
    "hcv-screening",
    "result-positive",
    "result-negative",
    "pregnant-answers",
    "uds-opiates",
    "uds-fentanyl",
    "uds-6mam",
    "uds-oxycodone",
    "uds-buprenorphine",
    "uds-methadone",
    "uds-eddp",
    "uds-benzodiazepines",
    "uds-stimulants",
    *MEDICATION_VALUESETS,
)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the field."""

    def __init__(self, file: Path | str, field: str, message: str) -> None:
        self.file = str(file)
        self.field = field
        super().__init__(f"{file}: {field}: {message}")


# ------------------------------------------------------------------ pathway.yaml


def _build(cls: type, data: Any, file: Path, path: str) -> Any:
    """Build dataclass `cls` from a mapping, field by field, refusing unknown or missing keys."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            file, path or "(top level)", f"expected a mapping, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(file, f"{path}.{sorted(unknown)[0]}".lstrip("."), "unknown setting")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        where = f"{path}.{f.name}".lstrip(".")
        if f.name not in data:
            if f.default is not dataclasses.MISSING:
                continue
            raise ConfigError(file, where, "missing")
        kwargs[f.name] = _coerce(hints[f.name], data[f.name], file, where)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, file: Path, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, file, where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, file, where)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(file, where, "expected a list")
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(inner, v, file, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(file, where, "expected a mapping")
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(vt, v, file, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, where, "expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(file, where, f"expected a whole number >= 0, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(file, where, f"expected a number >= 0, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(file, where, f"expected text, got {value!r}")
        return value
    raise ConfigError(file, where, f"unsupported type {tp}")  # pragma: no cover


def _task_rules(raw: Any, file: Path) -> dict[str, rc.TaskRule]:
    if not isinstance(raw, Mapping):
        raise ConfigError(file, "tasks", "expected a mapping")
    out: dict[str, rc.TaskRule] = {}
    for code, spec in raw.items():
        where = f"tasks.{code}"
        if not isinstance(spec, Mapping):
            raise ConfigError(file, where, "expected a mapping")
        spec = dict(spec)
        interval = spec.pop("interval_days", None)
        if isinstance(interval, Mapping):
            spec["interval_by_phase"] = interval
        elif interval is not None:
            spec["interval_days"] = interval
        if interval is not None and spec.get("interval_months") is not None:
            raise ConfigError(file, where, "give interval_days or interval_months, not both")
        rule = _build(rc.TaskRule, spec, file, where)
        if rule.priority not in ("routine", "urgent", "asap", "stat"):
            raise ConfigError(
                file, f"{where}.priority", f"not a FHIR request priority: {rule.priority!r}"
            )
        out[str(code)] = rule
    return out


@dataclass(frozen=True, slots=True)
class LocalAlias:
    system: str
    code: str
    means: str


OBSERVATION_CODES = ("cows-total", "dsm5-oud-criteria-count", "last-opioid-use", "readiness-stage")


# Task thresholds the rules read directly (PATHWAY.md §7-8): no default lives in the code.
REQUIRED_TASK_FIELDS = {
    "collect-uds": ("naltrexone_not_yet_days",),
    "order-lft": ("buprenorphine_interval_months",),
    "pregnancy-test": ("min_age", "max_age"),
}


def check_against_codesystems(
    cfg: rc.PathwayConfig, file: Path, conformance: dict[str, dict[str, dict[str, Any]]]
) -> None:
    """The task codes, phases and stages are defined once, by the CodeSystems in
    fhir_profiles/: the thresholds file must cover exactly those."""

    def codes(cs_id: str) -> list[str]:
        cs = conformance.get("CodeSystem", {}).get(cs_id)
        if cs is None:
            raise ConfigError(file, f"CodeSystem/{cs_id}", "missing from fhir_profiles")
        return [str(c["code"]) for c in cs.get("concept", []) if isinstance(c, dict)]

    for code, names in REQUIRED_TASK_FIELDS.items():
        for name in names:
            if getattr(cfg.tasks.get(code), name, None) is None:
                raise ConfigError(file, f"tasks.{code}.{name}", "missing")
    task_codes = codes("oud-pathway-action")
    phases = [p for p in codes("oud-pathway-phase") if p != "not-applicable"]
    for code in task_codes:
        if code not in cfg.tasks:
            raise ConfigError(file, f"tasks.{code}", "missing")
    for code in cfg.tasks:
        if code not in task_codes:
            raise ConfigError(file, f"tasks.{code}", "not a code of CodeSystem oud-pathway-action")
    for code in ("collect-uds", "follow-up-visit"):
        by_phase = cfg.tasks[code].interval_by_phase or {}
        for ph in phases:
            if ph not in by_phase:
                raise ConfigError(file, f"tasks.{code}.interval_days.{ph}", "missing")
    for stage in (*codes("readiness-stage"), "unknown"):
        if stage not in cfg.psychosocial.by_stage:
            raise ConfigError(file, f"psychosocial.by_stage.{stage}", "missing")
        for code in cfg.psychosocial.by_stage[stage]:
            if code not in task_codes:
                raise ConfigError(file, f"psychosocial.by_stage.{stage}", f"unknown task {code}")


def load_pathway_config(file: Path) -> tuple[rc.PathwayConfig, tuple[LocalAlias, ...]]:
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(file, "(file)", "not found") from e
    except yaml.YAMLError as e:
        raise ConfigError(file, "(syntax)", str(e).replace("\n", " ")) from e
    if not isinstance(raw, dict):
        raise ConfigError(file, "(top level)", "expected a mapping")
    raw = dict(raw)
    aliases_raw = raw.pop("local_code_aliases", []) or []
    tasks = _task_rules(raw.pop("tasks", None), file)
    raw["tasks"] = {}
    cfg: rc.PathwayConfig = _build(rc.PathwayConfig, raw, file, "")
    cfg = dataclasses.replace(cfg, tasks=tasks)
    if cfg.methadone.qtc_caution_min_ms > cfg.methadone.qtc_contraindicated_above_ms:
        raise ConfigError(file, "methadone.qtc_caution_min_ms", "above the contraindication limit")
    if (
        cfg.naltrexone.liver_caution_uln_multiple
        > cfg.naltrexone.liver_contraindicated_uln_multiple
    ):
        raise ConfigError(
            file, "naltrexone.liver_caution_uln_multiple", "above the contraindication multiple"
        )
    if not isinstance(aliases_raw, list):
        raise ConfigError(file, "local_code_aliases", "expected a list")
    aliases: list[LocalAlias] = []
    for i, a in enumerate(aliases_raw):
        alias = _build(LocalAlias, a, file, f"local_code_aliases[{i}]")
        if alias.means not in OBSERVATION_CODES:
            raise ConfigError(
                file,
                f"local_code_aliases[{i}].means",
                f"must be one of {', '.join(OBSERVATION_CODES)}",
            )
        aliases.append(alias)
    return cfg, tuple(aliases)


# ------------------------------------------------------------------ value sets


@dataclass(frozen=True, slots=True)
class ValueSetCodes:
    id: str
    url: str
    version: str
    codes: frozenset[tuple[str, str]]
    prefixes: tuple[tuple[str, str], ...]  # ICD-10-CM is-a filters, as code prefixes
    includes: tuple[str, ...]  # urls of included value sets


_EMPTY: frozenset[str] = frozenset()


class Terminology:
    """(system, code) -> the ids of our value sets that hold it. Built once; lookups cached."""

    def __init__(self, valuesets: Mapping[str, ValueSetCodes]) -> None:
        self.valuesets = dict(valuesets)
        by_url = {v.url: v for v in valuesets.values()}
        index: dict[tuple[str, str], set[str]] = {}
        prefixes: list[tuple[str, str, str]] = []

        def expand(vs: ValueSetCodes, into: str, seen: frozenset[str]) -> None:
            for key in vs.codes:
                index.setdefault(key, set()).add(into)
            prefixes.extend((system, prefix, into) for system, prefix in vs.prefixes)
            for url in vs.includes:
                if url in seen:
                    continue
                expand(by_url[url], into, seen | {url})

        for vs in valuesets.values():
            expand(vs, vs.id, frozenset({vs.url}))
        self._index = {k: frozenset(v) for k, v in index.items()}
        self._prefixes = tuple(prefixes)
        self._cache: dict[tuple[str, str], frozenset[str]] = {}

    def lookup(self, system: str, code: str) -> frozenset[str]:
        key = (system, code)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = set(self._index.get(key, ()))
        for p_system, prefix, vs_id in self._prefixes:
            if system == p_system and code.upper().startswith(prefix.upper()):
                found.add(vs_id)
        result = frozenset(found)
        if len(self._cache) < 100_000:
            self._cache[key] = result
        return result

    def groups(self, codings: Iterable[Any]) -> frozenset[str]:
        out: frozenset[str] = _EMPTY
        for c in codings:
            if isinstance(c, dict):
                system, code = c.get("system"), c.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    hit = self.lookup(system, code.strip())
                    if hit:
                        out = hit if not out else out | hit
        return out


def _load_valueset(file: Path) -> tuple[ValueSetCodes, dict[str, Any]]:
    try:
        raw = orjson.loads(file.read_bytes())
    except orjson.JSONDecodeError as e:
        raise ConfigError(file, "(syntax)", str(e)) from e
    if not isinstance(raw, dict) or raw.get("resourceType") != "ValueSet":
        raise ConfigError(file, "resourceType", "expected ValueSet")
    for key in ("id", "url", "version"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(file, key, "missing")
    if raw["id"] != file.stem:
        raise ConfigError(file, "id", f"{raw['id']!r} does not match the file name")
    compose = raw.get("compose")
    if not isinstance(compose, dict) or not isinstance(compose.get("include"), list):
        raise ConfigError(file, "compose.include", "missing")
    codes: set[tuple[str, str]] = set()
    prefixes: list[tuple[str, str]] = []
    includes: list[str] = []
    for i, inc in enumerate(compose["include"]):
        where = f"compose.include[{i}]"
        if not isinstance(inc, dict):
            raise ConfigError(file, where, "expected an object")
        for url in inc.get("valueSet", []) or []:
            includes.append(url)
        system = inc.get("system")
        if ("concept" in inc or "filter" in inc) and (not isinstance(system, str) or not system):
            raise ConfigError(file, f"{where}.system", "missing")
        for j, concept in enumerate(inc.get("concept", []) or []):
            code = concept.get("code") if isinstance(concept, dict) else None
            if not isinstance(code, str) or not code.strip():
                raise ConfigError(file, f"{where}.concept[{j}].code", "missing")
            codes.add((str(system), code.strip()))
        for j, flt in enumerate(inc.get("filter", []) or []):
            ok = (
                isinstance(flt, dict)
                and flt.get("op") == "is-a"
                and system == ICD10CM
                and isinstance(flt.get("value"), str)
                and flt["value"]
            )
            if not ok:
                raise ConfigError(
                    file, f"{where}.filter[{j}]", "only ICD-10-CM 'is-a' filters are supported"
                )
            prefixes.append((str(system), str(flt["value"])))
    vs = ValueSetCodes(
        raw["id"], raw["url"], raw["version"], frozenset(codes), tuple(prefixes), tuple(includes)
    )
    return vs, raw


def load_valuesets(folder: Path) -> tuple[Terminology, dict[str, dict[str, Any]]]:
    if not folder.is_dir():
        raise ConfigError(folder, "(folder)", "not found")
    parsed: dict[str, ValueSetCodes] = {}
    raw: dict[str, dict[str, Any]] = {}
    for file in sorted(folder.glob("*.json")):
        vs, doc = _load_valueset(file)
        parsed[vs.id] = vs
        raw[vs.id] = doc
    urls = {v.url for v in parsed.values()}
    for vs in parsed.values():
        for url in vs.includes:
            if url not in urls:
                raise ConfigError(
                    folder / f"{vs.id}.json", "compose.include.valueSet", f"unknown value set {url}"
                )
    for vs_id in REQUIRED_VALUESETS:
        if vs_id not in parsed:
            raise ConfigError(folder / f"{vs_id}.json", "(file)", "required value set missing")
    return Terminology(parsed), raw


# ------------------------------------------------------------------ everything


@dataclass(frozen=True)
class LoadedConfig:
    pathway: rc.PathwayConfig
    aliases: tuple[LocalAlias, ...]
    terminology: Terminology
    valuesets: dict[str, dict[str, Any]]  # id -> ValueSet JSON
    conformance: dict[str, dict[str, dict[str, Any]]]  # resourceType -> id -> resource
    services: dict[str, Any]  # config/services.json: CDS Hooks discovery and card settings


def _load_conformance(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if not folder.is_dir():
        raise ConfigError(folder, "(folder)", "not found")
    for file in sorted(folder.glob("*.json")):
        try:
            doc = orjson.loads(file.read_bytes())
        except orjson.JSONDecodeError as e:
            raise ConfigError(file, "(syntax)", str(e)) from e
        rtype, rid = doc.get("resourceType"), doc.get("id")
        if not isinstance(rtype, str) or not isinstance(rid, str):
            raise ConfigError(file, "resourceType/id", "missing")
        out.setdefault(rtype, {})[rid] = doc
    return out


def load_config(
    config_dir: Path = DEFAULT_CONFIG_DIR, profiles_dir: Path = DEFAULT_PROFILES_DIR
) -> LoadedConfig:
    cfg, aliases = load_pathway_config(config_dir / "pathway.yaml")
    terminology, raw = load_valuesets(config_dir / "valuesets")
    for group in (
        *cfg.drug_groups.full_agonist_analgesics,
        *cfg.drug_groups.cns_depressants,
        *(g for gs in cfg.drug_groups.explained_by.values() for g in gs),
    ):
        if group not in raw:
            raise ConfigError(
                config_dir / "pathway.yaml",
                "drug_groups",
                f"no value set {group!r} in config/valuesets",
            )
    conformance = _load_conformance(profiles_dir)
    check_against_codesystems(cfg, config_dir / "pathway.yaml", conformance)
    plan = conformance.get("PlanDefinition", {}).get("oud-care-pathway")
    if plan is None:
        raise ConfigError(profiles_dir, "PlanDefinition/oud-care-pathway", "missing")
    if plan.get("version") != cfg.version:
        raise ConfigError(
            config_dir / "pathway.yaml",
            "version",
            f"{cfg.version!r} differs from the PlanDefinition version {plan.get('version')!r}",
        )
    services = load_services(config_dir / "services.json")
    return LoadedConfig(cfg, aliases, terminology, raw, conformance, services)


# The CDS services of CONTRACT.md §1: one hook each, each id listed once in discovery.
SERVICE_HOOKS = {
    "oud-pathway": "patient-view",
    "oud-order-select": "order-select",
    "oud-order-sign": "order-sign",
}
PREFETCH_KEYS = (
    "patient",
    "conditions",
    "observations",
    "medicationRequests",
    "carePlans",
    "tasks",
)


def load_services(file: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(file.read_bytes())
    except FileNotFoundError as e:
        raise ConfigError(file, "(file)", "not found") from e
    except orjson.JSONDecodeError as e:
        raise ConfigError(file, "(syntax)", str(e)) from e
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, list):
        raise ConfigError(file, "services", "expected a list")
    seen: dict[str, str] = {}
    for i, s in enumerate(services):
        for key in ("id", "hook", "title", "description"):
            if not isinstance(s.get(key), str) or not s[key]:
                raise ConfigError(file, f"services[{i}].{key}", "missing")
        if s["id"] in seen:
            # CDS Hooks 2.0 clients key services by id: the second entry would hide the first.
            raise ConfigError(file, f"services[{i}].id", f"{s['id']!r} is listed twice")
        seen[s["id"]] = s["hook"]
        prefetch = s.get("prefetch")
        if not isinstance(prefetch, dict):
            raise ConfigError(file, f"services[{i}].prefetch", "missing")
        for key in PREFETCH_KEYS:
            if not isinstance(prefetch.get(key), str):
                raise ConfigError(file, f"services[{i}].prefetch.{key}", "missing")
    for sid, hook in SERVICE_HOOKS.items():
        if seen.get(sid) != hook:
            raise ConfigError(file, "services", f"no service {sid} for hook {hook}")
    aliases = doc.get("unlistedAliases", [])
    if not isinstance(aliases, list):
        raise ConfigError(file, "unlistedAliases", "expected a list")
    for i, a in enumerate(aliases):
        where = f"unlistedAliases[{i}]"
        if not isinstance(a, dict) or not isinstance(a.get("id"), str) or not a["id"]:
            raise ConfigError(file, f"{where}.id", "missing")
        if a["id"] in seen:
            raise ConfigError(file, f"{where}.id", f"{a['id']!r} is a listed service")
        serves = a.get("serves")
        if not isinstance(serves, list) or not serves or not all(x in seen for x in serves):
            raise ConfigError(file, f"{where}.serves", "expected a list of listed service ids")
        hooks = [seen[x] for x in serves]
        if len(set(hooks)) != len(hooks):
            raise ConfigError(file, f"{where}.serves", "two services for one hook")
        seen[a["id"]] = ""
    cards = doc.get("cards")
    for key in ("source", "overrideReasonSystem", "overrideReasons", "naloxoneOrder"):
        if not isinstance(cards, dict) or key not in cards:
            raise ConfigError(file, f"cards.{key}", "missing")
    return dict(doc)


def service_routes(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, str]]]:
    """Every id served under /cds-services/{id} (the listed services and the unlisted aliases)
    -> the hooks it answers -> the prefetch templates for that hook. `doc` is a checked
    services.json (load_services)."""
    listed = {s["id"]: s for s in doc["services"]}
    routes = {sid: {s["hook"]: dict(s["prefetch"])} for sid, s in listed.items()}
    for a in doc.get("unlistedAliases", []):
        routes[a["id"]] = {listed[x]["hook"]: dict(listed[x]["prefetch"]) for x in a["serves"]}
    return routes
