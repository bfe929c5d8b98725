"""The local engine's loops over lines and patients (compiled with mypyc; pathway.population.local
orchestrates them, the Spark engine runs `evaluate_groups` too).

Phase 1, `partition_file`: each line read once (`FirstPass`), its patient found, the line
appended to a bucket file by a stable hash of the patient id (Medications to a spill file). A
resource the reader would make nothing of (`FactReader.may_read`) is counted, not carried: a
record `pid SEP #n` stands for n of them in a row of one patient (exports list a patient's
resources together, so one record usually stands for many). Phase 2, `group_bucket` and
`evaluate_groups`: one bucket's lines grouped by patient, each patient with its Patient
evaluated by `PatientJob` (the $apply code path); a group without its Patient (the export lacks
it) is counted, not evaluated, with every resource it had.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from pathway.population.firstpass import FirstPass, UnreadableLine
from pathway.population.measures import Tally
from pathway.population.ndjson import line_chunks
from pathway.population.patient import PatientJob, PatientResult, own_patient

MAX_PROBLEMS = 20  # unreadable lines listed by file and line number (never their content)
SEP = b"\t"  # patient id (a FHIR id: no tabs) SEP line
BUCKET_BUFFER = 256 * 1024  # bytes buffered per open bucket file
SKIPPED = b"#"  # pid SEP #n: n resources left behind (no JSON line begins with '#')


def partition_file(
    path: Path,
    work: Path,
    buckets: int,
    task: int,
    first: FirstPass | None = None,
) -> tuple[list[list[Any]], list[str], Path | None]:
    """One input file -> bucket files `b{k}.t{task}` and a Medication spill `m.t{task}`.
    Returns the tally of what was seen (as JSON rows), problems, and the spill file.

    `first` reads each line (pathway.population.firstpass; without one, every line is carried).
    A resource the reader would make nothing of is not carried to phase 2 (not parsed again); a
    `pid SEP #n` record counts each row of them, so that phase 2 still counts the resources of
    patients missing from the export."""
    tally = Tally()
    problems: list[str] = []
    handles: dict[int, IO[bytes]] = {}
    meds: IO[bytes] | None = None
    med_path = work / f"m.t{task}"
    n_lines = n_resources = n_meds = n_bad = n_unread = 0  # plain ints in the loop; tallied once
    read = (first if first is not None else FirstPass(None, None, None)).read
    crc32 = zlib.crc32
    run_pid = b""  # the row of left-behind resources being counted: whose, how many, where
    run_n = 0
    run_out: IO[bytes] | None = None
    last_pid = b""  # the patient of the line before, and its bucket file
    last_out: IO[bytes] | None = None
    try:
        n = 0
        for lines in line_chunks(path):  # a list at a time (see line_chunks)
            for raw in lines:
                n += 1
                line = raw.strip()
                if not line:
                    continue
                n_lines += 1
                try:
                    rtype, key, keep = read(line)
                except UnreadableLine as why:  # (not `e`: mypyc types a name once a function)
                    n_bad += 1
                    if len(problems) < MAX_PROBLEMS:
                        problems.append(f"{path.name}:{n}: {why}")
                    continue
                if key is None:
                    tally.note("no-patient", rtype)
                    continue
                if rtype == "Medication":
                    if meds is None:
                        meds = med_path.open("wb")
                    meds.write(key.encode() + SEP + line + b"\n")
                    n_meds += 1
                    continue
                pid_b = key.encode()
                if pid_b != last_pid:  # exports list a patient's resources together
                    k = crc32(pid_b) % buckets  # a stable hash of the patient id
                    found = handles.get(k)
                    if found is None:
                        name = work / f"b{k}.t{task}"
                        found = handles[k] = name.open("wb", buffering=BUCKET_BUFFER)
                    last_pid, last_out = pid_b, found
                out = last_out
                assert out is not None  # a patient id is never empty: set on the first line
                n_resources += 1
                if not keep:
                    n_unread += 1  # counted, not carried
                    if pid_b == run_pid:
                        run_n += 1
                        continue
                    if run_out is not None:
                        run_out.write(skipped_record(run_pid, run_n))
                    run_pid, run_n, run_out = pid_b, 1, out
                    continue
                out.write(b"".join((pid_b, SEP, line, b"\n")))
    except (OSError, EOFError, zlib.error) as e:
        problems.append(f"{path.name}: could not be read to the end ({type(e).__name__})")
        tally.note("unreadable-files")
    finally:
        if run_out is not None:  # the last row (also when the file was cut short)
            run_out.write(skipped_record(run_pid, run_n))
        for h in handles.values():
            h.close()
        if meds is not None:
            meds.close()
    for key, count in (
        ("lines", n_lines),
        ("resources", n_resources),
        ("medications", n_meds),
        ("unreadable", n_bad),
        ("not-read", n_unread),
    ):
        if count:
            tally.note(key, n=count)
    return tally.to_json(), problems, med_path if meds is not None else None


def skipped_record(pid: bytes, n: int) -> bytes:
    """The bucket record for n resources of one patient left behind (read by `group_bucket`)."""
    return b"".join((pid, SEP, SKIPPED, b"%d\n" % n))


def group_bucket(parts: list[Path]) -> tuple[dict[str, list[bytes]], dict[str, int]]:
    """A bucket's lines by patient, and how many resources of each were left behind."""
    groups: dict[str, list[bytes]] = {}
    skipped: dict[str, int] = {}
    for part in parts:
        with part.open("rb") as f:
            for raw in f:
                pid_b, line = raw.rstrip(b"\n").split(SEP, 1)
                pid = pid_b.decode()
                group = groups.get(pid)
                if group is None:
                    group = groups[pid] = []
                if line.startswith(SKIPPED):
                    skipped[pid] = skipped.get(pid, 0) + int(line[1:])
                else:
                    group.append(line)
    return groups, skipped


def evaluate_groups(
    job: PatientJob,
    groups: dict[str, list[bytes]],
    resolve: Callable[[str], bytes | None],
    tally: Tally,
    failed: list[str],
    skipped: dict[str, int] | None = None,
) -> Iterator[PatientResult]:
    """Each group that holds its Patient, in patient-id order. `skipped`: resources of each
    patient left behind after the first pass (counted for orphans; an empty line in a group
    counts one too)."""
    for pid in sorted(groups):
        group = groups[pid]
        result: PatientResult | None = None
        # else surely no Patient: not parsed. (`find`, not `in`: on 3.11 `bytes in bytes` first
        # tries the needle as an integer and raises and clears a TypeError every time.)
        if any(line.find(b'"Patient"') >= 0 for line in group):
            try:
                resources = job.resources([line for line in group if line], resolve)
                if own_patient(resources, pid) is not None:
                    result = job.evaluate(pid, resources)
            except Exception as e:  # one patient's bad data must not stop a population run
                tally.note("failed")
                failed.append(f"{pid}\t{type(e).__name__}")
                continue
        if result is None:
            tally.note("orphan-patients")
            n = len(group) + (skipped.get(pid, 0) if skipped is not None else 0)
            tally.note("orphan-resources", n=n)
            continue
        tally.add(result.measures, job.pc)
        yield result
