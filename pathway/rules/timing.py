"""Time windows of PATHWAY.md §8.

"In the last N days" compares calendar days (UTC): 0 <= (as_of date - value date) <= N.
"In the last N h" compares instants and includes its edge. A value after `as_of` is never inside.
Partly known values (a date, a month) are ranges: `may_*` is true when some point of the range is
inside (used for findings that raise concern), `surely_*` when every possible point up to `as_of`
is inside (used for findings that reassure).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from pathway.rules.model import When


def _day(value: datetime) -> date:
    return value.date()


def may_be_within_days(when: When | None, as_of: datetime, days: int) -> bool:
    if when is None:
        return False
    today = _day(as_of)
    return _day(when.earliest) <= today and _day(when.latest) >= today - timedelta(days=days)


def surely_within_days(when: When | None, as_of: datetime, days: int) -> bool:
    if when is None:
        return False
    today = _day(as_of)
    return today - timedelta(days=days) <= _day(when.earliest) <= today


def may_be_within_hours(when: When | None, as_of: datetime, hours: float) -> bool:
    if when is None:
        return False
    return when.earliest <= as_of and when.latest >= as_of - timedelta(hours=hours)


def surely_within_hours(when: When | None, as_of: datetime, hours: float) -> bool:
    if when is None:
        return False
    # A value cannot have happened after as_of, so a date-only value of today spans
    # 00:00 .. as_of: it is surely inside when its earliest possible instant is.
    return as_of - timedelta(hours=hours) <= when.earliest <= as_of


def not_after(when: When | None, as_of: datetime) -> bool:
    """The value could have happened by as_of (future-dated data is not yet known)."""
    return when is not None and when.earliest <= as_of


def days_before(when: When, as_of: datetime) -> int:
    """Calendar days from the value to as_of, counting from its latest possible day."""
    return (_day(as_of) - _day(when.latest)).days


_NEVER = datetime.min.replace(tzinfo=UTC)


def sort_key(when: When | None) -> tuple[datetime, datetime]:
    """Newest by latest possible instant, then by earliest; unknown dates sort oldest."""
    if when is None:
        return (_NEVER, _NEVER)
    return (when.latest, when.earliest)


def describe(when: When | None) -> str:
    """The value as a clinician reads it, to its known precision (always UTC)."""
    if when is None:
        return "date unknown"
    # isoformat and slicing: several times cheaper than strftime, and years stay 4 digits.
    if when.precision == "instant":
        return when.earliest.isoformat(" ", "minutes")[:16] + " UTC"
    text = when.earliest.date().isoformat()
    if when.precision == "day":
        return text
    if when.precision == "month":
        return text[:7]
    return text[:4]
