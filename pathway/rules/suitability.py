"""PATHWAY.md §4 (with §8): one status per medication option, with reasons and evidence.

Precedence when several rules fire: contraindicated > active > not-yet > caution > suitable.
An active medication that meets a caution rule stays active and lists the caution.
Agonist treatment (buprenorphine, methadone) is first-line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pathway.rules import timing
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import Findings, age_bounds, hours_since
from pathway.rules.model import Measurement, MedicationOption, PatientFacts, Result

PRECEDENCE = ("contraindicated", "active", "not-yet", "caution", "suitable")
LABELS = {"contraindicated": "Contraindicated", "not-yet": "Not yet", "caution": "Caution"}


@dataclass(slots=True)
class _Option:
    medication: str
    hits: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)

    def add(self, status: str, reason: str, *evidence: str) -> None:
        self.hits.append((status, reason, tuple(e for e in evidence if e)))

    def result(self) -> MedicationOption:
        status = min((h[0] for h in self.hits), key=PRECEDENCE.index, default="suitable")
        hits = self.hits
        if status == "active":
            # "Not yet" is about starting a medication: it says nothing about one already taken.
            hits = [h for h in hits if h[0] != "not-yet"]
        reasons = [h[1] for h in hits if h[0] == status]
        for other in PRECEDENCE:
            if other == status:
                continue
            for h in hits:
                if h[0] == other:
                    label = LABELS.get(other)
                    reasons.append(f"{label}: {h[1]}" if label else h[1])
        evidence = tuple(dict.fromkeys(e for h in hits for e in h[2]))
        return MedicationOption(self.medication, status, tuple(reasons), evidence)


@dataclass(frozen=True, slots=True)
class LiverResult:
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
    m = f.latest.get("qtc")
    if m is None or m.value is None:
        return None
    if not timing.may_be_within_months(m.when, f.as_of, cfg.labs.qtc_valid_months):
        return None  # older than 12 months is "no QTc" (§8)
    return m


def recent_full_agonist_exposure(f: Findings, cfg: PathwayConfig) -> tuple[list[str], list[str]]:
    """§4 buprenorphine not-yet, first half: recent full-agonist opioid exposure."""
    b = cfg.buprenorphine
    reasons: list[str] = []
    refs: list[str] = []
    for o in f.has_active(cfg.drug_groups.full_agonist_analgesics):
        reasons.append(f"active full-agonist opioid analgesic ({o.name or o.ref})")
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
    use = f.last_use
    if use is not None and use.opioid_type != "fentanyl":
        kind = use.opioid_type or "long-acting"
        untyped = "" if use.opioid_type else " (type not recorded: counted as long-acting)"
        if use.used is None:
            reasons.append("last opioid use recorded without a time")
            refs.append(use.ref)
        else:
            limit = b.short_acting_hours if kind == "short-acting" else b.long_acting_hours
            if timing.may_be_within_hours(use.used, f.as_of, limit):
                hours = max(0.0, hours_since(use.used, f.as_of))
                reasons.append(
                    f"last {kind} opioid use {hours:.0f} h ago (under {limit} h){untyped}"
                )
                refs.append(use.ref)
    return reasons, refs


def _ages(patient: PatientFacts, f: Findings) -> tuple[int, int] | None:
    return age_bounds(f, patient.birth_date)


def buprenorphine(f: Findings, patient: PatientFacts, cfg: PathwayConfig) -> MedicationOption:
    o = _Option("buprenorphine")
    b = cfg.buprenorphine
    active = f.active_moud.get("buprenorphine")
    if active is not None:
        o.add("active", f"On buprenorphine ({active.name or active.ref}): continue.", active.ref)
    # §8: on methadone (any active methadone request, pain included) buprenorphine is a planned
    # transition (caution), never not-yet, whatever other exposure exists.
    on_methadone = f.has_active(("methadone",))
    exposure, refs = recent_full_agonist_exposure(f, cfg)
    if exposure and not on_methadone:
        cows = f.latest.get("cows")
        cows_ok = (
            cows is not None
            and cows.value is not None
            and cows.value >= cfg.cows.buprenorphine_start_min
            and timing.surely_within_hours(cows.when, f.as_of, cfg.cows.buprenorphine_window_hours)
        )
        if not cows_ok:
            recent_cows = (
                cows is not None
                and cows.value is not None
                and timing.may_be_within_hours(
                    cows.when, f.as_of, cfg.cows.buprenorphine_window_hours
                )
            )
            cows_text = (
                f"latest COWS {int(cows.value)} ({timing.describe(cows.when)})"
                if cows is not None and cows.value is not None and recent_cows
                else f"no COWS in the last {cfg.cows.buprenorphine_window_hours} h"
            )
            o.add(
                "not-yet",
                "Risk of precipitated withdrawal: " + "; ".join(exposure) + f"; {cows_text}. "
                f"Reassess COWS and start when it is {cfg.cows.buprenorphine_start_min} or more, "
                "or consider a low-dose initiation.",
                *refs,
                cows.ref if cows is not None and recent_cows else "",
            )
    for methadone in on_methadone[:1]:
        o.add(
            "caution",
            f"Currently on methadone ({methadone.name or methadone.ref}): a transition to "
            "buprenorphine needs a taper and specialist input.",
            methadone.ref,
        )
    for dep in f.has_active(cfg.drug_groups.cns_depressants):
        o.add(
            "caution",
            f"Active benzodiazepine or other CNS depressant ({dep.name or dep.ref}): "
            "respiratory depression risk; do not withhold MOUD, review the depressant.",
            dep.ref,
        )
    liver = liver_ratio(f, cfg)
    if liver is not None and liver.ratio > b.liver_caution_uln_multiple:
        o.add(
            "caution",
            f"{liver.name} {liver.measurement.value:g} U/L is {liver.ratio:.1f} x the "
            f"upper limit of normal (over {b.liver_caution_uln_multiple:g} x): monitor liver "
            "function.",
            liver.measurement.ref,
        )
    ages = _ages(patient, f)
    if ages is not None and ages[0] < b.min_age:
        o.add(
            "caution",
            f"Age under {b.min_age}: specialist input for adolescent treatment.",
            f"Patient/{patient.id}",
        )
    if active is None:
        o.add("suitable", "First-line agonist treatment; office-based, no daily clinic visits.")
    if f.known_pregnant:
        o.add("suitable", "Appropriate in pregnancy.", *f.pregnancy_refs)
    return o.result()


def methadone(f: Findings, patient: PatientFacts, cfg: PathwayConfig) -> MedicationOption:
    o = _Option("methadone")
    m = cfg.methadone
    active = f.active_moud.get("methadone")
    if active is not None:
        o.add(
            "active",
            f"On methadone ({active.name or active.ref}): continue in the opioid "
            "treatment program.",
            active.ref,
        )
    qtc = current_qtc(f, cfg)
    if qtc is not None and qtc.value is not None:
        if qtc.value > m.qtc_contraindicated_above_ms:
            o.add(
                "contraindicated",
                f"QTc {qtc.value:g} ms ({timing.describe(qtc.when)}) is over "
                f"{m.qtc_contraindicated_above_ms:g} ms: choose buprenorphine.",
                qtc.ref,
            )
        elif qtc.value >= m.qtc_caution_min_ms:
            o.add(
                "caution",
                f"QTc {qtc.value:g} ms ({timing.describe(qtc.when)}) is "
                f"{m.qtc_caution_min_ms:g}-{m.qtc_contraindicated_above_ms:g} ms: ECG monitoring, "
                "avoid other QT-prolonging drugs.",
                qtc.ref,
            )
    for dep in f.has_active(cfg.drug_groups.cns_depressants):
        o.add(
            "caution",
            f"Active benzodiazepine or other CNS depressant ({dep.name or dep.ref}): "
            "respiratory depression risk.",
            dep.ref,
        )
    ages = _ages(patient, f)
    if ages is not None and ages[0] < m.min_age:
        o.add(
            "caution",
            f"Age under {m.min_age}: admission of minors to an opioid treatment "
            "program has extra federal conditions.",
            f"Patient/{patient.id}",
        )
    if active is None:
        reason = (
            "First-line agonist treatment in an opioid treatment program (daily observed "
            "dosing at first)"
        )
        if f.severity == "severe":
            reason += "; well suited to severe OUD"
        o.add("suitable", reason + ".", f.severity_ref or "" if f.severity == "severe" else "")
        if qtc is None:
            o.add(
                "suitable",
                "No QTc in the last 12 months: obtain an ECG before starting (task order-ecg).",
            )
    return o.result()


def naltrexone(f: Findings, patient: PatientFacts, cfg: PathwayConfig) -> MedicationOption:
    o = _Option("naltrexone")
    n = cfg.naltrexone
    active = f.active_moud.get("naltrexone")
    if active is not None:
        o.add("active", f"On naltrexone ({active.name or active.ref}): continue.", active.ref)
    agonists = f.has_active(
        (
            "methadone",
            "buprenorphine-oud",
            "buprenorphine-pain",
            *cfg.drug_groups.full_agonist_analgesics,
        )
    )
    for a in agonists:
        o.add(
            "contraindicated",
            f"Active opioid agonist ({a.name or a.ref}): naltrexone would "
            "precipitate withdrawal and block treatment.",
            a.ref,
        )
    liver = liver_ratio(f, cfg)
    if liver is not None:
        if liver.ratio > n.liver_contraindicated_uln_multiple:
            o.add(
                "contraindicated",
                f"{liver.name} {liver.measurement.value:g} U/L is "
                f"{liver.ratio:.1f} x the upper limit of normal (over "
                f"{n.liver_contraindicated_uln_multiple:g} x).",
                liver.measurement.ref,
            )
        elif liver.ratio >= n.liver_caution_uln_multiple:
            o.add(
                "caution",
                f"{liver.name} {liver.measurement.value:g} U/L is {liver.ratio:.1f} x "
                f"the upper limit of normal ({n.liver_caution_uln_multiple:g}-"
                f"{n.liver_contraindicated_uln_multiple:g} x): monitor liver function.",
                liver.measurement.ref,
            )
    # not-yet: the opioid-free interval must be documented.
    use = f.last_use
    if use is not None:
        kind = use.opioid_type or "long-acting"
        days = n.opioid_free_days_long if kind == "long-acting" else n.opioid_free_days_short
        if use.used is None or timing.may_be_within_days(use.used, f.as_of, days):
            when = timing.describe(use.used) if use.used else "at an unknown time"
            o.add(
                "not-yet",
                f"Last {kind} opioid use {when}: needs {days} opioid-free days first.",
                use.ref,
            )
    for s in f.illicit_within(n.illicit_uds_days):
        o.add(
            "not-yet",
            f"Illicit {s.analyte}-positive drug screen {timing.describe(s.when)} "
            f"(within {n.illicit_uds_days} days).",
            s.ref,
        )
    c = f.withdrawal_cows
    if c is not None and c.value is not None:
        o.add(
            "not-yet",
            f"COWS {c.value:g} ({timing.describe(c.when)}) in the last "
            f"{cfg.cows.withdrawal_window_hours} h: still in withdrawal.",
            c.ref,
        )
    negative, neg_refs = negative_opioid_screen(f, cfg, n.negative_uds_days)
    if not negative:
        o.add(
            "not-yet",
            f"No negative opioid drug screen (opiates and fentanyl) in the last "
            f"{n.negative_uds_days} days: document the opioid-free interval with a drug screen.",
        )
    if f.known_pregnant:
        o.add(
            "caution",
            "Pregnancy: limited data for naltrexone; agonist treatment preferred.",
            *f.pregnancy_refs,
        )
    if f.severity == "severe":
        stage = f.stage.stage if f.stage else None
        if stage not in n.stages_ready:
            o.add(
                "caution",
                "Severe OUD with a stage of change before action"
                + (f" ({stage})" if stage else " (stage not known)")
                + ": do not offer naltrexone in place of agonist treatment.",
                f.severity_ref or "",
                f.stage.ref if f.stage else "",
            )
    if active is None and not any(h[0] in ("not-yet", "contraindicated") for h in o.hits):
        o.add(
            "suitable",
            "Opioid-free interval documented by a negative drug screen; "
            "extended-release injection preferred.",
            *neg_refs,
        )
    return o.result()


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


def naloxone(f: Findings, cfg: PathwayConfig, concern: bool) -> MedicationOption:
    months = cfg.naloxone.prescribed_lookback_months
    # §8: authored in the last 12 months, whatever its status (an old active PRN order does not
    # count: kits are used, lost and expire).
    for order in f.orders:
        if "naloxone-rescue" in order.groups and timing.surely_within_months(
            order.authored, f.as_of, months
        ):
            return MedicationOption(
                "naloxone",
                "active",
                (
                    f"Rescue naloxone prescribed {timing.describe(order.authored)} "
                    f"({order.name or order.ref}).",
                ),
                (order.ref,),
            )
    if concern:
        return MedicationOption(
            "naloxone",
            "recommended",
            (
                "No rescue naloxone prescribed in the last 12 months: prescribe naloxone (nasal "
                "spray or injection) and train the patient and family (task prescribe-naloxone).",
            ),
            (),
        )
    return MedicationOption("naloxone", "not-indicated", ("No OUD evidence or suspicion.",), ())


def adjunct(name: str, f: Findings, cfg: PathwayConfig) -> MedicationOption:
    o = _Option(name)
    for order in f.has_active((name,)):
        if name == "lofexidine" or order.reason_tags & {"withdrawal", "oud"}:
            return MedicationOption(
                name,
                "active",
                (
                    f"Prescribed for opioid withdrawal ({order.name or order.ref})"
                    ": continue while symptomatic.",
                ),
                (order.ref,),
            )
    if not f.in_withdrawal:
        return MedicationOption(name, "not-indicated", ("Not in opioid withdrawal.",), ())
    o.add(
        "suitable",
        "In opioid withdrawal (" + "; ".join(f.withdrawal_reasons) + "): symptomatic relief.",
        *f.withdrawal_refs,
    )
    a = cfg.adjuncts
    # Any low reading in the window counts, not only the latest (§4: "in the last 24 h").
    low = {"sbp": a.systolic_bp_min, "hr": a.heart_rate_min}
    seen: set[str] = set()
    for m in f.measurements:
        if m.kind not in low or m.kind in seen or m.value is None or m.value >= low[m.kind]:
            continue
        if not timing.may_be_within_hours(m.when, f.as_of, a.vitals_window_hours):
            continue
        seen.add(m.kind)
        if m.kind == "sbp":
            text = f"Systolic BP {m.value:g} mmHg ({timing.describe(m.when)}) under {low['sbp']:g}"
            o.add("caution", text + ": hypotension risk.", m.ref)
        else:
            text = f"Heart rate {m.value:g}/min ({timing.describe(m.when)}) under {low['hr']:g}"
            o.add("caution", text + ": bradycardia risk.", m.ref)
    if name == "clonidine":
        for order in f.has_active(("clonidine",)):
            label = order.name or order.ref
            o.add(
                "caution",
                f"Already on clonidine for another indication ({label}): adding "
                "more risks hypotension.",
                order.ref,
            )
    return o.result()
