"""Shared by the metamorphic and the window-boundary tests (tests/rules/test_metamorphic.py,
tests/rules/test_window_boundaries.py): the windows of config/pathway.yaml read as data, a
calendar-months helper written from PATHWAY.md §8 (independent of pathway.rules.timing), and
the permissiveness order of medication statuses.

Nothing here imports the rules: the tests judge the service by what PATHWAY.md says, through the
public Evaluator, so a rewrite of pathway/rules cannot make them agree with itself.
"""

from __future__ import annotations

import calendar
import dataclasses
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

import yaml

from pathway.config import DEFAULT_CONFIG_DIR
from pathway.rules.config import PathwayConfig

CONFIG_FILE = DEFAULT_CONFIG_DIR / "pathway.yaml"

Key = tuple[str, ...]

# A key names a window (or an interval, or a due offset) when a word of it is a time unit:
# `*_days`, `*_hours`, `*_months`, `min_days_on_moud`, `task_repeat_after_days`, and the task
# intervals given per phase (`tasks.collect-uds.interval_days.assessment`).
_UNIT_WORD = re.compile(r"(?:^|_)(days|hours|months)(?:_|$)")


def raw_config() -> dict[str, Any]:
    """config/pathway.yaml as the YAML says it (not as the loader builds it)."""
    data = yaml.safe_load(CONFIG_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def unit_of(key: Key) -> str:
    """days | hours | months: the unit word of the key (the last key part that has one)."""
    for part in reversed(key):
        m = _UNIT_WORD.search(part)
        if m:
            return m.group(1)
    raise AssertionError(f"{'.'.join(key)} names no time unit")


def window_keys(raw: Mapping[str, Any], prefix: Key = ()) -> Iterator[Key]:
    """Every key of the YAML whose name says it is a number of days, hours or months (a
    per-phase mapping under such a key gives one key per phase)."""
    for name, value in raw.items():
        key = (*prefix, str(name))
        if _UNIT_WORD.search(str(name)):
            if isinstance(value, Mapping):
                for phase in value:
                    yield (*key, str(phase))
            else:
                yield key
        elif isinstance(value, Mapping):
            yield from window_keys(value, key)


def raw_value(raw: Mapping[str, Any], key: Key) -> int:
    node: Any = raw
    for part in key:
        node = node[part]
    assert isinstance(node, int), key
    return node


# ------------------------------------------------------------------ the loaded config, by YAML key


def config_value(cfg: PathwayConfig, key: Key) -> int:
    """The loaded value of a YAML window key (the loader's field names mirror the YAML keys; the
    per-phase task intervals are `interval_by_phase`). test_window_boundaries checks this
    mapping against the loader itself."""
    if key[0] == "tasks":
        rule = cfg.tasks[key[1]]
        if len(key) == 4:
            assert key[2] == "interval_days" and rule.interval_by_phase is not None
            return rule.interval_by_phase[key[3]]
        value = getattr(rule, key[2])
    elif len(key) == 1:
        value = getattr(cfg, key[0])
    else:
        value = getattr(getattr(cfg, key[0]), key[1])
    assert isinstance(value, int), key
    return value


def with_value(cfg: PathwayConfig, key: Key, value: int) -> PathwayConfig:
    """The config with one window key set to `value` (dataclasses.replace, nothing mutated)."""
    if key[0] == "tasks":
        rule = cfg.tasks[key[1]]
        if len(key) == 4:
            by_phase = dict(rule.interval_by_phase or {})
            by_phase[key[3]] = value
            new_rule = dataclasses.replace(rule, interval_by_phase=by_phase)
        else:
            change: dict[str, Any] = {key[2]: value}
            new_rule = dataclasses.replace(rule, **change)
        return dataclasses.replace(cfg, tasks={**cfg.tasks, key[1]: new_rule})
    top: dict[str, Any] = {key[0]: value}
    if len(key) == 2:
        inner: dict[str, Any] = {key[1]: value}
        top = {key[0]: dataclasses.replace(getattr(cfg, key[0]), **inner)}
    return dataclasses.replace(cfg, **top)


# ------------------------------------------------------------------ calendar (PATHWAY §8)


def months_back(day: date, n: int) -> date:
    """The same calendar day n months earlier; where that month has no such day (29-31), the
    month's last day (§8). Written here from the spec, not imported from the rules."""
    year, month = day.year, day.month - n
    while month < 1:
        month += 12
        year -= 1
    while month > 12:
        month -= 12
        year += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def instant(dt: datetime) -> str:
    """A FHIR instant in UTC (`Z`)."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_as_of(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ------------------------------------------------------------------ permissiveness of statuses

# For a medication one could start, from the least to the most permissive (PATHWAY §4):
# contraindicated (do not start) < not-yet (not now: a precondition is missing) < caution (may
# start, with a named risk) < suitable. `active` is not on this scale: it says the drug is
# already prescribed (it comes from the patient's requests, not from a risk), and the only rule
# stronger than it is `contraindicated` (§8 precedence). So from `active` the only less
# permissive status is `contraindicated`, and nothing that adds risk may turn an option into
# `active`. Naloxone (`active` / `recommended` / `not-indicated`) and the withdrawal adjuncts
# (`not-indicated` / `suitable` / `caution` / `active`) are judged by their own rules in the
# tests, not by this order.
PERMISSIVENESS = {"contraindicated": 0, "not-yet": 1, "caution": 2, "suitable": 3}
MOUD_OPTIONS = ("buprenorphine", "methadone", "naltrexone")


def no_more_permissive(before: str, after: str) -> bool:
    """True when `after` is as permissive as `before` or less."""
    if before == "active":
        return after in ("active", "contraindicated")
    if after == "active":
        return False
    return PERMISSIVENESS[after] <= PERMISSIVENESS[before]
