"""`pathway population` on a generated population (CONTRACT.md §7, PATHWAY.md §9).

Every patient's line is checked against the patient-view hook and $apply for that patient alone;
every measure, overall and per stratum, against counts made here from what the generator put in
the data (synth.Truth) and from each patient's own hook answer: never by the measure code.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import synth
from cds_support import hook_request
from conformance import assert_valid_bundle, assert_valid_resource
from flask import Flask

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.population.local import Paths
from pathway.population.measures import load_population_config
from pathway.population.patient import PatientJob
from pathway.population.run import PopulationRun, population
from pathway.settings import Settings

EXT = "io.github.oud-pathway.assessment"
T = synth.AS_OF
LINE_KEYS = {"returnToUse", "suspectedOud", "medications", "tasks", "planDefinition"}


def lines_of(run: PopulationRun) -> dict[str, dict[str, Any]]:
    out = {}
    for raw in (run.out_dir / "patients.ndjson").read_bytes().splitlines():
        line = orjson.loads(raw)
        out[line["patient"]] = line
    return out


def own_data(t: synth.Truth) -> list[dict[str, Any]]:
    """The patient's resources and the Medications they reference (as a prefetch with
    `_include` brings them)."""
    refs = {
        r["medicationReference"]["reference"].rsplit("/", 1)[-1]
        for r in t.resources
        if "medicationReference" in r and not r["medicationReference"]["reference"].startswith("#")
    }
    return t.resources + [m for m in synth.medication_resources() if m["id"] in refs]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, config: LoadedConfig) -> Flask:
    settings = Settings.from_mapping(
        {
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('db') / 's.db'}",
        }
    )
    app = create_app({"settings": settings, "config": config})
    app.extensions["pathway"].clock = lambda: T
    return app


@pytest.fixture(scope="module")
def hook_answers(app: Flask, truths: list[synth.Truth]) -> dict[str, dict[str, Any] | None]:
    """Each patient through the patient-view hook alone: the card extension, or None."""
    client = app.test_client()
    out: dict[str, dict[str, Any] | None] = {}
    for t in truths:
        data = own_data(t)
        by_type: dict[str, list[dict[str, Any]]] = {}
        for r in data:
            by_type.setdefault(r["resourceType"], []).append({"resource": r})

        def searchset(*types: str, _by: dict[str, Any] = by_type) -> dict[str, Any]:
            entries = [e for ty in types for e in _by.get(ty, [])]
            return {"resourceType": "Bundle", "type": "searchset", "entry": entries}

        prefetch = {
            "patient": by_type["Patient"][0]["resource"],
            "conditions": searchset("Condition"),
            "observations": searchset("Observation"),
            "medicationRequests": searchset("MedicationRequest", "Medication"),
            "carePlans": None,
            "tasks": None,
        }
        resp = client.post(
            "/cds-services/oud-pathway", json=hook_request("patient-view", t.pid, prefetch)
        )
        assert resp.status_code == 200, resp.get_data(as_text=True)
        cards = resp.get_json()["cards"]
        out[t.pid] = cards[0]["extension"][EXT] if cards else None
    return out


# ---------------------------------------------------------------- per patient


def test_one_line_per_patient_in_id_order(local_run: PopulationRun, truths: list[synth.Truth]):
    raw = (local_run.out_dir / "patients.ndjson").read_bytes().splitlines()
    ids = [orjson.loads(r)["patient"] for r in raw]
    assert ids == sorted(t.pid for t in truths)
    assert local_run.tally.get("patients") == len(truths)


def test_every_line_equals_the_hooks_card_extension(
    local_run: PopulationRun, hook_answers: dict[str, dict[str, Any] | None]
):
    lines = lines_of(local_run)
    situations: Counter[str] = Counter()
    for pid, ext in hook_answers.items():
        line = lines[pid]
        if ext is None:
            assert line == {"patient": pid, "phase": "not-applicable"}
            continue
        situations[line["phase"]] += 1
        assert line["phase"] == ext["phase"]
        assert {k: v for k, v in line.items() if k not in ("patient", "phase")} == {
            k: v for k, v in ext.items() if k in LINE_KEYS
        }
    # the generated population covers every phase
    assert set(situations) == {"assessment", "stabilization", "maintenance", "recovery"}


def test_lines_agree_with_apply(app: Flask, local_run: PopulationRun, truths: list[synth.Truth]):
    """$apply (a dry run) for a sample of patients: phase, flags and Tasks match the line."""
    client = app.test_client()
    lines = lines_of(local_run)
    for t in truths[::9]:
        params = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "subject", "valueString": f"Patient/{t.pid}"},
                {
                    "name": "data",
                    "resource": {
                        "resourceType": "Bundle",
                        "type": "collection",
                        "entry": [{"resource": r} for r in own_data(t)],
                    },
                },
                {"name": "asOf", "valueDateTime": "2025-06-15T12:00:00Z"},
            ],
        }
        resp = client.post(
            "/fhir/PlanDefinition/oud-care-pathway/$apply",
            data=orjson.dumps(params),
            content_type="application/fhir+json",
        )
        assert resp.status_code == 200
        resources = [e["resource"] for e in resp.get_json()["entry"]]
        line = lines[t.pid]
        if line["phase"] == "not-applicable":
            assert [r["resourceType"] for r in resources] == ["OperationOutcome"]
            continue
        plan, *tasks = resources
        cats = {c["coding"][0]["code"] for c in plan["category"]}
        assert line["phase"] in cats
        assert ("return-to-use" in cats) == line["returnToUse"]
        assert ("suspected-oud" in cats) == line["suspectedOud"]
        assert sorted(x["code"]["coding"][0]["code"] for x in tasks) == sorted(
            line.get("tasks", [])
        )


def test_what_the_first_pass_leaves_behind_changes_no_line(
    tmp_path: Path, paths: Paths, config: LoadedConfig
):
    """Bulk exports are mostly data no rule reads (vitals and labs outside every value set,
    Encounters): the local engine counts those in its first pass and never parses them again
    (FactReader.may_read). Each patient's line is the one the same code makes of all of the
    patient's resources, and the skipped ones are counted."""
    truths = synth.population(40, seed=5, extra_observations=60)
    for t in truths:  # an Encounter each, and a cancelled copy of one screen
        t.resources.append(
            {
                "resourceType": "Encounter",
                "id": f"enc-{t.pid}",
                "status": "finished",
                "subject": {"reference": f"Patient/{t.pid}"},
            }
        )
    synth.write_export(tmp_path / "in", truths, files_per_type=2)
    run = population(tmp_path / "in", tmp_path / "out", T, paths, workers=1, progress=False)
    job = PatientJob(config, load_population_config(paths.population_file), T)
    medications = {f"Medication/{m['id']}": orjson.dumps(m) for m in synth.medication_resources()}
    lines = (run.out_dir / "patients.ndjson").read_bytes().splitlines()
    assert len(lines) == len(truths)
    skipped = 0
    for t, line in zip(truths, lines, strict=True):
        everything = [orjson.dumps(r) for r in t.resources]
        skipped += sum(1 for r in t.resources if not job.evaluator.reader.may_read(r, T))
        assert job.run(t.pid, everything, medications.get).line == line, t.pid
    assert skipped >= 40 * 2  # the creatinine and hemoglobin padding, the Encounters
    assert run.tally.get("not-read") == skipped
    assert run.tally.get("resources") == sum(len(t.resources) for t in truths)
    assert "no rule reads" in (run.out_dir / "report.html").read_text()


def test_medication_references_across_files_are_resolved(
    local_run: PopulationRun, truths: list[synth.Truth]
):
    """A patient whose buprenorphine is only `Medication/med-bup` (in another file) is on it."""
    lines = lines_of(local_run)
    by_reference = [
        t
        for t in truths
        if t.situation in ("bup", "bup-benzo")
        and all(
            "medicationReference" in r and not r["medicationReference"]["reference"].startswith("#")
            for r in t.resources
            if r["resourceType"] == "MedicationRequest" and r["status"] == "active"
        )
    ]
    assert len(by_reference) >= 5
    for t in by_reference:
        meds = {m["medication"]: m["status"] for m in lines[t.pid]["medications"]}
        assert meds["buprenorphine"] == "active", t.pid


# ---------------------------------------------------------------- measures, counted here


def _age_band(birth: str | None) -> str:
    if birth is None:
        return "unknown"
    today = T.date()
    if len(birth) == 4:
        ages = {today.year - int(birth) - 1, today.year - int(birth)}
    else:
        b = date.fromisoformat(birth)
        ages = {today.year - b.year - ((today.month, today.day) < (b.month, b.day))}
    bands = set()
    for a in ages:
        bands.add("<18" if a < 18 else "18-34" if a < 35 else "35-54" if a < 55 else "55+")
    return bands.pop() if len(bands) == 1 else "unknown"


def _strata(t: synth.Truth) -> dict[str, str]:
    return {
        "age": _age_band(t.birth),
        "sex": t.gender if t.gender in ("male", "female", "other") else "unknown",
        "race": t.races[0] if len(t.races) == 1 else "multiple" if t.races else "unknown",
        "ethnicity": t.ethnicity or "unknown",
    }


def expected_counts(
    truths: list[synth.Truth], answers: dict[str, dict[str, Any] | None]
) -> Counter[tuple[str, str, str, str]]:
    """(measure, stratifier, stratum, den|num) -> patients, from the generator and the hook."""
    c: Counter[tuple[str, str, str, str]] = Counter()
    for t in truths:
        ext = answers[t.pid]
        if ext is None:
            continue  # not in the pathway: in no measure
        tasks = set(ext.get("tasks", []))
        evidence = not ext["suspectedOud"]
        naloxone = next(m for m in ext["medications"] if m["medication"] == "naloxone")
        members: list[tuple[str, bool]] = []
        if evidence:
            members.append(("moud-coverage", t.active_moud))
            members.append(("hiv-hcv-screening", "hiv-hcv-screening" not in tasks))
        if t.episode_start is not None:
            assert t.episode_last is not None
            since = (T.date() - t.episode_start).days
            if 180 <= since <= 540:
                end = T.date() if t.episode_active else t.episode_last + timedelta(days=30)
                members.append(("moud-retention-180", (end - t.episode_start).days >= 180))
        members.append(("naloxone-coverage", naloxone["status"] == "active"))
        if t.active_moud:
            members.append(("uds-monitoring", "collect-uds" not in tasks))
        members.append(("return-to-use", ext["returnToUse"]))
        members.append(("opioid-benzodiazepine", "review-cns-depressants" in tasks))
        strata = _strata(t)
        for measure, num in members:
            for stratifier, stratum in [("all", "all"), *strata.items()]:
                c[(measure, stratifier, stratum, "den")] += 1
                if num:
                    c[(measure, stratifier, stratum, "num")] += 1
    return c


def test_summary_csv_matches_independent_counts(
    local_run: PopulationRun,
    truths: list[synth.Truth],
    hook_answers: dict[str, dict[str, Any] | None],
):
    expected = expected_counts(truths, hook_answers)
    text = (local_run.out_dir / "summary.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["measure", "stratifier", "stratum", "denominator", "numerator", "rate"]
    seen = set()
    for row in rows:
        key = (row["measure"], row["stratifier"], row["stratum"])
        seen.add(key)
        den, num = int(row["denominator"]), int(row["numerator"])
        assert den == expected[(*key, "den")], key
        assert num == expected[(*key, "num")], key
        assert row["rate"] == (f"{num / den:.4f}" if den else "")
    # every count made here appears in the file
    assert {k[:3] for k in expected} <= seen
    # each measure has a non-trivial denominator and numerator in this population
    for measure in {k[0] for k in seen}:
        assert expected[(measure, "all", "all", "den")] >= 10, measure
        assert expected[(measure, "all", "all", "num")] > 0, measure


def test_measures_json_is_a_bundle_of_measure_reports(
    local_run: PopulationRun,
    truths: list[synth.Truth],
    hook_answers: dict[str, dict[str, Any] | None],
):
    expected = expected_counts(truths, hook_answers)
    bundle = orjson.loads((local_run.out_dir / "measures.json").read_bytes())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert_valid_bundle(bundle)
    reports = [e["resource"] for e in bundle["entry"]]
    assert [r["id"] for r in reports] == [
        "moud-coverage",
        "moud-retention-180",
        "naloxone-coverage",
        "uds-monitoring",
        "hiv-hcv-screening",
        "return-to-use",
        "opioid-benzodiazepine",
    ]
    for r in reports:
        assert_valid_resource(r)
        assert r["status"] == "complete" and r["type"] == "summary"
        assert r["measure"] == f"https://oud-pathway.github.io/fhir/Measure/{r['id']}"
        assert r["period"]["end"] == "2025-06-15T12:00:00Z"
        group = r["group"][0]

        def counts(node: dict[str, Any]) -> tuple[int, int]:
            pops = {p["code"]["coding"][0]["code"]: p["count"] for p in node["population"]}
            assert set(pops) == {"denominator", "numerator"}
            return pops["denominator"], pops["numerator"]

        den, num = counts(group)
        assert (den, num) == (
            expected[(r["id"], "all", "all", "den")],
            expected[(r["id"], "all", "all", "num")],
        )
        assert group["measureScore"]["value"] == pytest.approx(num / den, abs=1e-4)
        assert [s["code"][0]["text"] for s in group["stratifier"]] == [
            "age",
            "sex",
            "race",
            "ethnicity",
        ]
        for s in group["stratifier"]:
            name = s["code"][0]["text"]
            total = 0
            for stratum in s["stratum"]:
                code = stratum["value"]["text"]
                d, n = counts(stratum)
                total += d
                assert (d, n) == (
                    expected[(r["id"], name, code, "den")],
                    expected[(r["id"], name, code, "num")],
                ), (r["id"], name, code)
                if name == "race" and code not in ("multiple", "unknown"):
                    assert (
                        stratum["value"]["coding"][0]["system"] == "urn:oid:2.16.840.1.113883.6.238"
                    )
                if d == 0:
                    assert "measureScore" not in stratum
            assert total == den  # strata partition the denominator


def test_report_html_is_self_contained_and_accessible(local_run: PopulationRun):
    html = (local_run.out_dir / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and '<html lang="en">' in html
    # no external assets: no scripts, stylesheets, images or fonts from elsewhere
    for needle in ("<script", "<link", "<img", "@import", "url(", "src="):
        assert needle not in html, needle
    assert html.count("<svg") == html.count('role="img"') >= 3 + 7 * 4
    assert html.count("<svg") <= html.count("<table")  # a table beside every chart
    for heading in ("Phase of care", "Cascade of care", "Retention in treatment", "Measures"):
        assert heading in html
    # every chart is named: aria-labelledby points at a <title> and a <desc>
    import re

    for ids in re.findall(r'aria-labelledby="([^"]+)"', html):
        for i in ids.split():
            assert f'id="{i}"' in html


def test_engines_agree_however_the_work_is_split(
    tmp_path: Path, export_dir: Path, paths: Paths, local_run: PopulationRun
):
    """One worker and many small buckets give the same bytes as two workers."""
    from pathway.population.local import run_local

    out = tmp_path / "one"
    result = run_local(
        sorted(export_dir.glob("*.ndjson*")), out, T, paths, workers=1, bucket_bytes=20_000
    )
    assert result.patients_file.read_bytes() == (local_run.out_dir / "patients.ndjson").read_bytes()
    assert result.tally.counts == local_run.tally.counts


def test_bad_lines_and_orphans_are_counted_not_fatal(tmp_path: Path, paths: Paths):
    src = tmp_path / "in"
    src.mkdir()
    (src / "Patient.ndjson").write_bytes(
        b'{"resourceType":"Patient","id":"a","gender":"female"}\n'
        b"this is not json\n"
        b"\n"
        b'{"resourceType":"Patient","id":"b/../x"}\n'
        b'["a list"]\n'
    )
    (src / "Condition.ndjson").write_bytes(
        b'{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/a"},'
        b'"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F11.20"}]}}\n'
        b'{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/ghost"}}\n'
        b'{"resourceType":"Condition","id":"c3","subject":{"reference":"Group/g"}}\n'
        # an orphan whose line says "Patient" (the reference's type): parsed, still an orphan
        b'{"resourceType":"Condition","id":"c4","subject":{"reference":"Patient/lost",'
        b'"type":"Patient"},'
        b'"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F11.20"}]}}\n'
    )
    (src / "Encounter.ndjson").write_bytes(  # no rule reads these: counted all the same
        b'{"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/a"}}\n'
        b'{"resourceType":"Encounter","id":"e2","subject":{"reference":"Patient/ghost"}}\n'
    )
    (src / "notes.txt").write_text("not an export file")
    run = population(src, tmp_path / "out", T, paths, workers=1, progress=False)
    lines = (tmp_path / "out" / "patients.ndjson").read_bytes().splitlines()
    assert [orjson.loads(x)["patient"] for x in lines] == ["a"]
    assert orjson.loads(lines[0])["phase"] == "assessment"
    t = run.tally
    assert t.get("unreadable") == 2
    assert t.get("orphan-resources") == 3 and t.get("orphan-patients") == 2
    assert t.get("not-read") == 2 and t.get("resources") == 6
    assert t.get("failed") == 0
    assert t.get("no-patient", "Patient") == 1  # an id that is no FHIR id
    assert t.get("no-patient", "Condition") == 1
    assert any("Patient.ndjson:2" in p for p in run.problems)
    assert not any("not json" in p for p in run.problems)  # never the content
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Unreadable lines" in html


def test_cli(tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture[str]):
    from pathway.cli import main

    out = tmp_path / "cli"
    rc = main(
        [
            "population",
            "--ndjson",
            str(export_dir),
            "--out",
            str(out),
            "--as-of",
            "2025-06-15T12:00:00Z",
            "--workers",
            "1",
        ]
    )
    assert rc == 0
    said = capsys.readouterr().out
    assert f"patients: {len(list(_patients(export_dir)))}" in said
    assert {p.name for p in out.iterdir()} == {
        "patients.ndjson",
        "measures.json",
        "summary.csv",
        "report.html",
    }
    assert main(["population", "--ndjson", str(tmp_path / "none"), "--out", str(out)]) == 2
    with pytest.raises(SystemExit):
        main(["population", "--ndjson", str(export_dir), "--out", str(out), "--as-of", "2025"])


def test_cli_spark_engine_without_pyspark_says_how_to_get_it(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
):
    import sys

    from pathway.cli import main

    for name in ("pyspark", "pyspark.sql"):
        monkeypatch.setitem(sys.modules, name, None)  # `import pyspark` fails as if not installed
    args = ["--engine", "spark", "--as-of", "2025-06-15T12:00:00Z"]
    rc = main(["population", "--ndjson", str(export_dir), "--out", str(tmp_path / "o"), *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert "the spark engine needs PySpark: pip install '.[spark]'" in err
    assert "Traceback" not in err


def _patients(folder: Path) -> list[bytes]:
    import gzip

    out = []
    for p in folder.glob("Patient.*"):
        data = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
        out.extend(data.splitlines())
    return out


def test_an_output_folder_inside_the_input_is_not_read_back(
    tmp_path: Path, export_dir: Path, paths: Paths, local_run: PopulationRun
):
    import shutil

    for name, sub in (("a", "report"), ("b", "")):  # a subfolder of the input; the input
        src = tmp_path / name
        shutil.copytree(export_dir, src)
        out = src / sub if sub else src
        for _ in range(2):  # the second run sees the first one's patients.ndjson
            run = population(src, out, T, paths, workers=1, progress=False)
            assert run.tally.get("patients") == local_run.tally.get("patients")
            assert run.tally.get("unreadable") == 0


def test_a_truncated_gzip_file_is_reported_and_the_run_goes_on(tmp_path: Path, paths: Paths):
    """An export file cut short (a download that stopped): the lines before the cut are read,
    the file is named in the problems, the other files are read whole."""
    import gzip

    src = tmp_path / "in"
    src.mkdir()
    (src / "Patient.ndjson").write_bytes(b'{"resourceType":"Patient","id":"a"}\n')
    lines = b"".join(
        b'{"resourceType":"Observation","id":"o%d","status":"final",'
        b'"subject":{"reference":"Patient/a"},"code":{"text":"padding %d"}}\n' % (i, i)
        for i in range(5000)
    )
    whole = gzip.compress(lines)
    (src / "Observation.ndjson.gz").write_bytes(whole[: len(whole) // 2])
    run = population(src, tmp_path / "out", T, paths, workers=1, progress=False)
    assert any("Observation.ndjson.gz: could not be read to the end" in p for p in run.problems)
    assert run.tally.get("unreadable-files") == 1
    assert 0 < run.tally.get("resources") - 1 < 5000  # the Patient, and the part before the cut
    patients = (run.out_dir / "patients.ndjson").read_bytes().splitlines()
    assert [orjson.loads(x)["patient"] for x in patients] == ["a"]


def test_rows_left_behind_are_one_record_and_still_count_for_orphans(tmp_path: Path, paths: Paths):
    """The first pass writes one `pid SEP #n` record for a row of resources of one patient
    that no rule reads; a patient may have several rows, interleaved with others, in several
    files. Orphans (no Patient in the export) still count every resource they had."""
    from pathway.population.buckets import SEP, SKIPPED, group_bucket, partition_file
    from pathway.population.local import first_pass

    def enc(i: int, pid: str) -> bytes:
        return b'{"resourceType":"Encounter","id":"e%d","subject":{"reference":"Patient/%s"}}\n' % (
            i,
            pid.encode(),
        )

    def old_hr(i: int, pid: str) -> bytes:
        return (
            orjson.dumps(
                {
                    "resourceType": "Observation",
                    "id": f"hr{i}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": "2024-01-01T00:00:00Z",
                    "valueQuantity": {"value": 40},
                }
            )
            + b"\n"
        )

    src = tmp_path / "in"
    src.mkdir()
    (src / "Patient.ndjson").write_bytes(b'{"resourceType":"Patient","id":"a"}\n')
    rows = [
        *(enc(i, "ghost") for i in range(3)),
        *(old_hr(i, "a") for i in range(4)),
        *(enc(10 + i, "ghost") for i in range(2)),  # ghost's second row
        enc(20, "ghost2"),
        b'{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/ghost"}}\n',
    ]
    (src / "Mixed.000.ndjson").write_bytes(b"".join(rows))
    (src / "Mixed.001.ndjson").write_bytes(enc(30, "ghost") + old_hr(30, "a"))

    work = tmp_path / "work"
    work.mkdir()
    for task, name in enumerate(["Mixed.000.ndjson", "Mixed.001.ndjson"]):
        partition_file(src / name, work, 1, task, first_pass(paths, T))
    records = (work / "b0.t0").read_bytes().splitlines()
    assert records == [
        b"ghost" + SEP + SKIPPED + b"3",
        b"a" + SEP + SKIPPED + b"4",
        b"ghost" + SEP + SKIPPED + b"2",
        rows[-1].rstrip(b"\n").join([b"ghost" + SEP, b""]),
        b"ghost2" + SEP + SKIPPED + b"1",  # the last row, written when the file ends
    ]
    groups, skipped = group_bucket(sorted(work.glob("b0.t*")))
    assert {pid: len(lines) for pid, lines in groups.items()} == {"ghost": 1, "a": 0, "ghost2": 0}
    assert skipped == {"ghost": 3 + 2 + 1, "a": 4 + 1, "ghost2": 1}

    run = population(src, tmp_path / "out", T, paths, workers=1, progress=False)
    t = run.tally
    assert t.get("resources") == 14 and t.get("not-read") == 12  # 14: the Patient too
    assert t.get("orphan-patients") == 2
    assert t.get("orphan-resources") == 3 + 2 + 1 + 1 + 1  # ghost's 7, ghost2's 1
    lines = (tmp_path / "out" / "patients.ndjson").read_bytes().splitlines()
    assert [orjson.loads(x)["patient"] for x in lines] == ["a"]
