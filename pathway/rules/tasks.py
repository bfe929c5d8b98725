"""PATHWAY.md §6 (psychosocial care by stage of change) and §7 (monitoring and follow-up).

A task is due when no qualifying result or completed Task of ours exists inside its interval.
Tasks without an interval in §7 are due whenever their condition holds, unless one was completed
in the last `repeat_after_days` (a conservative default, in config).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pathway.rules import timing
from pathway.rules.config import PathwayConfig, TaskRule
from pathway.rules.findings import Findings, age_bounds
from pathway.rules.model import (
    Facts,
    MedicationOption,
    PlannedTask,
    Result,
    SafetyFlag,
)
from pathway.rules.timing import Window

PSYCHOSOCIAL = (
    "motivational-interviewing",
    "contingency-management",
    "cbt",
    "case-management",
    "mutual-help",
    "peer-support",
    "addiction-counseling",
    "family-support",
)


@dataclass(slots=True)
class _Planner:
    f: Findings
    facts: Facts
    cfg: PathwayConfig
    phase: str
    planned: dict[str, PlannedTask]

    def rule(self, code: str) -> TaskRule:
        return self.cfg.tasks[code]

    def interval(self, code: str) -> Window:
        r = self.rule(code)
        if r.interval_by_phase is not None:
            return timing.days(
                r.interval_by_phase.get(self.phase, min(r.interval_by_phase.values()))
            )
        if r.interval_months is not None:
            return timing.months(r.interval_months)
        if r.interval_days is not None:
            return timing.days(r.interval_days)
        return timing.days(self.cfg.repeat_after_days)

    def completed_within(self, code: str, window: Window) -> bool:
        return any(
            t.code == code
            and t.status == "completed"
            and timing.surely_within(t.when, self.f.as_of, window)
            for t in self.facts.tasks
        )

    def add(self, code: str, reason: str, *evidence: str, interval: Window | None = None) -> None:
        if code in self.planned:
            return
        window = self.interval(code) if interval is None else interval
        if self.completed_within(code, window):
            return
        r = self.rule(code)
        today = self.f.as_of.date()
        due = (
            today + timedelta(days=r.due_in_days)
            if r.due_in_days is not None
            else timing.after(today, window)
        )
        self.planned[code] = PlannedTask(
            code=code,
            reason=reason,
            due=due,
            priority=r.priority,
            evidence=tuple(e for e in evidence if e),
        )


def _required(value: int | None) -> int:
    """A threshold the config loader guarantees (see config.REQUIRED_TASK_FIELDS)."""
    if value is None:
        raise ValueError("a required task threshold is missing from the configuration")
    return value


def _has_qualifying_uds(f: Findings, window: Window) -> bool:
    """§8: any drug screen with a readable result, whatever its analyte, surely in the window."""
    return any(
        s.result is not Result.UNKNOWN and timing.surely_within(s.when, f.as_of, window)
        for s in f.screens
    )


def _measured(f: Findings, kinds: tuple[str, ...], window: Window) -> bool:
    return any(
        (m := f.latest.get(k)) is not None and timing.surely_within(m.when, f.as_of, window)
        for k in kinds
    )


def plan_tasks(
    f: Findings,
    facts: Facts,
    cfg: PathwayConfig,
    phase: str,
    return_to_use: bool,
    options: dict[str, MedicationOption],
    flags: list[SafetyFlag],
) -> tuple[PlannedTask, ...]:
    p = _Planner(f, facts, cfg, phase, {})
    if phase == "not-applicable":
        return ()
    status = {name: o.status for name, o in options.items()}

    # --- §7 monitoring
    uds_window = p.interval("collect-uds")
    if not _has_qualifying_uds(f, uds_window):
        p.add(
            "collect-uds",
            f"No drug screen result in the last {timing.describe_window(uds_window)} ({phase}).",
        )
    nt_window = timing.days(_required(cfg.tasks["collect-uds"].naltrexone_not_yet_days))
    if status.get("naltrexone") == "not-yet" and not _has_qualifying_uds(f, nt_window):
        p.add(
            "collect-uds",
            f"Naltrexone needs a documented opioid-free interval: no drug screen "
            f"in the last {timing.describe_window(nt_window)}.",
            interval=nt_window,
        )

    if not f.active_moud and phase in ("assessment", "stabilization"):
        window = cfg.cows.assess_window_hours
        cows = f.latest.get("cows")
        scored = cows is not None and timing.surely_within_hours(cows.when, f.as_of, window)
        done = any(
            t.code == "assess-cows"
            and t.status == "completed"
            and timing.surely_within_hours(t.when, f.as_of, window)
            for t in facts.tasks
        )
        if not scored and not done:
            p.add(
                "assess-cows",
                f"Not on MOUD and no COWS in the last {window} h: score withdrawal "
                f"(buprenorphine can start at COWS {cfg.cows.buprenorphine_start_min} or more).",
                interval=timing.days(0),
            )

    sev_window = p.interval("assess-oud-severity")
    severity = f.latest.get("severity")
    if f.oud_condition is None and not (
        severity is not None and timing.surely_within(severity.when, f.as_of, sev_window)
    ):
        p.add(
            "assess-oud-severity",
            "No OUD diagnosis and no DSM-5 criteria count in the last "
            f"{timing.describe_window(sev_window)}: assess OUD with the DSM-5 criteria.",
        )

    if f.stage is None:
        p.add(
            "assess-readiness", f"No stage of change in the last {cfg.labs.stage_valid_days} days."
        )

    nal_status = status.get("naltrexone")
    if nal_status in ("active", "suitable", "caution", "not-yet") and not _measured(
        f, ("alt", "ast"), p.interval("order-lft")
    ):
        p.add(
            "order-lft",
            f"Naltrexone {nal_status}: no ALT/AST in the last "
            f"{timing.describe_window(p.interval('order-lft'))} (baseline liver function).",
        )
    bup_window = timing.months(_required(cfg.tasks["order-lft"].buprenorphine_interval_months))
    if status.get("buprenorphine") == "active" and not _measured(f, ("alt", "ast"), bup_window):
        p.add(
            "order-lft",
            f"On buprenorphine: no ALT/AST in the last {timing.describe_window(bup_window)}.",
            interval=bup_window,
        )

    if status.get("methadone") in ("active", "suitable", "caution") and not _measured(
        f, ("qtc",), p.interval("order-ecg")
    ):
        p.add(
            "order-ecg",
            f"Methadone {status.get('methadone')}: no QTc in the last "
            f"{timing.describe_window(p.interval('order-ecg'))} "
            "(ECG before starting and yearly).",
        )

    rule = cfg.tasks["pregnancy-test"]
    ages = age_bounds(f, facts.patient.birth_date)
    if (
        facts.patient.gender == "female"
        and ages is not None
        and not f.known_pregnant
        and ages[1] >= _required(rule.min_age)
        and ages[0] <= _required(rule.max_age)
        and not _measured(f, ("hcg", "pregnancy"), p.interval("pregnancy-test"))
    ):
        p.add(
            "pregnancy-test",
            "Female of reproductive age, pregnancy status not known in the "
            f"last {timing.describe_window(p.interval('pregnancy-test'))} (affects medication "
            "choice).",
        )

    if f.oud_evidence and not (
        _measured(f, ("hiv",), p.interval("hiv-hcv-screening"))
        and _measured(f, ("hcv",), p.interval("hiv-hcv-screening"))
    ):
        p.add(
            "hiv-hcv-screening",
            "OUD: no HIV and hepatitis C screening results in the last "
            f"{timing.describe_window(p.interval('hiv-hcv-screening'))}.",
        )

    if status.get("naloxone") == "recommended":
        p.add("prescribe-naloxone", "No rescue naloxone on file: prescribe and train.")
    if phase == "assessment" and not f.active_moud:
        p.add(
            "discuss-moud-options",
            "Not on MOUD: discuss buprenorphine and methadone "
            "(first-line) and extended-release naltrexone.",
        )
    for flag in flags:
        if flag.code == "moud-analyte-missing":
            p.add("review-adherence", flag.detail, *flag.evidence)
        if flag.code == "opioid-cns-depressant" and flag.order_ref is None:
            p.add("review-cns-depressants", flag.detail, *flag.evidence)

    p.add(
        "follow-up-visit",
        f"{phase.capitalize()} phase: follow-up within "
        f"{timing.describe_window(p.interval('follow-up-visit'))}.",
    )

    # --- §6 psychosocial care
    stage = f.stage.stage if f.stage is not None else None
    stage_ref = f.stage.ref if f.stage is not None else ""
    for code in cfg.psychosocial.by_stage.get(stage or "unknown", ()):
        p.add(code, f"Stage of change: {stage or 'unknown'}.", stage_ref)
    recent = [
        s
        for s in f.screens_within(cfg.psychosocial.illicit_uds_days)
        if s.result is Result.POSITIVE
        and (s in f.illicit or s.analyte in cfg.drug_groups.stimulant_analytes)
    ]
    if recent:
        p.add(
            "contingency-management",
            f"Illicit opioid or stimulant-positive drug screen in the last "
            f"{cfg.psychosocial.illicit_uds_days} days: contingency management "
            f"({cfg.psychosocial.contingency_management_sessions} weekly sessions).",
            *(s.ref for s in recent),
        )
    if "methadone" in f.active_moud:
        p.add(
            "addiction-counseling",
            "On methadone: counselling is part of opioid treatment program care.",
            f.active_moud["methadone"].ref,
        )
    if phase == "assessment" or return_to_use:
        p.add(
            "family-support",
            "Community reinforcement and family training; naloxone training for family members.",
        )
    return tuple(p.planned.values())
