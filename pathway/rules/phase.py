"""PATHWAY.md §3: the phase of care, and the return-to-use and suspected-OUD flags.

Each rule of §3 is a named unit; the first that matches wins, in the order of `RULES`. The
return-to-use flag is set only by rules 2b and 3c (§8).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pathway.rules import timing
from pathway.rules.catalogue import ASAM_2020, DSM_5, PROJECT, TIP_63, Rule
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import Findings


class PhaseResult(NamedTuple):
    phase: str
    rule: str  # the id of the rule that decided it
    reasons: tuple[str, ...]
    evidence: tuple[str, ...]
    return_to_use: bool = False
    suspected_oud: bool = False


PhaseFormula = Callable[[Findings, PathwayConfig, Rule], PhaseResult | None]


def _screens_text(f: Findings, days: int) -> tuple[str, tuple[str, ...]]:
    hits = f.illicit_within(days)
    names = ", ".join(f"{s.analyte} ({timing.describe(s.when)})" for s in hits[:3])
    return names, tuple(s.ref for s in hits)


def _moud(f: Findings) -> tuple[str, tuple[str, ...]]:
    drugs = ", ".join(sorted(f.active_moud))
    return drugs, tuple(o.ref for o in f.active_moud.values()) + f.episode_refs


def _days_on(f: Findings) -> int:
    return timing.days_before(f.episode_start, f.as_of) if f.episode_start is not None else 0


SUSPECTED_OUD = Rule(
    "phase.1a.suspected-oud",
    "phase",
    "1a",
    "assessment",
    "No OUD evidence, but an illicit opioid-positive drug screen in the last 30 days: suspected "
    "OUD, assess with the DSM-5 criteria",
    "§3 rule 1a",
    DSM_5,
    reads=("phase.suspected_oud_uds_days",),
)


def suspected_oud(f: Findings, cfg: PathwayConfig, rule: Rule) -> PhaseResult | None:
    if f.oud_evidence or not f.suspected_oud:
        return None
    days = cfg.phase.suspected_oud_uds_days
    names, refs = _screens_text(f, days)
    return PhaseResult(
        "assessment",
        rule.id,
        (
            f"No OUD diagnosis, but an illicit opioid-positive drug screen in the last {days} "
            f"days: {names}. Suspected OUD: assess with the DSM-5 criteria.",
        ),
        refs,
        suspected_oud=True,
    )


NOT_APPLICABLE = Rule(
    "phase.1b.not-applicable",
    "phase",
    "1b",
    "not-applicable",
    "No OUD evidence and no illicit opioid-positive drug screen in the last 30 days: no card, "
    "nothing written",
    "§3 rule 1b",
    PROJECT,
    reads=("phase.suspected_oud_uds_days",),
)


def not_applicable(f: Findings, cfg: PathwayConfig, rule: Rule) -> PhaseResult | None:
    if f.oud_evidence:
        return None
    return PhaseResult(
        "not-applicable",
        rule.id,
        (
            "No OUD evidence (no OUD diagnosis, no DSM-5 criteria count of 2 or more in the last "
            "12 months, no buprenorphine for OUD) and no illicit opioid-positive drug screen in "
            f"the last {cfg.phase.suspected_oud_uds_days} days.",
        ),
        (),
    )


START_UNKNOWN = Rule(
    "phase.2a.start-unknown",
    "phase",
    "2a",
    "stabilization",
    "On MOUD with the start of the episode not recorded: read as the first 30 days",
    "§3 rule 2a; §8 (the conservative reading)",
    PROJECT,
)


def start_unknown(f: Findings, cfg: PathwayConfig, rule: Rule) -> PhaseResult | None:
    if not f.active_moud or f.episode_start is not None:
        return None
    drugs, refs = _moud(f)
    return PhaseResult(
        "stabilization",
        rule.id,
        (
            f"On {drugs}; the start of this treatment episode is not recorded, so the "
            "conservative reading is the first 30 days (stabilization).",
        ),
        refs,
    )


INDUCTION = Rule(
    "phase.2a.induction",
    "phase",
    "2a",
    "stabilization",
    "On MOUD and the episode started under 30 days ago: induction and stabilization",
    "§3 rule 2a; §8 Episode chain",
    ASAM_2020,
    reads=("phase.stabilization_days", "phase.episode_gap_days"),
)


def induction(f: Findings, cfg: PathwayConfig, rule: Rule) -> PhaseResult | None:
    if not f.active_moud or f.episode_start is None:
        return None
    days = _days_on(f)
    if days >= cfg.phase.stabilization_days:
        return None
    drugs, refs = _moud(f)
    return PhaseResult(
        "stabilization",
        rule.id,
        (
            f"On {drugs} since {timing.describe(f.episode_start)} ({days} days, under "
            f"{cfg.phase.stabilization_days}): induction and stabilization.",
        ),
        refs,
    )


RETURN_TO_USE = Rule(
    "phase.2b.return-to-use",
    "phase",
    "2b",
    "stabilization",
    "On MOUD 30 days or more with an illicit opioid-positive drug screen in the last 30 days: "
    "return to use, re-stabilise (do not stop MOUD)",
    "§3 rule 2b; §8 (the flag is set only by 2b and 3c)",
    ASAM_2020,
    reads=("phase.stabilization_days", "phase.return_to_use_uds_days"),
)


def return_to_use(f: Findings, cfg: PathwayConfig, rule: Rule) -> PhaseResult | None:
    if not f.active_moud or f.episode_start is None:
        return None
    days = cfg.phase.return_to_use_uds_days
    names, uds_refs = _screens_text(f, days)
    if not uds_refs:
        return None
    drugs, refs = _moud(f)
    return PhaseResult(
        "stabilization",
        rule.id,
        (
            f"On {drugs} since {timing.describe(f.episode_start)} ({_days_on(f)} days), with an "
            f"illicit opioid-positive drug screen in the last {days} days: {names}. Return to "
            "use: re-stabilise (do not stop MOUD).",
        ),
        refs + uds_refs,
        return_to_use=True,
    )


MAINTENANCE = Rule(
    "phase.2c.maintenance",
    "phase",
    "2c",
    "maintenance",
    "On MOUD 30 days or more with no illicit opioid-positive drug screen in the last 30 days",
    "§3 rule 2c",
    TIP_63,
    reads=("phase.stabilization_days", "phase.return_to_use_uds_days"),
)


def maintenance(f: Findings, cfg: PathwayConfig, rule: Rule) -> PhaseResult | None:
    if not f.active_moud or f.episode_start is None:
        return None
    drugs, refs = _moud(f)
    return PhaseResult(
        "maintenance",
        rule.id,
        (
            f"On {drugs} since {timing.describe(f.episode_start)} ({_days_on(f)} days) with no "
            "illicit opioid-positive drug screen in the last "
            f"{cfg.phase.return_to_use_uds_days} days.",
        ),
        refs,
    )


WITHDRAWAL = Rule(
    "phase.3a.withdrawal",
    "phase",
    "3a",
    "stabilization",
    "Not on MOUD and in opioid withdrawal: withdrawal management and induction",
    "§3 rule 3a; §8 Withdrawal treatment",
    ASAM_2020,
    reads=(
        "cows.withdrawal_min",
        "cows.withdrawal_window_hours",
        "phase.withdrawal_condition_days",
    ),
)


def withdrawal(f: Findings, cfg: PathwayConfig, rule: Rule) -> PhaseResult | None:
    if f.active_moud or not f.in_withdrawal:
        return None
    return PhaseResult(
        "stabilization",
        rule.id,
        ("Not on MOUD and in opioid withdrawal: " + "; ".join(f.withdrawal_reasons) + ".",),
        f.withdrawal_refs,
    )


def _history(f: Findings) -> tuple[str, tuple[str, ...]]:
    history: list[str] = []
    refs: list[str] = []
    if f.oud_status == "remission" and f.oud_condition is not None:
        history.append("OUD in remission")
        refs.append(f.oud_condition.ref)
    if f.past_moud:
        history.append("a past MOUD episode")
        refs.extend(o.ref for o in f.past_moud)
    what = " and ".join(history)
    return (what[:1].upper() + what[1:]), tuple(refs)


RE_ENGAGEMENT = Rule(
    "phase.3c.re-engagement",
    "phase",
    "3c",
    "assessment",
    "OUD in remission or a past MOUD episode, not on MOUD, with an illicit opioid-positive drug "
    "screen in the last 90 days: return to use, re-engage",
    "§3 rule 3c; §8",
    ASAM_2020,
    reads=("phase.recovery_uds_days",),
)


def re_engagement(f: Findings, cfg: PathwayConfig, rule: Rule) -> PhaseResult | None:
    if f.active_moud:
        return None
    what, history_refs = _history(f)
    if not what:
        return None
    days = cfg.phase.recovery_uds_days
    names, uds_refs = _screens_text(f, days)
    if not uds_refs:
        return None
    return PhaseResult(
        "assessment",
        rule.id,
        (
            f"{what}, with an illicit opioid-positive drug screen in the last {days} days: "
            f"{names}. Return to use: re-engage.",
        ),
        history_refs + uds_refs,
        return_to_use=True,
    )


RECOVERY = Rule(
    "phase.3b.recovery",
    "phase",
    "3b",
    "recovery",
    "OUD in remission or a past MOUD episode, not on MOUD, and no illicit opioid-positive drug "
    "screen in the last 90 days: continuing care",
    "§3 rule 3b",
    TIP_63,
    reads=("phase.recovery_uds_days",),
)


def recovery(f: Findings, cfg: PathwayConfig, rule: Rule) -> PhaseResult | None:
    if f.active_moud:
        return None
    what, history_refs = _history(f)
    if not what:
        return None
    return PhaseResult(
        "recovery",
        rule.id,
        (
            f"{what}, not on MOUD, and no illicit opioid-positive drug screen in the last "
            f"{cfg.phase.recovery_uds_days} days: continuing care.",
        ),
        history_refs,
    )


ASSESSMENT = Rule(
    "phase.3d.assessment",
    "phase",
    "3d",
    "assessment",
    "OUD evidence and not on MOUD: assessment and engagement",
    "§3 rule 3d",
    ASAM_2020,
)


def assessment(f: Findings, cfg: PathwayConfig, rule: Rule) -> PhaseResult | None:
    return PhaseResult(
        "assessment",
        rule.id,
        (
            "OUD evidence (" + "; ".join(f.evidence_reasons) + ") and not on MOUD: assessment and "
            "engagement.",
        ),
        f.evidence_refs,
    )


# First match wins, in this order (§3). 3c is tried before 3b: they share their condition but
# for the drug screen.
RULES: tuple[tuple[Rule, PhaseFormula], ...] = (
    (SUSPECTED_OUD, suspected_oud),
    (NOT_APPLICABLE, not_applicable),
    (START_UNKNOWN, start_unknown),
    (INDUCTION, induction),
    (RETURN_TO_USE, return_to_use),
    (MAINTENANCE, maintenance),
    (WITHDRAWAL, withdrawal),
    (RE_ENGAGEMENT, re_engagement),
    (RECOVERY, recovery),
    (ASSESSMENT, assessment),
)


def decide_phase(f: Findings, cfg: PathwayConfig) -> PhaseResult:
    for rule, formula in RULES:
        result = formula(f, cfg, rule)
        if result is not None:
            return result
    raise AssertionError("phase.3d always matches")  # pragma: no cover
