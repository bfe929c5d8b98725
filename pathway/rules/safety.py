"""PATHWAY.md §5: safety flags, on the chart (active medication) and on draft orders.

Draft orders (order-select / order-sign) are judged against the patient's current state; every
patient's drafts are judged, OUD or not (an opioid with a benzodiazepine warns anyone). Safety
flags never advise stopping MOUD.
"""

from __future__ import annotations

from pathway.rules import timing
from pathway.rules.config import PathwayConfig
from pathway.rules.findings import Findings, moud_drug
from pathway.rules.model import MedicationOption, MedicationOrder, Result, SafetyFlag
from pathway.rules.suitability import current_qtc


def _is_opioid(o: MedicationOrder, f: Findings, cfg: PathwayConfig) -> bool:
    groups = {
        *cfg.drug_groups.full_agonist_analgesics,
        "buprenorphine-oud",
        "buprenorphine-pain",
        "methadone",
    }
    return bool(o.groups & groups)


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
                SafetyFlag(
                    "moud-analyte-missing",
                    "warning",
                    f"Expected {drug} not found in the latest drug screen",
                    f"On {drug} for {on_for} days ({_label(order)}), but the latest drug screen "
                    f"({timing.describe(screens[0].when)}) is negative for "
                    f"{' / '.join(analytes)}. Review adherence or diversion with the patient; this "
                    "is not by itself a reason to stop treatment.",
                    (order.ref, *(s.ref for s in same_instant)),
                )
            )
    return flags


def chart_flags(
    f: Findings, options: dict[str, MedicationOption], cfg: PathwayConfig
) -> list[SafetyFlag]:
    """Flags from what is already active (patient-view)."""
    flags: list[SafetyFlag] = []
    opioids = [o for o in f.active_orders if _is_opioid(o, f, cfg)]
    depressants = [o for o in f.active_orders if _is_depressant(o, cfg)]
    if opioids and depressants:
        flags.append(_combination_flag(opioids, depressants))
    if f.oud_evidence:
        for o in f.has_active(cfg.drug_groups.full_agonist_analgesics):
            flags.append(
                SafetyFlag(
                    "opioid-analgesic-with-oud",
                    "warning",
                    "Opioid analgesic active in a patient with OUD",
                    f"{_label(o)} is active and the patient has OUD evidence: coordinate pain care "
                    "with the MOUD prescriber; non-opioid options first.",
                    (o.ref, *f.evidence_refs),
                )
            )
    nal = options.get("naloxone")
    if f.active_moud and (nal is None or nal.status != "active"):
        flags.append(
            _naloxone_flag(
                ", ".join(sorted(f.active_moud)), tuple(o.ref for o in f.active_moud.values())
            )
        )
    meth = options.get("methadone")
    if "methadone" in f.active_moud and meth is not None and meth.status == "contraindicated":
        flags.append(
            SafetyFlag(
                "methadone-qtc",
                "critical",
                "Active methadone with QTc over 500 ms",
                "The patient is on methadone and the latest QTc is over 500 ms: urgent cardiology "
                "and prescriber review (consider buprenorphine).",
                meth.evidence,
            )
        )
    ntx = options.get("naltrexone")
    if "naltrexone" in f.active_moud and ntx is not None and ntx.status == "contraindicated":
        flags.append(
            SafetyFlag(
                "naltrexone-contraindicated",
                "critical",
                "Active naltrexone is contraindicated",
                "Naltrexone is active while it is contraindicated: " + "; ".join(ntx.reasons),
                ntx.evidence,
            )
        )
    flags.extend(adherence_flags(f, cfg))
    return flags


def _combination_flag(
    opioids: list[MedicationOrder], depressants: list[MedicationOrder], order_ref: str | None = None
) -> SafetyFlag:
    return SafetyFlag(
        "opioid-cns-depressant",
        "warning",
        "Opioid together with a benzodiazepine or CNS depressant",
        f"{', '.join(_label(o) for o in opioids)} with {', '.join(_label(d) for d in depressants)}"
        ": risk of respiratory depression and overdose. Review the depressant (taper if "
        "appropriate), make sure rescue naloxone is on hand. Do not stop MOUD because of it.",
        tuple(o.ref for o in (*opioids, *depressants)),
        suggest_naloxone=True,
        order_ref=order_ref,
    )


def _naloxone_flag(drugs: str, refs: tuple[str, ...], order_ref: str | None = None) -> SafetyFlag:
    return SafetyFlag(
        "no-rescue-naloxone",
        "info",
        "No rescue naloxone on file",
        f"MOUD ({drugs}) without rescue naloxone prescribed in the last 12 months: prescribe "
        "naloxone and train the patient and family.",
        refs,
        suggest_naloxone=True,
        order_ref=order_ref,
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
    active_opioids = [o for o in f.active_orders if _is_opioid(o, f, cfg)]
    active_depressants = [o for o in f.active_orders if _is_depressant(o, cfg)]
    draft_opioids = [d for d in drafts if _is_opioid(d, f, cfg)]
    draft_depressants = [d for d in drafts if _is_depressant(d, cfg)]
    qtc = current_qtc(f, cfg)
    agonist_drafts = [
        d
        for d in drafts
        if d.groups
        & {
            "methadone",
            "buprenorphine-oud",
            "buprenorphine-pain",
            *cfg.drug_groups.full_agonist_analgesics,
        }
    ]
    naloxone_suggested = False
    for d in drafts:
        drug = moud_drug(d, f.oud_evidence)
        if "naltrexone" in d.groups:
            ntx = options.get("naltrexone")
            if ntx is not None and ntx.status == "contraindicated":
                flags.append(
                    SafetyFlag(
                        "naltrexone-contraindicated",
                        "critical",
                        "Naltrexone ordered while contraindicated",
                        "Naltrexone is contraindicated: "
                        + "; ".join(
                            r for r in ntx.reasons if not r.startswith(("Not yet", "Caution"))
                        ),
                        (*ntx.evidence,),
                        order_ref=d.ref,
                    )
                )
            elif agonist_drafts:
                flags.append(
                    SafetyFlag(
                        "naltrexone-contraindicated",
                        "critical",
                        "Naltrexone ordered with an opioid agonist",
                        "Naltrexone is ordered together with an opioid agonist ("
                        + ", ".join(_label(a) for a in agonist_drafts)
                        + "): it would precipitate "
                        "withdrawal.",
                        tuple(a.ref for a in agonist_drafts),
                        order_ref=d.ref,
                    )
                )
            elif ntx is not None and ntx.status == "not-yet":
                flags.append(
                    SafetyFlag(
                        "naltrexone-not-yet",
                        "warning",
                        "Naltrexone ordered before it is safe",
                        "; ".join(ntx.reasons),
                        ntx.evidence,
                        order_ref=d.ref,
                    )
                )
        if "methadone" in d.groups and qtc is not None and qtc.value is not None:
            m = cfg.methadone
            if qtc.value > m.qtc_contraindicated_above_ms:
                flags.append(
                    SafetyFlag(
                        "methadone-qtc",
                        "critical",
                        f"Methadone ordered with QTc {qtc.value:g} ms",
                        f"The latest QTc ({timing.describe(qtc.when)}) is {qtc.value:g} ms, over "
                        f"{m.qtc_contraindicated_above_ms:g} ms: methadone is contraindicated; "
                        "choose buprenorphine.",
                        (qtc.ref,),
                        order_ref=d.ref,
                    )
                )
            elif qtc.value >= m.qtc_caution_min_ms:
                flags.append(
                    SafetyFlag(
                        "methadone-qtc",
                        "warning",
                        f"Methadone ordered with QTc {qtc.value:g} ms",
                        f"The latest QTc ({timing.describe(qtc.when)}) is {qtc.value:g} ms "
                        f"({m.qtc_caution_min_ms:g}-{m.qtc_contraindicated_above_ms:g}): ECG "
                        "monitoring, avoid other QT-prolonging drugs.",
                        (qtc.ref,),
                        order_ref=d.ref,
                    )
                )
        if "buprenorphine-oud" in d.groups:
            bup = options.get("buprenorphine")
            if bup is not None and bup.status == "not-yet":
                flags.append(
                    SafetyFlag(
                        "buprenorphine-not-yet",
                        "warning",
                        "Buprenorphine ordered before withdrawal is established",
                        bup.reasons[0],
                        bup.evidence,
                        order_ref=d.ref,
                    )
                )
            # §8: "on methadone" is any active methadone request, whatever its indication.
            for meth in f.has_active(("methadone",))[:1]:
                flags.append(
                    SafetyFlag(
                        "buprenorphine-on-methadone",
                        "warning",
                        "Buprenorphine ordered for a patient on methadone",
                        "The patient is on methadone: a transition to buprenorphine needs a taper "
                        "and specialist input.",
                        (meth.ref,),
                        order_ref=d.ref,
                    )
                )
        if (
            f.oud_evidence
            and drug is None
            and d.groups
            & {*cfg.drug_groups.full_agonist_analgesics, "buprenorphine-pain", "methadone"}
        ):
            flags.append(
                SafetyFlag(
                    "opioid-analgesic-with-oud",
                    "warning",
                    "Opioid analgesic ordered for a patient with OUD",
                    f"{_label(d)} is an opioid analgesic and the patient has OUD evidence ("
                    + "; ".join(f.evidence_reasons)
                    + "): coordinate with the MOUD prescriber, "
                    "prefer non-opioid options, and make sure naloxone is on hand.",
                    f.evidence_refs,
                    suggest_naloxone=not naloxone_on_hand,
                    order_ref=d.ref,
                )
            )
        if drug is not None and not naloxone_on_hand and not naloxone_suggested:
            flags.append(_naloxone_flag(drug, (), order_ref=d.ref))
            naloxone_suggested = True
    # Opioid with a benzodiazepine / CNS depressant, where at least one side is a draft.
    if (draft_opioids and (active_depressants or draft_depressants)) or (
        draft_depressants and active_opioids
    ):
        opioids = draft_opioids + active_opioids
        depressants = draft_depressants + active_depressants
        flags.append(
            _combination_flag(
                opioids, depressants, order_ref=(draft_opioids or draft_depressants)[0].ref
            )
        )
    return flags
