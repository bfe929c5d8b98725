"""Derived facts of PATHWAY.md §2 (and the §8 definitions they rest on), computed once.

Everything downstream (phase, suitability, safety, tasks) reads a `Findings`, never the raw
facts twice, so one evaluation is a single pass over the patient's data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from pathway.rules import timing
from pathway.rules.catalogue import (
    ASAM_2020,
    COWS_SCALE,
    DSM_5,
    PROJECT,
    TIP_63,
    UPTODATE_PSYCHOSOCIAL,
    Rule,
)
from pathway.rules.config import PathwayConfig
from pathway.rules.model import (
    ConditionFact,
    DrugScreen,
    Facts,
    LastUse,
    Measurement,
    MedicationOrder,
    Result,
    StageOfChange,
    When,
)

ACTIVE_CONDITION = frozenset({"active", "recurrence", "relapse"})
REMISSION_CONDITION = frozenset({"remission", "inactive", "resolved"})
HISTORY_STATUSES = frozenset({"completed", "stopped", "on-hold", "unknown"})
EPISODE_STATUSES = frozenset({"active", "completed", "stopped"})
MOUD_DRUGS = ("buprenorphine", "methadone", "naltrexone")
STAGE_ORDER = ("precontemplation", "contemplation", "preparation", "action", "maintenance")


class _Cited(Protocol):
    @property
    def ref(self) -> str: ...


T = TypeVar("T", bound=_Cited)


def _fact(rule_id: str, target: str, title: str, section: str, source: str, *reads: str) -> Rule:
    return Rule(rule_id, "fact", target, "true", title, section, source, reads)


# The derived facts of §2 (with §8), each a rule the later rules build on.
EVIDENCE_CONDITION = _fact(
    "evidence.oud-condition",
    "OUD evidence",
    "An OUD Condition (active, recurrence, relapse or in remission; refuted and "
    "entered-in-error count as nothing)",
    "§1, §2 OUD evidence; §8",
    DSM_5,
)
EVIDENCE_DSM5 = _fact(
    "evidence.dsm5-count",
    "OUD evidence",
    "A DSM-5 OUD criteria count of 2 or more in the last 12 calendar months",
    "§2 OUD evidence; §8 calendar months",
    DSM_5,
    "evidence.severity_evidence_min",
    "evidence.severity_lookback_months",
)
EVIDENCE_BUPRENORPHINE = _fact(
    "evidence.buprenorphine-for-oud",
    "OUD evidence",
    "An OUD-specific buprenorphine product authored in the last 12 calendar months, or an active "
    "one whatever its authoredOn",
    "§2 OUD evidence; §8",
    TIP_63,
    "evidence.buprenorphine_lookback_months",
)
EVIDENCE_REASON = _fact(
    "evidence.moud-oud-reason",
    "OUD evidence",
    "A MOUD request whose reasonCode is in the OUD value set",
    "§8 Evidence and phase",
    PROJECT,
)
ACTIVE_MOUD = _fact(
    "fact.active-moud",
    "Active MOUD",
    "An active request for buprenorphine-for-OUD, or for methadone or naltrexone with OUD "
    "evidence (methadone for pain and naltrexone for alcohol are not MOUD)",
    "§2 Active MOUD; §8 MedicationRequest status",
    TIP_63,
)
EPISODE_CHAIN = _fact(
    "fact.episode-chain",
    "MOUD episode start",
    "The earliest authoredOn of the chain of MOUD requests (active, completed, stopped) ending "
    "in the active one, consecutive requests at most 30 days apart",
    "§2 MOUD episode start; §8 Episode chain",
    PROJECT,
    "phase.episode_gap_days",
)
PAST_EPISODE = _fact(
    "fact.past-moud-episode",
    "Past MOUD episode",
    "Any MOUD request with status completed or stopped",
    "§8 Evidence and phase",
    PROJECT,
)
OUD_REMISSION = _fact(
    "fact.oud-in-remission",
    "OUD in remission",
    "The deciding OUD Condition (most recently recorded; active wins a tie) is in remission, "
    "inactive or resolved, or coded F11.11 / F11.21 / F11.91",
    "§1 OUD in remission; §8",
    DSM_5,
)
ILLICIT_UDS = _fact(
    "fact.illicit-uds",
    "Illicit opioid-positive UDS",
    "A positive opioid result not explained by an active prescription of the same drug group "
    "(6-MAM always illicit; fentanyl unless fentanyl is prescribed)",
    "§2 Illicit opioid-positive UDS; §8",
    ASAM_2020,
    "drug_groups.opioid_analytes",
    "drug_groups.always_illicit_analytes",
    "drug_groups.explained_by",
)
SUSPECTED_OUD = _fact(
    "fact.suspected-oud",
    "Suspected OUD",
    "No OUD evidence, and an illicit opioid-positive drug screen in the last 30 days",
    "§3 rule 1a",
    ASAM_2020,
    "phase.suspected_oud_uds_days",
)
IN_WITHDRAWAL = _fact(
    "fact.in-withdrawal",
    "In opioid withdrawal",
    "COWS of 5 or more in the last 72 h, an active lofexidine request or clonidine for withdrawal, "
    "or an opioid withdrawal Condition in the last 7 days",
    "§3 rule 3a; §8 Withdrawal treatment",
    COWS_SCALE,
    "cows.withdrawal_min",
    "cows.withdrawal_window_hours",
    "phase.withdrawal_condition_days",
)
SEVERITY = _fact(
    "fact.oud-severity",
    "OUD severity",
    "The latest DSM-5 criteria count in 12 calendar months (2-3 mild, 4-5 moderate, 6 or more "
    "severe), else F11.1x mild and F11.2x moderate-or-severe",
    "§1 OUD severity; §8 Severe",
    DSM_5,
    "severity.mild_min",
    "severity.moderate_min",
    "severity.severe_min",
    "evidence.severity_lookback_months",
)
STAGE = _fact(
    "fact.stage-of-change",
    "Stage of change",
    "The latest readable stage of change in the last 90 days (older is unknown)",
    "§1; §8",
    UPTODATE_PSYCHOSOCIAL,
    "labs.stage_valid_days",
)
KNOWN_PREGNANT = _fact(
    "fact.known-pregnant",
    "Known pregnant",
    "Pregnancy status pregnant, a positive hCG in the last 30 days, or an active pregnancy "
    "Condition",
    "§8 Known pregnant",
    TIP_63,
    "labs.hcg_valid_days",
)

RULES: tuple[Rule, ...] = (
    EVIDENCE_CONDITION,
    EVIDENCE_DSM5,
    EVIDENCE_BUPRENORPHINE,
    EVIDENCE_REASON,
    ACTIVE_MOUD,
    EPISODE_CHAIN,
    PAST_EPISODE,
    OUD_REMISSION,
    ILLICIT_UDS,
    SUSPECTED_OUD,
    IN_WITHDRAWAL,
    SEVERITY,
    STAGE,
    KNOWN_PREGNANT,
)


def moud_drug(order: MedicationOrder, oud_evidence: bool) -> str | None:
    """The MOUD an order is, if any: buprenorphine-for-OUD always; methadone and naltrexone
    only with OUD evidence (methadone for pain and naltrexone for alcohol are not MOUD)."""
    if "buprenorphine-oud" in order.groups:
        return "buprenorphine"
    if "methadone" in order.groups and (oud_evidence or "oud" in order.reason_tags):
        return "methadone"
    if "naltrexone" in order.groups and (oud_evidence or "oud" in order.reason_tags):
        return "naltrexone"
    return None


@dataclass(frozen=True, slots=True)
class Findings:
    as_of: datetime
    oud_evidence: bool
    evidence_reasons: tuple[str, ...]
    evidence_rules: tuple[str, ...]  # the rule of each reason, in the same order
    evidence_refs: tuple[str, ...]
    oud_status: str | None  # active | remission (the deciding OUD Condition), None without one
    oud_condition: ConditionFact | None
    severity: str | None
    severity_ref: str | None
    orders: tuple[MedicationOrder, ...]  # not after as_of; history and active
    active_orders: tuple[MedicationOrder, ...]
    active_moud: dict[str, MedicationOrder]  # drug -> the latest active order of it
    episode_start: When | None
    episode_refs: tuple[str, ...]
    past_moud: tuple[MedicationOrder, ...]
    screens: tuple[DrugScreen, ...]  # not after as_of, newest first
    illicit: tuple[DrugScreen, ...]  # illicit opioid positives, newest first
    in_withdrawal: bool
    withdrawal_reasons: tuple[str, ...]
    withdrawal_refs: tuple[str, ...]
    withdrawal_cows: Measurement | None  # a COWS at or over the withdrawal threshold in 72 h
    latest: dict[str, Measurement]  # newest measurement of each kind, not after as_of
    measurements: tuple[Measurement, ...]  # not after as_of, newest first
    last_use: LastUse | None
    last_uses: tuple[LastUse, ...]  # newest first; unknown dates last
    stage: StageOfChange | None  # current (inside its validity) or None = unknown
    stages: tuple[StageOfChange, ...]  # every stage observation not after as_of, newest first
    known_pregnant: bool
    pregnancy_refs: tuple[str, ...]
    suspected_oud: bool  # no OUD evidence and an illicit opioid-positive screen (rule 1a)
    fired: tuple[str, ...]  # ids of the fact rules that hold for this patient

    @property
    def concern(self) -> bool:
        """OUD evidence or suspected OUD: the pathway applies."""
        return self.oud_evidence or self.suspected_oud

    def has_active(self, groups: tuple[str, ...] | frozenset[str]) -> list[MedicationOrder]:
        return [o for o in self.active_orders if o.groups & frozenset(groups)]

    def screens_within(self, days: int) -> list[DrugScreen]:
        return _newest_within(self.screens, self.as_of, days)

    def illicit_within(self, days: int) -> list[DrugScreen]:
        return _newest_within(self.illicit, self.as_of, days)

    def drug_start(self, drug: str, cfg: PathwayConfig) -> When | None:
        """The start of the chain of `drug`'s own requests that ends in its active one."""
        return _episode(self.orders, self.active_moud.get(drug), self.oud_evidence, cfg, drug)[0]


def _newest_first(items: list[T], when_of: Callable[[T], When | None]) -> list[T]:
    """Newest first; ties by reference, so the order of the data never changes the answer."""
    return sorted(items, key=lambda i: (timing.sort_key(when_of(i)), i.ref), reverse=True)


# Of two results of one kind at the same instant, the one the rules read as "the latest" is the
# worse (PATHWAY.md is silent on ties; the conservative reading): the higher QTc, ALT, AST and
# DSM-5 count, the lower COWS (buprenorphine waits), blood pressure and heart rate.
_HIGHER_IS_WORSE = frozenset({"qtc", "alt", "ast", "severity"})
_LOWER_IS_WORSE = frozenset({"cows", "sbp", "hr"})


def _worse(new: Measurement, old: Measurement, default_uln: float) -> bool:
    if new.value is not None and old.value is not None:
        if new.kind in _HIGHER_IS_WORSE:
            if new.kind in ("alt", "ast"):  # as multiples of each one's upper limit of normal
                return _ratio(new, default_uln) > _ratio(old, default_uln)
            return new.value > old.value
        if new.kind in _LOWER_IS_WORSE:
            return new.value < old.value
    if old.value is None and new.value is not None:
        return True  # a readable value over an unreadable one
    return new.result is Result.POSITIVE and old.result is not Result.POSITIVE


def _ratio(m: Measurement, default_uln: float) -> float:
    uln = m.upper_limit if m.upper_limit and m.upper_limit > 0 else default_uln
    return (m.value or 0.0) / uln


def _latest_of_each_kind(
    measurements: list[Measurement], default_uln: float
) -> dict[str, Measurement]:
    latest: dict[str, Measurement] = {}
    for m in _newest_first(measurements, lambda m: m.when):
        held = latest.get(m.kind)
        tie = held is not None and timing.sort_key(held.when) == timing.sort_key(m.when)
        if held is None or (tie and _worse(m, held, default_uln)):
            latest[m.kind] = m
    return latest


def _condition_status(c: ConditionFact) -> str:
    if "oud-remission-code" in c.tags or c.clinical_status in REMISSION_CONDITION:
        return "remission"
    # No clinicalStatus: the conservative reading is active disease.
    return "active"


def _deciding_oud_condition(conditions: list[ConditionFact]) -> ConditionFact | None:
    """§8: the most recently recorded OUD Condition decides; on a tie active wins."""
    if not conditions:
        return None

    def key(c: ConditionFact) -> tuple[tuple[datetime, datetime], int]:
        return (timing.sort_key(c.when), 1 if _condition_status(c) == "active" else 0)

    return max(conditions, key=key)


def _severity(
    facts: Facts,
    as_of: datetime,
    cfg: PathwayConfig,
    latest: dict[str, Measurement],
    oud_conditions: list[ConditionFact],
) -> tuple[str | None, str | None]:
    sev = latest.get("severity")
    if (
        sev is not None
        and sev.value is not None
        and timing.may_be_within_months(sev.when, as_of, cfg.evidence.severity_lookback_months)
    ):
        count = sev.value
        if count >= cfg.severity.severe_min:
            return "severe", sev.ref
        if count >= cfg.severity.moderate_min:
            return "moderate", sev.ref
        if count >= cfg.severity.mild_min:
            return "mild", sev.ref
        return None, sev.ref
    # Derived from the diagnosis code (§1): F11.2x is "moderate or severe", never "severe" (§8).
    for c in oud_conditions:
        if "oud-moderate-severe" in c.tags:
            return "moderate-or-severe", c.ref
    for c in oud_conditions:
        if "oud-mild" in c.tags:
            return "mild", c.ref
    return None, None


def _newest_within(screens: tuple[DrugScreen, ...], as_of: datetime, days: int) -> list[DrugScreen]:
    """Screens (newest first) that may be in the last `days` days; stops at the first older."""
    out: list[DrugScreen] = []
    oldest = as_of.date() - timedelta(days=days)
    for s in screens:
        if s.when is None or s.when.latest.date() < oldest:
            break  # sorted newest first: the rest are older (unknown dates sort last)
        if timing.may_be_within_days(s.when, as_of, days):
            out.append(s)
    return out


def _episode(
    orders: list[MedicationOrder] | tuple[MedicationOrder, ...],
    active: MedicationOrder | None,
    oud: bool,
    cfg: PathwayConfig,
    drug: str | None = None,
) -> tuple[When | None, tuple[str, ...]]:
    """§8 episode chain: MOUD requests (active, completed, stopped) by authoredOn; consecutive
    ones at most `episode_gap_days` apart form one episode; the start is the earliest of the
    chain that ends in the active request. With `drug`, only that drug's requests form the chain
    (§8: "on buprenorphine for >= 7 days" counts from the drug's own chain)."""
    if active is None or active.authored is None:
        return None, ()
    chain = sorted(
        (
            o
            for o in orders
            if o.status in EPISODE_STATUSES
            and o.authored is not None
            and (m := moud_drug(o, oud)) is not None
            and (drug is None or m == drug)
            and o.authored.earliest <= active.authored.latest
        ),
        key=lambda o: timing.sort_key(o.authored),
    )
    start = active
    refs = [active.ref]
    for o in reversed(chain):
        if o is active or o.authored is None or start.authored is None:
            continue
        gap = (start.authored.earliest.date() - o.authored.latest.date()).days
        if gap <= cfg.phase.episode_gap_days:
            start = o
            refs.append(o.ref)
        else:
            break
    return start.authored, tuple(dict.fromkeys(refs))


def _longest_illicit_window(cfg: PathwayConfig) -> int:
    """The longest window in days any rule reads illicit screens in (older ones change nothing)."""
    return max(
        cfg.phase.suspected_oud_uds_days,
        cfg.phase.return_to_use_uds_days,
        cfg.phase.recovery_uds_days,
        cfg.buprenorphine.illicit_uds_days,
        cfg.naltrexone.illicit_uds_days,
        cfg.psychosocial.illicit_uds_days,
    )


def find(facts: Facts, as_of: datetime, cfg: PathwayConfig) -> Findings:
    # Sorted newest first (ties by reference) so that the order of the data never changes an
    # answer, a reason's order or the evidence cited.
    conditions = _newest_first(
        [c for c in facts.conditions if timing.not_after(c.when, as_of) or c.when is None],
        lambda c: c.when,
    )
    oud_conditions = [c for c in conditions if "oud" in c.tags]
    orders = _newest_first(
        [o for o in facts.orders if o.authored is None or timing.not_after(o.authored, as_of)],
        lambda o: o.authored,
    )
    active_orders = tuple(o for o in orders if o.status == "active")

    measurements = _newest_first(
        [m for m in facts.measurements if timing.not_after(m.when, as_of)], lambda m: m.when
    )
    latest = _latest_of_each_kind(measurements, cfg.labs.default_uln_u_per_l)

    severity, severity_ref = _severity(facts, as_of, cfg, latest, oud_conditions)

    # --- OUD evidence (§2, §8)
    reasons: list[str] = []
    reason_rules: list[str] = []
    refs: list[str] = []
    deciding = _deciding_oud_condition(oud_conditions)
    if deciding is not None:
        status = _condition_status(deciding)
        reason_rules.append(EVIDENCE_CONDITION.id)
        reasons.append(
            "OUD diagnosis on the problem list"
            if status == "active"
            else "OUD diagnosis in remission (history)"
        )
        refs.extend(c.ref for c in oud_conditions)
    # §2: *an* OUD severity observation >= 2 in the last 12 months (not only the latest).
    for m in measurements:
        if (
            m.kind == "severity"
            and m.value is not None
            and m.value >= cfg.evidence.severity_evidence_min
            and timing.may_be_within_months(m.when, as_of, cfg.evidence.severity_lookback_months)
        ):
            reasons.append(f"DSM-5 OUD criteria count {int(m.value)} in the last 12 months")
            reason_rules.append(EVIDENCE_DSM5.id)
            refs.append(m.ref)
            break
    for o in orders:
        if "buprenorphine-oud" in o.groups and (
            o.status == "active"
            or timing.may_be_within_months(
                o.authored, as_of, cfg.evidence.buprenorphine_lookback_months
            )
        ):
            reasons.append(
                "buprenorphine for OUD active"
                if o.status == "active"
                else "buprenorphine for OUD prescribed in the last 12 months"
            )
            reason_rules.append(EVIDENCE_BUPRENORPHINE.id)
            refs.append(o.ref)
            break
    for o in orders:
        if "oud" in o.reason_tags and o.groups & {"buprenorphine-oud", "methadone", "naltrexone"}:
            reasons.append("MOUD prescribed with an OUD reason")
            reason_rules.append(EVIDENCE_REASON.id)
            refs.append(o.ref)
            break
    oud = bool(reasons)

    # --- MOUD (§2)
    active_moud: dict[str, MedicationOrder] = {}
    for o in _newest_first(list(active_orders), lambda o: o.authored):
        drug = moud_drug(o, oud)
        if drug is not None:
            active_moud.setdefault(drug, o)
    newest_active = max(
        active_moud.values(), key=lambda o: timing.sort_key(o.authored), default=None
    )
    episode_start, episode_refs = _episode(orders, newest_active, oud, cfg)
    past_moud = tuple(
        o for o in orders if o.status in {"completed", "stopped"} and moud_drug(o, oud)
    )

    # --- drug screens
    screens = tuple(
        _newest_first(
            [s for s in facts.screens if timing.not_after(s.when, as_of)], lambda s: s.when
        )
    )
    opioid_analytes = frozenset(cfg.drug_groups.opioid_analytes)
    active_groups = frozenset(g for o in active_orders for g in o.groups)
    explained = {
        analyte
        for analyte, groups in cfg.drug_groups.explained_by.items()
        if active_groups & frozenset(groups)
    }
    illicit = tuple(
        s
        for s in screens
        if s.result is Result.POSITIVE
        and s.analyte in opioid_analytes
        and (s.analyte in cfg.drug_groups.always_illicit_analytes or s.analyte not in explained)
    )

    # --- withdrawal (rule 3a as §8 defines it)
    w_reasons: list[str] = []
    w_refs: list[str] = []
    withdrawal_cows = None
    for m in _newest_first(measurements, lambda m: m.when):
        if (
            m.kind == "cows"
            and m.value is not None
            and m.value >= cfg.cows.withdrawal_min
            and timing.may_be_within_hours(m.when, as_of, cfg.cows.withdrawal_window_hours)
        ):
            w_reasons.append(
                f"COWS {int(m.value)} ({timing.describe(m.when)}) in the last "
                f"{cfg.cows.withdrawal_window_hours} h"
            )
            w_refs.append(m.ref)
            withdrawal_cows = m
            break
    for o in active_orders:
        if "lofexidine" in o.groups or (
            "clonidine" in o.groups and o.reason_tags & {"withdrawal", "oud"}
        ):
            w_reasons.append(f"active withdrawal treatment ({o.name or o.ref})")
            w_refs.append(o.ref)
    for c in conditions:
        if "withdrawal" in c.tags and timing.may_be_within_days(
            c.when, as_of, cfg.phase.withdrawal_condition_days
        ):
            w_reasons.append(f"opioid withdrawal recorded {timing.describe(c.when)}")
            w_refs.append(c.ref)

    # --- last use, stage, pregnancy
    # A last use with no readable date is kept: unknown timing is not "long ago".
    uses = _newest_first(
        [u for u in facts.last_uses if u.used is None or timing.not_after(u.used, as_of)],
        lambda u: u.used,
    )
    last_use = uses[0] if uses else None
    stages = _newest_first(
        [s for s in facts.stages if timing.not_after(s.when, as_of)], lambda s: s.when
    )
    current = [
        s
        for s in stages
        if s.stage and timing.may_be_within_days(s.when, as_of, cfg.labs.stage_valid_days)
    ]
    # Of stages recorded at the same instant, the least ready counts (the conservative reading).
    stage = (
        min(
            (s for s in current if timing.sort_key(s.when) == timing.sort_key(current[0].when)),
            key=lambda s: STAGE_ORDER.index(s.stage) if s.stage in STAGE_ORDER else 0,
        )
        if current
        else None
    )

    preg_refs: list[str] = []
    status_obs = latest.get("pregnancy")
    if status_obs is not None and status_obs.result is Result.POSITIVE:
        preg_refs.append(status_obs.ref)
    for m in measurements:
        if (
            m.kind == "hcg"
            and m.result is Result.POSITIVE
            and timing.may_be_within_days(m.when, as_of, cfg.labs.hcg_valid_days)
        ):
            preg_refs.append(m.ref)
    for c in conditions:
        if "pregnancy" in c.tags and (
            c.clinical_status is None or c.clinical_status in ACTIVE_CONDITION
        ):
            preg_refs.append(c.ref)

    suspected = not oud and bool(_newest_within(illicit, as_of, cfg.phase.suspected_oud_uds_days))
    holds = (
        (ACTIVE_MOUD, bool(active_moud)),
        (EPISODE_CHAIN, episode_start is not None),
        (PAST_EPISODE, bool(past_moud)),
        (OUD_REMISSION, deciding is not None and _condition_status(deciding) == "remission"),
        (ILLICIT_UDS, bool(_newest_within(illicit, as_of, _longest_illicit_window(cfg)))),
        (SUSPECTED_OUD, suspected),
        (IN_WITHDRAWAL, bool(w_reasons)),
        (SEVERITY, severity is not None),
        (STAGE, stage is not None),
        (KNOWN_PREGNANT, bool(preg_refs)),
    )
    fired = tuple(dict.fromkeys(reason_rules)) + tuple(r.id for r, ok in holds if ok)
    return Findings(
        as_of=as_of,
        oud_evidence=oud,
        evidence_reasons=tuple(reasons),
        evidence_rules=tuple(reason_rules),
        evidence_refs=tuple(dict.fromkeys(refs)),
        oud_status=_condition_status(deciding) if deciding else None,
        oud_condition=deciding,
        severity=severity,
        severity_ref=severity_ref,
        orders=tuple(orders),
        active_orders=active_orders,
        active_moud=active_moud,
        episode_start=episode_start,
        episode_refs=episode_refs,
        past_moud=past_moud,
        screens=screens,
        illicit=illicit,
        in_withdrawal=bool(w_reasons),
        withdrawal_reasons=tuple(w_reasons),
        withdrawal_refs=tuple(dict.fromkeys(w_refs)),
        withdrawal_cows=withdrawal_cows,
        latest=latest,
        measurements=tuple(measurements),
        last_use=last_use,
        last_uses=tuple(uses),
        stage=stage,
        stages=tuple(stages),
        known_pregnant=bool(preg_refs),
        pregnancy_refs=tuple(dict.fromkeys(preg_refs)),
        suspected_oud=suspected,
        fired=fired,
    )


def age_bounds(findings: Findings, birth: When | None) -> tuple[int, int] | None:
    """(youngest, oldest) possible age in whole years at as_of; None when unknown."""
    if birth is None:
        return None
    today = findings.as_of.date()

    def age(born: datetime) -> int:
        b = born.date()
        return today.year - b.year - ((today.month, today.day) < (b.month, b.day))

    return age(birth.latest), age(birth.earliest)


def days_since(when: When, as_of: datetime) -> int:
    return timing.days_before(when, as_of)


def hours_since(when: When, as_of: datetime) -> float:
    return (as_of - when.latest) / timedelta(hours=1)
