"""PATHWAY.md §6 (psychosocial care by stage of change) and §7 (monitoring and follow-up).

Each way a task becomes due is a named rule (`RULES`, in the order tasks are listed); its target
is the task code. A task is due when no qualifying result or completed Task of ours exists inside
its interval. Tasks without an interval in §7 are due whenever their condition holds, unless one
was completed in the last `task_repeat_after_days` (a conservative default, in config). A task
code is planned once: the first rule that makes it due gives its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from pathway.rules import timing
from pathway.rules.catalogue import (
    ASAM_2020,
    CDC_HIV_HCV,
    COWS_SCALE,
    DSM_5,
    FDA_METHADONE,
    FDA_NALOXONE_2020,
    FDA_NALTREXONE,
    FDA_OPIOID_BENZO,
    TIP_63,
    UPTODATE_PSYCHOSOCIAL,
    Rule,
)
from pathway.rules.config import PathwayConfig, TaskRule
from pathway.rules.findings import Findings, age_bounds
from pathway.rules.model import Facts, MedicationOption, PlannedTask, Result, SafetyFlag
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


def _rule(rule_id: str, code: str, title: str, section: str, source: str, *reads: str) -> Rule:
    return Rule(rule_id, "task", code, "due", title, section, source, reads)


@dataclass(slots=True)
class Planner:
    """What every task rule reads, and the tasks planned so far."""

    f: Findings
    facts: Facts
    cfg: PathwayConfig
    phase: str
    return_to_use: bool
    status: dict[str, str]  # medication -> status
    flags: list[SafetyFlag]
    planned: dict[str, PlannedTask]

    def task(self, code: str) -> TaskRule:
        return self.cfg.tasks[code]

    def interval(self, code: str) -> Window:
        r = self.task(code)
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

    def add(
        self,
        rule: Rule,
        reason: str,
        *evidence: str,
        interval: Window | None = None,
        code: str | None = None,
    ) -> None:
        code = code or rule.target
        if code in self.planned:
            return
        window = self.interval(code) if interval is None else interval
        if self.completed_within(code, window):
            return
        r = self.task(code)
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
            rule=rule.id,
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


# ------------------------------------------------------------------ §7 monitoring

UDS_BY_PHASE = _rule(
    "task.collect-uds.phase-interval",
    "collect-uds",
    "No readable drug screen (any analyte) inside the phase's interval",
    "§7; §8 Tasks",
    TIP_63,
    "tasks.collect-uds.interval_days",
)


def uds_by_phase(p: Planner) -> None:
    window = p.interval("collect-uds")
    if not _has_qualifying_uds(p.f, window):
        p.add(
            UDS_BY_PHASE,
            f"No drug screen result in the last {timing.describe_window(window)} ({p.phase}).",
        )


UDS_FOR_NALTREXONE = _rule(
    "task.collect-uds.naltrexone-not-yet",
    "collect-uds",
    "Naltrexone not-yet and no drug screen in the last 7 days",
    "§4 Naltrexone; §8 Tasks",
    ASAM_2020,
    "tasks.collect-uds.naltrexone_not_yet_days",
)


def uds_for_naltrexone(p: Planner) -> None:
    window = timing.days(_required(p.cfg.tasks["collect-uds"].naltrexone_not_yet_days))
    if p.status.get("naltrexone") == "not-yet" and not _has_qualifying_uds(p.f, window):
        p.add(
            UDS_FOR_NALTREXONE,
            "Naltrexone needs a documented opioid-free interval: no drug screen in the last "
            f"{timing.describe_window(window)}.",
            interval=window,
        )


ASSESS_COWS = _rule(
    "task.assess-cows",
    "assess-cows",
    "Not on MOUD, phase assessment or stabilization, and no COWS in the last 24 h",
    "§7; §8 Tasks",
    COWS_SCALE,
    "cows.assess_window_hours",
)


def assess_cows(p: Planner) -> None:
    f = p.f
    if f.active_moud or p.phase not in ("assessment", "stabilization"):
        return
    window = p.cfg.cows.assess_window_hours
    cows = f.latest.get("cows")
    if cows is not None and timing.surely_within_hours(cows.when, f.as_of, window):
        return
    if any(
        t.code == "assess-cows"
        and t.status == "completed"
        and timing.surely_within_hours(t.when, f.as_of, window)
        for t in p.facts.tasks
    ):
        return
    p.add(
        ASSESS_COWS,
        f"Not on MOUD and no COWS in the last {window} h: score withdrawal (buprenorphine can "
        f"start at COWS {p.cfg.cows.buprenorphine_start_min} or more).",
        interval=timing.days(0),
    )


ASSESS_SEVERITY = _rule(
    "task.assess-oud-severity",
    "assess-oud-severity",
    "No OUD Condition and no DSM-5 criteria count in the last 12 calendar months",
    "§7",
    DSM_5,
    "tasks.assess-oud-severity.interval_months",
)


def assess_severity(p: Planner) -> None:
    window = p.interval("assess-oud-severity")
    severity = p.f.latest.get("severity")
    if p.f.oud_condition is not None or (
        severity is not None and timing.surely_within(severity.when, p.f.as_of, window)
    ):
        return
    p.add(
        ASSESS_SEVERITY,
        "No OUD diagnosis and no DSM-5 criteria count in the last "
        f"{timing.describe_window(window)}: assess OUD with the DSM-5 criteria.",
    )


ASSESS_READINESS = _rule(
    "task.assess-readiness",
    "assess-readiness",
    "No stage of change in the last 90 days",
    "§6 (unknown stage); §7",
    UPTODATE_PSYCHOSOCIAL,
    "labs.stage_valid_days",
    "tasks.assess-readiness.interval_days",
)


def assess_readiness(p: Planner) -> None:
    window = p.interval("assess-readiness")
    assessed = any(
        s.stage is not None and timing.surely_within(s.when, p.f.as_of, window) for s in p.f.stages
    )
    if not assessed:  # §7: no stage of change observation inside the task's interval
        p.add(
            ASSESS_READINESS,
            f"No stage of change in the last {timing.describe_window(window)}.",
        )


LFT_FOR_NALTREXONE = _rule(
    "task.order-lft.naltrexone",
    "order-lft",
    "Naltrexone active, suitable, caution or not-yet and no ALT/AST in 90 days (baseline)",
    "§7; §8 Tasks",
    FDA_NALTREXONE,
    "tasks.order-lft.interval_days",
)


def lft_for_naltrexone(p: Planner) -> None:
    status = p.status.get("naltrexone")
    window = p.interval("order-lft")
    if status in ("active", "suitable", "caution", "not-yet") and not _measured(
        p.f, ("alt", "ast"), window
    ):
        p.add(
            LFT_FOR_NALTREXONE,
            f"Naltrexone {status}: no ALT/AST in the last {timing.describe_window(window)} "
            "(baseline liver function).",
        )


LFT_ON_BUPRENORPHINE = _rule(
    "task.order-lft.buprenorphine",
    "order-lft",
    "On buprenorphine and no ALT/AST in 12 calendar months",
    "§7; §8 Tasks",
    TIP_63,
    "tasks.order-lft.buprenorphine_interval_months",
)


def lft_on_buprenorphine(p: Planner) -> None:
    window = timing.months(_required(p.cfg.tasks["order-lft"].buprenorphine_interval_months))
    if p.status.get("buprenorphine") == "active" and not _measured(p.f, ("alt", "ast"), window):
        p.add(
            LFT_ON_BUPRENORPHINE,
            f"On buprenorphine: no ALT/AST in the last {timing.describe_window(window)}.",
            interval=window,
        )


ECG = _rule(
    "task.order-ecg",
    "order-ecg",
    "Methadone active, suitable or caution and no QTc in 12 calendar months",
    "§7; §8 Tasks",
    FDA_METHADONE,
    "tasks.order-ecg.interval_months",
)


def ecg(p: Planner) -> None:
    status = p.status.get("methadone")
    window = p.interval("order-ecg")
    if status in ("active", "suitable", "caution") and not _measured(p.f, ("qtc",), window):
        p.add(
            ECG,
            f"Methadone {status}: no QTc in the last {timing.describe_window(window)} (ECG before "
            "starting and yearly).",
        )


PREGNANCY_TEST = _rule(
    "task.pregnancy-test",
    "pregnancy-test",
    "Female aged 12-50, not known pregnant, no pregnancy result in 30 days",
    "§7",
    TIP_63,
    "tasks.pregnancy-test.min_age",
    "tasks.pregnancy-test.max_age",
    "tasks.pregnancy-test.interval_days",
)


def pregnancy_test(p: Planner) -> None:
    f = p.f
    rule = p.cfg.tasks["pregnancy-test"]
    ages = age_bounds(f, p.facts.patient.birth_date)
    window = p.interval("pregnancy-test")
    if (
        p.facts.patient.gender == "female"
        and ages is not None
        and not f.known_pregnant
        and ages[1] >= _required(rule.min_age)
        and ages[0] <= _required(rule.max_age)
        and not _measured(f, ("hcg", "pregnancy"), window)
    ):
        p.add(
            PREGNANCY_TEST,
            "Female of reproductive age, pregnancy status not known in the last "
            f"{timing.describe_window(window)} (affects medication choice).",
        )


HIV_HCV = _rule(
    "task.hiv-hcv-screening",
    "hiv-hcv-screening",
    "OUD evidence and no HIV and hepatitis C results in 12 calendar months",
    "§7",
    CDC_HIV_HCV,
    "tasks.hiv-hcv-screening.interval_months",
)


def hiv_hcv(p: Planner) -> None:
    window = p.interval("hiv-hcv-screening")
    if p.f.oud_evidence and not (
        _measured(p.f, ("hiv",), window) and _measured(p.f, ("hcv",), window)
    ):
        p.add(
            HIV_HCV,
            "OUD: no HIV and hepatitis C screening results in the last "
            f"{timing.describe_window(window)}.",
        )


PRESCRIBE_NALOXONE = _rule(
    "task.prescribe-naloxone",
    "prescribe-naloxone",
    "Naloxone recommended",
    "§7",
    FDA_NALOXONE_2020,
    "task_repeat_after_days",
)


def prescribe_naloxone(p: Planner) -> None:
    if p.status.get("naloxone") == "recommended":
        p.add(PRESCRIBE_NALOXONE, "No rescue naloxone on file: prescribe and train.")


DISCUSS_MOUD = _rule(
    "task.discuss-moud-options",
    "discuss-moud-options",
    "Assessment phase and not on MOUD",
    "§7; §4 (agonist treatment is first-line)",
    ASAM_2020,
    "task_repeat_after_days",
)


def discuss_moud(p: Planner) -> None:
    if p.phase == "assessment" and not p.f.active_moud:
        p.add(
            DISCUSS_MOUD,
            "Not on MOUD: discuss buprenorphine and methadone (first-line) and extended-release "
            "naltrexone.",
        )


REVIEW_ADHERENCE = _rule(
    "task.review-adherence",
    "review-adherence",
    "Expected MOUD analyte missing from the latest drug screen",
    "§7; §2",
    TIP_63,
    "task_repeat_after_days",
)


def review_adherence(p: Planner) -> None:
    for flag in p.flags:
        if flag.code == "moud-analyte-missing":
            p.add(REVIEW_ADHERENCE, flag.detail, *flag.evidence)


REVIEW_DEPRESSANTS = _rule(
    "task.review-cns-depressants",
    "review-cns-depressants",
    "An active opioid or MOUD together with an active benzodiazepine or CNS depressant",
    "§7; §5",
    FDA_OPIOID_BENZO,
    "task_repeat_after_days",
)


def review_depressants(p: Planner) -> None:
    for flag in p.flags:
        if flag.code == "opioid-cns-depressant" and flag.order_ref is None:
            p.add(REVIEW_DEPRESSANTS, flag.detail, *flag.evidence)


FOLLOW_UP = _rule(
    "task.follow-up-visit",
    "follow-up-visit",
    "Every phase: a follow-up visit inside the phase's interval",
    "§7",
    TIP_63,
    "tasks.follow-up-visit.interval_days",
)


def follow_up(p: Planner) -> None:
    p.add(
        FOLLOW_UP,
        f"{p.phase.capitalize()} phase: follow-up within "
        f"{timing.describe_window(p.interval('follow-up-visit'))}.",
    )


# ------------------------------------------------------------------ §6 psychosocial care

BY_STAGE = _rule(
    "task.psychosocial.by-stage",
    "psychosocial",
    "The psychosocial care of the stage of change (unknown stage: motivational interviewing)",
    "§6",
    UPTODATE_PSYCHOSOCIAL,
    "psychosocial.by_stage",
    "labs.stage_valid_days",
)


def by_stage(p: Planner) -> None:
    stage = p.f.stage.stage if p.f.stage is not None else None
    stage_ref = p.f.stage.ref if p.f.stage is not None else ""
    for code in p.cfg.psychosocial.by_stage.get(stage or "unknown", ()):
        p.add(BY_STAGE, f"Stage of change: {stage or 'unknown'}.", stage_ref, code=code)


CONTINGENCY = _rule(
    "task.contingency-management.illicit-uds",
    "contingency-management",
    "An illicit opioid or stimulant-positive drug screen in the last 30 days: 12 weekly sessions",
    "§6",
    UPTODATE_PSYCHOSOCIAL,
    "psychosocial.illicit_uds_days",
    "psychosocial.contingency_management_sessions",
)


def contingency(p: Planner) -> None:
    f = p.f
    ps = p.cfg.psychosocial
    recent = [
        s
        for s in f.screens_within(ps.illicit_uds_days)
        if s.result is Result.POSITIVE
        and (s in f.illicit or s.analyte in p.cfg.drug_groups.stimulant_analytes)
    ]
    if recent:
        p.add(
            CONTINGENCY,
            f"Illicit opioid or stimulant-positive drug screen in the last {ps.illicit_uds_days} "
            f"days: contingency management ({ps.contingency_management_sessions} weekly "
            "sessions).",
            *(s.ref for s in recent),
        )


COUNSELING = _rule(
    "task.addiction-counseling.methadone",
    "addiction-counseling",
    "On methadone: counselling is part of opioid treatment program care",
    "§6",
    TIP_63,
)


def counseling(p: Planner) -> None:
    o = p.f.active_moud.get("methadone")
    if o is not None:
        p.add(
            COUNSELING, "On methadone: counselling is part of opioid treatment program care.", o.ref
        )


FAMILY = _rule(
    "task.family-support",
    "family-support",
    "Assessment phase or return to use: community reinforcement and family training",
    "§6",
    UPTODATE_PSYCHOSOCIAL,
)


def family(p: Planner) -> None:
    if p.phase == "assessment" or p.return_to_use:
        p.add(
            FAMILY,
            "Community reinforcement and family training; naloxone training for family members.",
        )


TaskFormula = Callable[[Planner], None]

RULES_IN_ORDER: tuple[tuple[Rule, TaskFormula], ...] = (
    (UDS_BY_PHASE, uds_by_phase),
    (UDS_FOR_NALTREXONE, uds_for_naltrexone),
    (ASSESS_COWS, assess_cows),
    (ASSESS_SEVERITY, assess_severity),
    (ASSESS_READINESS, assess_readiness),
    (LFT_FOR_NALTREXONE, lft_for_naltrexone),
    (LFT_ON_BUPRENORPHINE, lft_on_buprenorphine),
    (ECG, ecg),
    (PREGNANCY_TEST, pregnancy_test),
    (HIV_HCV, hiv_hcv),
    (PRESCRIBE_NALOXONE, prescribe_naloxone),
    (DISCUSS_MOUD, discuss_moud),
    (REVIEW_ADHERENCE, review_adherence),
    (REVIEW_DEPRESSANTS, review_depressants),
    (FOLLOW_UP, follow_up),
    (BY_STAGE, by_stage),
    (CONTINGENCY, contingency),
    (COUNSELING, counseling),
    (FAMILY, family),
)
RULES: tuple[Rule, ...] = tuple(r for r, _ in RULES_IN_ORDER)


def plan_tasks(
    f: Findings,
    facts: Facts,
    cfg: PathwayConfig,
    phase: str,
    return_to_use: bool,
    options: dict[str, MedicationOption],
    flags: list[SafetyFlag],
) -> tuple[PlannedTask, ...]:
    if phase == "not-applicable":
        return ()
    status = {name: o.status for name, o in options.items()}
    p = Planner(f, facts, cfg, phase, return_to_use, status, flags, {})
    for _, formula in RULES_IN_ORDER:
        formula(p)
    return tuple(p.planned.values())
