"""The measure definitions of PATHWAY.md §9 at their boundaries: episodes, windows, strata."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from builders import BUP_NALOXONE_FILM, METHADONE_TABLET, condition, med, patient
from hypothesis import given, settings
from hypothesis import strategies as st

from pathway.config import LoadedConfig
from pathway.evaluation import Evaluator
from pathway.fhir.facts import parse_when
from pathway.population.episodes import latest_episode
from pathway.population.measures import (
    ETHNICITY_URL,
    MAX_KINDS,
    RACE_URL,
    STRATIFIERS,
    PatientMeasures,
    Tally,
    age_stratum,
    load_population_config,
    strata_of,
)
from pathway.population.patient import PatientJob
from pathway.rules.findings import find

T = datetime(2025, 6, 15, 12, tzinfo=UTC)
PC = load_population_config()


def day(n: int) -> str:
    return (T - timedelta(days=n)).date().isoformat()


@pytest.fixture(scope="module")
def job(config: LoadedConfig) -> PatientJob:
    return PatientJob(config, PC, T)


def findings_of(evaluator: Evaluator, *resources: dict[str, Any]):
    ev = evaluator.evaluate([patient(), *resources], T, patient_id="p1")
    return find(ev.reading.facts, T, evaluator.config.pathway)


def chain(start: int, end: int, last_status: str, code: str = BUP_NALOXONE_FILM):
    days = [*range(start, end, -28), end]
    return [
        med(code, last_status if i == len(days) - 1 else "completed", authored=day(d))
        for i, d in enumerate(days)
    ]


def members(job: PatientJob, *resources: dict[str, Any]) -> dict[str, bool]:
    import orjson

    lines = [orjson.dumps(r) for r in (patient(), *resources)]
    result = job.run("p1", lines)
    return dict(result.measures.memberships)


# ---------------------------------------------------------------- episodes


def test_active_episode_runs_to_t(evaluator: Evaluator):
    f = findings_of(evaluator, condition(), *chain(200, 3, "active"))
    ep = latest_episode(f, 30, 30)
    assert ep is not None and ep.active
    assert ep.start == date.fromisoformat(day(200)) and ep.end == T.date() and ep.days == 200
    # the same start as the rules' own active episode
    assert f.episode_start is not None and f.episode_start.latest.date() == ep.start


def test_ended_episode_runs_to_last_request_plus_30(evaluator: Evaluator):
    f = findings_of(evaluator, condition(), *chain(400, 250, "stopped"))
    ep = latest_episode(f, 30, 30)
    assert ep is not None and not ep.active
    assert ep.days == 400 - 250 + 30


def test_a_gap_over_30_days_starts_a_new_episode(evaluator: Evaluator):
    old = chain(500, 300, "completed")
    f = findings_of(evaluator, condition(), *old, *chain(269, 10, "active"))  # 31-day gap
    ep = latest_episode(f, 30, 30)
    assert ep is not None and ep.start == date.fromisoformat(day(269))
    f = findings_of(evaluator, condition(), *old, *chain(270, 10, "active"))  # 30 days: one
    ep = latest_episode(f, 30, 30)
    assert ep is not None and ep.start == date.fromisoformat(day(500))


def test_methadone_for_pain_is_no_episode(evaluator: Evaluator):
    f = findings_of(evaluator, *chain(300, 10, "active", METHADONE_TABLET))
    assert latest_episode(f, 30, 30) is None


def test_drafts_cancelled_and_future_requests_are_no_episode(evaluator: Evaluator):
    f = findings_of(
        evaluator,
        condition(),
        med(BUP_NALOXONE_FILM, "cancelled", authored=day(300)),
        med(BUP_NALOXONE_FILM, "draft", authored=day(250)),
        med(BUP_NALOXONE_FILM, "active", authored=(T + timedelta(days=3)).date().isoformat()),
    )
    assert latest_episode(f, 30, 30) is None


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 60), min_size=0, max_size=8),
    newest=st.integers(0, 120),
    active=st.booleans(),
)
def test_latest_episode_agrees_with_the_rules_episode_start(
    evaluator: Evaluator, gaps: list[int], newest: int, active: bool
):
    """Property: when the newest request is active, the chain found here starts where the
    rules' own episode (Findings.episode_start) starts."""
    days = [newest]
    for g in gaps:
        days.append(days[-1] + g)
    resources = [condition()]
    for i, d in enumerate(days):
        status = ("active" if active else "stopped") if i == 0 else "completed"
        resources.append(med(BUP_NALOXONE_FILM, status, authored=day(d)))
    f = findings_of(evaluator, *resources)
    ep = latest_episode(f, 30, 30)
    assert ep is not None
    expected_start = newest
    for g, d in zip(gaps, days[1:], strict=True):
        if g > 30:
            break
        expected_start = d
    assert ep.start == date.fromisoformat(day(expected_start))
    assert ep.active is active
    if active:
        assert f.episode_start is not None and f.episode_start.latest.date() == ep.start
        assert ep.days == expected_start
    else:
        assert ep.days == expected_start - newest + 30


# ---------------------------------------------------------------- the retention window


@pytest.mark.parametrize(
    ("start", "end", "status", "expect"),
    [
        (180, 0, "active", True),  # started T - 180: the newest edge, included; 180 days
        (179, 0, "active", None),  # too recent to judge: outside the denominator
        (540, 300, "completed", True),  # the oldest edge, included; 540 - 300 + 30 = 270 days
        (541, 300, "completed", None),
        (400, 251, "completed", False),  # 400 - 251 + 30 = 179 days
        (400, 250, "completed", True),  # 180 days
        (300, 200, "stopped", False),  # 130 days
    ],
)
def test_retention_window_and_180_days(
    job: PatientJob, start: int, end: int, status: str, expect: bool | None
):
    m = members(job, condition(), *chain(start, end, status))
    assert m.get("moud-retention-180") is expect


# ---------------------------------------------------------------- who is in which denominator


def test_not_applicable_is_in_no_measure(job: PatientJob):
    import orjson

    result = job.run("p1", [orjson.dumps(patient())])
    assert result.measures == PatientMeasures("not-applicable", ("unknown",) * 4, (), (), None)
    assert orjson.loads(result.line) == {"patient": "p1", "phase": "not-applicable"}


def test_suspected_oud_is_in_the_pathway_but_has_no_oud_evidence(job: PatientJob):
    uds = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58379-9"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": T.isoformat(),
        "valueString": "POS",
    }
    m = members(job, uds)
    assert "moud-coverage" not in m and "hiv-hcv-screening" not in m
    assert {"naloxone-coverage", "return-to-use", "opioid-benzodiazepine"} <= set(m)


def test_methadone_contraindicated_is_still_active_moud(job: PatientJob):
    qtc = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8636-3"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": T.isoformat(),
        "valueQuantity": {"value": 520, "unit": "ms"},
    }
    import orjson

    result = job.run(
        "p1",
        [
            orjson.dumps(r)
            for r in (patient(), condition(), qtc, *chain(60, 5, "active", METHADONE_TABLET))
        ],
    )
    line = orjson.loads(result.line)
    assert {m["medication"]: m["status"] for m in line["medications"]}["methadone"] == (
        "contraindicated"
    )
    assert dict(result.measures.memberships)["moud-coverage"] is True
    assert "active-moud" in result.measures.cascade


# ---------------------------------------------------------------- strata


def race(*codes: str) -> dict[str, Any]:
    return {
        "url": RACE_URL,
        "extension": [
            {
                "url": "ombCategory",
                "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": c},
            }
            for c in codes
        ],
    }


def eth(*codes: str) -> dict[str, Any]:
    return {**race(*codes), "url": ETHNICITY_URL}


@pytest.mark.parametrize(
    ("ext", "expect_race", "expect_eth"),
    [
        ([], "unknown", "unknown"),
        ([race("2054-5")], "2054-5", "unknown"),
        ([race("2054-5", "2106-3")], "multiple", "unknown"),
        ([race("2054-5", "2054-5")], "2054-5", "unknown"),  # the same category twice: one
        ([race("UNK")], "unknown", "unknown"),  # a null flavour is not a category
        ([race("ASKU", "2028-9")], "2028-9", "unknown"),
        ([eth("2135-2")], "unknown", "2135-2"),
        ([eth("2135-2", "2186-5")], "unknown", "unknown"),  # contradictory
        ([race("2076-8"), eth("2186-5")], "2076-8", "2186-5"),
    ],
)
def test_race_and_ethnicity(ext: list[Any], expect_race: str, expect_eth: str):
    p = {"resourceType": "Patient", "id": "p", "extension": ext}
    _, _, r, e = strata_of(p, None, T, PC)
    assert (r, e) == (expect_race, expect_eth)


@pytest.mark.parametrize(
    ("birth", "band"),
    [
        ("2007-06-15", "18-34"),  # 18 today
        ("2007-06-16", "<18"),  # 18 tomorrow
        ("1990-06", "unknown"),  # born in June 1990: 34 or 35 on June 15, two bands
        ("1985-06", "35-54"),  # 39 or 40: one band
        ("1970", "unknown"),  # 54 or 55: straddles two bands
        ("1960", "55+"),
        ("1991", "18-34"),
        (None, "unknown"),
        ("2030-01-01", "unknown"),  # after T: no age
        ("not a date", "unknown"),
    ],
)
def test_age_bands(birth: str | None, band: str):
    assert age_stratum(parse_when(birth), T, PC) == band


def test_sex():
    for gender, expect in (
        ("female", "female"),
        ("other", "other"),
        ("unknown", "unknown"),
        (5, "unknown"),
    ):
        assert strata_of({"gender": gender}, None, T, PC)[1] == expect
    assert strata_of(None, None, T, PC) == ("unknown",) * 4


def test_tallies_add_up():
    pm = PatientMeasures(
        "maintenance",
        ("18-34", "male", "2054-5", "unknown"),
        (("moud-coverage", True),),
        ("in-pathway",),
        None,
    )
    a, b = Tally(), Tally()
    a.add(pm, PC)
    b.add(pm, PC)
    b.add(pm._replace(memberships=(("moud-coverage", False),)), PC)
    total = Tally().merge(a).merge(b)
    assert total.rate("moud-coverage") == (3, 2)
    assert total.rate("moud-coverage", "race", "2054-5") == (3, 2)
    assert Tally.from_json(total.to_json()).counts == total.counts


def _counted_one_by_one(pms: list[PatientMeasures]) -> dict[tuple[str, ...], int]:
    """What a list of patients counts for, written out plainly (the reference for Tally)."""
    c: dict[tuple[str, ...], int] = {}

    def up(*key: str) -> None:
        c[key] = c.get(key, 0) + 1

    for pm in pms:
        up("patients")
        up("phase", pm.phase)
        for step in pm.cascade:
            up("cascade", step)
        if pm.retention_days is not None:
            up("retention", str(max(b for b in PC.histogram if b <= pm.retention_days)))
        for measure, numerator in pm.memberships:
            for stratifier, stratum in (("", ""), *zip(STRATIFIERS, pm.strata, strict=True)):
                up("den", measure, stratifier, stratum)
                if numerator:
                    up("num", measure, stratifier, stratum)
    return c


patient_measures_st = st.builds(
    PatientMeasures,
    st.sampled_from(["maintenance", "induction", "not-applicable"]),
    st.tuples(
        st.sampled_from(["18-34", "35-64"]),
        st.sampled_from(["male", "female"]),
        st.sampled_from(["2054-5", "unknown"]),
        st.sampled_from(["unknown"]),
    ),
    st.lists(
        st.tuples(st.sampled_from(["moud-coverage", "naloxone", "retention-180"]), st.booleans()),
        max_size=3,
        unique_by=lambda t: t[0],
    ).map(tuple),
    st.lists(st.sampled_from(["in-pathway", "on-moud"]), max_size=2, unique=True).map(tuple),
    st.none() | st.integers(0, 400),
)


@settings(max_examples=200, deadline=None)
@given(pms=st.lists(patient_measures_st, max_size=30), read_at=st.integers(0, 30))
def test_a_tally_counts_each_patient_whenever_it_is_read(
    pms: list[PatientMeasures], read_at: int
) -> None:
    tally = Tally()
    for i, pm in enumerate(pms):
        if i == read_at:
            tally.get("patients")  # reading in between changes nothing
        tally.add(pm, PC)
    tally.note("patients", n=0)
    expected = {k: v for k, v in _counted_one_by_one(pms).items() if v}
    assert {k: v for k, v in tally.counts.items() if v} == expected
    assert Tally.from_json(tally.to_json()).counts == tally.counts


def test_a_tally_of_more_kinds_than_it_holds() -> None:
    pms = [
        PatientMeasures(
            "maintenance", (str(i), "male", "2054-5", "unknown"), (("naloxone", True),), (), None
        )
        for i in range(MAX_KINDS * 2 + 7)
    ]
    tally = Tally()
    for pm in pms:
        tally.add(pm, PC)
    assert len(tally._kinds) < MAX_KINDS  # spread as it went: bounded
    assert tally.counts == _counted_one_by_one(pms)
