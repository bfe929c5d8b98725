"""PATHWAY.md §3: the phase of care, and the return-to-use and suspected-OUD flags.

First matching rule wins. The return-to-use flag is set only by rules 2b and 3c (§8).
"""

from __future__ import annotations

from dataclasses import dataclass

from pathway.rules import timing
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import Findings


@dataclass(frozen=True, slots=True)
class PhaseResult:
    phase: str
    rule: str
    reasons: tuple[str, ...]
    evidence: tuple[str, ...]
    return_to_use: bool = False
    suspected_oud: bool = False


def _screens_text(f: Findings, days: int) -> tuple[str, tuple[str, ...]]:
    hits = f.illicit_within(days)
    names = ", ".join(f"{s.analyte} ({timing.describe(s.when)})" for s in hits[:3])
    return names, tuple(s.ref for s in hits)


def decide_phase(f: Findings, cfg: PathwayConfig) -> PhaseResult:
    p = cfg.phase
    # Rule 1: no OUD evidence.
    if not f.oud_evidence:
        names, refs = _screens_text(f, p.suspected_oud_uds_days)
        if refs:
            return PhaseResult(
                "assessment",
                "1a",
                (
                    f"No OUD diagnosis, but an illicit opioid-positive drug screen in the last "
                    f"{p.suspected_oud_uds_days} days: {names}. Suspected OUD: assess with the "
                    "DSM-5 criteria.",
                ),
                refs,
                suspected_oud=True,
            )
        return PhaseResult(
            "not-applicable",
            "1b",
            (
                "No OUD evidence (no OUD diagnosis, no DSM-5 criteria count of 2 or more in "
                "the last 12 months, no buprenorphine for OUD) and no illicit opioid-positive "
                f"drug screen in the last {p.suspected_oud_uds_days} days.",
            ),
            (),
        )

    # Rule 2: active MOUD.
    if f.active_moud:
        drugs = ", ".join(sorted(f.active_moud))
        refs = tuple(o.ref for o in f.active_moud.values()) + f.episode_refs
        if f.episode_start is None:
            return PhaseResult(
                "stabilization",
                "2a",
                (
                    f"On {drugs}; the start of this treatment episode is not recorded, so the "
                    "conservative reading is the first 30 days (stabilization).",
                ),
                refs,
            )
        days = timing.days_before(f.episode_start, f.as_of)
        started = timing.describe(f.episode_start)
        if days < p.stabilization_days:
            return PhaseResult(
                "stabilization",
                "2a",
                (
                    f"On {drugs} since {started} ({days} days, under {p.stabilization_days}): "
                    "induction and stabilization.",
                ),
                refs,
            )
        names, uds_refs = _screens_text(f, p.return_to_use_uds_days)
        if uds_refs:
            return PhaseResult(
                "stabilization",
                "2b",
                (
                    f"On {drugs} since {started} ({days} days), with an illicit opioid-positive "
                    f"drug screen in the last {p.return_to_use_uds_days} days: {names}. Return to "
                    "use: re-stabilise (do not stop MOUD).",
                ),
                refs + uds_refs,
                return_to_use=True,
            )
        return PhaseResult(
            "maintenance",
            "2c",
            (
                f"On {drugs} since {started} ({days} days) with no illicit opioid-positive drug "
                f"screen in the last {p.return_to_use_uds_days} days.",
            ),
            refs,
        )

    # Rule 3: no active MOUD.
    if f.in_withdrawal:
        return PhaseResult(
            "stabilization",
            "3a",
            ("Not on MOUD and in opioid withdrawal: " + "; ".join(f.withdrawal_reasons) + ".",),
            f.withdrawal_refs,
        )
    history: list[str] = []
    history_refs: list[str] = []
    if f.oud_status == "remission" and f.oud_condition is not None:
        history.append("OUD in remission")
        history_refs.append(f.oud_condition.ref)
    if f.past_moud:
        history.append("a past MOUD episode")
        history_refs.extend(o.ref for o in f.past_moud)
    if history:
        names, uds_refs = _screens_text(f, p.recovery_uds_days)
        what = " and ".join(history)
        if uds_refs:
            return PhaseResult(
                "assessment",
                "3c",
                (
                    f"{what[0].upper()}{what[1:]}, with an illicit opioid-positive drug screen in "
                    f"the last {p.recovery_uds_days} days: {names}. Return to use: re-engage.",
                ),
                tuple(history_refs) + uds_refs,
                return_to_use=True,
            )
        return PhaseResult(
            "recovery",
            "3b",
            (
                f"{what[0].upper()}{what[1:]}, not on MOUD, and no illicit opioid-positive drug "
                f"screen in the last {p.recovery_uds_days} days: continuing care.",
            ),
            tuple(history_refs),
        )
    return PhaseResult(
        "assessment",
        "3d",
        (
            "OUD evidence (" + "; ".join(f.evidence_reasons) + ") and not on MOUD: assessment "
            "and engagement.",
        ),
        f.evidence_refs,
    )
