"""Methadone (opioid treatment program, daily observed dosing at first): PATHWAY.md §4, §8."""

from __future__ import annotations

from pathway.rules import timing
from pathway.rules.catalogue import (
    ASAM_2020,
    CFR_42_8_12,
    FDA_METHADONE,
    FDA_OPIOID_BENZO,
    TIP_63,
    Rule,
)
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import Findings
from pathway.rules.model import MedicationOption, PatientFacts
from pathway.rules.options.common import (
    Fired,
    Formula,
    current_qtc,
    decide,
    fired,
    label,
    youngest_age,
)

ACTIVE = Rule(
    "methadone.active",
    "medication",
    "methadone",
    "active",
    "Already on methadone for OUD: continue in the opioid treatment program",
    "§2 Active MOUD; §4",
    TIP_63,
)


def active(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    o = f.active_moud.get("methadone")
    if o is None:
        return []
    return fired(
        f"On methadone ({label(o.name, o.ref)}): continue in the opioid treatment program.", o.ref
    )


QTC_CONTRAINDICATED = Rule(
    "methadone.contraindicated.qtc",
    "medication",
    "methadone",
    "contraindicated",
    "Latest QTc in the last 12 calendar months over 500 ms: choose buprenorphine",
    "§4 Methadone; §8 (a QTc counts for 12 calendar months)",
    FDA_METHADONE,
    reads=("methadone.qtc_contraindicated_above_ms", "labs.qtc_valid_months"),
)


def qtc_contraindicated(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    qtc = current_qtc(f, cfg)
    limit = cfg.methadone.qtc_contraindicated_above_ms
    if qtc is None or qtc.value is None or qtc.value <= limit:
        return []
    return fired(
        f"QTc {qtc.value:g} ms ({timing.describe(qtc.when)}) is over {limit:g} ms: choose "
        "buprenorphine.",
        qtc.ref,
    )


QTC_CAUTION = Rule(
    "methadone.caution.qtc",
    "medication",
    "methadone",
    "caution",
    "Latest QTc in the last 12 calendar months 450-500 ms: ECG monitoring",
    "§4 Methadone; §8",
    FDA_METHADONE,
    reads=(
        "methadone.qtc_caution_min_ms",
        "methadone.qtc_contraindicated_above_ms",
        "labs.qtc_valid_months",
    ),
)


def qtc_caution(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    qtc = current_qtc(f, cfg)
    m = cfg.methadone
    if qtc is None or qtc.value is None:
        return []
    if not m.qtc_caution_min_ms <= qtc.value <= m.qtc_contraindicated_above_ms:
        return []
    return fired(
        f"QTc {qtc.value:g} ms ({timing.describe(qtc.when)}) is {m.qtc_caution_min_ms:g}-"
        f"{m.qtc_contraindicated_above_ms:g} ms: ECG monitoring, avoid other QT-prolonging drugs.",
        qtc.ref,
    )


CNS_DEPRESSANT = Rule(
    "methadone.caution.cns-depressant",
    "medication",
    "methadone",
    "caution",
    "Active benzodiazepine or other CNS depressant: respiratory depression risk",
    "§4 Methadone",
    FDA_OPIOID_BENZO,
    reads=("drug_groups.cns_depressants",),
)


def cns_depressant(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    return [
        Fired(
            f"Active benzodiazepine or other CNS depressant ({label(d.name, d.ref)}): "
            "respiratory depression risk.",
            (d.ref,),
        )
        for d in f.has_active(cfg.drug_groups.cns_depressants)
    ]


AGE = Rule(
    "methadone.caution.age",
    "medication",
    "methadone",
    "caution",
    "Age under 18: admission of minors to an opioid treatment program has extra federal conditions",
    "§4 Methadone",
    CFR_42_8_12,
    reads=("methadone.min_age",),
)


def age(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    youngest = youngest_age(f, p)
    limit = cfg.methadone.min_age
    if youngest is None or youngest >= limit:
        return []
    return fired(
        f"Age under {limit}: admission of minors to an opioid treatment program has extra "
        "federal conditions.",
        f"Patient/{p.id}",
    )


FIRST_LINE = Rule(
    "methadone.suitable.first-line",
    "medication",
    "methadone",
    "suitable",
    "First-line agonist treatment in an opioid treatment program (well suited to severe OUD)",
    "§4 Methadone; §8 (severe = DSM-5 count of 6 or more)",
    ASAM_2020,
    reads=("severity.severe_min",),
    unless=(ACTIVE.id,),
)


def first_line(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    reason = (
        "First-line agonist treatment in an opioid treatment program (daily observed dosing at "
        "first)"
    )
    if f.severity == "severe":
        return fired(reason + "; well suited to severe OUD.", f.severity_ref or "")
    return fired(reason + ".")


NO_QTC = Rule(
    "methadone.suitable.no-qtc",
    "medication",
    "methadone",
    "suitable",
    "No QTc in the last 12 calendar months: obtain an ECG before starting (task order-ecg)",
    "§4 Methadone; §8",
    FDA_METHADONE,
    reads=("labs.qtc_valid_months",),
    unless=(ACTIVE.id,),
)


def no_qtc(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> list[Fired]:
    if current_qtc(f, cfg) is not None:
        return []
    return fired(
        f"No QTc in the last {timing.describe_window(timing.months(cfg.labs.qtc_valid_months))}: "
        "obtain an ECG before starting (task order-ecg)."
    )


RULES: tuple[tuple[Rule, Formula], ...] = (
    (ACTIVE, active),
    (QTC_CONTRAINDICATED, qtc_contraindicated),
    (QTC_CAUTION, qtc_caution),
    (CNS_DEPRESSANT, cns_depressant),
    (AGE, age),
    (FIRST_LINE, first_line),
    (NO_QTC, no_qtc),
)


def methadone(f: Findings, p: PatientFacts, cfg: PathwayConfig) -> MedicationOption:
    return decide("methadone", RULES, f, p, cfg)
