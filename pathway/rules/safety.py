"""PATHWAY.md §5: safety flags, on the chart (what is active) and on draft orders.

Each flag is a named rule (`RULES`): its target is the flag code, its outcome the indicator.
Draft orders (order-select / order-sign) are judged against the patient's current state; every
patient's drafts are judged, OUD or not (an opioid with a benzodiazepine warns anyone). Safety
flags never advise stopping MOUD.
"""

from __future__ import annotations

from pathway.rules import timing
from pathway.rules.catalogue import (
    ASAM_2020,
    CDC_2022,
    FDA_METHADONE,
    FDA_NALOXONE_2020,
    FDA_NALTREXONE,
    FDA_OPIOID_BENZO,
    TIP_63,
    Rule,
)
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import Findings, moud_drug
from pathway.rules.model import MedicationOption, MedicationOrder, Result, SafetyFlag
from pathway.rules.options.common import current_qtc


def _rule(
    rule_id: str, code: str, indicator: str, title: str, section: str, source: str, *reads: str
) -> Rule:
    return Rule(rule_id, "flag", code, indicator, title, section, source, reads)


NALTREXONE_CONTRAINDICATED_ACTIVE = _rule(
    "flag.naltrexone-contraindicated.active",
    "naltrexone-contraindicated",
    "critical",
    "Naltrexone is active while it is contraindicated",
    "§5",
    FDA_NALTREXONE,
)
NALTREXONE_CONTRAINDICATED_ORDER = _rule(
    "flag.naltrexone-contraindicated.order",
    "naltrexone-contraindicated",
    "critical",
    "Naltrexone ordered while contraindicated",
    "§5",
    FDA_NALTREXONE,
)
NALTREXONE_WITH_AGONIST_ORDER = _rule(
    "flag.naltrexone-contraindicated.order-with-agonist",
    "naltrexone-contraindicated",
    "critical",
    "Naltrexone ordered together with an opioid agonist",
    "§5",
    FDA_NALTREXONE,
)
NALTREXONE_NOT_YET_ORDER = _rule(
    "flag.naltrexone-not-yet.order",
    "naltrexone-not-yet",
    "warning",
    "Naltrexone ordered before the opioid-free interval is documented",
    "§5 (the conservative extension of 'ordered while not-yet')",
    ASAM_2020,
)
METHADONE_QTC_ACTIVE = _rule(
    "flag.methadone-qtc.active",
    "methadone-qtc",
    "critical",
    "Active methadone with a QTc over 500 ms in the last 12 calendar months",
    "§5; §4 Methadone",
    FDA_METHADONE,
    "methadone.qtc_contraindicated_above_ms",
    "labs.qtc_valid_months",
)
METHADONE_QTC_ORDER = _rule(
    "flag.methadone-qtc.order",
    "methadone-qtc",
    "critical",
    "Methadone ordered with a QTc over 500 ms",
    "§5",
    FDA_METHADONE,
    "methadone.qtc_contraindicated_above_ms",
    "labs.qtc_valid_months",
)
METHADONE_QTC_ORDER_CAUTION = _rule(
    "flag.methadone-qtc.order-caution",
    "methadone-qtc",
    "warning",
    "Methadone ordered with a QTc of 450-500 ms",
    "§5",
    FDA_METHADONE,
    "methadone.qtc_caution_min_ms",
    "methadone.qtc_contraindicated_above_ms",
    "labs.qtc_valid_months",
)
BUPRENORPHINE_NOT_YET_ORDER = _rule(
    "flag.buprenorphine-not-yet.order",
    "buprenorphine-not-yet",
    "warning",
    "Buprenorphine ordered while not-yet (precipitated withdrawal risk)",
    "§5",
    ASAM_2020,
)
BUPRENORPHINE_ON_METHADONE_ORDER = _rule(
    "flag.buprenorphine-on-methadone.order",
    "buprenorphine-on-methadone",
    "warning",
    "Buprenorphine ordered while on methadone (any indication)",
    "§5; §8 Medication status",
    ASAM_2020,
)
ANALGESIC_WITH_OUD_ACTIVE = _rule(
    "flag.opioid-analgesic-with-oud.active",
    "opioid-analgesic-with-oud",
    "warning",
    "Opioid analgesic active for a patient with OUD evidence",
    "§5",
    CDC_2022,
)
ANALGESIC_WITH_OUD_ORDER = _rule(
    "flag.opioid-analgesic-with-oud.order",
    "opioid-analgesic-with-oud",
    "warning",
    "Opioid analgesic ordered for a patient with OUD evidence",
    "§5",
    CDC_2022,
)
CNS_DEPRESSANT_ACTIVE = _rule(
    "flag.opioid-cns-depressant.active",
    "opioid-cns-depressant",
    "warning",
    "Active opioid (analgesic or MOUD) together with a benzodiazepine or CNS depressant",
    "§5",
    FDA_OPIOID_BENZO,
    "drug_groups.cns_depressants",
)
CNS_DEPRESSANT_ORDER = _rule(
    "flag.opioid-cns-depressant.order",
    "opioid-cns-depressant",
    "warning",
    "Opioid or depressant ordered so that both are taken together",
    "§5",
    FDA_OPIOID_BENZO,
    "drug_groups.cns_depressants",
)
NO_NALOXONE_ACTIVE = _rule(
    "flag.no-rescue-naloxone.active",
    "no-rescue-naloxone",
    "info",
    "On MOUD with no rescue naloxone authored in the last 12 calendar months",
    "§5; §8 Naloxone",
    FDA_NALOXONE_2020,
    "naloxone.prescribed_lookback_months",
)
NO_NALOXONE_ORDER = _rule(
    "flag.no-rescue-naloxone.order",
    "no-rescue-naloxone",
    "info",
    "MOUD ordered with no rescue naloxone on file or ordered with it",
    "§5",
    FDA_NALOXONE_2020,
    "naloxone.prescribed_lookback_months",
)
ANALYTE_MISSING = _rule(
    "flag.moud-analyte-missing",
    "moud-analyte-missing",
    "warning",
    "On buprenorphine or methadone for 7 days or more (that drug's own chain) and the latest "
    "screen for its analytes since that start is negative",
    "§2 Expected MOUD analyte missing; §5; §8",
    TIP_63,
    "adherence.min_days_on_moud",
    "drug_groups.expected_analytes",
    "phase.episode_gap_days",
)

RULES: tuple[Rule, ...] = (
    NALTREXONE_CONTRAINDICATED_ACTIVE,
    NALTREXONE_CONTRAINDICATED_ORDER,
    NALTREXONE_WITH_AGONIST_ORDER,
    NALTREXONE_NOT_YET_ORDER,
    METHADONE_QTC_ACTIVE,
    METHADONE_QTC_ORDER,
    METHADONE_QTC_ORDER_CAUTION,
    BUPRENORPHINE_NOT_YET_ORDER,
    BUPRENORPHINE_ON_METHADONE_ORDER,
    ANALGESIC_WITH_OUD_ACTIVE,
    ANALGESIC_WITH_OUD_ORDER,
    CNS_DEPRESSANT_ACTIVE,
    CNS_DEPRESSANT_ORDER,
    NO_NALOXONE_ACTIVE,
    NO_NALOXONE_ORDER,
    ANALYTE_MISSING,
)


def _flag(
    rule: Rule,
    summary: str,
    detail: str,
    evidence: tuple[str, ...] = (),
    suggest_naloxone: bool = False,
    order_ref: str | None = None,
) -> SafetyFlag:
    return SafetyFlag(
        rule.target, rule.outcome, summary, detail, evidence, suggest_naloxone, order_ref, rule.id
    )


def _opioid_groups(cfg: PathwayConfig) -> frozenset[str]:
    return frozenset(
        {*cfg.drug_groups.full_agonist_analgesics, "buprenorphine-oud", "buprenorphine-pain"}
        | {"methadone"}
    )


def _is_opioid(o: MedicationOrder, cfg: PathwayConfig) -> bool:
    return bool(o.groups & _opioid_groups(cfg))


def _is_depressant(o: MedicationOrder, cfg: PathwayConfig) -> bool:
    return bool(o.groups & frozenset(cfg.drug_groups.cns_depressants))


def _label(o: MedicationOrder) -> str:
    return o.name or o.ref


def adherence_flags(f: Findings, cfg: PathwayConfig) -> list[SafetyFlag]:
    """§2 expected MOUD analyte missing, judged per drug (§8): on buprenorphine (or methadone)
    for >= 7 days counted from that drug's own chain, and the latest result for its analytes
    taken on or after that start is negative. The latest is by effective instant; results at the
    same instant with any positive are not negative."""
    flags: list[SafetyFlag] = []
    for drug, analytes in cfg.drug_groups.expected_analytes.items():
        order = f.active_moud.get(drug)
        if order is None:
            continue
        start = f.drug_start(drug, cfg)
        if start is None:
            continue  # start unknown: no basis for "on it for 7 days"
        on_for = timing.days_before(start, f.as_of)
        if on_for < cfg.adherence.min_days_on_moud:
            continue
        screens = [
            s
            for s in f.screens
            if s.analyte in analytes
            and s.result is not Result.UNKNOWN
            and s.when is not None
            and s.when.latest >= start.earliest
        ]
        if not screens:
            continue
        newest = timing.sort_key(screens[0].when)  # f.screens is newest first
        same_instant = [s for s in screens if timing.sort_key(s.when) == newest]
        if all(s.result is Result.NEGATIVE for s in same_instant):
            flags.append(
                _flag(
                    ANALYTE_MISSING,
                    f"Expected {drug} not found in the latest drug screen",
                    f"On {drug} for {on_for} days ({_label(order)}), but the latest drug screen "
                    f"({timing.describe(screens[0].when)}) is negative for "
                    f"{' / '.join(analytes)}. Review adherence or diversion with the patient; this "
                    "is not by itself a reason to stop treatment.",
                    (order.ref, *(s.ref for s in same_instant)),
                )
            )
    return flags


def _combination(
    rule: Rule,
    opioids: list[MedicationOrder],
    depressants: list[MedicationOrder],
    order_ref: str | None = None,
) -> SafetyFlag:
    return _flag(
        rule,
        "Opioid together with a benzodiazepine or CNS depressant",
        f"{', '.join(_label(o) for o in opioids)} with {', '.join(_label(d) for d in depressants)}"
        ": risk of respiratory depression and overdose. Review the depressant (taper if "
        "appropriate), make sure rescue naloxone is on hand. Do not stop MOUD because of it.",
        tuple(o.ref for o in (*opioids, *depressants)),
        suggest_naloxone=True,
        order_ref=order_ref,
    )


def chart_flags(
    f: Findings, options: dict[str, MedicationOption], cfg: PathwayConfig
) -> list[SafetyFlag]:
    """Flags from what is already active (patient-view)."""
    flags: list[SafetyFlag] = []
    opioids = [o for o in f.active_orders if _is_opioid(o, cfg)]
    depressants = [o for o in f.active_orders if _is_depressant(o, cfg)]
    if opioids and depressants:
        flags.append(_combination(CNS_DEPRESSANT_ACTIVE, opioids, depressants))
    if f.oud_evidence:
        for o in f.has_active(cfg.drug_groups.full_agonist_analgesics):
            flags.append(
                _flag(
                    ANALGESIC_WITH_OUD_ACTIVE,
                    "Opioid analgesic active in a patient with OUD",
                    f"{_label(o)} is active and the patient has OUD evidence: coordinate pain care "
                    "with the MOUD prescriber; non-opioid options first.",
                    (o.ref, *f.evidence_refs),
                )
            )
    nal = options.get("naloxone")
    if f.active_moud and (nal is None or nal.status != "active"):
        drugs = ", ".join(sorted(f.active_moud))
        flags.append(
            _flag(
                NO_NALOXONE_ACTIVE,
                "No rescue naloxone on file",
                f"On MOUD ({drugs}) without rescue naloxone prescribed in the last 12 months: "
                "prescribe naloxone and train the patient and family.",
                tuple(o.ref for o in f.active_moud.values()),
                suggest_naloxone=True,
            )
        )
    meth = options.get("methadone")
    if "methadone" in f.active_moud and meth is not None and meth.status == "contraindicated":
        flags.append(
            _flag(
                METHADONE_QTC_ACTIVE,
                "Active methadone with QTc over 500 ms",
                "The patient is on methadone and the latest QTc is over 500 ms: urgent cardiology "
                "and prescriber review (consider buprenorphine).",
                meth.evidence,
            )
        )
    ntx = options.get("naltrexone")
    if "naltrexone" in f.active_moud and ntx is not None and ntx.status == "contraindicated":
        flags.append(
            _flag(
                NALTREXONE_CONTRAINDICATED_ACTIVE,
                "Active naltrexone is contraindicated",
                "Naltrexone is active while it is contraindicated: " + "; ".join(ntx.reasons),
                ntx.evidence,
            )
        )
    flags.extend(adherence_flags(f, cfg))
    return flags


def _naltrexone_order(
    d: MedicationOrder,
    options: dict[str, MedicationOption],
    agonist_drafts: list[MedicationOrder],
) -> SafetyFlag | None:
    ntx = options.get("naltrexone")
    if ntx is not None and ntx.status == "contraindicated":
        return _flag(
            NALTREXONE_CONTRAINDICATED_ORDER,
            "Naltrexone ordered while contraindicated",
            "Naltrexone is contraindicated: "
            + "; ".join(r for r in ntx.reasons if not r.startswith(("Not yet", "Caution"))),
            ntx.evidence,
            order_ref=d.ref,
        )
    if agonist_drafts:
        return _flag(
            NALTREXONE_WITH_AGONIST_ORDER,
            "Naltrexone ordered with an opioid agonist",
            "Naltrexone is ordered together with an opioid agonist ("
            + ", ".join(_label(a) for a in agonist_drafts)
            + "): it would precipitate withdrawal.",
            tuple(a.ref for a in agonist_drafts),
            order_ref=d.ref,
        )
    if ntx is not None and ntx.status == "not-yet":
        return _flag(
            NALTREXONE_NOT_YET_ORDER,
            "Naltrexone ordered before it is safe",
            "; ".join(ntx.reasons),
            ntx.evidence,
            order_ref=d.ref,
        )
    return None


def _methadone_order(d: MedicationOrder, f: Findings, cfg: PathwayConfig) -> SafetyFlag | None:
    qtc = current_qtc(f, cfg)
    if qtc is None or qtc.value is None:
        return None
    m = cfg.methadone
    if qtc.value > m.qtc_contraindicated_above_ms:
        return _flag(
            METHADONE_QTC_ORDER,
            f"Methadone ordered with QTc {qtc.value:g} ms",
            f"The latest QTc ({timing.describe(qtc.when)}) is {qtc.value:g} ms, over "
            f"{m.qtc_contraindicated_above_ms:g} ms: methadone is contraindicated; choose "
            "buprenorphine.",
            (qtc.ref,),
            order_ref=d.ref,
        )
    if qtc.value >= m.qtc_caution_min_ms:
        return _flag(
            METHADONE_QTC_ORDER_CAUTION,
            f"Methadone ordered with QTc {qtc.value:g} ms",
            f"The latest QTc ({timing.describe(qtc.when)}) is {qtc.value:g} ms "
            f"({m.qtc_caution_min_ms:g}-{m.qtc_contraindicated_above_ms:g}): ECG monitoring, "
            "avoid other QT-prolonging drugs.",
            (qtc.ref,),
            order_ref=d.ref,
        )
    return None


def _buprenorphine_order(
    d: MedicationOrder, f: Findings, options: dict[str, MedicationOption]
) -> list[SafetyFlag]:
    flags: list[SafetyFlag] = []
    bup = options.get("buprenorphine")
    if bup is not None and bup.status == "not-yet":
        flags.append(
            _flag(
                BUPRENORPHINE_NOT_YET_ORDER,
                "Buprenorphine ordered before withdrawal is established",
                bup.reasons[0],
                bup.evidence,
                order_ref=d.ref,
            )
        )
    # §8: "on methadone" is any active methadone request, whatever its indication.
    for meth in f.has_active(("methadone",))[:1]:
        flags.append(
            _flag(
                BUPRENORPHINE_ON_METHADONE_ORDER,
                "Buprenorphine ordered for a patient on methadone",
                f"The patient is on methadone ({_label(meth)}): a transition to buprenorphine "
                "needs a taper and specialist input.",
                (meth.ref,),
                order_ref=d.ref,
            )
        )
    return flags


def _no_naloxone_order(d: MedicationOrder, drug: str, f: Findings) -> SafetyFlag:
    taking = sorted(f.active_moud)
    now = f" The patient is on {', '.join(taking)}." if taking else ""
    return _flag(
        NO_NALOXONE_ORDER,
        "No rescue naloxone on file",
        f"{drug.capitalize()} ordered ({_label(d)}) and no rescue naloxone prescribed in the last "
        f"12 months or ordered with it.{now} Prescribe naloxone and train the patient and family.",
        tuple(o.ref for o in f.active_moud.values()),
        suggest_naloxone=True,
        order_ref=d.ref,
    )


def order_flags(
    f: Findings,
    drafts: tuple[MedicationOrder, ...],
    options: dict[str, MedicationOption],
    cfg: PathwayConfig,
) -> list[SafetyFlag]:
    """Flags on draft orders (order-select / order-sign), judged against the current state."""
    flags: list[SafetyFlag] = []
    nal = options.get("naloxone")
    naloxone_on_hand = (nal is not None and nal.status == "active") or any(
        "naloxone-rescue" in d.groups for d in drafts
    )
    active_opioids = [o for o in f.active_orders if _is_opioid(o, cfg)]
    active_depressants = [o for o in f.active_orders if _is_depressant(o, cfg)]
    draft_opioids = [d for d in drafts if _is_opioid(d, cfg)]
    draft_depressants = [d for d in drafts if _is_depressant(d, cfg)]
    agonist_drafts = [d for d in drafts if d.groups & _opioid_groups(cfg)]
    analgesics = frozenset(
        {*cfg.drug_groups.full_agonist_analgesics, "buprenorphine-pain", "methadone"}
    )
    naloxone_suggested = False
    for d in drafts:
        drug = moud_drug(d, f.oud_evidence)
        if "naltrexone" in d.groups:
            flag = _naltrexone_order(d, options, agonist_drafts)
            if flag is not None:
                flags.append(flag)
        if "methadone" in d.groups:
            flag = _methadone_order(d, f, cfg)
            if flag is not None:
                flags.append(flag)
        if "buprenorphine-oud" in d.groups:
            flags.extend(_buprenorphine_order(d, f, options))
        if f.oud_evidence and drug is None and d.groups & analgesics:
            flags.append(
                _flag(
                    ANALGESIC_WITH_OUD_ORDER,
                    "Opioid analgesic ordered for a patient with OUD",
                    f"{_label(d)} is an opioid analgesic and the patient has OUD evidence ("
                    + "; ".join(f.evidence_reasons)
                    + "): coordinate with the MOUD prescriber, prefer non-opioid options, and "
                    "make sure naloxone is on hand.",
                    f.evidence_refs,
                    suggest_naloxone=not naloxone_on_hand,
                    order_ref=d.ref,
                )
            )
        if drug is not None and not naloxone_on_hand and not naloxone_suggested:
            flags.append(_no_naloxone_order(d, drug, f))
            naloxone_suggested = True
    # Opioid with a benzodiazepine / CNS depressant, where at least one side is a draft.
    if (draft_opioids and (active_depressants or draft_depressants)) or (
        draft_depressants and active_opioids
    ):
        flags.append(
            _combination(
                CNS_DEPRESSANT_ORDER,
                draft_opioids + active_opioids,
                draft_depressants + active_depressants,
                order_ref=(draft_opioids or draft_depressants)[0].ref,
            )
        )
    return flags
