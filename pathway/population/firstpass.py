"""What a population run's first pass learns of each NDJSON line: its type, whose it is (a
Medication: its join key), and whether the reader may read it (`FactReader.may_read` as of the
evaluation time). Compiled with mypyc.

Most lines are measurements no rule reads (old vital signs, labs outside every value set): parsing
each whole only to drop it was most of a run's time. With the production build's C extension
(`pathway.population._firstpass.members`) a line is checked as JSON and only the text of the
members these answers depend on is cut out (`GROUPS`); the answers are remembered by that
text (a patient's reference, an Observation's code and status: the same text always parses to
the same value), so each distinct value is parsed and decided once, by the same Python functions
as the whole-line path (`patient_key`, `FactReader.first_pass_class`, `observed_before`).
Anything the extension is not sure of (see its source), a Patient or a Medication (their id
matters), or a line with no `resourceType` is parsed whole as before; without the extension (the
source build) every line is. tests/population/test_firstpass.py checks that both give the same
answers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import orjson

from pathway.fhir.facts import CLASS_FIELDS, WHEN_FIELDS, datetime_before, observed_before
from pathway.population.ndjson import PATIENT_FIELDS, medication_key, patient_key

Members = Callable[[bytes, tuple[tuple[str, ...], ...]], tuple[bytes, ...] | None]

# The members the answers depend on, in groups: the type, whose it is, the reader's first step,
# the time. The extension gives each group's texts joined by NUL, an absent member empty.
GROUPS: tuple[tuple[str, ...], ...] = (("resourceType",), PATIENT_FIELDS, CLASS_FIELDS, WHEN_FIELDS)
MEMO_SIZE = 65_536  # distinct values remembered (then forgotten all at once)
WHOLE = ("Patient", "Medication")  # types read whole: their id is their key


# `when` with its first member alone (WHEN_FIELDS: effectiveDateTime), a string
ONLY_FIRST = b'"' + b"\0" * (len(WHEN_FIELDS) - 1)
NO_ONE = ""  # not yet known (a patient id is never empty)


class UnreadableLine(ValueError):
    """A line that is not a FHIR resource in JSON (the reason is the message)."""


def native_members() -> Members | None:
    """The C extension's `members`, or None where it is not built (the source build)."""
    try:
        module = importlib.import_module("pathway.population._firstpass")
    except ImportError:
        return None
    return cast(Members, module.members)


class FirstPass:
    """`read(line)` -> (resourceType, key, keep): key is the Medication's `Medication/<id>` or
    the patient id (None: no patient); keep is False for a resource the reader would make
    nothing of as of the run's time. Raises UnreadableLine."""

    def __init__(
        self,
        may_read: Callable[[dict[str, Any]], bool] | None,
        read_class: Callable[[dict[str, Any]], bool | datetime] | None,
        members: Members | None,
    ) -> None:
        # `read_class` is `may_read` in its two steps (FactReader.first_pass_class); the fast
        # path needs both or neither
        self.may_read = may_read
        self.read_class = read_class
        self.members = members if (may_read is None) == (read_class is None) else None
        self._types: dict[bytes, Any] = {}
        self._patients: dict[bytes, str | None] = {}
        self._classes: dict[bytes, bool | datetime] = {}

    def read(self, line: bytes) -> tuple[str, str | None, bool]:
        members = self.members
        if members is None:
            return self.read_whole(line)
        m = members(line, GROUPS)
        if m is None or not m[0]:
            return self.read_whole(line)
        raw_type, whose, what, when = m
        rtype = self._types.get(raw_type)
        if rtype is None:
            rtype = orjson.loads(raw_type)
            if len(self._types) >= 1024:
                self._types.clear()
            self._types[raw_type] = rtype
        if type(rtype) is not str or rtype in WHOLE:
            return self.read_whole(line)
        pid = self._patients.get(whose, NO_ONE)
        if pid is NO_ONE:
            # patient_key reads no more than these (and the type, which is not Patient here)
            pid = patient_key(_parsed(whose, PATIENT_FIELDS))
            if len(self._patients) >= MEMO_SIZE:
                self._patients.clear()
            self._patients[whose] = pid
        read_class = self.read_class
        if pid is None or read_class is None:
            return rtype, pid, True
        found = self._classes.get(what)
        if found is None:
            found = read_class(_parsed(what, CLASS_FIELDS))
            if len(self._classes) >= MEMO_SIZE:
                self._classes.clear()
            self._classes[what] = found
        if type(found) is bool:
            return rtype, pid, found
        assert isinstance(found, datetime)
        if when.endswith(ONLY_FIRST) and when.startswith(b'"') and when.find(b"\\") < 0:
            # only an effectiveDateTime, a string without escapes: its text is its value
            before = datetime_before(when[1 : -len(ONLY_FIRST)].decode(), found)
            if before is not None:
                return rtype, pid, not before
        return rtype, pid, not observed_before(_parsed(when, WHEN_FIELDS), found)

    def read_whole(self, line: bytes) -> tuple[str, str | None, bool]:
        """The line parsed whole (the reference the fast path is checked against)."""
        try:
            res = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise UnreadableLine("not a JSON resource") from None
        if type(res) is not dict or type(res.get("resourceType")) is not str:
            raise UnreadableLine("no resourceType")
        rtype: str = res["resourceType"]
        if rtype == "Medication":
            return rtype, medication_key(res), True
        pid = patient_key(res)
        may_read = self.may_read
        return rtype, pid, True if pid is None or may_read is None else may_read(res)


def _parsed(texts: bytes, names: tuple[str, ...]) -> dict[str, Any]:
    """A group of `members` parsed: a resource with only these members."""
    out: dict[str, Any] = {}
    for name, text in zip(names, texts.split(b"\0"), strict=True):
        if text:
            out[name] = orjson.loads(text)
    return out
