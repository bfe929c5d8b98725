"""Codes and small helpers shared by the clinical rule tests of tests/rules.

Every code below is in the named value set of config/valuesets (checked by test_inputs.py).
"""

from __future__ import annotations

import re
from typing import Any

from builders import ICD10, SNOMED

from pathway.rules.model import Decision, MedicationOption, PlannedTask, SafetyFlag

# RxNorm (SCD) codes, value set in the comment
NALTREXONE_TABLET = "1483744"  # naltrexone
NALTREXONE_XR = "637213"  # naltrexone
NALOXONE_NASAL = "1725059"  # naloxone-rescue
LOFEXIDINE_TABLET = "2046591"  # lofexidine
CLONIDINE_TABLET = "884173"  # clonidine
FENTANYL_PATCH = "245134"  # opioid-analgesic-fentanyl
HYDROCODONE_APAP = "857002"  # opioid-analgesic-hydrocodone
MORPHINE_TABLET = "892582"  # opioid-analgesic-morphine
HYDROMORPHONE_TABLET = "897696"  # opioid-analgesic-hydromorphone
CODEINE_APAP = "993837"  # opioid-analgesic-codeine
OXYMORPHONE_TABLET = "977939"  # opioid-analgesic-oxymorphone
TRAMADOL_TABLET = "835603"  # opioid-analgesic-other
ZOLPIDEM_TABLET = "854873"  # cns-depressants
BUP_PATCH = "904880"  # buprenorphine-pain (transdermal: not MOUD)
BUP_SL_TABLET = "351265"  # buprenorphine-oud
BUP_NX_TABLET = "351267"  # buprenorphine-oud (the HL7 example "naloxone" Medication)

# LOINC
UDS_OPIATES = "19295-5"
UDS_FENTANYL = "59673-4"
UDS_6MAM = "10976-9"
UDS_OXYCODONE = "10998-3"
UDS_BUPRENORPHINE = "3414-0"
UDS_METHADONE = "19550-3"
UDS_EDDP = "93495-0"
UDS_BENZODIAZEPINES = "3390-2"
UDS_STIMULANTS = "3393-6"  # benzoylecgonine
UDS_CANNABINOIDS = "3427-2"  # uds-other: no rule, but still "a UDS"
ALT = "1742-6"
AST = "1920-8"
QTC = "8636-3"
SBP = "8480-6"
HR = "8867-4"
HCG_URINE = "2106-3"
PREGNANCY_STATUS = "82810-3"
HIV_SCREEN = "75622-1"
HCV_SCREEN = "13955-0"
PREGNANT = "LA15173-0"
NOT_PREGNANT = "LA26683-5"

# reasonCode / Condition codes
OUD_REASON = (ICD10, "F11.20")
OUD_REASON_SNOMED = (SNOMED, "75544000")
WITHDRAWAL_REASON = (SNOMED, "87132004")
HYPERTENSION_REASON = (ICD10, "I10")
ALCOHOL_REASON = (ICD10, "F10.20")

PSYCHOSOCIAL = frozenset(
    {
        "motivational-interviewing",
        "contingency-management",
        "cbt",
        "case-management",
        "mutual-help",
        "peer-support",
        "addiction-counseling",
        "family-support",
    }
)


def ref(resource: dict[str, Any]) -> str:
    """The evidence reference of a resource built by the builders: `Type/id`."""
    return f"{resource['resourceType']}/{resource['id']}"


def option(d: Decision, name: str) -> MedicationOption:
    o = d.medication(name)
    assert o is not None, f"no {name} option in the decision"
    return o


def flags_of(d: Decision, code: str) -> list[SafetyFlag]:
    return [f for f in d.flags if f.code == code]


def task_of(d: Decision, code: str) -> PlannedTask:
    found = [t for t in d.tasks if t.code == code]
    assert found, f"task {code} not planned; planned: {d.task_codes}"
    return found[0]


def psychosocial(d: Decision) -> frozenset[str]:
    return frozenset(c for c in d.task_codes if c in PSYCHOSOCIAL)


def mentions(texts: tuple[str, ...] | list[str] | str, *words: str) -> bool:
    """Some text contains every word (case-insensitive)."""
    items = [texts] if isinstance(texts, str) else list(texts)
    return any(all(w.lower() in t.lower() for w in words) for t in items)


_STOP = re.compile(
    r"\b(stop|discontinue|cease|withdraw|hold|taper off)\b[^.;:]{0,40}"
    r"\b(moud|buprenorphine|methadone|naltrexone|treatment)\b",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"\b(not|never|no|don't|without)\b", re.IGNORECASE)


def advises_stopping_moud(text: str) -> bool:
    """True when a text tells the clinician to stop MOUD. A negated clause ("do not stop MOUD",
    "not by itself a reason to stop treatment") is not advice to stop."""
    for m in _STOP.finditer(text):
        clause = re.split(r"[.;:!?]", text[: m.start()])[-1]
        if not _NEGATION.search(clause):
            return True
    return False
