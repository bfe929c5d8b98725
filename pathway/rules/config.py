"""The thresholds the pathway receives as an argument (loaded from config/pathway.yaml).

Field names mirror the YAML keys exactly, so the loader can check a file field by field and name
the one that is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Evidence:
    severity_lookback_months: int
    severity_evidence_min: int
    buprenorphine_lookback_months: int


@dataclass(frozen=True, slots=True)
class Severity:
    mild_min: int
    moderate_min: int
    severe_min: int


@dataclass(frozen=True, slots=True)
class Cows:
    max_score: int
    mild_min: int
    moderate_min: int
    moderately_severe_min: int
    severe_above: int
    withdrawal_min: int
    withdrawal_window_hours: int
    buprenorphine_start_min: int
    buprenorphine_window_hours: int
    assess_window_hours: int


@dataclass(frozen=True, slots=True)
class Phase:
    suspected_oud_uds_days: int
    stabilization_days: int
    return_to_use_uds_days: int
    recovery_uds_days: int
    withdrawal_condition_days: int
    episode_gap_days: int


@dataclass(frozen=True, slots=True)
class Buprenorphine:
    illicit_uds_days: int
    short_acting_hours: int
    long_acting_hours: int
    fentanyl_days: int
    min_age: int
    liver_caution_uln_multiple: float


@dataclass(frozen=True, slots=True)
class Methadone:
    qtc_contraindicated_above_ms: float
    qtc_caution_min_ms: float
    min_age: int


@dataclass(frozen=True, slots=True)
class Naltrexone:
    opioid_free_days_short: int
    opioid_free_days_long: int
    illicit_uds_days: int
    negative_uds_days: int
    liver_contraindicated_uln_multiple: float
    liver_caution_uln_multiple: float
    stages_ready: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Naloxone:
    prescribed_lookback_months: int


@dataclass(frozen=True, slots=True)
class Adjuncts:
    vitals_window_hours: int
    systolic_bp_min: float
    heart_rate_min: float


@dataclass(frozen=True, slots=True)
class Labs:
    default_uln_u_per_l: float
    liver_valid_days: int
    qtc_valid_months: int
    stage_valid_days: int
    hcg_valid_days: int


@dataclass(frozen=True, slots=True)
class Adherence:
    min_days_on_moud: int


@dataclass(frozen=True, slots=True)
class Psychosocial:
    illicit_uds_days: int
    contingency_management_sessions: int
    by_stage: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class TaskRule:
    priority: str
    due_in_days: int | None = None
    interval_days: int | None = None
    interval_months: int | None = None  # calendar months (§8), never a count of days
    interval_by_phase: dict[str, int] | None = None
    naltrexone_not_yet_days: int | None = None
    buprenorphine_interval_months: int | None = None
    min_age: int | None = None
    max_age: int | None = None


@dataclass(frozen=True, slots=True)
class DrugGroups:
    full_agonist_analgesics: tuple[str, ...]
    cns_depressants: tuple[str, ...]
    opioid_analytes: tuple[str, ...]
    always_illicit_analytes: tuple[str, ...]
    stimulant_analytes: tuple[str, ...]
    explained_by: dict[str, tuple[str, ...]]
    expected_analytes: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str


@dataclass(frozen=True, slots=True)
class PathwayConfig:
    version: str
    canonical: str
    evidence: Evidence
    severity: Severity
    cows: Cows
    phase: Phase
    buprenorphine: Buprenorphine
    methadone: Methadone
    naltrexone: Naltrexone
    naloxone: Naloxone
    adjuncts: Adjuncts
    labs: Labs
    adherence: Adherence
    psychosocial: Psychosocial
    tasks: dict[str, TaskRule]
    task_repeat_after_days: int  # tasks with no interval in §7: not re-planned after completion
    drug_groups: DrugGroups
    medication_codes: dict[str, Coding]

    @property
    def repeat_after_days(self) -> int:
        return self.task_repeat_after_days

    @property
    def plan_definition(self) -> str:
        return f"{self.canonical}/PlanDefinition/oud-care-pathway|{self.version}"
