"""A generated population written as a Bulk Data export, with the facts it was made from.

Each patient is drawn from a handful of clinical situations (no OUD, suspected OUD, untreated
OUD, on MOUD for d days, a past episode, return to use, benzodiazepines, naloxone, screening),
with strata (age, sex, US Core race and ethnicity) drawn independently. The `Truth` of each
patient is what the generator put there: the tests count measures from it (and from the
patient's own $apply), never from the code under test.

Written the way servers export: one or more files per type, some gzipped, Medications in their
own file and referenced by relative or absolute URL, plus resources of other types.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

CANON = "https://oud-pathway.github.io/fhir"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
OMB = "urn:oid:2.16.840.1.113883.6.238"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition"
EHR = "https://ehr.example.org/fhir"
AS_OF = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)

BUP_FILM = "1010604"  # buprenorphine/naloxone film: buprenorphine-oud
METHADONE = "864706"
NALTREXONE = "1483744"
NALOXONE = "1725059"  # rescue nasal spray
ALPRAZOLAM = "308047"
MEDICATIONS = {  # the shared Medication resources of the export (id -> RxNorm)
    "med-bup": BUP_FILM,
    "med-methadone": METHADONE,
    "med-naloxone": NALOXONE,
    "med-alprazolam": ALPRAZOLAM,
}
RACES = ["1002-5", "2028-9", "2054-5", "2076-8", "2106-3"]
ETHNICITIES = ["2135-2", "2186-5"]
SITUATIONS = (
    "none",
    "suspected",
    "untreated",
    "bup",
    "methadone",
    "past-episode",
    "return-to-use",
    "bup-benzo",
    "naltrexone",
)


@dataclass
class Truth:
    """What the generator made: the tests' independent source for every count."""

    pid: str
    situation: str
    gender: str | None
    birth: str | None
    races: list[str]
    ethnicity: str | None
    active_moud: bool = False
    episode_start: date | None = None  # the latest MOUD chain, as generated
    episode_last: date | None = None
    episode_active: bool = False
    resources: list[dict[str, Any]] = field(default_factory=list)


def _iso(d: datetime) -> str:
    return d.isoformat().replace("+00:00", "Z")


class Generator:
    def __init__(self, seed: int = 12, as_of: datetime = AS_OF, extra_observations: int = 0):
        self.rnd = random.Random(seed)
        self.as_of = as_of
        self.extra = extra_observations  # padding resources per patient (benchmarks)
        self.n = 0

    def _rid(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def _days_ago(self, days: int, hours: int = 0) -> datetime:
        return self.as_of - timedelta(days=days, hours=hours)

    # ------------------------------------------------------------ resources
    def _subject(self, t: Truth) -> dict[str, str]:
        # Most exports use relative references; some servers write absolute ones.
        if self.rnd.random() < 0.1:
            return {"reference": f"{EHR}/Patient/{t.pid}"}
        return {"reference": f"Patient/{t.pid}"}

    def condition(self, t: Truth, code: str, recorded_days: int) -> None:
        t.resources.append(
            {
                "resourceType": "Condition",
                "id": self._rid("c"),
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "code": {"coding": [{"system": ICD10, "code": code}]},
                "subject": self._subject(t),
                "recordedDate": self._days_ago(recorded_days).date().isoformat(),
            }
        )

    def request(self, t: Truth, rxnorm: str, status: str, authored: date) -> None:
        r: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": self._rid("mr"),
            "status": status,
            "intent": "order",
            "subject": self._subject(t),
            "authoredOn": authored.isoformat(),
        }
        med_id = next((k for k, v in MEDICATIONS.items() if v == rxnorm), None)
        roll = self.rnd.random()
        if med_id is not None and roll < 0.4:
            r["medicationReference"] = {"reference": f"Medication/{med_id}"}
        elif med_id is not None and roll < 0.55:
            r["medicationReference"] = {"reference": f"{EHR}/Medication/{med_id}"}
        elif roll < 0.65:
            r["contained"] = [
                {
                    "resourceType": "Medication",
                    "id": "m",
                    "code": {"coding": [{"system": RXNORM, "code": rxnorm}]},
                }
            ]
            r["medicationReference"] = {"reference": "#m"}
        else:
            r["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": rxnorm}]}
        t.resources.append(r)

    def chain(self, t: Truth, rxnorm: str, start_days: int, end_days: int, active: bool) -> None:
        """Refills every 28 days from start_days ago to end_days ago; the last one active or
        completed."""
        days = list(range(start_days, end_days - 1, -28))
        if days[-1] != end_days:
            days.append(end_days)
        for i, d in enumerate(days):
            last = i == len(days) - 1
            self.request(
                t, rxnorm, "active" if last and active else "completed", self._days_ago(d).date()
            )
        t.episode_start = self._days_ago(start_days).date()
        t.episode_last = self._days_ago(end_days).date()
        t.episode_active = active

    def screen(self, t: Truth, loinc: str, value: str, days: int) -> None:
        t.resources.append(
            {
                "resourceType": "Observation",
                "id": self._rid("o"),
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/"
                                "observation-category",
                                "code": "laboratory",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": LOINC, "code": loinc}]},
                "subject": self._subject(t),
                "effectiveDateTime": _iso(self._days_ago(days, 3)),
                "valueString": value,
            }
        )

    def padding(self, t: Truth, n: int) -> None:
        """Vitals and other observations the pathway reads past (realistic bulk)."""
        for i in range(n):
            t.resources.append(
                {
                    "resourceType": "Observation",
                    "id": self._rid("v"),
                    "status": "final",
                    "code": {
                        "coding": [
                            {
                                "system": LOINC,
                                "code": ["8480-6", "8867-4", "2160-0", "718-7"][i % 4],
                            }
                        ]
                    },
                    "subject": {"reference": f"Patient/{t.pid}"},
                    "effectiveDateTime": _iso(self._days_ago(i * 7 % 700, i % 24)),
                    "valueQuantity": {"value": 60 + i % 70, "unit": "1"},
                }
            )

    # ------------------------------------------------------------ one patient
    def patient(self, i: int) -> Truth:
        rnd = self.rnd
        pid = f"pt{i:06d}"
        gender = rnd.choice(["male", "female", "female", "male", "other", "unknown", None])
        birth_kind = rnd.random()
        year = rnd.randint(1940, 2012)
        if birth_kind < 0.05:
            birth = None
        elif birth_kind < 0.12:
            birth = str(year)  # year only: some ages straddle two bands (-> unknown)
        else:
            birth = f"{year}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
        races = rnd.sample(RACES, k=rnd.choice([0, 1, 1, 1, 1, 2]))
        ethnicity = rnd.choice([*ETHNICITIES, None])
        t = Truth(pid, rnd.choice(SITUATIONS), gender, birth, races, ethnicity)
        res: dict[str, Any] = {"resourceType": "Patient", "id": pid}
        if gender:
            res["gender"] = gender
        if birth:
            res["birthDate"] = birth
        ext = []
        if races:
            ext.append(
                {
                    "url": f"{US_CORE}/us-core-race",
                    "extension": [
                        *(
                            {"url": "ombCategory", "valueCoding": {"system": OMB, "code": c}}
                            for c in races
                        ),
                        {"url": "text", "valueString": "as reported"},
                    ],
                }
            )
        if ethnicity:
            ext.append(
                {
                    "url": f"{US_CORE}/us-core-ethnicity",
                    "extension": [
                        {"url": "ombCategory", "valueCoding": {"system": OMB, "code": ethnicity}},
                        {"url": "text", "valueString": "as reported"},
                    ],
                }
            )
        if ext:
            res["extension"] = ext
        t.resources.append(res)
        self.situation(t)
        # Common to everyone in the pathway, at random: naloxone, screening, a recent UDS.
        if t.situation != "none":
            if rnd.random() < 0.4:
                self.request(t, NALOXONE, "completed", self._days_ago(rnd.randint(0, 500)).date())
            if rnd.random() < 0.5:
                self.screen(t, "75622-1", "negative", rnd.randint(0, 500))  # HIV
                self.screen(t, "16128-1", "negative", rnd.randint(0, 500))  # HCV
            if rnd.random() < 0.5 and t.situation != "return-to-use":
                self.screen(t, "58379-9", "Negative", rnd.randint(0, 60))  # fentanyl
        if self.extra:
            self.padding(t, max(0, self.extra - len(t.resources)))
        return t

    def situation(self, t: Truth) -> None:
        rnd, s = self.rnd, t.situation
        if s == "none":
            if rnd.random() < 0.5:
                self.condition(t, "I10", 400)  # hypertension: not the pathway's
            return
        if s == "suspected":
            self.screen(t, "58379-9", "POS", rnd.randint(0, 25))
            return
        self.condition(t, "F11.20", rnd.randint(10, 900))
        if s == "untreated":
            return
        if s in ("bup", "bup-benzo", "return-to-use"):
            start = rnd.randint(35 if s == "return-to-use" else 1, 700)
            self.chain(t, BUP_FILM, start, rnd.randint(0, min(start, 20)), active=True)
            t.active_moud = True
            if s == "bup-benzo":
                self.request(t, ALPRAZOLAM, "active", self._days_ago(rnd.randint(1, 60)).date())
            if s == "return-to-use":
                self.screen(t, "58379-9", "positive", rnd.randint(0, 20))
        elif s == "methadone":
            start = rnd.randint(1, 700)
            self.chain(t, METHADONE, start, rnd.randint(0, min(start, 20)), active=True)
            t.active_moud = True
        elif s == "naltrexone":
            start = rnd.randint(1, 400)
            self.chain(t, NALTREXONE, start, rnd.randint(0, min(start, 20)), active=True)
            t.active_moud = True
        elif s == "past-episode":
            start = rnd.randint(200, 900)
            end = rnd.randint(60, start - 1)
            self.chain(t, METHADONE, start, end, active=False)


def medication_resources() -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Medication",
            "id": mid,
            "code": {"coding": [{"system": RXNORM, "code": code}]},
        }
        for mid, code in MEDICATIONS.items()
    ]


def write_export(folder: Path, truths: list[Truth], files_per_type: int = 2) -> dict[str, int]:
    """Write the population as Bulk Data NDJSON: `Type.N.ndjson` or `.ndjson.gz` (alternating),
    lines of a type spread over several files. Returns resources written per type."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[bytes]] = {}
    for t in truths:
        for r in t.resources:
            by_type.setdefault(r["resourceType"], []).append(orjson.dumps(r))
    by_type["Medication"] = [orjson.dumps(m) for m in medication_resources()]
    by_type["Practitioner"] = [
        orjson.dumps({"resourceType": "Practitioner", "id": f"dr{i}"}) for i in range(3)
    ]
    counts = {}
    for rtype, rows in by_type.items():
        counts[rtype] = len(rows)
        n = min(files_per_type, len(rows)) or 1
        for k in range(n):
            chunk = b"".join(line + b"\n" for line in rows[k::n])
            if k % 2:
                (folder / f"{rtype}.{k:03d}.ndjson.gz").write_bytes(gzip.compress(chunk, 1))
            else:
                (folder / f"{rtype}.{k:03d}.ndjson").write_bytes(chunk)
    return counts


def population(n: int, seed: int = 12, extra_observations: int = 0) -> list[Truth]:
    g = Generator(seed, extra_observations=extra_observations)
    return [g.patient(i) for i in range(n)]
