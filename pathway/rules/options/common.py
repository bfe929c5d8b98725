"""What every medication option shares: how fired rules become one status (§8 precedence), and
the findings several options read (liver tests, the current QTc, recent full-agonist exposure, a
negative opioid screen).

A formula returns what it found as `Fired` items (the reason for a clinician and the resources
it rests on); an empty list means the rule does not apply. `decide` runs an option's rules in
order, drops those whose exceptions (`Rule.unless`) fired, and picks the status by precedence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pathway.rules import timing
from pathway.rules.catalogue import Rule
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import Findings, age_bounds
from pathway.rules.model import Measurement, MedicationOption, PatientFacts, Result

# §8: contraindicated > active > not-yet > caution > suitable; naloxone's and the adjuncts'
# `recommended` and `not-indicated` come last (they never meet the others in one option).
PRECEDENCE = (
    "contraindicated",
    "active",
    "not-yet",
    "caution",
    "suitable",
    "recommended",
    "not-indicated",
)
LABELS = {"contraindicated": "Contraindicated", "not-yet": "Not yet", "caution": "Caution"}


class Fired(NamedTuple):
    reason: str
    evidence: tuple[str, ...] = ()


Formula = Callable[[Findings, PatientFacts, PathwayConfig], list[Fired]]


def fired(reason: str, *evidence: str) -> list[Fired]:
    """One firing of a rule (empty evidence references are dropped)."""
    return [Fired(reason, tuple(e for e in evidence if e))]


def decide(
    medication: str,
    rules: tuple[tuple[Rule, Formula], ...],
    f: Findings,
    patient: PatientFacts,
    cfg: PathwayConfig,
) -> MedicationOption:
    hits: list[tuple[Rule, Fired]] = []
    for rule, formula in rules:
        for hit in formula(f, patient, cfg):
            hits.append((rule, hit))
    ids = {rule.id for rule, _ in hits}
    hits = [(r, h) for r, h in hits if not any(u in ids for u in r.unless)]
    status = min((r.outcome for r, _ in hits), key=PRECEDENCE.index, default="suitable")
    reasons: list[str] = []
    rule_ids: list[str] = []
    for r, h in hits:
        if r.outcome == status:
            reasons.append(h.reason)
            rule_ids.append(r.id)
    for other in PRECEDENCE:
        if other == status:
            continue
        for r, h in hits:
            if r.outcome == other:
                label = LABELS.get(other)
                reasons.append(f"{label}: {h.reason}" if label else h.reason)
                rule_ids.append(r.id)
    evidence = tuple(dict.fromkeys(e for _, h in hits for e in h.evidence))
    return MedicationOption(medication, status, tuple(reasons), evidence, tuple(rule_ids))


def label(name: str, ref: str) -> str:
    return name or ref


class LiverResult(NamedTuple):
    ratio: float
    name: str
    measurement: Measurement


def liver_ratio(f: Findings, cfg: PathwayConfig) -> LiverResult | None:
    """The highest multiple of the upper limit of normal among the latest ALT and AST (90 d)."""
    best: LiverResult | None = None
    for kind in ("alt", "ast"):
        m = f.latest.get(kind)
        if m is None or m.value is None:
            continue
        if not timing.may_be_within_days(m.when, f.as_of, cfg.labs.liver_valid_days):
            continue
        uln = m.upper_limit if m.upper_limit and m.upper_limit > 0 else cfg.labs.default_uln_u_per_l
        ratio = m.value / uln
        if best is None or ratio > best.ratio:
            best = LiverResult(ratio, kind.upper(), m)
    return best


def current_qtc(f: Findings, cfg: PathwayConfig) -> Measurement | None:
    """The latest QTc, if it is from the last 12 calendar months (older is "no QTc", §8)."""
    m = f.latest.get("qtc")
    if m is None or m.value is None:
        return None
    if not timing.may_be_within_months(m.when, f.as_of, cfg.labs.qtc_valid_months):
        return None
    return m


def youngest_age(f: Findings, patient: PatientFacts) -> int | None:
    ages = age_bounds(f, patient.birth_date)
    return ages[0] if ages is not None else None


def recent_full_agonist_exposure(f: Findings, cfg: PathwayConfig) -> tuple[list[str], list[str]]:
    """§4 buprenorphine not-yet, first half (with §8): recent full-agonist opioid exposure."""
    b = cfg.buprenorphine
    reasons: list[str] = []
    refs: list[str] = []
    for o in f.has_active(cfg.drug_groups.full_agonist_analgesics):
        reasons.append(f"active full-agonist opioid analgesic ({label(o.name, o.ref)})")
        refs.append(o.ref)
    for s in f.illicit_within(b.illicit_uds_days):
        reasons.append(f"illicit {s.analyte}-positive drug screen {timing.describe(s.when)}")
        refs.append(s.ref)
    for s in f.screens_within(b.fentanyl_days):
        if s.analyte == "fentanyl" and s.result is Result.POSITIVE and s.ref not in refs:
            reasons.append(f"fentanyl-positive drug screen {timing.describe(s.when)}")
            refs.append(s.ref)
    for earlier in f.last_uses:  # §8: fentanyl at any time in 7 days, whatever came later
        if earlier.opioid_type == "fentanyl" and (
            earlier.used is None
            or timing.may_be_within_days(earlier.used, f.as_of, b.fentanyl_days)
        ):
            when = timing.describe(earlier.used) if earlier.used else "at an unknown time"
            reasons.append(
                f"fentanyl use {when}: needs COWS of {cfg.cows.buprenorphine_start_min}"
                " or more whatever the hours"
            )
            refs.append(earlier.ref)
            break
    # A last use recorded without a time may be the latest, whatever dated ones say (unknown is
    # not "long ago").
    for undated in f.last_uses:
        if undated.used is None and undated.opioid_type != "fentanyl":
            reasons.append("last opioid use recorded without a time")
            refs.append(undated.ref)
            break
    use = f.last_use
    if use is not None and use.opioid_type != "fentanyl" and use.used is not None:
        kind = use.opioid_type or "long-acting"
        untyped = "" if use.opioid_type else " (type not recorded: counted as long-acting)"
        limit = b.short_acting_hours if kind == "short-acting" else b.long_acting_hours
        # §8: the hour bound includes its edge (exactly 12 h ago is still recent).
        if timing.may_be_within_hours(use.used, f.as_of, limit):
            hours = max(0.0, (f.as_of - use.used.latest).total_seconds() / 3600)
            reasons.append(f"last {kind} opioid use {hours:.0f} h ago (within {limit} h){untyped}")
            refs.append(use.ref)
    return reasons, refs


def negative_opioid_screen(f: Findings, cfg: PathwayConfig, days: int) -> tuple[bool, list[str]]:
    """§8: a negative opiates AND a negative fentanyl result in the window, and no positive
    opioid result in it (negatives must surely be in the window; positives may be)."""
    opioid = frozenset(cfg.drug_groups.opioid_analytes)
    refs: list[str] = []
    seen: set[str] = set()
    for s in f.screens:
        if s.analyte not in opioid:
            continue
        if s.result is Result.POSITIVE and timing.may_be_within_days(s.when, f.as_of, days):
            return False, []
        if (
            s.result is Result.NEGATIVE
            and s.analyte in ("opiates", "fentanyl")
            and timing.surely_within_days(s.when, f.as_of, days)
        ):
            seen.add(s.analyte)
            refs.append(s.ref)
    return seen == {"opiates", "fentanyl"}, refs
