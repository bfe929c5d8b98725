"""pathway.population.ndjson.raw_lines: the lines of an export file, `.gz` inflated in chunks.
It must give exactly the lines the gzip module gives, however the file is split into members and
however it is read in chunks; a file cut short gives the whole lines before the cut and then
EOFError; damaged data raises zlib.error."""

from __future__ import annotations

import gzip
import itertools
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathway.population import ndjson
from pathway.population.ndjson import patient_id_of, raw_lines

LINE = st.binary(max_size=80).map(lambda b: b.replace(b"\n", b" "))


def _write_members(path: Path, lines: list[bytes], cuts: list[int], newline_at_end: bool) -> bytes:
    text = b"\n".join(lines) + (b"\n" if newline_at_end and lines else b"")
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    blob = b"".join(gzip.compress(text[a:b]) for a, b in itertools.pairwise(points))
    path.write_bytes(blob)
    return text


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(LINE, max_size=40),
    cuts=st.lists(st.integers(0, 4000), max_size=4),
    newline_at_end=st.booleans(),
    chunk=st.sampled_from([1, 7, 64, 4096]),
)
def test_same_lines_as_the_gzip_module(
    tmp_path: Path, lines: list[bytes], cuts: list[int], newline_at_end: bool, chunk: int
) -> None:
    path = tmp_path / "x.ndjson.gz"
    text = _write_members(path, lines, cuts, newline_at_end)
    ours = [line.rstrip(b"\n") for line in raw_lines(path, chunk_size=chunk)]
    with gzip.open(path, "rb") as f:
        theirs = [line.rstrip(b"\n") for line in f]
    assert ours == theirs
    assert b"".join(ours) == text.replace(b"\n", b"")


def test_zero_padding_after_a_member_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "p.ndjson.gz"
    path.write_bytes(gzip.compress(b"a\nb\n") + b"\0" * 100 + gzip.compress(b"c\n") + b"\0" * 9)
    assert [x.strip() for x in raw_lines(path, chunk_size=16)] == [b"a", b"b", b"c"]


def test_a_file_cut_short_gives_the_lines_before_the_cut_then_eoferror(tmp_path: Path) -> None:
    text = b"".join(b'{"n":%d}\n' % i for i in range(20000))
    whole = gzip.compress(text)
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(whole[: len(whole) // 2])
    got: list[bytes] = []
    lines = raw_lines(path, chunk_size=1024)
    with pytest.raises(EOFError):
        got.extend(lines)
    assert 0 < len(got) < 20000
    assert got == text.split(b"\n")[: len(got)]  # whole lines only, in order


def test_damaged_data_raises_zlib_error(tmp_path: Path) -> None:
    whole = bytearray(gzip.compress(b"".join(b'{"n":%d}\n' % i for i in range(5000))))
    whole[len(whole) // 2 : len(whole) // 2 + 64] = b"\xff" * 64
    path = tmp_path / "bad.ndjson.gz"
    path.write_bytes(bytes(whole))
    with pytest.raises((zlib.error, EOFError)):
        list(raw_lines(path))


def test_plain_and_empty_files(tmp_path: Path) -> None:
    plain = tmp_path / "a.ndjson"
    plain.write_bytes(b"x\r\ny\n\nz")
    assert list(raw_lines(plain)) == [b"x\r\n", b"y\n", b"\n", b"z"]
    empty = tmp_path / "e.ndjson.gz"
    empty.write_bytes(b"")
    assert list(raw_lines(empty)) == []
    empty_member = tmp_path / "m.ndjson.gz"
    empty_member.write_bytes(gzip.compress(b""))
    assert list(raw_lines(empty_member)) == []


def test_line_chunks_are_the_lines_a_list_at_a_time(tmp_path: Path) -> None:
    """The first pass reads lists of lines (`line_chunks`); flattened, they are the file's
    lines, for a plain file larger than one chunk and for a gzipped one."""
    text = b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 50)) for i in range(60000))
    assert len(text) > 2 * ndjson.PLAIN_CHUNK
    plain = tmp_path / "a.ndjson"
    plain.write_bytes(text + b"last")
    chunks = list(ndjson.line_chunks(plain))
    assert len(chunks) >= 2 and all(chunks)
    assert [x for c in chunks for x in c] == [*text.splitlines(keepends=True), b"last"]
    packed = tmp_path / "a.ndjson.gz"
    packed.write_bytes(gzip.compress(text + b"last"))
    chunks = list(ndjson.line_chunks(packed, chunk_size=4096))
    assert len(chunks) >= 2 and all(chunks)
    assert [x for c in chunks for x in c] == [*text.split(b"\n")[:-1], b"last"]


def test_patient_references_read_the_same_when_remembered_and_after_forgetting() -> None:
    """patient_id_of remembers the references it read last (a bounded memo, cleared when
    full): the answer is the same the first time, the second time and after the memo was
    cleared, valid or not."""
    refs = {
        "Patient/p1": "p1",
        "https://ehr.example.org/fhir/Patient/p2": "p2",
        "Patient/p1/_history/3": None,  # a version: not how a resource names its patient
        "Patient/bad id": None,
        "Group/g": None,
        "Patient/": None,
        "Patient/" + "x" * 65: None,  # longer than a FHIR id may be
    }
    bound = ndjson._patient_id_of.cache_info().maxsize
    assert bound is not None
    filler = [f"Patient/f{i}" for i in range(bound + 10)]  # fills the memo
    for _ in range(3):
        assert {r: patient_id_of({"reference": r}) for r in refs} == refs
        assert {r: patient_id_of({"reference": r}) for r in refs} == refs  # remembered
        assert [patient_id_of({"reference": r}) for r in filler] == [r[8:] for r in filler]
        assert ndjson._patient_id_of.cache_info().currsize <= bound
