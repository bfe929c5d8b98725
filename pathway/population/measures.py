"""The population measures of PATHWAY.md §9: what each patient counts for, and the tally.

Pure: a patient's Decision and Findings (the same ones the point-of-care advice is made from) in,
the measures that patient is in the denominator and numerator of, and their strata, out. The
tally adds patients up and is itself addable (workers and Spark partitions tally separately).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from pathway.population.episodes import Episode, latest_episode
from pathway.rules.findings import Findings
from pathway.rules.model import Decision, When

DEFAULT_FILE = Path(__file__).resolve().parent.parent.parent / "config" / "population.yaml"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition"
RACE_URL = f"{US_CORE}/us-core-race"
ETHNICITY_URL = f"{US_CORE}/us-core-ethnicity"
STRATIFIERS = ("age", "sex", "race", "ethnicity")
UNKNOWN = "unknown"
MULTIPLE = "multiple"


class MeasureDef(NamedTuple):
    id: str
    title: str
    denominator: str
    numerator: str
    improvement: str  # increase | decrease (FHIR measure-improvement-notation)


MEASURES = (
    MeasureDef(
        "moud-coverage",
        "MOUD coverage",
        "patients with OUD evidence",
        "on active MOUD (buprenorphine, methadone or naltrexone for OUD)",
        "increase",
    ),
    MeasureDef(
        "moud-retention-180",
        "MOUD retention at 180 days",
        "patients in the pathway whose latest MOUD episode started 180 to 540 days before T",
        "that episode lasted 180 days or more",
        "increase",
    ),
    MeasureDef(
        "naloxone-coverage",
        "Rescue naloxone",
        "patients in the pathway",
        "rescue naloxone prescribed in the last 12 months",
        "increase",
    ),
    MeasureDef(
        "uds-monitoring",
        "Drug screen monitoring on MOUD",
        "patients on active MOUD",
        "no drug screen due (one on file inside the phase's interval)",
        "increase",
    ),
    MeasureDef(
        "hiv-hcv-screening",
        "HIV and HCV screening",
        "patients with OUD evidence",
        "no HIV/HCV screening due (screened in the last 12 months)",
        "increase",
    ),
    MeasureDef(
        "return-to-use",
        "Return to use",
        "patients in the pathway",
        "flagged return to use",
        "decrease",
    ),
    MeasureDef(
        "opioid-benzodiazepine",
        "Opioid with a benzodiazepine or CNS depressant",
        "patients in the pathway",
        "a review of CNS depressants is due",
        "decrease",
    ),
)
MEASURE_IDS = tuple(m.id for m in MEASURES)
CASCADE = ("in-pathway", "oud-evidence", "active-moud", "retained-180")
CASCADE_TITLES = {
    "in-pathway": "In the pathway",
    "oud-evidence": "With OUD evidence",
    "active-moud": "On active MOUD",
    "retained-180": "Retained 180 days",
}


@dataclass(frozen=True, slots=True)
class PopulationConfig:
    retention_oldest_days: int
    retention_newest_days: int
    retained_days: int
    tail_days: int
    histogram: tuple[int, ...]
    age_bands: tuple[tuple[str, int, int | None], ...]
    sexes: tuple[str, ...]
    races: dict[str, str]
    ethnicities: dict[str, str]

    def strata(self, stratifier: str) -> tuple[str, ...]:
        """Every stratum of a stratifier, in report order (shown even when empty)."""
        if stratifier == "age":
            return (*(b[0] for b in self.age_bands), UNKNOWN)
        if stratifier == "sex":
            return (*self.sexes, UNKNOWN)
        if stratifier == "race":
            return (*self.races, MULTIPLE, UNKNOWN)
        return (*self.ethnicities, UNKNOWN)

    def label(self, stratifier: str, stratum: str) -> str:
        names = {"race": self.races, "ethnicity": self.ethnicities}.get(stratifier, {})
        if stratum in names:
            return f"{names[stratum]} ({stratum})"
        if stratum == MULTIPLE:
            return "More than one race"
        return stratum

    def histogram_label(self, low: int) -> str:
        bounds = self.histogram
        i = bounds.index(low)
        return f"{low}+ days" if i == len(bounds) - 1 else f"{low}-{bounds[i + 1] - 1} days"


def load_population_config(path: Path = DEFAULT_FILE) -> PopulationConfig:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    r, s = doc["retention"], doc["strata"]
    bands = tuple(
        (str(label), int(lo), None if hi is None else int(hi))
        for label, (lo, hi) in s["age"].items()
    )
    histogram = tuple(sorted(int(x) for x in r["histogram"]))
    if not histogram or histogram[0] != 0:
        raise ValueError(f"{path}: retention.histogram must start at 0")
    return PopulationConfig(
        retention_oldest_days=int(r["window_oldest_days"]),
        retention_newest_days=int(r["window_newest_days"]),
        retained_days=int(r["retained_days"]),
        tail_days=int(r["tail_days"]),
        histogram=histogram,
        age_bands=bands,
        sexes=tuple(str(x) for x in s["sex"]),
        races={str(k): str(v) for k, v in s["race"].items()},
        ethnicities={str(k): str(v) for k, v in s["ethnicity"].items()},
    )


# ---------------------------------------------------------------- strata


def _omb_codes(patient: dict[str, Any] | None, url: str) -> list[str]:
    out: list[str] = []
    if not isinstance(patient, dict):
        return out
    for ext in patient.get("extension") or ():
        if not isinstance(ext, dict) or ext.get("url") != url:
            continue
        for part in ext.get("extension") or ():
            if isinstance(part, dict) and part.get("url") == "ombCategory":
                coding = part.get("valueCoding")
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    out.append(coding["code"])
    return out


def age_stratum(birth: When | None, as_of: datetime, pc: PopulationConfig) -> str:
    """The age band at T; a partial birth date whose possible ages span two bands is unknown."""
    if birth is None:
        return UNKNOWN
    today = as_of.date()

    def age(born: date) -> int:
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))

    bands = {_band(age(birth.latest.date()), pc), _band(age(birth.earliest.date()), pc)}
    return bands.pop() if len(bands) == 1 else UNKNOWN


def _band(age: int, pc: PopulationConfig) -> str:
    for label, lo, hi in pc.age_bands:
        if age >= lo and (hi is None or age <= hi):
            return label
    return UNKNOWN  # a birth date after T, or a negative age: not an age


def strata_of(
    patient: dict[str, Any] | None, birth: When | None, as_of: datetime, pc: PopulationConfig
) -> tuple[str, str, str, str]:
    """(age, sex, race, ethnicity) per §9. Race: the US Core ombCategory codes; several
    categories -> `multiple`; none (or only UNK/ASKU) -> `unknown`. Ethnicity: one category;
    none or contradictory ones -> `unknown`."""
    gender = patient.get("gender") if isinstance(patient, dict) else None
    sex = gender if isinstance(gender, str) and gender in pc.sexes else UNKNOWN
    races = {c for c in _omb_codes(patient, RACE_URL) if c in pc.races}
    race = races.pop() if len(races) == 1 else (MULTIPLE if races else UNKNOWN)
    eths = {c for c in _omb_codes(patient, ETHNICITY_URL) if c in pc.ethnicities}
    ethnicity = eths.pop() if len(eths) == 1 else UNKNOWN
    return age_stratum(birth, as_of, pc), sex, race, ethnicity


# ---------------------------------------------------------------- one patient


class PatientMeasures(NamedTuple):
    """What one patient counts for: small, picklable, the same from every engine."""

    phase: str
    strata: tuple[str, str, str, str]
    memberships: tuple[tuple[str, bool], ...]  # (measure id, in numerator) for each denominator
    cascade: tuple[str, ...]
    retention_days: int | None  # the episode's days, for patients in the retention denominator


def patient_measures(
    decision: Decision,
    findings: Findings | None,
    patient: dict[str, Any] | None,
    birth: When | None,
    gap_days: int,
    pc: PopulationConfig,
) -> PatientMeasures:
    """`findings` may be None only for a patient outside the pathway (counted in no measure)."""
    as_of = decision.as_of
    if decision.phase == "not-applicable" or findings is None:
        return PatientMeasures(decision.phase, (UNKNOWN,) * 4, (), (), None)
    strata = strata_of(patient, birth, as_of, pc)
    evidence = not decision.suspected_oud
    # §9: "active MOUD" is §2's, whatever the options' statuses say.
    on_moud = bool(findings.active_moud)
    tasks = set(decision.task_codes)
    naloxone = decision.status_of("naloxone") == "active"
    episode = latest_episode(findings, gap_days, pc.tail_days)
    in_retention = episode is not None and _in_retention_window(episode, as_of, pc)
    retained = in_retention and episode is not None and episode.days >= pc.retained_days

    members: list[tuple[str, bool]] = []
    if evidence:
        members.append(("moud-coverage", on_moud))
    if in_retention:
        members.append(("moud-retention-180", retained))
    members.append(("naloxone-coverage", naloxone))
    if on_moud:
        members.append(("uds-monitoring", "collect-uds" not in tasks))
    if evidence:
        members.append(("hiv-hcv-screening", "hiv-hcv-screening" not in tasks))
    members.append(("return-to-use", decision.return_to_use))
    members.append(("opioid-benzodiazepine", "review-cns-depressants" in tasks))

    cascade = ["in-pathway"]
    if evidence:
        cascade.append("oud-evidence")
        if on_moud:
            cascade.append("active-moud")
    if retained:
        cascade.append("retained-180")
    return PatientMeasures(
        decision.phase,
        strata,
        tuple(members),
        tuple(cascade),
        episode.days if in_retention and episode is not None else None,
    )


def _in_retention_window(episode: Episode, as_of: datetime, pc: PopulationConfig) -> bool:
    age_days = (as_of.date() - episode.start).days
    return pc.retention_newest_days <= age_days <= pc.retention_oldest_days


# ---------------------------------------------------------------- the tally


MAX_KINDS = 4096  # kinds of patient a tally holds before spreading them into its counts


class Tally:
    """Counts, keyed by tuples; two tallies add up (workers, Spark partitions)."""

    __slots__ = ("_counts", "_kinds")

    def __init__(self, counts: Counter[tuple[str, ...]] | None = None) -> None:
        self._counts: Counter[tuple[str, ...]] = counts if counts is not None else Counter()
        # patients added and not yet spread into the counts, by what they count for: most
        # patients count like many others, so each kind is spread out once (bounded)
        self._kinds: dict[tuple[Any, ...], int] = {}

    @property
    def counts(self) -> Counter[tuple[str, ...]]:
        """Every count, the patients added so far included."""
        if self._kinds:
            self._spread()
        return self._counts

    def add(self, pm: PatientMeasures, pc: PopulationConfig) -> None:
        low = None
        if pm.retention_days is not None:
            low = max(b for b in pc.histogram if b <= pm.retention_days)
        kind = (pm.phase, pm.strata, pm.memberships, pm.cascade, low)
        kinds = self._kinds
        kinds[kind] = kinds.get(kind, 0) + 1
        if len(kinds) >= MAX_KINDS:
            self._spread()

    def _spread(self) -> None:
        c = self._counts
        for (phase, strata, memberships, cascade, low), n in self._kinds.items():
            c[("patients",)] += n
            c[("phase", phase)] += n
            for step in cascade:
                c[("cascade", step)] += n
            if low is not None:
                c[("retention", str(low))] += n
            for measure, numerator in memberships:
                c[("den", measure, "", "")] += n
                if numerator:
                    c[("num", measure, "", "")] += n
                for stratifier, stratum in zip(STRATIFIERS, strata, strict=True):
                    c[("den", measure, stratifier, stratum)] += n
                    if numerator:
                        c[("num", measure, stratifier, stratum)] += n
        self._kinds.clear()

    def note(self, *key: str, n: int = 1) -> None:
        self._counts[key] += n  # adds up with what is not yet spread

    def merge(self, other: Tally) -> Tally:
        self.counts.update(other.counts)
        return self

    def get(self, *key: str) -> int:
        return self.counts.get(key, 0)

    def rate(self, measure: str, stratifier: str = "", stratum: str = "") -> tuple[int, int]:
        return (
            self.get("den", measure, stratifier, stratum),
            self.get("num", measure, stratifier, stratum),
        )

    def to_json(self) -> list[list[Any]]:
        return [[*k, v] for k, v in sorted(self.counts.items())]

    @classmethod
    def from_json(cls, rows: list[list[Any]]) -> Tally:
        return cls(Counter({tuple(r[:-1]): int(r[-1]) for r in rows}))
