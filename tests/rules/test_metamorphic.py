"""Metamorphic properties of the pathway over generated patients (hypothesis).

The per-rule tests check each rule against the author's reading of PATHWAY.md; they passed while
real defects stood. These tests need no expected answer: they change a patient in a way whose
effect the spec fixes, and check the decision moved the right way (or not at all):

(a) adding a resource older than every window that reads it changes nothing;
(b) the order of the bundle's entries changes nothing;
(c) adding an active benzodiazepine, a recent fentanyl-positive screen or a higher QTc never
    makes a medication option more permissive;
(d) a COWS rising past the buprenorphine start score (the latest COWS < 8 replaced by one >= 8 at
    the same instant) never makes buprenorphine less suitable;
(e) a negative screen replaced by a positive one never makes naltrexone more permissive;
(f) on methadone, adding recent full-agonist exposure leaves buprenorphine as it was (§8: caution,
    never not-yet);
(g)-(i) the adherence review (§8, judged per drug), on patients generated on buprenorphine or
    methadone: a past request for another MOUD drug, or a screen from before the drug started,
    changes nothing; a positive at the instant of the latest negative is never "missing";
and: the same data evaluated twice gives the same decision (and the data is not changed), and
the CDS hook and `$apply` say what the Evaluator says.

Defects the properties found are pinned at the end of the file by minimal, deterministic tests
(while a defect stands: strict xfail, and a narrow, named exclusion in the property so CI stays
green; a fix turns the xfail red, then both come off).

The generated patients are realistic FHIR: OUD Conditions of many codes, statuses and dates;
DSM-5 counts, COWS, last-use observations with and without a type; drug screens of every analyte
with positive, negative and unreadable results in every encoding of §1/§8 (strings, SNOMED and
LOINC answers, interpretation only); QTc; ALT/AST with and without a referenceRange; MOUD and
other MedicationRequests of every status; naloxone, benzodiazepines, clonidine, lofexidine;
stage of change; pregnancy; vitals; HIV/HCV screens; completed Tasks. Dates are drawn on and
around every edge of config/pathway.yaml, inside and outside, some date-only, some partial
(year-month, year), some with a time-zone offset, a few after as_of.

Run time: modest by default (CI runs the suite twice). For a deep run:
    PATHWAY_HYPOTHESIS_PROFILE=deep .venv/bin/python -m pytest tests/rules/test_metamorphic.py
(50 x the examples; PATHWAY_HYPOTHESIS_SCALE=N for N x). A failure prints the patient bundle
and as_of; `print_blob` lets hypothesis replay it (@reproduce_failure).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from builders import (
    ICD10,
    LOINC,
    SNOMED,
    apply_parameters,
    condition,
    cows,
    lab,
    last_use,
    med,
    patient,
    quantity,
    severity,
    stage,
    task,
)
from cds_support import hook_request, prefetch_of
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metakit import (
    MOUD_OPTIONS,
    Key,
    config_value,
    instant,
    months_back,
    no_more_permissive,
    raw_config,
    unit_of,
    window_keys,
)

from pathway.evaluation import Evaluator
from pathway.rules.model import Decision

RAW = raw_config()
CANON = "https://oud-pathway.github.io/fhir"

# ------------------------------------------------------------------ run time: the profile knob

settings.register_profile(
    "pathway-metamorphic",
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
# PATHWAY_HYPOTHESIS_PROFILE=deep: 50 x the examples; PATHWAY_HYPOTHESIS_SCALE=N: N x.
SCALE = (
    50
    if os.environ.get("PATHWAY_HYPOTHESIS_PROFILE", "") == "deep"
    else int(os.environ.get("PATHWAY_HYPOTHESIS_SCALE", "1"))
)


def profile(examples: int) -> settings:
    """The module's settings with `examples` (times SCALE)."""
    return settings(settings.get_profile("pathway-metamorphic"), max_examples=examples * SCALE)


# ------------------------------------------------------------------ codes (config/valuesets)

UDS_CODES = {
    "opiates": ("19295-5", "3879-4"),
    "fentanyl": ("59673-4", "58379-9", "40839-3"),
    "6mam": ("10976-9", "19591-7"),
    "oxycodone": ("10998-3", "58430-0"),
    "buprenorphine": ("3414-0", "93494-3"),
    "methadone": ("19550-3", "3773-9"),
    "eddp": ("93495-0",),
    "benzodiazepines": ("3390-2",),
    "stimulants": ("3393-6",),
    "other": ("3427-2",),
}
# Analytes of the expected MOUD (§2 adherence: judged on screens since the drug's chain start,
# whatever their age).
MOUD_ANALYTES = ("buprenorphine", "methadone", "eddp")

DRUGS = {
    "bup-film": "1010604",  # buprenorphine-oud
    "bup-sl": "351265",  # buprenorphine-oud
    "bup-patch": "904880",  # buprenorphine-pain (not MOUD)
    "methadone-tab": "864706",
    "methadone-sol": "991147",
    "naltrexone-tab": "1483744",
    "naltrexone-xr": "637213",
    "naloxone-nasal": "1725059",  # naloxone-rescue
    "oxycodone": "1049621",
    "hydrocodone": "857002",
    "morphine": "892582",
    "fentanyl-patch": "245134",
    "tramadol": "835603",
    "alprazolam": "308047",  # benzodiazepines
    "zolpidem": "854873",  # cns-depressants
    "clonidine": "884173",
    "lofexidine": "2046591",
}
DRUG_GROUPS = {  # the value set (config/valuesets) each code must be in
    "bup-film": "buprenorphine-oud",
    "bup-sl": "buprenorphine-oud",
    "bup-patch": "buprenorphine-pain",
    "methadone-tab": "methadone",
    "methadone-sol": "methadone",
    "naltrexone-tab": "naltrexone",
    "naltrexone-xr": "naltrexone",
    "naloxone-nasal": "naloxone-rescue",
    "oxycodone": "opioid-analgesic-oxycodone",
    "hydrocodone": "opioid-analgesic-hydrocodone",
    "morphine": "opioid-analgesic-morphine",
    "fentanyl-patch": "opioid-analgesic-fentanyl",
    "tramadol": "opioid-analgesic-other",
    "alprazolam": "benzodiazepines",
    "zolpidem": "cns-depressants",
    "clonidine": "clonidine",
    "lofexidine": "lofexidine",
}
MOUD_DRUGS = (
    "bup-film",
    "bup-sl",
    "methadone-tab",
    "methadone-sol",
    "naltrexone-tab",
    "naltrexone-xr",
)
NON_MOUD_DRUGS = tuple(
    d for d in DRUGS if d not in MOUD_DRUGS and d not in ("naloxone-nasal", "bup-patch")
)
REQUEST_STATUSES = (
    "active",
    "active",
    "active",
    "completed",
    "stopped",
    "on-hold",
    "unknown",
    "draft",
    "cancelled",
    "entered-in-error",
)
HISTORY_STATUSES = ("completed", "stopped", "on-hold", "unknown")
REASONS = (None, None, (ICD10, "F11.20"), (SNOMED, "87132004"), (ICD10, "I10"), (ICD10, "F10.20"))

OUD_CODES = (
    (ICD10, "F11.10"),
    (ICD10, "F11.11"),
    (ICD10, "F11.20"),
    (ICD10, "F11.21"),
    (ICD10, "F11.23"),
    (ICD10, "F11.90"),
    (ICD10, "F11.91"),
    (ICD10, "F11.93"),
    (SNOMED, "5602001"),
    (SNOMED, "75544000"),
    (SNOMED, "191821007"),
    (SNOMED, "1081000119105"),
)
OTHER_CONDITIONS = (
    (SNOMED, "87132004"),  # opioid withdrawal
    (SNOMED, "77386006"),  # pregnancy
    (ICD10, "Z34.90"),  # pregnancy supervision
    (ICD10, "I10"),
)
CLINICAL = (None, "active", "recurrence", "relapse", "inactive", "remission", "resolved")
VERIFICATION = (None, None, "confirmed", "provisional", "refuted", "entered-in-error")
STAGES = ("precontemplation", "contemplation", "preparation", "action", "maintenance", "someday")
OPIOID_TYPES = ("short-acting", "long-acting", "fentanyl", None, "unknown-kind")
TASK_CODES = tuple(RAW["tasks"])  # every task of config/pathway.yaml

INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def _interp(code: str) -> dict[str, Any]:
    return {"interpretation": [{"coding": [{"system": INTERPRETATION, "code": code}]}]}


def _answer(system: str, code: str) -> dict[str, Any]:
    return {"valueCodeableConcept": {"coding": [{"system": system, "code": code}]}}


# Every encoding of a drug-screen result, with what §1/§8 say it means.
RESULTS: dict[str, tuple[dict[str, Any], ...]] = {
    "positive": (
        {"valueString": "POS"},
        {"valueString": "positive"},
        {"valueString": "Detected"},
        {"valueString": "Presumptive Positive"},
        _answer(SNOMED, "10828004"),
        _answer(LOINC, "LA6576-8"),
        _interp("POS"),
        _interp("A"),
        {"valueString": "Positive", **_interp("POS")},
    ),
    "negative": (
        {"valueString": "neg"},
        {"valueString": "NEGATIVE"},
        {"valueString": "Not Detected"},
        {"valueString": "none detected"},
        _answer(SNOMED, "260385009"),
        _answer(LOINC, "LA6577-6"),
        _interp("NEG"),
        _interp("N"),
        {"valueString": "Neg", **_interp("NEG")},
    ),
    "unknown": (
        {"valueString": "inconclusive"},
        {"valueString": "see comment"},
        {},
    ),
}
HCG_RESULTS = RESULTS["positive"] + RESULTS["negative"]


# ------------------------------------------------------------------ dates


def fhir_text(t: datetime, form: str) -> str:
    """`t` written as FHIR writes dates: an instant (UTC or with an offset), a date, a month, a
    year (the partial forms span their period)."""
    t = t.astimezone(UTC)
    if form == "instant":
        return instant(t)
    if form == "offset":
        return t.astimezone(timezone(timedelta(hours=-5))).isoformat()
    if form == "offset-east":
        return t.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    if form == "date":
        return t.date().isoformat()
    if form == "month":
        return t.strftime("%Y-%m")
    if form == "year":
        return t.strftime("%Y")
    raise AssertionError(form)


FORMS = ("instant",) * 6 + ("date",) * 3 + ("offset", "offset-east", "month", "year")


def earliest_day(text: str) -> date:
    """The first UTC calendar day a FHIR date or dateTime can denote."""
    if len(text) == 4:
        return date(int(text), 1, 1)
    if len(text) == 7:
        return date(int(text[:4]), int(text[5:7]), 1)
    if len(text) == 10:
        return date.fromisoformat(text)
    return datetime.fromisoformat(text).astimezone(UTC).date()


def latest_instant(text: str) -> datetime:
    """The last instant a FHIR date or dateTime can denote."""
    if len(text) == 4:
        return datetime(int(text), 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    if len(text) == 7:
        first_next = months_back(date(int(text[:4]), int(text[5:7]), 1), -1)
        return datetime.combine(first_next, datetime.min.time(), UTC) - timedelta(microseconds=1)
    if len(text) == 10:
        d = date.fromisoformat(text)
        return datetime.combine(d, datetime.max.time(), UTC)
    return datetime.fromisoformat(text).astimezone(UTC)


def window_start_day(key: Key, n: int, as_of: datetime) -> date:
    """The first calendar day a window reaches (for hours: the day of its first instant)."""
    unit = unit_of(key)
    if unit == "days":
        return as_of.date() - timedelta(days=n)
    if unit == "months":
        return months_back(as_of.date(), n)
    return (as_of - timedelta(hours=n)).date()


def windows(cfg: Any) -> list[tuple[Key, int]]:
    """Every window of the config with its value, one per distinct (unit, value)."""
    seen: dict[tuple[str, int], Key] = {}
    for key in window_keys(RAW):
        if key[-1] != "due_in_days":
            seen.setdefault((unit_of(key), config_value(cfg, key)), key)
    return [(key, n) for (_unit, n), key in seen.items()]


def edges(as_of: datetime, cfg: Any) -> list[datetime]:
    """Instants on and around every window edge of the config for this as_of (PATHWAY §8):
    the edge day, the day inside and the day outside (at the start, the end and as_of's time of
    day); for hours, the edge instant and a second either side."""
    out: list[datetime] = []
    for key, n in windows(cfg):
        if unit_of(key) == "hours":
            e = as_of - timedelta(hours=n)
            out += [e - timedelta(seconds=1), e, e + timedelta(seconds=1)]
            continue
        day = window_start_day(key, n, as_of)
        for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
            start = datetime.combine(d, datetime.min.time(), UTC)
            out += [start, start + timedelta(hours=23, minutes=59, seconds=59)]
            out.append(datetime.combine(d, as_of.timetz()).astimezone(UTC))
    return sorted(set(out))


AS_OFS = (
    datetime(2024, 11, 20, 16, 45, tzinfo=UTC),
    datetime(2024, 2, 29, 8, 30, tzinfo=UTC),
    datetime(2025, 3, 1, 0, 30, tzinfo=UTC),
    datetime(2025, 3, 31, 23, 10, tzinfo=UTC),
    datetime(2025, 6, 15, 12, 0, tzinfo=UTC),
)
as_of_strategy = st.sampled_from(AS_OFS) | st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))


# ------------------------------------------------------------------ the generated patient


@dataclass
class Case:
    """One generated patient: the data, as_of, and what the generator meant by each screen."""

    as_of: datetime
    resources: list[dict[str, Any]]
    results: dict[str, str] = field(
        default_factory=dict
    )  # screen id -> positive | negative | unknown
    qtc_values: list[float] = field(default_factory=list)

    def bundle(self, resources: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        items = self.resources if resources is None else resources
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in items],
        }

    def __repr__(self) -> str:
        return (
            f"Case(as_of={instant(self.as_of)!r}, bundle="
            + orjson.dumps(self.bundle(), option=orjson.OPT_INDENT_2).decode()
            + ")"
        )


class Draw:
    """What a generated resource needs: as_of, the config's edges and a hypothesis draw."""

    def __init__(self, draw: Callable[..., Any], as_of: datetime, cfg: Any) -> None:
        self.draw = draw
        self.as_of = as_of
        self.edges = tuple(edges(as_of, cfg))

    def pick(self, options: Any) -> Any:
        """One of the options (an index draw: cheap, and shrinks to the first option)."""
        return options[self.int(0, len(options) - 1)]

    def int(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, hi)))

    def moment(self) -> datetime:
        """On or around an edge of the config (often), recent, anywhere in 2.5 years, or
        (rarely) after as_of."""
        kind = self.int(0, 9)
        if kind < 4:
            return self.pick(self.edges)
        if kind < 7:
            return self.as_of - timedelta(seconds=self.int(0, 100 * 3600))
        if kind < 9:
            return self.as_of - timedelta(days=self.int(0, 900), seconds=self.int(0, 86399))
        return self.as_of + timedelta(seconds=self.int(1, 3 * 86400))

    def when(self) -> str:
        return fhir_text(self.moment(), self.pick(FORMS))

    def maybe_when(self) -> str | None:
        return None if self.int(0, 19) == 0 else self.when()


def screen(d: Draw, case: Case, analyte: str, meaning: str, when: str | None) -> dict[str, Any]:
    encoding = d.pick(RESULTS[meaning])
    r = lab(d.pick(UDS_CODES[analyte]), when or "", **copy.deepcopy(encoding))
    if when is None:
        del r["effectiveDateTime"]
    case.results[r["id"]] = meaning
    return r


def request(d: Draw, name: str, status: str, authored: str | None) -> dict[str, Any]:
    return med(DRUGS[name], status, authored, reason=d.pick(REASONS))


def build_case(draw: Callable[..., Any], evaluator: Evaluator) -> Case:
    as_of = draw(as_of_strategy)
    d = Draw(draw, as_of, evaluator.config.pathway)
    case = Case(as_of, [])
    out = case.resources

    age = d.pick((14, 15, 16, 17, 18, 19, 25, 34, 45, 50, 51, 70))
    birth = as_of.date() - timedelta(days=365 * age + d.int(-200, 200))
    gender = d.pick(("male", "female", "female", "other", "unknown", None))
    p = patient(gender=gender or "unknown", birth=birth.isoformat())
    if gender is None:
        del p["gender"]
    if d.int(0, 9) == 0:
        p["birthDate"] = birth.isoformat()[:4]
    out.append(p)

    for _ in range(d.int(0, 3)):
        system, code = d.pick(OUD_CODES) if d.int(0, 3) else d.pick(OTHER_CONDITIONS)
        c = condition(
            code,
            system,
            status=d.pick(CLINICAL),
            recorded=None,
            verification=d.pick(VERIFICATION),
        )
        when = d.maybe_when()
        if when is not None:
            c["recordedDate" if d.int(0, 2) else "onsetDateTime"] = when
        out.append(c)

    for _ in range(d.int(0, 2)):
        count = d.int(0, 11)
        s = severity(count, d.when())
        if d.int(0, 3) == 0:
            del s["valueInteger"]
            s["valueQuantity"] = {"value": count}
        out.append(s)
    for _ in range(d.int(0, 3)):
        out.append(cows(d.int(0, 48), d.when()))
    for _ in range(d.int(0, 2)):
        used = d.maybe_when()
        u = last_use(used or "", d.pick(OPIOID_TYPES), when=d.when())
        if used is None:
            del u["valueDateTime"]
        out.append(u)
    for _ in range(d.int(0, 2)):
        out.append(stage(d.pick(STAGES), d.when()))
    for _ in range(d.int(0, 6)):
        analyte = d.pick(tuple(UDS_CODES))
        meaning = d.pick(("positive", "positive", "negative", "negative", "unknown"))
        out.append(screen(d, case, analyte, meaning, d.maybe_when()))
    for _ in range(d.int(0, 2)):
        value = float(d.int(380, 560))
        case.qtc_values.append(value)
        out.append(quantity("8636-3", value, d.when(), unit="ms"))
    for _ in range(d.int(0, 2)):
        code = d.pick(("1742-6", "1920-8"))
        high = d.pick((None, None, 30.0, 40.0, 56.0))
        out.append(quantity(code, float(d.int(10, 400)), d.when(), high=high))
    if gender == "female" and d.int(0, 2) == 0:
        out.append(lab("2106-3", d.when(), **copy.deepcopy(d.pick(HCG_RESULTS))))
    if gender == "female" and d.int(0, 4) == 0:
        answer = d.pick((("LA15173-0", LOINC), ("LA26683-5", LOINC), ("77386006", SNOMED)))
        out.append(lab("82810-3", d.when(), **_answer(answer[1], answer[0])))
    for _ in range(d.int(0, 2)):
        if d.int(0, 1):
            out.append(quantity("8480-6", float(d.int(70, 150)), d.when(), unit="mm[Hg]"))
        else:
            out.append(quantity("8867-4", float(d.int(40, 110)), d.when(), unit="/min"))
    for _ in range(d.int(0, 1)):
        for code in ("75622-1", "13955-0"):
            out.append(lab(code, d.when(), **_answer(SNOMED, "260385009")))

    for _ in range(d.int(0, 5)):
        name = d.pick(tuple(DRUGS))
        out.append(request(d, name, d.pick(REQUEST_STATUSES), d.maybe_when()))
    for _ in range(d.int(0, 2)):
        out.append(
            task(d.pick(TASK_CODES), d.pick(("completed", "completed", "requested")), end=d.when())
        )
    return case


# ------------------------------------------------------------------ comparing decisions


def canonical(x: Any) -> Any:
    """A decision as plain data, with the order of every sequence dropped (bundle order may
    reorder reasons or evidence; it may not change them). A flag's detail is a lead-in and its
    reasons joined with '; ': their order is dropped too."""
    if is_dataclass(x) and not isinstance(x, type):
        return {f.name: canonical(getattr(x, f.name)) for f in fields(x)}
    if isinstance(x, tuple) and hasattr(x, "_asdict"):
        out = {k: canonical(v) for k, v in x._asdict().items()}
        if isinstance(out.get("detail"), str):
            head, _, listed = out["detail"].partition(": ")
            out["detail"] = [head, *sorted(listed.split("; "))]
        return out
    if isinstance(x, list | tuple):
        return sorted((canonical(v) for v in x), key=repr)
    if isinstance(x, dict):
        return {k: canonical(v) for k, v in x.items()}
    return x


def diff(a: Decision, b: Decision) -> str:
    ca, cb = canonical(a), canonical(b)
    return (
        "; ".join(f"{k}: {ca[k]!r} -> {cb[k]!r}" for k in ca if ca[k] != cb.get(k))
        or "(no difference)"
    )


def statuses(d: Decision) -> dict[str, str]:
    return {m.medication: m.status for m in d.medications}


# ------------------------------------------------------------------ (a) old resources

# For each kind of resource that has a look-back, the config keys of every window that reads it
# (PATHWAY §2-§8). "Older than every window" = before the earliest day any of them reaches.
# Kinds left out, because a resource of that kind counts whatever its date (the spec says so):
# - OUD Conditions (§2: a diagnosis is evidence, remission is history, whatever its date) and
#   pregnancy Conditions (§8: an active pregnancy Condition);
# - the pregnancy status observation (§8: "pregnancy status = pregnant", no window);
# - MOUD requests: an active one is current (and active buprenorphine is evidence whatever its
#   authoredOn), a completed or stopped one is a past episode whatever its date (§8), and any
#   of them may start an episode chain;
# - screens for an expected MOUD analyte (buprenorphine, methadone, EDDP) are judged by the
#   latest since the drug's chain start, whatever their age (§8 adherence): they are old here
#   only when also older than every MedicationRequest in the data (then before any chain start).
UDS_KEYS: tuple[Key, ...] = (
    ("phase", "suspected_oud_uds_days"),
    ("phase", "return_to_use_uds_days"),
    ("phase", "recovery_uds_days"),
    ("buprenorphine", "illicit_uds_days"),
    ("buprenorphine", "fentanyl_days"),
    ("naltrexone", "illicit_uds_days"),
    ("naltrexone", "negative_uds_days"),
    ("psychosocial", "illicit_uds_days"),
    ("tasks", "collect-uds", "naltrexone_not_yet_days"),
    *(
        ("tasks", "collect-uds", "interval_days", ph)
        for ph in RAW["tasks"]["collect-uds"]["interval_days"]
    ),
)
TASK_KEYS: tuple[Key, ...] = (
    ("task_repeat_after_days",),
    ("cows", "assess_window_hours"),
    *(k for k in window_keys(RAW) if k[0] == "tasks" and k[-1] != "due_in_days"),
)
OLD_KINDS: dict[str, tuple[Key, ...]] = {
    "cows": (
        ("cows", "withdrawal_window_hours"),
        ("cows", "buprenorphine_window_hours"),
        ("cows", "assess_window_hours"),
    ),
    "severity": (
        ("evidence", "severity_lookback_months"),
        ("tasks", "assess-oud-severity", "interval_months"),
    ),
    "screen": UDS_KEYS,
    "moud-analyte-screen": (*UDS_KEYS, ("adherence", "min_days_on_moud")),
    "qtc": (("labs", "qtc_valid_months"), ("tasks", "order-ecg", "interval_months")),
    "liver": (
        ("labs", "liver_valid_days"),
        ("tasks", "order-lft", "interval_days"),
        ("tasks", "order-lft", "buprenorphine_interval_months"),
    ),
    "stage": (("labs", "stage_valid_days"), ("tasks", "assess-readiness", "interval_days")),
    "last-use": (
        ("buprenorphine", "short_acting_hours"),
        ("buprenorphine", "long_acting_hours"),
        ("buprenorphine", "fentanyl_days"),
        ("naltrexone", "opioid_free_days_short"),
        ("naltrexone", "opioid_free_days_long"),
    ),
    "vitals": (("adjuncts", "vitals_window_hours"),),
    "hcg": (("labs", "hcg_valid_days"), ("tasks", "pregnancy-test", "interval_days")),
    "hiv-hcv": (("tasks", "hiv-hcv-screening", "interval_months"),),
    "naloxone-request": (("naloxone", "prescribed_lookback_months"),),
    "withdrawal-condition": (("phase", "withdrawal_condition_days"),),
    "completed-task": TASK_KEYS,
    # An opioid analgesic, benzodiazepine, clonidine or lofexidine request that is history
    # (§8: only `active` is current): no rule reads it at all; placed old anyway.
    "history-request": (),
}


def old_day(case: Case, kind: str, cfg: Any, extra_days: int) -> date:
    """A day before every window of `kind` reaches (and, for a MOUD analyte, before every
    MedicationRequest), `extra_days` further back."""
    starts = [window_start_day(k, config_value(cfg, k), case.as_of) for k in OLD_KINDS[kind]]
    if not starts:
        starts = [case.as_of.date()]
    if kind == "moud-analyte-screen":
        starts += [
            earliest_day(r["authoredOn"])
            for r in case.resources
            if r["resourceType"] == "MedicationRequest" and r.get("authoredOn")
        ]
    return min(starts) - timedelta(days=1 + extra_days)


def old_text(day: date, form: str, hour: int) -> str:
    """A date whose every possible instant falls on or before `day` (UTC)."""
    if form == "month":
        return (day - timedelta(days=31)).strftime("%Y-%m")
    if form == "year":
        return (day - timedelta(days=366)).strftime("%Y")
    moment = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=hour)
    return fhir_text(moment, form)


@st.composite
def old_resource_cases(
    draw: Callable[..., Any], evaluator: Evaluator
) -> tuple[Case, str, dict[str, Any]]:
    case = build_case(draw, evaluator)
    cfg = evaluator.config.pathway
    kind = draw(st.sampled_from(sorted(OLD_KINDS)))
    d = Draw(draw, case.as_of, cfg)
    day = old_day(case, kind, cfg, draw(st.integers(0, 1500)))
    when = old_text(day, d.pick(FORMS), d.int(0, 23))
    r: dict[str, Any]
    if kind == "cows":
        r = cows(d.int(0, 48), when)
    elif kind == "severity":
        r = severity(d.int(0, 11), when)
    elif kind in ("screen", "moud-analyte-screen"):
        analytes = (
            MOUD_ANALYTES
            if kind == "moud-analyte-screen"
            else tuple(a for a in UDS_CODES if a not in MOUD_ANALYTES)
        )
        r = screen(d, case, d.pick(analytes), d.pick(("positive", "negative", "unknown")), when)
    elif kind == "qtc":
        r = quantity("8636-3", float(d.int(380, 600)), when, unit="ms")
    elif kind == "liver":
        r = quantity(d.pick(("1742-6", "1920-8")), float(d.int(10, 900)), when)
    elif kind == "stage":
        r = stage(d.pick(STAGES), when)
    elif kind == "last-use":
        r = last_use(when, d.pick(OPIOID_TYPES), when=when)
    elif kind == "vitals":
        r = quantity(d.pick(("8480-6", "8867-4")), float(d.int(30, 80)), when)
    elif kind == "hcg":
        r = lab("2106-3", when, **copy.deepcopy(d.pick(HCG_RESULTS)))
    elif kind == "hiv-hcv":
        r = lab(d.pick(("75622-1", "13955-0")), when, **_answer(SNOMED, "260385009"))
    elif kind == "naloxone-request":
        r = request(d, "naloxone-nasal", d.pick(REQUEST_STATUSES), when)
    elif kind == "withdrawal-condition":
        r = condition("87132004", SNOMED, status=d.pick(CLINICAL), recorded=when)
    elif kind == "completed-task":
        r = task(d.pick(TASK_CODES), "completed", end=when)
    else:
        r = request(d, d.pick(NON_MOUD_DRUGS), d.pick(HISTORY_STATUSES), when)
    return case, kind, r


def patients(evaluator: Evaluator) -> st.SearchStrategy[Case]:
    return st.composite(lambda draw: build_case(draw, evaluator))()


# ------------------------------------------------------------------ the properties

# Hypothesis needs the evaluator when the strategies are built; the fixture gives the same one.
from pathway.config import load_config  # noqa: E402

EVALUATOR = Evaluator(load_config())


@profile(150)
@given(old_resource_cases(EVALUATOR))
def test_a_resource_older_than_every_window_changes_nothing(
    generated: tuple[Case, str, dict[str, Any]],
) -> None:
    case, kind, old = generated
    before = EVALUATOR.evaluate(case.bundle(), case.as_of).decision
    after = EVALUATOR.evaluate(case.bundle([*case.resources, old]), case.as_of).decision
    assert canonical(after) == canonical(before), (
        f"adding an old {kind} ({orjson.dumps(old).decode()}) changed: {diff(before, after)}"
    )


def clinical(d: Decision) -> dict[str, Any]:
    """What the clinician acts on: phase and flags, each option's status, each task's code, due
    date and priority, each safety flag's code and indicator."""
    return {
        "phase": d.phase,
        "returnToUse": d.return_to_use,
        "suspectedOud": d.suspected_oud,
        "oudEvidence": d.oud_evidence,
        "severity": d.severity,
        "stage": d.stage,
        "medications": statuses(d),
        "tasks": sorted((t.code, t.due, t.priority) for t in d.tasks),
        "flags": sorted((f.code, f.indicator) for f in d.flags),
    }


def _code(r: dict[str, Any]) -> str:
    concept = r.get("code") or r.get("medicationCodeableConcept") or {}
    codings = concept.get("coding") or [{}]
    return str(codings[0].get("code"))


@profile(100)
@given(patients(EVALUATOR), st.randoms(use_true_random=False))
def test_bundle_order_changes_nothing(case: Case, rnd: Any) -> None:
    """Shuffled entries: the same decision, reasons and evidence included, ties too (results of
    one test at one instant: the worse counts; requests authored the same day: cited by
    reference order)."""
    shuffled = list(case.resources)
    rnd.shuffle(shuffled)
    before = EVALUATOR.evaluate(case.bundle(), case.as_of).decision
    after = EVALUATOR.evaluate(case.bundle(shuffled), case.as_of).decision
    assert clinical(after) == clinical(before), diff(before, after)
    assert canonical(after) == canonical(before), diff(before, after)


def _more_risk(draw: Callable[..., Any], case: Case, what: str) -> dict[str, Any]:
    d = Draw(draw, case.as_of, EVALUATOR.config.pathway)
    if what == "benzodiazepine":
        return request(d, d.pick(("alprazolam", "zolpidem")), "active", d.maybe_when())
    if what == "fentanyl screen":
        if d.int(0, 3):
            t = case.as_of - timedelta(seconds=d.int(0, 72 * 3600))
            when = fhir_text(t, d.pick(("instant", "offset", "offset-east")))
        else:
            when = (case.as_of.date() - timedelta(days=d.int(0, 2))).isoformat()
        return screen(d, case, "fentanyl", "positive", when)
    # A higher QTc: at least every QTc on file, recorded in the last 30 days (so it counts,
    # and whichever QTc the rules take as the latest, its value does not go down).
    floor = int(max(case.qtc_values, default=380))
    t = case.as_of - timedelta(seconds=d.int(0, 30 * 86400))
    return quantity("8636-3", float(d.int(floor, max(floor, 620))), instant(t), unit="ms")


@st.composite
def riskier(draw: Callable[..., Any]) -> tuple[Case, str, dict[str, Any]]:
    case = build_case(draw, EVALUATOR)
    what = draw(st.sampled_from(("benzodiazepine", "fentanyl screen", "higher QTc")))
    return case, what, _more_risk(draw, case, what)


@profile(150)
@given(riskier())
def test_more_risk_never_makes_an_option_more_permissive(
    generated: tuple[Case, str, dict[str, Any]],
) -> None:
    case, what, added = generated
    before = statuses(EVALUATOR.evaluate(case.bundle(), case.as_of).decision)
    after = statuses(EVALUATOR.evaluate(case.bundle([*case.resources, added]), case.as_of).decision)
    for name in MOUD_OPTIONS:
        assert no_more_permissive(before[name], after[name]), (
            f"adding a {what}: {name} {before[name]} -> {after[name]}"
        )
    # Naloxone and the adjuncts are not on the scale: more risk never withdraws naloxone (a
    # fentanyl-positive screen may bring a patient into the pathway: not-indicated ->
    # recommended), and none of these touches withdrawal, vitals or clonidine.
    nal = (before["naloxone"], after["naloxone"])
    assert nal[0] == nal[1] or (
        what == "fentanyl screen" and nal == ("not-indicated", "recommended")
    ), f"adding a {what}: naloxone {nal[0]} -> {nal[1]}"
    for name in ("lofexidine", "clonidine"):
        assert before[name] == after[name], (
            f"adding a {what}: {name} {before[name]} -> {after[name]}"
        )


@st.composite
def cows_rising(draw: Callable[..., Any]) -> tuple[Case, dict[str, Any], dict[str, Any]]:
    """A patient whose latest COWS (at instant t) is < 8, and the same with it >= 8. COWS
    observations the patient had that could be later than t are dropped from both."""
    case = build_case(draw, EVALUATOR)
    start = EVALUATOR.config.pathway.cows.buprenorphine_start_min
    t = case.as_of - timedelta(seconds=draw(st.integers(0, 100 * 3600)))
    case.resources = [
        r
        for r in case.resources
        if not (
            r["resourceType"] == "Observation"
            and r["code"]["coding"][0]["code"] == "cows-total"
            and latest_instant(r["effectiveDateTime"]) >= t
        )
    ]
    low = cows(
        draw(st.integers(0, start - 1)), fhir_text(t, draw(st.sampled_from(("instant", "offset"))))
    )
    high = {**low, "valueInteger": draw(st.integers(start, 48))}
    return case, low, high


@profile(100)
@given(cows_rising())
def test_cows_rising_past_the_start_score_never_makes_buprenorphine_less_suitable(
    generated: tuple[Case, dict[str, Any], dict[str, Any]],
) -> None:
    case, low, high = generated
    a = EVALUATOR.evaluate(case.bundle([*case.resources, low]), case.as_of).decision
    b = EVALUATOR.evaluate(case.bundle([*case.resources, high]), case.as_of).decision
    s_low, s_high = a.status_of("buprenorphine"), b.status_of("buprenorphine")
    assert s_low is not None and s_high is not None
    assert no_more_permissive(s_high, s_low), (
        f"COWS {low['valueInteger']} -> {high['valueInteger']}: buprenorphine {s_low} -> {s_high}"
    )


@st.composite
def negative_to_positive(draw: Callable[..., Any]) -> tuple[Case, int, dict[str, Any]]:
    """A patient with a negative screen (one of theirs, or one added) and the same screen read
    positive: same analyte code, same date, same id."""
    case = build_case(draw, EVALUATOR)
    d = Draw(draw, case.as_of, EVALUATOR.config.pathway)
    negatives = [
        i for i, r in enumerate(case.resources) if case.results.get(r.get("id", "")) == "negative"
    ]
    if not negatives or d.int(0, 3) == 0:
        case.resources.append(screen(d, case, d.pick(tuple(UDS_CODES)), "negative", d.maybe_when()))
        negatives = [len(case.resources) - 1]
    index = d.pick(negatives)
    old = case.resources[index]
    new = {
        k: v
        for k, v in old.items()
        if k not in ("valueString", "valueCodeableConcept", "interpretation")
    }
    new.update(copy.deepcopy(d.pick(RESULTS["positive"])))
    return case, index, new


@profile(100)
@given(negative_to_positive())
def test_a_negative_screen_turned_positive_never_makes_naltrexone_more_permissive(
    generated: tuple[Case, int, dict[str, Any]],
) -> None:
    case, index, positive = generated
    changed = list(case.resources)
    changed[index] = positive
    before = EVALUATOR.evaluate(case.bundle(), case.as_of).decision.status_of("naltrexone")
    after = EVALUATOR.evaluate(case.bundle(changed), case.as_of).decision.status_of("naltrexone")
    assert before is not None and after is not None
    assert no_more_permissive(before, after), f"naltrexone {before} -> {after}"


@st.composite
def on_methadone_with_exposure(
    draw: Callable[..., Any],
) -> tuple[Case, str, list[dict[str, Any]]]:
    """A patient with an active methadone request (any indication, authored by as_of or
    undated) and some recent full-agonist exposure to add."""
    case = build_case(draw, EVALUATOR)
    d = Draw(draw, case.as_of, EVALUATOR.config.pathway)
    authored = (
        None
        if d.int(0, 5) == 0
        else fhir_text(
            case.as_of - timedelta(seconds=d.int(0, 400 * 86400)), d.pick(("instant", "date"))
        )
    )
    case.resources.append(
        request(d, d.pick(("methadone-tab", "methadone-sol")), "active", authored)
    )
    recent = case.as_of - timedelta(seconds=d.int(0, 36 * 3600))
    what = d.pick(
        (
            "fentanyl-positive screen",
            "opiates-positive screen",
            "short-acting use",
            "fentanyl use",
            "untyped use",
            "active opioid analgesic",
        )
    )
    added: list[dict[str, Any]]
    if what == "fentanyl-positive screen":
        added = [screen(d, case, "fentanyl", "positive", instant(recent))]
    elif what == "opiates-positive screen":
        added = [screen(d, case, "opiates", "positive", instant(recent))]
    elif what.endswith("use"):
        kind = {"short-acting use": "short-acting", "fentanyl use": "fentanyl"}.get(what)
        added = [last_use(instant(recent), kind, when=instant(case.as_of))]
    else:
        name = d.pick(("oxycodone", "hydrocodone", "morphine", "fentanyl-patch", "tramadol"))
        added = [med(DRUGS[name], "active", instant(recent))]
    return case, what, added


@profile(100)
@given(on_methadone_with_exposure())
def test_on_methadone_recent_exposure_does_not_change_buprenorphine(
    generated: tuple[Case, str, list[dict[str, Any]]],
) -> None:
    """§8: on methadone (any active methadone request, pain included) buprenorphine is a planned
    transition (caution), never not-yet, whatever other recent full-agonist exposure exists; so
    adding such exposure leaves buprenorphine's status as it was."""
    case, what, added = generated
    before = EVALUATOR.evaluate(case.bundle(), case.as_of).decision.status_of("buprenorphine")
    after = EVALUATOR.evaluate(case.bundle([*case.resources, *added]), case.as_of).decision
    assert after.status_of("buprenorphine") == before, (
        f"on methadone, adding {what}: buprenorphine {before} -> {after.status_of('buprenorphine')}"
    )
    assert before != "not-yet"


def adherence(d: Decision) -> tuple[bool, tuple[str, ...]]:
    """Is an adherence review planned, and for which drugs was the expected analyte missing."""
    flagged = tuple(sorted(f.summary for f in d.flags if f.code == "moud-analyte-missing"))
    return "review-adherence" in d.task_codes, flagged


EXPECTED = {  # §2: the drug, its request codes, its expected analytes (config drug_groups)
    "buprenorphine": (("1010604", "351265"), ("buprenorphine",)),
    "methadone": (("864706", "991147"), ("methadone", "eddp")),
}


@dataclass
class OnMoud:
    """A generated patient on buprenorphine or methadone (with an OUD diagnosis, so methadone is
    MOUD), the drug's own chain started at `start`, screens for its analytes around the start."""

    case: Case
    drug: str
    start: datetime


@st.composite
def on_moud(draw: Callable[..., Any]) -> OnMoud:
    case = build_case(draw, EVALUATOR)
    d = Draw(draw, case.as_of, EVALUATOR.config.pathway)
    drug = d.pick(tuple(EXPECTED))
    codes, analytes = EXPECTED[drug]
    case.resources.append(condition("F11.20", ICD10, status="active", recorded="2020-01-01"))
    start = case.as_of - timedelta(days=d.int(0, 40), seconds=d.int(0, 86399))
    chain = [start]
    for _ in range(d.int(0, 2)):  # the drug's own earlier requests (<= 30 days apart or not)
        chain.append(chain[-1] - timedelta(days=d.int(1, 40)))
    for i, t in enumerate(chain):
        status = "active" if i == 0 else d.pick(("completed", "stopped"))
        case.resources.append(med(d.pick(codes), status, fhir_text(t, d.pick(("instant", "date")))))
    first = min(chain)
    for _ in range(d.int(0, 4)):  # screens around the start, some the same instant
        t = min(case.as_of, first + timedelta(hours=d.int(-10 * 24, 45 * 24)))
        meaning = d.pick(("negative", "negative", "positive", "unknown"))
        case.resources.append(screen(d, case, d.pick(analytes), meaning, instant(t)))
    return OnMoud(case, drug, first)


def adherence_of(case: Case, resources: list[dict[str, Any]]) -> tuple[bool, tuple[str, ...]]:
    return adherence(EVALUATOR.evaluate(case.bundle(resources), case.as_of).decision)


@st.composite
def other_drug_history(draw: Callable[..., Any]) -> tuple[OnMoud, dict[str, Any]]:
    """A patient on buprenorphine or methadone and a past naltrexone request (completed or
    stopped, no reasonCode) to add, often within 30 days before the drug's own chain: another
    MOUD drug, so it may move the episode's start, never the drug's own chain."""
    p = draw(on_moud())
    d = Draw(draw, p.case.as_of, EVALUATOR.config.pathway)
    t = p.start - timedelta(days=d.int(0, 45), seconds=d.int(0, 86399))
    added = med(
        DRUGS[d.pick(("naltrexone-tab", "naltrexone-xr"))],
        d.pick(("completed", "stopped")),
        fhir_text(t, d.pick(("instant", "date"))),
    )
    return p, added


@profile(100)
@given(other_drug_history())
def test_another_moud_drug_never_changes_the_adherence_review(
    generated: tuple[OnMoud, dict[str, Any]],
) -> None:
    """§8: 'expected MOUD analyte missing' counts the days on a drug from that drug's own chain
    and reads only screens since then: a past request for another MOUD drug changes neither."""
    p, added = generated
    before = adherence_of(p.case, p.case.resources)
    after = adherence_of(p.case, [*p.case.resources, added])
    assert after == before, f"adding {orjson.dumps(added).decode()}: {before} -> {after}"


@st.composite
def screen_before_start(draw: Callable[..., Any]) -> tuple[OnMoud, dict[str, Any]]:
    """A patient on buprenorphine or methadone and a screen for the drug's analyte taken a day
    or more before any request for the drug (so before its chain start), any result."""
    p = draw(on_moud())
    d = Draw(draw, p.case.as_of, EVALUATOR.config.pathway)
    codes, analytes = EXPECTED[p.drug]
    earliest = min(
        earliest_day(r["authoredOn"])
        for r in p.case.resources
        if r["resourceType"] == "MedicationRequest" and _code(r) in codes and r.get("authoredOn")
    )
    t = datetime.combine(earliest, datetime.min.time(), UTC) - timedelta(
        days=d.int(1, 60), seconds=d.int(1, 86399)
    )
    meaning = d.pick(("negative", "positive", "unknown"))
    form = d.pick(("instant", "date", "offset", "offset-east"))  # not a month: it may reach
    return p, screen(d, p.case, d.pick(analytes), meaning, fhir_text(t, form))  # the start


@profile(75)
@given(screen_before_start())
def test_a_screen_before_the_drug_started_never_changes_the_adherence_review(
    generated: tuple[OnMoud, dict[str, Any]],
) -> None:
    """§8: 'a screen from before the drug was prescribed says nothing about adherence'."""
    p, added = generated
    before = adherence_of(p.case, p.case.resources)
    after = adherence_of(p.case, [*p.case.resources, added])
    assert after == before, f"adding {orjson.dumps(added).decode()}: {before} -> {after}"


@st.composite
def positive_beside_negative(draw: Callable[..., Any]) -> tuple[OnMoud, list[dict[str, Any]]]:
    """A patient on buprenorphine or methadone whose latest screens for the drug's analytes are
    a negative and a positive taken at one instant (on or after the start; the patient's own
    screens for those analytes that could be later are dropped), in either order."""
    p = draw(on_moud())
    d = Draw(draw, p.case.as_of, EVALUATOR.config.pathway)
    _codes, analytes = EXPECTED[p.drug]
    span = max(0, int((p.case.as_of - p.start).total_seconds()))
    t = p.case.as_of - timedelta(seconds=d.int(0, span))
    wanted = {c for a in analytes for c in UDS_CODES[a]}
    p.case.resources = [
        r
        for r in p.case.resources
        if not (
            r["resourceType"] == "Observation"
            and _code(r) in wanted
            and (not r.get("effectiveDateTime") or latest_instant(r["effectiveDateTime"]) >= t)
        )
    ]
    pair = [
        screen(d, p.case, d.pick(analytes), "negative", instant(t)),
        screen(d, p.case, d.pick(analytes), "positive", instant(t)),
    ]
    return p, pair if d.int(0, 1) else pair[::-1]


@profile(75)
@given(positive_beside_negative())
def test_a_positive_at_the_latest_instant_is_never_a_missing_analyte(
    generated: tuple[OnMoud, list[dict[str, Any]]],
) -> None:
    """§8: the latest screen is by effective instant, and results at the same instant with any
    positive are not negative: this drug is not flagged, whichever order the pair comes in."""
    p, pair = generated
    decision = EVALUATOR.evaluate(p.case.bundle([*p.case.resources, *pair]), p.case.as_of)
    flagged = adherence(decision.decision)[1]
    assert not any(p.drug in summary for summary in flagged), flagged


@profile(50)
@given(patients(EVALUATOR))
def test_the_same_data_twice_gives_the_same_decision(case: Case) -> None:
    data = case.bundle()
    kept = copy.deepcopy(data)
    first = EVALUATOR.evaluate(data, case.as_of).decision
    second = EVALUATOR.evaluate(data, case.as_of).decision
    assert first == second
    assert data == kept, "evaluation changed its input"


# ------------------------------------------------------------------ through the two front doors


def _at(app: Flask, moment: datetime) -> None:
    """Freeze the service's clock (the hook takes its as_of from it)."""
    app.extensions["pathway"].clock = lambda: moment


def _from_card(body: dict[str, Any]) -> dict[str, Any] | None:
    if not body["cards"]:
        return None
    (card,) = body["cards"]
    a = card["extension"]["io.github.oud-pathway.assessment"]
    return {
        "phase": a["phase"],
        "returnToUse": a["returnToUse"],
        "suspectedOud": a["suspectedOud"],
        "medications": {m["medication"]: m["status"] for m in a["medications"]},
        "reasons": {m["medication"]: m["reasons"] for m in a["medications"]},
        "tasks": sorted(a.get("tasks", [])),
    }


def _from_apply(body: dict[str, Any]) -> dict[str, Any] | None:
    resources = [e["resource"] for e in body["entry"]]
    if resources[0]["resourceType"] == "OperationOutcome":
        return None
    careplan, *tasks = resources
    codes = {
        c["coding"][0]["system"].rsplit("/", 1)[-1]: c["coding"][0]["code"]
        for c in careplan["category"]
        if c["coding"][0]["system"].startswith(f"{CANON}/CodeSystem/")
    }
    flags = {
        c["coding"][0]["code"]
        for c in careplan["category"]
        if c["coding"][0]["system"] == f"{CANON}/CodeSystem/oud-pathway-flag"
    }
    return {
        "phase": codes["oud-pathway-phase"],
        "returnToUse": "return-to-use" in flags,
        "suspectedOud": "suspected-oud" in flags,
        "medications": {
            a["detail"]["productCodeableConcept"]["text"]: a["detail"]["extension"][0]["valueCode"]
            for a in careplan["activity"]
            if "detail" in a
        },
        "tasks": sorted(t["code"]["coding"][0]["code"] for t in tasks),
        "due": {
            t["code"]["coding"][0]["code"]: (t["restriction"]["period"]["end"], t["priority"])
            for t in tasks
        },
    }


@profile(25)
@given(patients(EVALUATOR))
def test_hook_and_apply_say_what_the_evaluator_says(
    app: Flask, client: FlaskClient, case: Case
) -> None:
    d = EVALUATOR.evaluate(case.bundle(), case.as_of).decision
    _at(app, case.as_of)
    hook = client.post(
        "/cds-services/oud-pathway",
        data=orjson.dumps(hook_request("patient-view", "p1", prefetch_of(case.bundle()))),
        content_type="application/json",
    )
    assert hook.status_code == 200, hook.get_data(as_text=True)
    applied = client.post(
        "/fhir/PlanDefinition/oud-care-pathway/$apply",
        data=orjson.dumps(apply_parameters(case.bundle(), case.as_of)),
        content_type="application/fhir+json",
    )
    assert applied.status_code == 200, applied.get_data(as_text=True)
    card, plan = _from_card(hook.get_json()), _from_apply(applied.get_json())
    if d.phase == "not-applicable":
        assert card is None and plan is None
        return
    assert card is not None and plan is not None
    expected = {
        "phase": d.phase,
        "returnToUse": d.return_to_use,
        "suspectedOud": d.suspected_oud,
        "medications": statuses(d),
        "tasks": sorted(d.task_codes),
    }
    assert {k: card[k] for k in expected} == expected
    assert card["reasons"] == {m.medication: list(m.reasons) for m in d.medications}
    assert {k: plan[k] for k in expected} == expected
    assert plan["due"] == {t.code: (t.due.isoformat(), t.priority) for t in d.tasks}


def test_generated_codes_are_in_the_value_sets() -> None:
    """The generator's codes mean what it thinks (a code outside its value set would make the
    properties vacuous for that kind)."""
    t = EVALUATOR.config.terminology
    for analyte, codes in UDS_CODES.items():
        for code in codes:
            assert f"uds-{analyte}" in t.groups([{"system": LOINC, "code": code}]), code
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
    assert set(DRUG_GROUPS) == set(DRUGS)
    for name, code in DRUGS.items():
        assert DRUG_GROUPS[name] in t.groups([{"system": rxnorm, "code": code}]), name
    for system, code in OUD_CODES:
        assert "oud-conditions" in t.groups([{"system": system, "code": code}]), code


def test_old_kinds_name_config_keys() -> None:
    """The look-backs behind (a) are config keys that exist (a renamed key fails here)."""
    keys = set(window_keys(RAW))
    for kind, kind_keys in OLD_KINDS.items():
        for key in kind_keys:
            assert key in keys, (kind, key)


def test_own_date_helpers() -> None:
    assert earliest_day("2024") == date(2024, 1, 1)
    assert earliest_day("2024-02") == date(2024, 2, 1)
    assert earliest_day("2024-02-29T23:30:00-05:00") == date(2024, 3, 1)
    assert latest_instant("2024-02") == datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    assert latest_instant("2024") == datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert latest_instant("2024-02-29") == datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    assert old_text(date(2024, 3, 1), "month", 0) == "2024-01"
    assert old_text(date(2024, 3, 1), "year", 0) == "2023"


# ------------------------------------------------------------------ defects the properties found
# Minimal patients, deterministic (each was a strict xfail until the rule was fixed).

TIE_AS_OF = datetime(2024, 11, 20, 16, 45, tzinfo=UTC)
TIE_AT = "2024-11-20T10:00:00Z"


def _negative_screens() -> list[dict[str, Any]]:
    return [
        lab("19295-5", "2024-11-20T15:00:00Z", valueString="neg"),
        lab("59673-4", "2024-11-20T15:00:00Z", valueString="neg"),
    ]


def _oud() -> dict[str, Any]:
    return condition("F11.20", ICD10, status="active", recorded="2020-01-01")


TIES = {
    "ALT 250 and ALT 10 (naltrexone)": (
        "naltrexone",
        quantity("1742-6", 250, TIE_AT),
        quantity("1742-6", 10, TIE_AT),
        _negative_screens(),
    ),
    "QTc 520 and QTc 420 (methadone)": (
        "methadone",
        quantity("8636-3", 520, TIE_AT, unit="ms"),
        quantity("8636-3", 420, TIE_AT, unit="ms"),
        [],
    ),
    "QTc 520 and QTc 420 on one date (methadone)": (
        "methadone",
        quantity("8636-3", 520, "2024-11-01", unit="ms"),
        quantity("8636-3", 420, "2024-11-01", unit="ms"),
        [],
    ),
    "COWS 10 and COWS 3 after short-acting use 2 h ago (buprenorphine)": (
        "buprenorphine",
        cows(10, TIE_AT),
        cows(3, TIE_AT),
        [last_use("2024-11-20T14:45:00Z", "short-acting")],
    ),
    "stage action and precontemplation, severe OUD (naltrexone)": (
        "naltrexone",
        stage("action", TIE_AT),
        stage("precontemplation", TIE_AT),
        [severity(7, TIE_AT), *_negative_screens()],
    ),
}


@pytest.mark.parametrize("tie", sorted(TIES))
def test_results_at_the_same_instant_decide_the_same_in_any_order(tie: str) -> None:
    name, first, second, rest = TIES[tie]
    base = [patient(), _oud(), *rest]
    one = EVALUATOR.evaluate(Case(TIE_AS_OF, [*base, first, second]).bundle(), TIE_AS_OF)
    other = EVALUATOR.evaluate(Case(TIE_AS_OF, [*base, second, first]).bundle(), TIE_AS_OF)
    assert one.decision.status_of(name) == other.decision.status_of(name)


CITED_BY_ORDER = {
    "two active buprenorphine requests authored the same day": (
        med("1010604", "active", "2024-11-01"),
        med("1010604", "active", "2024-11-01"),
    ),
    "OUD evidence: an active and a completed buprenorphine request": (
        med("1010604", "active", "2024-10-01"),
        med("1010604", "completed", "2024-06-01"),
    ),
    "OUD evidence: two MOUD requests with an OUD reasonCode": (
        med("864706", "active", "2024-10-01", reason=(ICD10, "F11.20")),
        med("637213", "completed", "2024-06-01", reason=(ICD10, "F11.20")),
    ),
}


@pytest.mark.parametrize("case", sorted(CITED_BY_ORDER))
def test_the_cited_request_does_not_depend_on_bundle_order(case: str) -> None:
    x, y = CITED_BY_ORDER[case]
    one = EVALUATOR.evaluate(Case(TIE_AS_OF, [patient(), x, y]).bundle(), TIE_AS_OF).decision
    other = EVALUATOR.evaluate(Case(TIE_AS_OF, [patient(), y, x]).bundle(), TIE_AS_OF).decision
    assert canonical(one) == canonical(other), diff(one, other)


def test_an_old_dated_last_use_does_not_hide_an_undated_one() -> None:
    undated = last_use("", "long-acting", when="2024-11-20T16:00:00Z")
    del undated["valueDateTime"]
    old = last_use("2023-01-01T00:00:00Z", "short-acting", when="2023-01-01T00:00:00Z")
    base = [patient(), _oud(), undated]
    before = EVALUATOR.evaluate(Case(TIE_AS_OF, base).bundle(), TIE_AS_OF).decision
    after = EVALUATOR.evaluate(Case(TIE_AS_OF, [*base, old]).bundle(), TIE_AS_OF).decision
    assert before.status_of("buprenorphine") == "not-yet"
    assert after.status_of("buprenorphine") == "not-yet"


def test_an_old_untyped_last_use_adds_no_note() -> None:
    old = last_use("2024-11-01T00:00:00Z", None, when="2024-11-01T00:00:00Z")
    base = [patient(), _oud()]
    before = EVALUATOR.evaluate(Case(TIE_AS_OF, base).bundle(), TIE_AS_OF).decision
    after = EVALUATOR.evaluate(Case(TIE_AS_OF, [*base, old]).bundle(), TIE_AS_OF).decision
    assert after.notes == before.notes


def _unread_noise(case: Case, rnd: Any) -> list[dict[str, Any]]:
    """What a Bulk Data export holds beside the pathway's data: labs and vitals outside every
    value set, low heart rates and blood pressures older than the vitals window (from 1 s past
    it to years), an Encounter, a cancelled copy of a screen the patient has."""
    when = instant(case.as_of - timedelta(days=rnd.randint(0, 400)))
    hours = EVALUATOR.config.pathway.adjuncts.vitals_window_hours
    past = case.as_of - timedelta(hours=hours, seconds=rnd.choice([1, 60, 3600, 86400 * 400]))
    noise: list[dict[str, Any]] = [
        quantity("2160-0", 1.1, when, unit="mg/dL"),  # creatinine
        quantity("718-7", 13.5, when, unit="g/dL"),  # hemoglobin
        {**quantity("8867-4", 38.0, instant(past), unit="/min"), "id": "old-hr-noise"},
        {**quantity("8480-6", 70.0, instant(past), unit="mm[Hg]"), "id": "old-sbp-noise"},
        {
            "resourceType": "Encounter",
            "id": "enc-noise",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "Patient/p1"},
        },
    ]
    screens = [r for r in case.resources if r.get("id") in case.results]
    if screens:
        cancelled = copy.deepcopy(rnd.choice(screens))
        cancelled["id"] = "cancelled-noise"
        cancelled["status"] = "cancelled"
        noise.append(cancelled)
    return noise


@profile(100)
@given(patients(EVALUATOR), st.randoms(use_true_random=False))
def test_what_the_reader_may_skip_changes_nothing(case: Case, rnd: Any) -> None:
    """`pathway population` leaves behind, after its first pass, every resource
    `FactReader.may_read` refuses (it never parses them again). Without them: the same decision
    (reasons, evidence and ties included) and the same notes. Read as of the case's time: the
    generated vitals fall on and around the edge of the vitals window, in every date form."""
    full = [*case.resources, *_unread_noise(case, rnd)]
    rnd.shuffle(full)
    kept = [r for r in full if EVALUATOR.reader.may_read(r, case.as_of)]
    assert len(kept) <= len(full) - 5  # the noise at least
    a = EVALUATOR.evaluate(case.bundle(full), case.as_of)
    b = EVALUATOR.evaluate(case.bundle(kept), case.as_of)
    assert canonical(b.decision) == canonical(a.decision), diff(a.decision, b.decision)
    assert b.notes == a.notes
