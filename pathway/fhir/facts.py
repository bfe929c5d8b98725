"""FHIR R4 resources (plain parsed JSON) -> the facts of the clinical core (PATHWAY.md §1).

One pass over the resources, dictionary lookups into precomputed value sets, no model
validation: a 500-resource prefetch is read in about a millisecond. Real EHR data is messy, so
every field is read defensively; what cannot be read becomes "unknown" (and a note), never
"negative".
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from pathway.config import MEDICATION_VALUESETS, LoadedConfig
from pathway.fhir.bundle import Flattened, as_list, ref_of, reference_keys
from pathway.rules.model import (
    ConditionFact,
    DrugScreen,
    Facts,
    LastUse,
    Measurement,
    MedicationOrder,
    PatientFacts,
    Result,
    StageOfChange,
    TaskRecord,
    When,
)

ANALYTE_OF = {
    "uds-opiates": "opiates",
    "uds-fentanyl": "fentanyl",
    "uds-6mam": "6mam",
    "uds-oxycodone": "oxycodone",
    "uds-buprenorphine": "buprenorphine",
    "uds-methadone": "methadone",
    "uds-eddp": "eddp",
    "uds-benzodiazepines": "benzodiazepines",
    "uds-stimulants": "stimulants",
    "uds-other": "other",
}
MEASUREMENT_OF = {
    "alt": "alt",
    "ast": "ast",
    "qtc": "qtc",
    "systolic-bp": "sbp",
    "heart-rate": "hr",
    "hcg": "hcg",
    "pregnancy-status": "pregnancy",
    "hiv-screening": "hiv",
    "hcv-screening": "hcv",
}
CONDITION_TAGS = {
    "oud-conditions": "oud",
    "oud-remission-conditions": "oud-remission-code",
    "oud-mild-conditions": "oud-mild",
    "oud-moderate-severe-conditions": "oud-moderate-severe",
    "opioid-withdrawal-conditions": "withdrawal",
    "pregnancy-conditions": "pregnancy",
}
REASON_TAGS = {"oud-conditions": "oud", "opioid-withdrawal-conditions": "withdrawal"}
MEDICATION_GROUPS = frozenset(MEDICATION_VALUESETS)
STAGES = frozenset({"precontemplation", "contemplation", "preparation", "action", "maintenance"})
READ_TYPES = frozenset({"Observation", "Condition", "MedicationRequest", "Task"})
REFERENCED_TYPES = frozenset({"Medication", "Condition", "Patient"})
IGNORED_REQUEST_STATUSES = frozenset({"cancelled", "entered-in-error"})
NOT_HISTORY_STATUSES = frozenset({"cancelled", "entered-in-error", "draft"})
IGNORED_OBSERVATION_STATUSES = frozenset({"cancelled", "entered-in-error"})
IGNORED_VERIFICATION = frozenset({"refuted", "entered-in-error"})

POSITIVE_WORDS = frozenset({"pos", "positive", "detected", "presumptive positive", "+"})
NEGATIVE_WORDS = frozenset({"neg", "negative", "not detected", "none detected", "-"})
INTERPRETATION = {
    "POS": Result.POSITIVE,
    "NEG": Result.NEGATIVE,
    "A": Result.POSITIVE,
    "N": Result.NEGATIVE,
    "DET": Result.POSITIVE,
    "ND": Result.NEGATIVE,
    "AA": Result.POSITIVE,
}
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


# ------------------------------------------------------------------ dates


def parse_when(value: Any) -> When | None:
    """FHIR date / dateTime / instant -> When (UTC). Partial dates become ranges."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    return _parse_day(value) if len(value) <= 10 else _parse_when(value)


# A date-only value is remembered: a population has few distinct days, and each costs a few µs
# to read. A dateTime is not (rarely the same twice).
@lru_cache(maxsize=8192)
def _parse_day(value: str) -> When | None:
    return _parse_when(value)


def _parse_when(value: str) -> When | None:
    v = value.strip() if value[-1].isspace() or value[0].isspace() else value
    n = len(v)
    try:
        if n > 10:  # a dateTime or instant, the common case: 3.11 reads "Z" and fractions
            d = datetime.fromisoformat(v)
        elif n == 10:
            d = datetime.fromisoformat(v).replace(tzinfo=UTC)
            return When(d, d + _DAY_LESS_1US, "day")
        elif n == 7:
            y, m = int(v[:4]), int(v[5:7])
            last = calendar.monthrange(y, m)[1]
            return When(
                datetime(y, m, 1, tzinfo=UTC),
                datetime(y, m, last, 23, 59, 59, 999999, tzinfo=UTC),
                "month",
            )
        elif n == 4:
            y = int(v)
            start = datetime(y, 1, 1, tzinfo=UTC)
            return When(start, datetime(y, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "year")
        else:
            d = datetime.fromisoformat(v)
    except ValueError:
        return None
    # A time without a zone is not valid FHIR; read it as UTC rather than drop it.
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    elif d.tzinfo is not UTC:
        d = d.astimezone(UTC)
    return When(d, d, "instant")


_DAY_LESS_1US = timedelta(days=1) - timedelta(microseconds=1)


def _first_when(*values: Any) -> When | None:
    for v in values:
        w = parse_when(v)
        if w is not None:
            return w
    return None


def _period_when(period: Any) -> When | None:
    if isinstance(period, dict):
        return _first_when(period.get("end"), period.get("start"))
    return None


# What `FactReader.first_pass_class` reads of a resource, and what `observed_before` reads
# (tests/fhir/test_facts.py checks both): a population run's first pass reads no more of a line.
CLASS_FIELDS = ("resourceType", "status", "code", "component")
WHEN_FIELDS = ("effectiveDateTime", "effectiveInstant", "effectivePeriod", "issued")


def observed_before(res: dict[str, Any], cutoff: datetime) -> bool:
    """Whether the Observation's time, as `observation_when` reads it, surely lies before
    `cutoff` (an undated one: no). The common full `effectiveDateTime` is compared directly
    (`datetime_before`), without building its `When`."""
    v = res.get("effectiveDateTime")
    if type(v) is str:
        before = datetime_before(v, cutoff)
        if before is not None:
            return before
    when = observation_when(res)
    return when is not None and when.latest < cutoff


def datetime_before(v: str, cutoff: datetime) -> bool | None:
    """Whether an `effectiveDateTime` holding a full date and time lies before `cutoff`, as
    `parse_when` reads it (no zone is UTC); None for any other text (`observed_before` then
    reads the resource's other fields)."""
    if len(v) > 10 and not v[0].isspace() and not v[-1].isspace():
        try:
            d = datetime.fromisoformat(v)
        except ValueError:
            return None
        return (d if d.tzinfo is not None else d.replace(tzinfo=UTC)) < cutoff
    return None


def observation_when(res: dict[str, Any]) -> When | None:
    """When an Observation was made: effective[x] (dateTime, instant, the period's end, else
    its start), else `issued`."""
    when = _first_when(res.get("effectiveDateTime"), res.get("effectiveInstant"))
    if when is None:
        when = _period_when(res.get("effectivePeriod")) or parse_when(res.get("issued"))
    return when


# ------------------------------------------------------------------ small readers


def _codings(concept: Any) -> list[Any]:
    if isinstance(concept, dict):
        c = concept.get("coding")
        return c if isinstance(c, list) else []
    return []


def _text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    t = concept.get("text")
    if isinstance(t, str) and t:
        return t
    for c in _codings(concept):
        if isinstance(c, dict) and isinstance(c.get("display"), str):
            return str(c["display"])
    return ""


def _code_in(concept: Any, system: str) -> str | None:
    for c in _codings(concept):
        if isinstance(c, dict) and c.get("system") == system and isinstance(c.get("code"), str):
            return str(c["code"])
    return None


def _status_code(concept: Any) -> str | None:
    for c in _codings(concept):
        if isinstance(c, dict) and isinstance(c.get("code"), str):
            return str(c["code"])
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


# ------------------------------------------------------------------ the reader


@dataclass(slots=True)
class Reading:
    facts: Facts
    notes: list[str] = field(default_factory=list)  # data problems a clinician should know of
    evidence_dates: dict[str, str] = field(default_factory=dict)
    trace: list[Traced] = field(default_factory=list)  # only from an explaining reader


@dataclass(frozen=True, slots=True)
class Traced:
    """What the reader made of one resource (`pathway evaluate --explain`)."""

    ref: str
    resource_type: str
    read_as: tuple[str, ...]  # the facts it became, e.g. "drug screen fentanyl: positive"
    ignored: str | None  # why it became no fact (None when it became some)
    notes: tuple[str, ...] = ()


class FactReader:
    """Reads one patient's resources into Facts, with the deployment's value sets."""

    def __init__(self, config: LoadedConfig, explain: bool = False) -> None:
        # `explain`: keep a trace of what each resource became (for integration engineers);
        # the service's reader never does (no cost on the hook's path).
        self.explain = explain
        self.cfg = config
        self.t = config.terminology
        canon = config.pathway.canonical
        self.obs_system = f"{canon}/CodeSystem/oud-observation"
        self.type_system = f"{canon}/CodeSystem/opioid-type"
        self.stage_system = f"{canon}/CodeSystem/readiness-stage"
        self.action_system = f"{canon}/CodeSystem/oud-pathway-action"
        self.task_identifier = f"{canon}/task"
        self.aliases = {(a.system, a.code): a.means for a in config.aliases}
        self._classes: dict[frozenset[str], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._obs_classes: dict[
            tuple[str, str], tuple[str | None, tuple[str, ...], tuple[str, ...]]
        ] = {}
        # Measurement kinds every rule reads only within a bounded look-back, in hours: older
        # ones can change no answer, and a population run leaves them behind (`may_read` with
        # `as_of`). Heart rate and systolic BP: only the adjunct low-vital rules read them
        # (tests/fhir/test_facts.py checks that no other rule names these kinds).
        vitals = timedelta(hours=config.pathway.adjuncts.vitals_window_hours)
        self.horizon: dict[str, timedelta] = {"sbp": vitals, "hr": vitals}

    # --- results
    def result_of(self, obs: dict[str, Any]) -> Result:
        value = self._value_result(obs)
        interp = Result.UNKNOWN
        for concept in as_list(obs.get("interpretation")):
            for c in _codings(concept):
                if isinstance(c, dict) and isinstance(c.get("code"), str):
                    hit = INTERPRETATION.get(c["code"].upper())
                    if hit is not None:
                        interp = hit
        if value is Result.UNKNOWN:
            return interp
        if interp is not Result.UNKNOWN and interp is not value:
            return Result.UNKNOWN  # value and interpretation disagree: unknown, not negative
        return value

    def _value_result(self, obs: dict[str, Any]) -> Result:
        s = obs.get("valueString")
        if isinstance(s, str):
            word = " ".join(s.lower().split()).rstrip(".")
            if word in POSITIVE_WORDS:
                return Result.POSITIVE
            if word in NEGATIVE_WORDS:
                return Result.NEGATIVE
            return Result.UNKNOWN
        cc = obs.get("valueCodeableConcept")
        if isinstance(cc, dict):
            groups = self.t.groups(_codings(cc))
            if "result-positive" in groups:
                return Result.POSITIVE
            if "result-negative" in groups:
                return Result.NEGATIVE
            word = " ".join(str(cc.get("text") or "").lower().split())
            if word in POSITIVE_WORDS:
                return Result.POSITIVE
            if word in NEGATIVE_WORDS:
                return Result.NEGATIVE
            return Result.UNKNOWN
        b = obs.get("valueBoolean")
        if isinstance(b, bool):
            return Result.POSITIVE if b else Result.NEGATIVE
        return Result.UNKNOWN

    # --- the main pass
    def read(
        self,
        flat: Flattened,
        patient_id: str | None = None,
        drafts: list[dict[str, Any]] | None = None,
        strict_subject: bool = True,
    ) -> Reading:
        """`strict_subject`: data that holds nothing for the named patient is an error (for
        $apply); a CDS Hooks context names the patient itself, so empty data is just empty."""
        notes = list(flat.problems)
        for oo in flat.outcomes:
            for issue in as_list(oo.get("issue")):
                if isinstance(issue, dict):
                    notes.append(
                        "The EHR reported: "
                        + str(
                            issue.get("diagnostics")
                            or _text(issue.get("details"))
                            or issue.get("code")
                            or "an issue"
                        )
                    )

        by_key: dict[str, dict[str, Any]] = {}
        patients: list[tuple[dict[str, Any], str | None]] = []
        for res, url in flat.resources:
            # Only what other resources point at needs an index (medicationReference,
            # reasonReference, subject).
            if res.get("resourceType") in REFERENCED_TYPES:
                for key in reference_keys(res, url):
                    by_key.setdefault(key, res)
            if res.get("resourceType") == "Patient":
                patients.append((res, url))

        if patient_id is not None and patient_id.startswith("Patient/"):
            patient_id = patient_id[len("Patient/") :]  # some EHRs send the reference
        patient_res, patient_url = self._pick_patient(patients, patient_id)
        pid = patient_id or (str(patient_res.get("id")) if patient_res else None)
        if not pid:
            raise NoPatientError("no Patient in the data and no subject given")
        own_refs = {f"Patient/{pid}"}
        if patient_res is not None:
            own_refs.update(reference_keys(patient_res, patient_url))

        conditions: list[ConditionFact] = []
        orders: list[MedicationOrder] = []
        screens: list[DrugScreen] = []
        measurements: list[Measurement] = []
        uses: list[LastUse] = []
        stages: list[StageOfChange] = []
        tasks: list[TaskRecord] = []
        trace: list[Traced] = []
        referenced = False
        for res, url in flat.resources:
            rtype = res.get("resourceType")
            if not referenced and self._names_patient(res) and self._belongs(res, own_refs, pid):
                referenced = True  # the data is about this patient (whatever the type)
            if rtype not in READ_TYPES:
                if self.explain:
                    trace.append(_not_read(res, url, pid))
                continue  # Encounters, Claims, ...: not facts of the pathway
            if not self._belongs(res, own_refs, pid):
                if self.explain:
                    trace.append(_traced(res, url, (), "about another patient"))
                continue
            if self.explain:
                before = (
                    len(conditions),
                    len(orders),
                    len(screens),
                    len(measurements),
                    len(uses),
                    len(stages),
                    len(tasks),
                    len(notes),
                )
            if rtype == "Observation":
                self._observation(res, url, screens, measurements, uses, stages, notes)
            else:
                ref = ref_of(res, url)
                if rtype == "Condition":
                    c = self._condition(res, ref)
                    if c is not None:
                        conditions.append(c)
                elif rtype == "MedicationRequest":
                    o = self._order(res, ref, by_key, notes)
                    if o is not None and o.status not in NOT_HISTORY_STATUSES:
                        orders.append(o)
                elif rtype == "Task":
                    t = self._task(res, ref)
                    if t is not None:
                        tasks.append(t)
            if self.explain:
                trace.append(
                    _trace_of(
                        res,
                        url,
                        before,
                        (conditions, orders, screens, measurements, uses, stages, tasks),
                        notes,
                    )
                )

        if patient_res is None and not referenced and strict_subject:
            raise NoPatientError(f"the data holds no Patient/{pid} and nothing that refers to it")
        if patient_res is None:
            notes.append(f"Patient/{pid} itself is not in the data: age and sex are unknown")

        draft_orders: list[MedicationOrder] = []
        for i, d in enumerate(drafts or []):
            if isinstance(d, dict) and d.get("resourceType") == "MedicationRequest":
                o = self._order(d, ref_of(d, f"draft-{i}"), by_key, notes, draft=True)
                if o is not None:
                    draft_orders.append(o)

        patient = PatientFacts(
            id=pid,
            birth_date=parse_when(patient_res.get("birthDate")) if patient_res else None,
            gender=patient_res.get("gender")
            if patient_res and isinstance(patient_res.get("gender"), str)
            else None,
        )
        facts = Facts(
            patient=patient,
            conditions=tuple(conditions),
            orders=tuple(orders),
            screens=tuple(screens),
            measurements=tuple(measurements),
            last_uses=tuple(uses),
            stages=tuple(stages),
            tasks=tuple(tasks),
            draft_orders=tuple(draft_orders),
        )
        return Reading(facts, notes, trace=trace)

    @staticmethod
    def _pick_patient(
        patients: list[tuple[dict[str, Any], str | None]], patient_id: str | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        if patient_id is not None:
            for res, url in patients:
                if res.get("id") == patient_id:
                    return res, url
            return None, None
        if len(patients) == 1:
            return patients[0]
        if len(patients) > 1:
            raise NoPatientError("the data holds several patients: name the subject")
        return None, None

    @staticmethod
    def _belongs(res: dict[str, Any], own_refs: set[str], pid: str) -> bool:
        """A resource is the patient's when its subject/patient/for points at them. One with no
        subject at all is read (prefetch is already scoped to the patient); one that names
        another patient is not."""
        for key in ("subject", "patient", "for"):
            ref = res.get(key)
            if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
                target: str = ref["reference"]
                if target in own_refs:
                    return True
                parts = target.rstrip("/").split("/")
                return len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] == pid
        return True

    @staticmethod
    def _names_patient(res: dict[str, Any]) -> bool:
        return any(
            isinstance(res.get(k), dict) and isinstance(res[k].get("reference"), str)
            for k in ("subject", "patient", "for")
        )

    # --- resources
    def _condition(self, res: dict[str, Any], ref: str) -> ConditionFact | None:
        if _status_code(res.get("verificationStatus")) in IGNORED_VERIFICATION:
            return None
        groups = self.t.groups(_codings(res.get("code")))
        tags = frozenset(CONDITION_TAGS[g] for g in groups if g in CONDITION_TAGS)
        if not tags:
            return None
        when = _first_when(res.get("recordedDate"), res.get("onsetDateTime"))
        if when is None:
            when = _period_when(res.get("onsetPeriod"))
        return ConditionFact(ref, tags, _status_code(res.get("clinicalStatus")), when)

    def _medication_codings(
        self, res: dict[str, Any], by_key: dict[str, dict[str, Any]], notes: list[str], ref: str
    ) -> tuple[list[Any], str]:
        cc = res.get("medicationCodeableConcept")
        if isinstance(cc, dict):
            return _codings(cc), _text(cc)
        mref = res.get("medicationReference")
        if isinstance(mref, dict):
            target = mref.get("reference")
            med: dict[str, Any] | None = None
            if isinstance(target, str):
                if target.startswith("#"):
                    for c in as_list(res.get("contained")):
                        if isinstance(c, dict) and c.get("id") == target[1:]:
                            med = c
                else:
                    med = by_key.get(target)
                    if med is None and "/" in target and not target.startswith("urn:"):
                        med = by_key.get("/".join(target.rstrip("/").split("/")[-2:]))
            if isinstance(med, dict) and med.get("resourceType") == "Medication":
                codings = list(_codings(med.get("code")))
                return codings, _text(med.get("code")) or str(mref.get("display") or "")
            notes.append(
                f"{ref}: its medication ({target or 'no reference'}) is not in the "
                "data, so the drug is unknown"
            )
            return [], str(mref.get("display") or "")
        notes.append(f"{ref}: no medication given, so the drug is unknown")
        return [], ""

    def _order(
        self,
        res: dict[str, Any],
        ref: str,
        by_key: dict[str, dict[str, Any]],
        notes: list[str],
        draft: bool = False,
    ) -> MedicationOrder | None:
        status = res.get("status")
        if not isinstance(status, str):
            status = "unknown"
        codings, name = self._medication_codings(res, by_key, notes, ref)
        groups = self.t.groups(codings)
        groups = frozenset(
            g for g in groups if g in MEDICATION_GROUPS or g.startswith("opioid-analgesic-")
        )
        reasons: set[str] = set()
        for concept in as_list(res.get("reasonCode")):
            for g in self.t.groups(_codings(concept)):
                if g in REASON_TAGS:
                    reasons.add(REASON_TAGS[g])
        for rr in as_list(res.get("reasonReference")):
            target = rr.get("reference") if isinstance(rr, dict) else None
            cond = by_key.get(target) if isinstance(target, str) else None
            if isinstance(cond, dict):
                for g in self.t.groups(_codings(cond.get("code"))):
                    if g in REASON_TAGS:
                        reasons.add(REASON_TAGS[g])
        return MedicationOrder(
            ref=ref,
            groups=groups,
            status="draft" if draft else status,
            authored=parse_when(res.get("authoredOn")),
            reason_tags=frozenset(reasons),
            name=name,
        )

    def _classify(self, groups: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Value-set ids -> (drug-screen analytes, measurement kinds), memoised per set."""
        hit = self._classes.get(groups)
        if hit is None:
            hit = (
                tuple(sorted(ANALYTE_OF[g] for g in groups if g in ANALYTE_OF)),
                tuple(sorted(MEASUREMENT_OF[g] for g in groups if g in MEASUREMENT_OF)),
            )
            self._classes[groups] = hit
        return hit

    def _own_code(self, codings: list[Any]) -> str | None:
        for c in codings:
            if not isinstance(c, dict):
                continue
            system, code = c.get("system"), c.get("code")
            if not isinstance(system, str) or not isinstance(code, str):
                continue  # whatever else an EHR put there, it is no code of ours
            if system == self.obs_system:
                return code
            alias = self.aliases.get((system, code))
            if alias is not None:
                return alias
        return None

    def _observation(
        self,
        res: dict[str, Any],
        url: str | None,
        screens: list[DrugScreen],
        measurements: list[Measurement],
        uses: list[LastUse],
        stages: list[StageOfChange],
        notes: list[str],
    ) -> None:
        status = res.get("status")
        if isinstance(status, str) and status in IGNORED_OBSERVATION_STATUSES:
            return
        own, analytes, kinds = self._observation_class(_codings(res.get("code")))
        if own is None and not analytes and not kinds and not res.get("component"):
            return  # not an observation the pathway uses (as `may_read` says)
        ref = ref_of(res, url)
        when = observation_when(res)
        if own is not None:
            self._own_observation(own, res, ref, when, measurements, uses, stages, notes)
            return
        for analyte in analytes:
            result = self.result_of(res)
            if result is Result.UNKNOWN:
                notes.append(f"{ref}: drug screen result unreadable, counted as unknown")
            screens.append(DrugScreen(ref, analyte, result, when))
        for kind in kinds:
            if kind in ("hcg", "hiv", "hcv"):
                measurements.append(Measurement(ref, kind, None, when, None, self.result_of(res)))
            elif kind == "pregnancy":
                measurements.append(Measurement(ref, kind, None, when, None, self._pregnancy(res)))
            else:
                measurements.append(self._quantity(res, ref, kind, when))
        # Blood pressure panels carry the systolic value in a component.
        for comp in as_list(res.get("component")):
            if not isinstance(comp, dict):
                continue
            for part in self._classify(self.t.groups(_codings(comp.get("code"))))[1]:
                if part in ("sbp", "hr", "qtc"):
                    measurements.append(self._quantity(comp, ref, part, when))

    def may_read(self, res: dict[str, Any], as_of: datetime | None = None) -> bool:
        """False when `read` would certainly make no fact and no note of this resource on its
        own: a type the pathway does not read (Encounter, Claim, ...), or an Observation that is
        cancelled / entered in error or has no code of any value set and no components (vitals
        and labs no rule reads). A population run drops these after its first pass; the tests
        prove it changes no answer (`_observation` returns on the same conditions). Resources
        that others point at (Patient, Medication, Condition) are always kept.

        With `as_of` (the evaluation time), also False for an Observation that would become
        only measurements of kinds read within a bounded look-back (`horizon`: heart rate and
        systolic BP, 24 h by default) and is surely older than it: the rules that read those
        kinds skip it (the same test as `timing.may_be_within_hours`). An undated one is kept.
        """
        return self._may_read(res, None if as_of is None else self.cutoffs(as_of))

    def cutoffs(self, as_of: datetime) -> dict[str, datetime]:
        """For each kind of `horizon`, the instant before which no rule reads a measurement."""
        return {kind: as_of - span for kind, span in self.horizon.items()}

    def first_pass_filter(self, as_of: datetime) -> Callable[[dict[str, Any]], bool]:
        """`may_read(res, as_of)` for one evaluation time, its cutoffs computed once (a
        population run asks it of every resource)."""
        cutoffs = self.cutoffs(as_of)
        return lambda res: self._may_read(res, cutoffs)

    def first_pass_class(self, as_of: datetime) -> Callable[[dict[str, Any]], bool | datetime]:
        """`may_read(res, as_of)` in two steps, for a population run that remembers the first:
        from the fields of `CLASS_FIELDS` alone, True or False, or the instant before which
        the resource is not read (then `not observed_before(res, instant)`, from the fields of
        `WHEN_FIELDS`, is the answer)."""
        cutoffs = self.cutoffs(as_of)
        return lambda res: self._read_class(res, cutoffs)

    def _may_read(self, res: dict[str, Any], cutoffs: dict[str, datetime] | None) -> bool:
        found = self._read_class(res, cutoffs)
        if type(found) is bool:
            return found
        assert isinstance(found, datetime)
        return not observed_before(res, found)

    def _read_class(
        self, res: dict[str, Any], cutoffs: dict[str, datetime] | None
    ) -> bool | datetime:
        # reads only the fields of CLASS_FIELDS (tests/fhir/test_facts.py checks)
        rtype = res.get("resourceType")
        if rtype in REFERENCED_TYPES:
            return True
        if rtype not in READ_TYPES:
            return False
        if rtype != "Observation":
            return True
        status = res.get("status")
        if isinstance(status, str) and status in IGNORED_OBSERVATION_STATUSES:
            return False
        own, analytes, kinds = self._observation_class(_codings(res.get("code")))
        if own is not None or analytes:
            return True
        if not kinds:
            return bool(res.get("component"))
        if cutoffs is None or res.get("component"):
            return True
        earliest: datetime | None = None  # the longest look-back among its kinds
        for kind in kinds:
            cutoff = cutoffs.get(kind)
            if cutoff is None:
                return True  # a kind read however old
            if earliest is None or cutoff < earliest:
                earliest = cutoff
        return True if earliest is None else earliest

    def _observation_class(
        self, codings: list[Any]
    ) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
        """An Observation's code -> (our own code, drug-screen analytes, measurement kinds).
        Memoised for the common one-coding code (a population reads millions of them)."""
        key: tuple[str, str] | None = None
        if len(codings) == 1:
            c = codings[0]
            if isinstance(c, dict):
                system, code = c.get("system"), c.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    key = (system, code)
                    hit = self._obs_classes.get(key)
                    if hit is not None:
                        return hit
        own = self._own_code(codings)
        found: tuple[str | None, tuple[str, ...], tuple[str, ...]] = (
            (own, (), ()) if own is not None else (None, *self._classify(self.t.groups(codings)))
        )
        if key is not None and len(self._obs_classes) < 100_000:
            self._obs_classes[key] = found
        return found

    def _quantity(self, res: dict[str, Any], ref: str, kind: str, when: When | None) -> Measurement:
        value: float | None = None
        q = res.get("valueQuantity")
        if isinstance(q, dict):
            value = _number(q.get("value"))
        elif "valueInteger" in res:
            value = _number(res.get("valueInteger"))
        upper = None
        for rr in as_list(res.get("referenceRange")):
            if isinstance(rr, dict) and isinstance(rr.get("high"), dict):
                upper = _number(rr["high"].get("value"))
                break
        return Measurement(ref, kind, value, when, upper)

    def _pregnancy(self, res: dict[str, Any]) -> Result:
        cc = res.get("valueCodeableConcept")
        groups = self.t.groups(_codings(cc))
        if "pregnant-answers" in groups:
            return Result.POSITIVE
        if _codings(cc):
            return Result.NEGATIVE  # a coded answer that is not "pregnant"
        return Result.UNKNOWN

    def _own_observation(
        self,
        code: str,
        res: dict[str, Any],
        ref: str,
        when: When | None,
        measurements: list[Measurement],
        uses: list[LastUse],
        stages: list[StageOfChange],
        notes: list[str],
    ) -> None:
        if code in ("cows-total", "dsm5-oud-criteria-count"):
            kind = "cows" if code == "cows-total" else "severity"
            m = self._quantity(res, ref, kind, when)
            # COWS tops out at cows.max_score (config); DSM-5 OUD has 11 criteria.
            top = self.cfg.pathway.cows.max_score if kind == "cows" else 11
            if m.value is None or not 0 <= m.value <= top:
                notes.append(f"{ref}: {code} value missing or outside 0-{top}, ignored")
                return
            measurements.append(m)
        elif code == "last-opioid-use":
            used = parse_when(res.get("valueDateTime"))
            if used is None:
                notes.append(f"{ref}: last opioid use without a readable date")
            opioid_type: str | None = None
            for comp in as_list(res.get("component")):
                if isinstance(comp, dict) and _code_in(comp.get("code"), self.obs_system) == (
                    "opioid-type"
                ):
                    opioid_type = _code_in(comp.get("valueCodeableConcept"), self.type_system)
            if opioid_type not in ("short-acting", "long-acting", "fentanyl"):
                opioid_type = None  # an unknown type counts as long-acting (the rules' default)
            uses.append(LastUse(ref, used, opioid_type))
        elif code == "readiness-stage":
            stage = _code_in(res.get("valueCodeableConcept"), self.stage_system)
            if stage not in STAGES:
                notes.append(f"{ref}: stage of change not readable, counted as unknown")
                stage = None
            stages.append(StageOfChange(ref, stage, when))

    def _task(self, res: dict[str, Any], ref: str) -> TaskRecord | None:
        code = _code_in(res.get("code"), self.action_system)
        if code is None:
            return None
        ours = any(
            isinstance(i, dict) and i.get("system") == self.task_identifier
            for i in as_list(res.get("identifier"))
        )
        if not ours:
            return None
        when = _period_when(res.get("executionPeriod")) or _first_when(
            res.get("lastModified"), res.get("authoredOn")
        )
        status = res.get("status") if isinstance(res.get("status"), str) else "unknown"
        return TaskRecord(ref, code, str(status), when)


def _traced(
    res: dict[str, Any], url: str | None, read_as: tuple[str, ...], why: str | None, *notes: str
) -> Traced:
    return Traced(ref_of(res, url), str(res.get("resourceType")), read_as, why, notes)


def _not_read(res: dict[str, Any], url: str | None, pid: str) -> Traced:
    rtype = res.get("resourceType")
    if rtype == "Patient":
        same = res.get("id") == pid
        return _traced(
            res,
            url,
            ("the patient (age, sex)",) if same else (),
            None if same else ("another patient"),
        )
    if rtype == "Medication":
        return _traced(res, url, ("the drug of the requests that cite it",), None)
    return _traced(res, url, (), f"{rtype} is not a resource type the pathway reads")


def _describe_fact(fact: Any) -> str:
    if isinstance(fact, ConditionFact):
        return f"condition [{', '.join(sorted(fact.tags))}] ({fact.clinical_status or 'no status'})"
    if isinstance(fact, MedicationOrder):
        groups = ", ".join(sorted(fact.groups)) or "no drug group of the pathway"
        return f"medication order [{groups}] ({fact.status})"
    if isinstance(fact, DrugScreen):
        return f"drug screen {fact.analyte}: {fact.result.value}"
    if isinstance(fact, Measurement):
        value = f"{fact.value:g}" if fact.value is not None else fact.result.value
        return f"{fact.kind}: {value}"
    if isinstance(fact, LastUse):
        return f"last opioid use ({fact.opioid_type or 'type not recorded: long-acting'})"
    if isinstance(fact, StageOfChange):
        return f"stage of change: {fact.stage or 'unreadable'}"
    if isinstance(fact, TaskRecord):
        return f"a Task of this service: {fact.code} ({fact.status})"
    return type(fact).__name__  # pragma: no cover


def _trace_of(
    res: dict[str, Any],
    url: str | None,
    before: tuple[int, ...],
    lists: tuple[list[Any], ...],
    notes: list[str],
) -> Traced:
    new_notes = tuple(notes[before[-1] :])
    read_as = tuple(
        _describe_fact(fact) for n, items in zip(before, lists, strict=False) for fact in items[n:]
    )
    if read_as:
        return _traced(res, url, read_as, None, *new_notes)
    rtype = res.get("resourceType")
    status = res.get("status")
    verification = _status_code(res.get("verificationStatus"))
    if rtype == "Observation" and status in IGNORED_OBSERVATION_STATUSES:
        why = f"status {status}"
    elif rtype == "Condition" and verification in IGNORED_VERIFICATION:
        why = f"verificationStatus {verification}"
    elif rtype == "MedicationRequest" and status in NOT_HISTORY_STATUSES:
        why = f"status {status}: neither current nor history (§8)"
    elif rtype == "Task":
        why = "not a Task of this service"
    elif new_notes:
        why = "unreadable: " + "; ".join(new_notes)
    else:
        why = "its code is in no value set the pathway uses"
    return _traced(res, url, (), why, *new_notes)


class NoPatientError(ValueError):
    """The data does not say whose it is."""
