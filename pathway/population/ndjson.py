"""Bulk Data NDJSON in: the files, their lines, and whose each resource is.

A `$export` writes one or more files per resource type (`Observation.ndjson`,
`Observation.001.ndjson.gz`, ...), one resource a line. Any file name ending `.ndjson` or
`.ndjson.gz` is read, whatever its type prefix: the resource says what it is.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from pathway.fhir.bundle import FHIR_ID

SUFFIXES = (".ndjson", ".ndjson.gz")
# Where a resource of the Patient compartment names its patient (R4), in the order the reader
# checks them (pathway.fhir.facts.FactReader._belongs).
PATIENT_FIELDS = ("subject", "patient", "for", "beneficiary")


def input_files(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Every NDJSON file under `folder` (sorted, so that runs are reproducible), except those
    under `exclude` (the output folder, when it lies inside the input: a rerun must not read
    its own patients.ndjson)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    skip = exclude.resolve() if exclude is not None else None
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.name.endswith(SUFFIXES)
        and not p.name.startswith(".")
        and (skip is None or not p.resolve().is_relative_to(skip))
    )


GZIP_CHUNK = 256 * 1024  # compressed bytes read at a time (a few MB once inflated)
PLAIN_CHUNK = 1024 * 1024  # bytes of lines read at a time from a plain file


def raw_lines(path: Path, chunk_size: int = GZIP_CHUNK) -> Iterator[bytes]:
    """Every line of an NDJSON file, `.gz` or not, as bytes (a plain file's with its newline).

    A `.gz` file is inflated in chunks and split into lines here (GzipFile's own readline runs
    in Python for every line: a population run reads millions). Members of a multi-member file
    follow one another; zero padding between or after them is skipped. A file cut short gives
    every whole line before the cut, then raises EOFError (as GzipFile does); damaged data
    raises zlib.error."""
    for lines in line_chunks(path, chunk_size):
        yield from lines


def line_chunks(path: Path, chunk_size: int = GZIP_CHUNK) -> Iterator[list[bytes]]:
    """`raw_lines` a list at a time: a loop over millions of lines pays for the generator once
    a chunk, not once a line. The same lines, the same errors at the same place."""
    if not path.name.endswith(".gz"):
        with path.open("rb") as f:
            while lines := f.readlines(PLAIN_CHUNK):
                yield lines
        return
    with path.open("rb") as f:
        inflate = zlib.decompressobj(wbits=31)
        in_member = False  # a member has begun and its end has not been seen
        carry = b""
        while chunk := f.read(chunk_size):
            while chunk:
                if not in_member:
                    chunk = chunk.lstrip(b"\0")
                    if not chunk:
                        break
                    in_member = True
                data = inflate.decompress(chunk)
                if inflate.eof:
                    in_member = False
                    chunk = inflate.unused_data
                    inflate = zlib.decompressobj(wbits=31)
                else:
                    chunk = b""
                if data:
                    parts = (carry + data).split(b"\n")
                    carry = parts.pop()
                    if parts:
                        yield parts
        if in_member:
            raise EOFError("the compressed file ends inside a member")
        if carry:
            yield [carry]


def patient_id_of(ref: Any) -> str | None:
    """`Patient/x` or `https://…/Patient/x` -> x (a FHIR id), else None."""
    if type(ref) is not dict:
        return None
    target = ref.get("reference")
    if type(target) is not str:
        return None
    return _patient_id_of(target)


# reference -> patient id (or None), remembered for the references seen last: a patient's
# resources name their patient again and again, and a population run reads millions (a few MB)
@lru_cache(maxsize=16_384)
def _patient_id_of(target: str) -> str | None:
    if target.startswith("Patient/"):  # the common case: a relative reference
        pid = target[8:]
    else:
        parts = target.rstrip("/").split("/")
        if len(parts) < 2 or parts[-2] != "Patient":
            return None
        pid = parts[-1]
    return pid if FHIR_ID.fullmatch(pid) else None


def patient_key(resource: dict[str, Any]) -> str | None:
    """The patient a resource belongs to: a Patient's own id, else the first of
    subject/patient/for/beneficiary that references a Patient. None: no patient (Medication,
    Practitioner, ...) or a reference that is not to a Patient."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if type(rid) is str and FHIR_ID.fullmatch(rid) else None
    for key in PATIENT_FIELDS:
        value = resource.get(key)
        # as the reader decides (FactReader._belongs): the first with a string reference
        if value is not None and type(value) is dict and type(value.get("reference")) is str:
            return patient_id_of(value)
    return None


def medication_key(resource: dict[str, Any]) -> str | None:
    """A Medication's join key: `Medication/<id>`."""
    rid = resource.get("id")
    return f"Medication/{rid}" if isinstance(rid, str) and FHIR_ID.fullmatch(rid) else None


def referenced_medication(resource: dict[str, Any]) -> str | None:
    """The `Medication/<id>` a MedicationRequest points at (relative or absolute URL); None for
    a contained (`#x`) or coded medication."""
    if resource.get("resourceType") != "MedicationRequest":
        return None
    ref = resource.get("medicationReference")
    target = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(target, str) or target.startswith(("#", "urn:")):
        return None
    parts = target.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Medication" and FHIR_ID.fullmatch(parts[-1]):
        return f"Medication/{parts[-1]}"
    return None
