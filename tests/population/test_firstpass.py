"""The population run's first pass with the C extension (pathway/population/_firstpass.c) and
without it: the same answers for every line.

On the source build the extension is not installed: the fixture compiles it here with the same
function the production build uses (scripts/compile.py), so both builds test it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import synth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathway.fhir.facts import CLASS_FIELDS, WHEN_FIELDS, FactReader, observed_before
from pathway.population.buckets import partition_file
from pathway.population.firstpass import GROUPS, FirstPass, Members, UnreadableLine
from pathway.population.local import Paths, _reader, first_pass
from pathway.population.ndjson import PATIENT_FIELDS, patient_key, raw_lines
from pathway.population.spark import key_lines

ROOT = Path(__file__).resolve().parents[2]
T = synth.AS_OF
SCENARIOS = ROOT / "tests" / "data" / "scenarios"


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Members:
    try:
        from pathway.population._firstpass import members as built

        return built
    except ImportError:  # the source build: compile it as the production build does
        spec = importlib.util.spec_from_file_location(
            "compile_script", ROOT / "scripts" / "compile.py"
        )
        assert spec is not None and spec.loader is not None
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        dest = tmp_path_factory.mktemp("firstpass")
        so = script.build_firstpass(dest, dest / "temp")
        # under a name of its own: the source build's runs in this process must not find it
        spec = importlib.util.spec_from_file_location("_firstpass", so)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules.pop("_firstpass", None)
        fn: Members = module.members
        return fn


def _strict(value: Any) -> bytes:
    """A value's identity as orjson reads it (1, 1.0 and True differ; key order does not)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def assert_agrees(members: Members, line: bytes) -> tuple[bytes, ...] | None:
    """members(line) is None, or orjson reads the line as an object whose members are what
    their texts parse to (absent where the text is empty)."""
    m = members(line, GROUPS)
    if m is None:
        return None
    full = orjson.loads(line)  # must not raise: the extension was sure
    assert type(full) is dict
    assert len(m) == len(GROUPS)
    for names, texts in zip(GROUPS, m, strict=True):
        parts = texts.split(b"\0")
        assert len(parts) == len(names)
        for name, text in zip(names, parts, strict=True):
            if text:
                assert _strict(orjson.loads(text)) == _strict(full[name]), name
            else:
                assert name not in full, name
    return m


def corpus() -> list[bytes]:
    """Lines as exports write them: the generated population, every resource of the worked
    scenarios, and the public data in tests/data/external."""
    lines = [orjson.dumps(r) for t in synth.population(40, seed=5) for r in t.resources]
    lines += [orjson.dumps(m) for m in synth.medication_resources()]
    for folder in (SCENARIOS, ROOT / "tests" / "data" / "external"):
        for path in sorted(folder.rglob("*.json")):
            try:
                doc = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                continue
            if type(doc) is dict and doc.get("resourceType") == "Bundle":
                for e in doc.get("entry") or []:
                    if type(e) is dict and type(e.get("resource")) is dict:
                        lines.append(orjson.dumps(e["resource"]))
            elif type(doc) is dict:
                lines.append(orjson.dumps(doc))
    return lines


CORPUS = corpus()


def test_the_corpus_is_varied() -> None:
    types = {orjson.loads(x).get("resourceType") for x in CORPUS}
    assert len(CORPUS) > 2000
    assert {"Patient", "Observation", "Condition", "MedicationRequest", "Medication"} <= types


def test_members_of_real_lines_are_what_orjson_reads(members: Members) -> None:
    sure = 0
    for line in CORPUS:
        for variant in (line, json.dumps(orjson.loads(line), indent=1).encode()):
            if assert_agrees(members, variant) is not None:
                sure += 1
    # ordinary lines take the fast path (a regression to "never sure" would pass unnoticed)
    assert sure >= 2 * len(CORPUS) * 0.99


def test_members_splits_by_group_in_order(members: Members) -> None:
    line = (
        b'{"issued":"2026-01-01T00:00:00Z", "code":{"coding":[{"code":"x"}]},'
        b'"resourceType":"Observation","patient":{"reference":"Patient/p"}, "x":[1,{"y":null}]}'
    )
    assert members(line, GROUPS) == (
        b'"Observation"',
        b'\0{"reference":"Patient/p"}\0\0',
        b'"Observation"\0\0{"coding":[{"code":"x"}]}\0',
        b"\0\0\0" + b'"2026-01-01T00:00:00Z"',
    )
    assert members(b"{}", GROUPS) == (b"", b"\0\0\0", b"\0\0\0", b"\0\0\0")


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"[]",
        b'"Observation"',
        b'{"resourceType":"Observation"',  # cut short
        b'{"resourceType":"Observation"}x',  # trailing data
        b'{"resourceType":"Observation",}',
        b'{"resourceType":"Observation" "id":"1"}',
        b'{"resourceType":"Observation","resourceType":"Condition"}',  # ours given twice
        b'{"resource\\u0054ype":"Observation"}',  # an escaped name that spells ours
        b'{"resourceType":"Obs\x01"}',  # a control character
        b'{"resourceType":"\xff"}',  # not UTF-8
        b'{"resourceType":"\xed\xa0\x80"}',  # an encoded surrogate
        b'{"resourceType":"\xc0\x80"}',  # overlong
        b'{"resourceType":"\xf4\x90\x80\x80"}',  # past U+10FFFF
        b'{"x":"\\ud800"}',  # a lone surrogate (orjson decides)
        b'{"x":"\\q"}',
        b'{"x":1e400}',  # infinite as a double
        b'{"x":' + b"9" * 400 + b"}",
        b'{"x":01}',
        b'{"x":1.}',
        b'{"x":-}',
        b'{"x":+1}',
        b'{"x":tru}',
        b'{"x":NaN}',
        b'{"x" :\x0c1}',
        b"\xef\xbb\xbf{}",
        b'{"x":' + b"[" * 200 + b"]" * 200 + b"}",  # deeper than the extension goes
    ],
)
def test_members_is_not_sure_of_lines_orjson_refuses_or_may_read_differently(
    members: Members, line: bytes
) -> None:
    assert members(line, GROUPS) is None


def test_members_takes_what_orjson_takes_in_other_members(members: Members) -> None:
    for line in [
        b'{"x":"\\u00e9 \\" \\\\ \\/ \\b\\f\\n\\r\\t","resourceType":"Observation"}',
        b'{"x":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f","resourceType":"Observation"}',
        b'{"x":[-0, 0.5e-999, 1E+5, 123456789012345678901234567890, true, false, null]}',
        b'{"x":{"x":1,"x":2},"x2":{}, "x3":[] ,"resourceType" : "Observation" }',
        b' \t{"resourceType":"Observation"}\r\n',
    ]:
        assert assert_agrees(members, line) is not None, line


def test_members_checks_its_arguments(members: Members) -> None:
    with pytest.raises(TypeError):
        members("{}", GROUPS)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        members(b"{}", (("a", 1),))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        members(b"{}", (tuple(f"k{i}" for i in range(33)),))
    with pytest.raises(TypeError):
        members(b"{}", (("a", "x" * 65),))
    assert members(b'{"a":1,"b":2}', (("b",), ("a", "b"))) == (b"2", b"1\x002")
    # a refused `groups` leaves the one before in place
    assert members(b'{"resourceType":"X","b":2}', GROUPS) == (
        b'"X"',
        b"\0\0\0",
        b'"X"\0\0\0',
        b"\0\0\0",
    )
    with pytest.raises(TypeError):
        members(b"{}", (("b",), ("a", 1)))  # type: ignore[arg-type]
    assert members(b'{"resourceType":"X","b":2}', GROUPS) == (
        b'"X"',
        b"\0\0\0",
        b'"X"\0\0\0',
        b"\0\0\0",
    )
    name = "n" * 64  # the longest name it takes
    assert members(b'{"%s":1}' % name.encode(), ((name,),)) == (b"1",)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["code", "subject", "x", "é", "status", ""]) | st.text(max_size=5),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
top_names = st.sampled_from([n for g in GROUPS for n in g] + ["id", "valueQuantity", "x"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    obj=st.dictionaries(top_names | st.text(max_size=4), json_values, max_size=8),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
)
def test_members_agree_with_orjson_for_any_object(
    members: Members, obj: dict[str, Any], ascii_only: bool, indent: int | None
) -> None:
    line = json.dumps(obj, ensure_ascii=ascii_only, indent=indent).encode("utf-8", "surrogatepass")
    m = assert_agrees(members, line)
    plain = all(
        type(v) is not float and (type(v) is not int or abs(v) < 10**17) for v in _leaves(obj)
    )
    if plain and line.find(b"\\") < 0 and _utf8(line):
        assert m is not None  # nothing in it to doubt


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(base=st.sampled_from(CORPUS[:300]), at=st.integers(0, 10_000), junk=st.binary(max_size=3))
def test_members_is_never_wrong_about_a_damaged_line(
    members: Members, base: bytes, at: int, junk: bytes
) -> None:
    at %= len(base) + 1
    for line in (base[:at] + junk + base[at:], base[:at] + junk + base[at + 1 :], base[:at]):
        assert_never_wrong(members, line)


@given(line=st.binary(max_size=64))
def test_members_is_never_wrong_about_any_bytes(members: Members, line: bytes) -> None:
    assert_never_wrong(members, line)


def assert_never_wrong(members: Members, line: bytes) -> None:
    """A line orjson refuses: not sure; any other: sure or not, never wrong."""
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        assert members(line, GROUPS) is None
        return
    assert_agrees(members, line)


def _leaves(v: Any) -> list[Any]:
    if isinstance(v, dict):
        return [x for item in v.values() for x in _leaves(item)]
    if isinstance(v, list):
        return [x for item in v for x in _leaves(item)]
    return [v]


def _utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ------------------------------------------------------------------ the first pass's answers


def outcome(read: Callable[[bytes], tuple[str, str | None, bool]], line: bytes) -> Any:
    try:
        return read(line)
    except UnreadableLine as e:
        return ("unreadable", str(e))


def test_what_each_step_reads_is_declared(paths: Paths) -> None:
    """FirstPass parses only GROUPS: each function it calls gives the same answer on a resource
    cut down to the declared fields (guard: extend CLASS_FIELDS / WHEN_FIELDS first)."""
    reader = _reader(paths)
    read_class = reader.first_pass_class(T)
    for line in CORPUS:
        res = orjson.loads(line)
        if type(res) is not dict:
            continue
        cut = {k: res[k] for k in CLASS_FIELDS if k in res}
        assert read_class(cut) == read_class(res)
        for cutoff in (T - timedelta(hours=24), T - timedelta(days=400), T):
            when = {k: res[k] for k in WHEN_FIELDS if k in res}
            assert observed_before(when, cutoff) == observed_before(res, cutoff)
        if res.get("resourceType") not in ("Patient", "Medication"):
            whose = {k: res[k] for k in PATIENT_FIELDS if k in res}
            assert patient_key(whose) == patient_key(res)


def test_first_pass_answers_as_the_whole_line_does(members: Members, paths: Paths) -> None:
    reader = _reader(paths)
    fast = FirstPass(reader.first_pass_filter(T), reader.first_pass_class(T), members)
    whole = FirstPass(reader.first_pass_filter(T), reader.first_pass_class(T), None)
    seen = set()
    for line in [*CORPUS, b"", b"{", b"[1]", b'{"id":"x"}', b'{"resourceType":7}']:
        a, b = outcome(fast.read, line), outcome(whole.read, line)
        assert a == b, line
        seen.add(a[2] if a[0] != "unreadable" else a)
    assert {True, False} <= seen  # both kept and left-behind lines were among them
    assert len(fast._classes) > 5 and len(fast._patients) > 20  # the fast path was taken


def test_a_run_reads_the_same_with_and_without_the_extension(
    members: Members, paths: Paths, export_dir: Path, tmp_path: Path
) -> None:
    reader = _reader(paths)
    out = {}
    for name, native in (("fast", members), ("whole", None)):
        work = tmp_path / name
        work.mkdir()
        fp = FirstPass(reader.first_pass_filter(T), reader.first_pass_class(T), native)
        results = [
            partition_file(f, work, 3, i, fp)
            for i, f in enumerate(sorted(export_dir.glob("*.ndjson*")))
        ]
        out[name] = (results, {p.name: p.read_bytes() for p in sorted(work.iterdir())})
    (fast_results, fast_files), (whole_results, whole_files) = out["fast"], out["whole"]
    assert fast_files == whole_files
    assert [(r[0], r[1]) for r in fast_results] == [(r[0], r[1]) for r in whole_results]
    assert sum(1 for f in fast_files.values() if f) > 3


def test_the_spark_engine_keys_lines_the_same_with_and_without_the_extension(
    members: Members, paths: Paths, export_dir: Path
) -> None:
    reader = _reader(paths)
    lines = [line.decode() for f in sorted(export_dir.glob("*.ndjson*")) for line in raw_lines(f)]
    lines += ["", "  ", "{", "[1]", '{"id":"x"}', '{"resourceType":"Observation"}', "\ud800"]
    lines += [  # left behind: a type no rule reads, a heart rate older than any rule looks
        '{"resourceType":"Encounter","subject":{"reference":"Patient/p1"}}',
        '{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/p1"},'
        '"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},'
        '"effectiveDateTime":"2020-01-01T00:00:00Z"}',
    ]
    fast = list(
        key_lines(
            lines, FirstPass(reader.first_pass_filter(T), reader.first_pass_class(T), members)
        )
    )
    whole = list(key_lines(lines, FirstPass(reader.first_pass_filter(T), None, None)))
    assert fast == whole
    kinds = {k for k, _key, _value in fast}
    assert kinds == {"P", "M", "R", "T"}
    assert any(k == "P" and v == "" for k, _key, v in fast)  # left behind: an empty payload
    tally = {tuple(r[:-1]): r[-1] for r in fast[-1][2]}
    assert tally[("unreadable",)] == 4 and tally[("no-patient", "Observation")] == 1
    assert tally[("lines",)] == len([x for x in lines if x.strip()])
    # without a first pass every line is carried
    carried = list(key_lines(lines))
    assert not any(k == "P" and v == "" for k, _key, v in carried)
    assert {(k, key) for k, key, _v in carried} == {(k, key) for k, key, _v in fast}


vital = st.fixed_dictionaries(
    {
        "resourceType": st.sampled_from(["Observation", "Observation", "Encounter", "Condition"]),
        "status": st.sampled_from(["final", "amended", "cancelled", "entered-in-error", 3]),
        "code": st.sampled_from(
            [
                {"coding": [{"system": "http://loinc.org", "code": c}]}
                for c in ("8867-4", "8480-6", "2160-0", "58379-9", "85354-9")
            ]
            + [{"coding": []}, {"text": "x"}, "8867-4"]
        ),
        "subject": st.sampled_from(
            [
                {"reference": "Patient/a"},
                {"reference": "https://x/fhir/Patient/b"},
                {"reference": "Group/g"},
                {},
            ]
        ),
    },
    optional={
        "effectiveDateTime": st.one_of(
            st.datetimes(
                min_value=datetime(2025, 1, 1),
                max_value=datetime(2026, 2, 1),
                timezones=st.sampled_from(
                    [UTC, None, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]
                ),
            ).map(lambda d: d.isoformat()),
            st.sampled_from(
                [  # other texts: read by `parse_when` or by nothing
                    "2025-12-31",
                    "2025-12",
                    "2025",
                    "2025-12-31T10:00",
                    "2025-12-31T10:00:00.123456789Z",
                    "2025-13-01T00:00:00Z",
                    " 2025-12-31T10:00:00Z",
                    "2025-12-31T10:00:00Z ",
                    "2025-12-31 10:00:00",
                    "x",
                    "",
                    20251231,
                    None,
                ]
            ),
        ),
        "effectivePeriod": st.just({"start": "2025-12-31T23:00:00Z"}),
        "issued": st.just("2025-12-31T12:00:00+00:00"),
        "component": st.sampled_from(
            [[], [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}}]]
        ),
        "patient": st.just({"reference": "Patient/c"}),
    },
)


@settings(
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(resources=st.lists(vital, min_size=1, max_size=20), delta=st.integers(-48, 48))
def test_first_pass_answers_as_the_whole_line_does_for_generated_vitals(
    members: Members, paths: Paths, resources: list[dict[str, Any]], delta: int
) -> None:
    reader: FactReader = _reader(paths)
    as_of = synth.AS_OF + timedelta(hours=delta)
    fast = FirstPass(reader.first_pass_filter(as_of), reader.first_pass_class(as_of), members)
    whole = FirstPass(reader.first_pass_filter(as_of), reader.first_pass_class(as_of), None)
    for res in resources:  # one FirstPass for the stream: what it remembers must not leak
        line = orjson.dumps(res)
        assert outcome(fast.read, line) == outcome(whole.read, line)
        assert outcome(whole.read, line)[2] == (
            patient_key(res) is None or reader.may_read(res, as_of)
        )


def test_the_first_pass_reads_vital_times_around_the_cutoff_as_the_whole_line_does(
    members: Members, paths: Paths
) -> None:
    # heart rate and systolic pressure older than the vitals window are left behind: the fast
    # path compares their effectiveDateTime text without parsing the line
    reader = _reader(paths)
    fast = FirstPass(reader.first_pass_filter(T), reader.first_pass_class(T), members)
    whole = FirstPass(reader.first_pass_filter(T), reader.first_pass_class(T), None)
    kept = set()
    for code in ("8867-4", "8480-6"):
        for hours in range(-80, 81, 3):
            for minutes in (-1, 0, 1):
                at = T - timedelta(hours=hours, minutes=minutes)
                for zone in (UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))):
                    for text in (
                        at.astimezone(zone).isoformat(),
                        at.replace(tzinfo=None).isoformat(),
                    ):
                        line = orjson.dumps(
                            {
                                "resourceType": "Observation",
                                "status": "final",
                                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                                "subject": {"reference": "Patient/a"},
                                "effectiveDateTime": text,
                            }
                        )
                        got = outcome(fast.read, line)
                        assert got == outcome(whole.read, line), text
                        kept.add(got[2])
    assert kept == {True, False}


@pytest.mark.parametrize(
    "when",
    [
        b'"2025-12-31T10:00:00\\u005a"',  # an escaped Z
        b'"\\u0032025-12-31T10:00:00Z"',
        b'"2025-12-31T10:00:00Z", "issued": "2026-01-01T00:00:00Z"',
        b'"2025-12-31T10:00:00+01:00", "effectivePeriod": {"end": "2025-12-31"}',
        b'"2025-01-01T10:00:00\xc3\xa9"',  # not ASCII
        b"null",
    ],
)
def test_an_effective_time_the_first_pass_reads_whole(
    members: Members, paths: Paths, when: bytes
) -> None:
    reader = _reader(paths)
    for as_of in (T - timedelta(days=400), T, T + timedelta(days=400)):
        fast = FirstPass(reader.first_pass_filter(as_of), reader.first_pass_class(as_of), members)
        whole = FirstPass(reader.first_pass_filter(as_of), reader.first_pass_class(as_of), None)
        line = (
            b'{"resourceType": "Observation", "status": "final", "subject": {"reference": '
            b'"Patient/a"}, "code": {"coding": [{"system": "http://loinc.org", "code": '
            b'"8867-4"}]}, "effectiveDateTime": ' + when + b"}"
        )
        assert outcome(fast.read, line) == outcome(whole.read, line)


def test_members_gives_the_same_object_for_the_same_text(members: Members) -> None:
    # the caller's memos then neither hash nor compare a text seen before
    a = members(b'{"resourceType": "Observation", "subject": {"reference": "Patient/1"}}', GROUPS)
    b = members(b'{"subject": {"reference": "Patient/1"}, "resourceType": "Observation"}', GROUPS)
    assert a is not None and b is not None
    assert a[0] is b[0] and a[1] is b[1]
    # more texts than its table holds: each answer is still its own line's
    lines = [
        b'{"resourceType": "T%d", "subject": {"reference": "Patient/%d"}}' % (i, i)
        for i in range(5000)
    ]
    for i, line in enumerate(lines * 2):
        got = members(line, GROUPS)
        assert got is not None
        assert got[0] == b'"T%d"' % (i % 5000)
        assert got[1] == b'{"reference": "Patient/%d"}\0\0\0' % (i % 5000)
    big = b'{"resourceType": "%s"}' % (b"x" * 2000)
    assert members(big, GROUPS) == members(big, GROUPS)


def test_the_run_uses_the_extension_where_it_is_built(paths: Paths) -> None:
    fp = first_pass(paths, T)
    compiled = "build/compiled" in (sys.modules["pathway"].__file__ or "")
    assert (fp.members is not None) == compiled
