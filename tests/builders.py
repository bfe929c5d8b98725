"""Small builders for FHIR R4 resources used by the tests (plain dicts, as an EHR sends them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

CANON = "https://oud-pathway.github.io/fhir"
OBS = f"{CANON}/CodeSystem/oud-observation"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
AS_OF = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)

# RxNorm codes used by the tests (each is in the named value set of config/valuesets).
BUP_NALOXONE_FILM = "1010604"  # buprenorphine-oud
METHADONE_SOLUTION = "991147"  # methadone
METHADONE_TABLET = "864706"  # methadone
OXYCODONE_TABLET = "1049621"  # opioid-analgesic-oxycodone (oxycodone HCl 5 MG Oral Tablet)
ALPRAZOLAM_TABLET = "308047"  # benzodiazepines (alprazolam 0.25 MG Oral Tablet)

_counter = 0


def _id(prefix: str) -> str:
    global _counter
    _counter += 1
    return f"{prefix}-{_counter}"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ago(days: float = 0, hours: float = 0, as_of: datetime = AS_OF) -> str:
    return iso(as_of - timedelta(days=days, hours=hours))


def day_ago(days: int, as_of: datetime = AS_OF) -> str:
    return (as_of - timedelta(days=days)).date().isoformat()


def patient(pid: str = "p1", gender: str = "male", birth: str = "1990-05-01") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth}


def condition(
    code: str = "F11.20",
    system: str = ICD10,
    status: str | None = "active",
    recorded: str | None = None,
    verification: str | None = None,
    pid: str = "p1",
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Condition",
        "id": _id("cond"),
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
    }
    if status:
        r["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": status,
                }
            ]
        }
    if verification:
        r["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        }
    if recorded:
        r["recordedDate"] = recorded
    return r


def med(
    code: str,
    status: str = "active",
    authored: str | None = None,
    reason: tuple[str, str] | None = None,
    pid: str = "p1",
    display: str | None = None,
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": _id("mr"),
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": {
            "coding": [
                {"system": RXNORM, "code": code, **({"display": display} if display else {})}
            ]
        },
    }
    if authored:
        r["authoredOn"] = authored
    if reason:
        r["reasonCode"] = [{"coding": [{"system": reason[0], "code": reason[1]}]}]
    return r


def _category(code: str) -> dict[str, Any]:
    """US Core requires an Observation category; EHR searches (and our prefetch) filter on it."""
    return {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": code}
        ]
    }


def own_obs(code: str, when: str, pid: str = "p1", **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": _id("obs"),
        "status": "final",
        "category": [_category("survey")],
        "code": {"coding": [{"system": OBS, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        **value,
    }


def cows(score: int, when: str, pid: str = "p1") -> dict[str, Any]:
    return own_obs("cows-total", when, pid, valueInteger=score)


def severity(count: int, when: str, pid: str = "p1") -> dict[str, Any]:
    return own_obs("dsm5-oud-criteria-count", when, pid, valueInteger=count)


def last_use(
    used: str, kind: str | None = "short-acting", when: str | None = None, pid: str = "p1"
) -> dict[str, Any]:
    r = own_obs("last-opioid-use", when or used, pid, valueDateTime=used)
    if kind:
        r["component"] = [
            {
                "code": {"coding": [{"system": OBS, "code": "opioid-type"}]},
                "valueCodeableConcept": {
                    "coding": [{"system": f"{CANON}/CodeSystem/opioid-type", "code": kind}]
                },
            }
        ]
    return r


def stage(value: str, when: str, pid: str = "p1") -> dict[str, Any]:
    return own_obs(
        "readiness-stage",
        when,
        pid,
        valueCodeableConcept={
            "coding": [{"system": f"{CANON}/CodeSystem/readiness-stage", "code": value}]
        },
    )


def lab(loinc: str, when: str, pid: str = "p1", **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": _id("obs"),
        "status": "final",
        "category": [_category("laboratory")],
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        **value,
    }


def uds(loinc: str, result: str, when: str, pid: str = "p1") -> dict[str, Any]:
    """A drug screen with a valueString result ("POS", "neg", ...)."""
    return lab(loinc, when, pid, valueString=result)


def quantity(
    loinc: str,
    value: float,
    when: str,
    unit: str = "U/L",
    high: float | None = None,
    pid: str = "p1",
) -> dict[str, Any]:
    r = lab(loinc, when, pid, valueQuantity={"value": value, "unit": unit})
    if high is not None:
        r["referenceRange"] = [{"high": {"value": high, "unit": unit}}]
    return r


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
            }
            for r in resources
        ],
    }


def apply_parameters(
    data: dict[str, Any] | None, as_of: datetime | str | None = AS_OF, subject: str = "Patient/p1"
) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": "subject", "valueString": subject}]
    if data is not None:
        params.append({"name": "data", "resource": data})
    if as_of is not None:
        params.append(
            {"name": "asOf", "valueDateTime": as_of if isinstance(as_of, str) else iso(as_of)}
        )
    return {"resourceType": "Parameters", "parameter": params}


# ----------------------------------------------------------------------------------------------
# Added for tests/rules (appended only; the builders above are unchanged).


def oud_condition(
    recorded: str | None = "2024-01-10",
    status: str | None = "active",
    code: str = "F11.20",
    system: str = ICD10,
    pid: str = "p1",
) -> dict[str, Any]:
    """An OUD Condition (default: F11.20, active, recorded long before AS_OF)."""
    return condition(code, system, status=status, recorded=recorded, pid=pid)


def with_onset(resource: dict[str, Any], onset: str) -> dict[str, Any]:
    """The same Condition with an onsetDateTime."""
    return {**resource, "onsetDateTime": onset}


def medication(code: str, text: str | None = None, system: str = RXNORM) -> dict[str, Any]:
    """A Medication resource (code.text may lie about what it is)."""
    concept: dict[str, Any] = {"coding": [{"system": system, "code": code}]}
    if text:
        concept["text"] = text
    return {"resourceType": "Medication", "id": _id("med"), "code": concept}


def med_ref(
    target: dict[str, Any],
    status: str = "active",
    authored: str | None = None,
    contained: bool = False,
    reason: tuple[str, str] | None = None,
    pid: str = "p1",
) -> dict[str, Any]:
    """A MedicationRequest naming its drug by medicationReference (contained or in the data)."""
    r: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": _id("mr"),
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
    }
    if contained:
        r["contained"] = [target]
        r["medicationReference"] = {"reference": f"#{target['id']}"}
    else:
        r["medicationReference"] = {"reference": f"Medication/{target['id']}"}
    if authored:
        r["authoredOn"] = authored
    if reason:
        r["reasonCode"] = [{"coding": [{"system": reason[0], "code": reason[1]}]}]
    return r


def task(
    code: str,
    status: str = "completed",
    end: str | None = None,
    last_modified: str | None = None,
    ours: bool = True,
    pid: str = "p1",
) -> dict[str, Any]:
    """A Task of the pathway (identifier system {canon}/task) already in the EHR."""
    r: dict[str, Any] = {
        "resourceType": "Task",
        "id": _id("task"),
        "status": status,
        "intent": "order",
        "code": {"coding": [{"system": f"{CANON}/CodeSystem/oud-pathway-action", "code": code}]},
        "for": {"reference": f"Patient/{pid}"},
    }
    if ours:
        r["identifier"] = [{"system": f"{CANON}/task", "value": r["id"]}]
    if end:
        r["executionPeriod"] = {"end": end}
    if last_modified:
        r["lastModified"] = last_modified
    return r


def coded(loinc: str, system: str, code: str, when: str, pid: str = "p1") -> dict[str, Any]:
    """An Observation whose value is a coded answer (valueCodeableConcept)."""
    return lab(
        loinc, when, pid, valueCodeableConcept={"coding": [{"system": system, "code": code}]}
    )


def interpreted(loinc: str, code: str, when: str, pid: str = "p1") -> dict[str, Any]:
    """An Observation with no value, only an interpretation code (POS, NEG, A, N)."""
    return lab(
        loinc,
        when,
        pid,
        interpretation=[
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": code,
                    }
                ]
            }
        ],
    )


def birth_for_age(age: int, birthday_tomorrow: bool = False, as_of: datetime = AS_OF) -> str:
    """A birthDate giving exactly `age` whole years at as_of: born on this day `age` years ago,
    or (birthday_tomorrow) the oldest possible `age`-year-old, who turns age + 1 tomorrow."""
    today = as_of.date()
    if birthday_tomorrow:
        return (today.replace(year=today.year - age - 1) + timedelta(days=1)).isoformat()
    return today.replace(year=today.year - age).isoformat()
