"""Time windows of PATHWAY.md §8.

"In the last N days" compares calendar days (UTC): 0 <= (as_of date - value date) <= N.
"In the last N months" compares calendar dates: the value date lies between (as_of date - N
months, clamped to the month's last day) and the as_of date, both included (§8: never a count of
days). "In the last N h" compares instants and includes its edge. A value after `as_of` is
never inside.
Partly known values (a date, a month) are ranges: `may_*` is true when some point of the range is
inside (used for findings that raise concern), `surely_*` when every possible point up to `as_of`
is inside (used for findings that reassure).
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from pathway.rules.model import When


class Window(NamedTuple):
    """A look-back window of whole days or calendar months (§8)."""

    n: int
    unit: str  # days | months


def days(n: int) -> Window:
    return Window(n, "days")


def months(n: int) -> Window:
    return Window(n, "months")


def months_before(day: date, n: int) -> date:
    """The same day n calendar months earlier; the month's last day where it has no such day."""
    total = day.year * 12 + (day.month - 1) - n
    year, month = divmod(total, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))


def after(day: date, window: Window) -> date:
    """The day a window's length after `day` (a due date)."""
    if window.unit == "months":
        return months_before(day, -window.n)
    return day + timedelta(days=window.n)


def window_start(as_of: datetime, window: Window) -> date:
    """The first calendar day inside the window (both ends are included)."""
    today = as_of.date()
    if window.unit == "months":
        return months_before(today, window.n)
    return today - timedelta(days=window.n)


def describe_window(window: Window) -> str:
    if window.unit == "months":
        return "12 months" if window.n == 12 else f"{window.n} months"
    return f"{window.n} days"


def may_be_within(when: When | None, as_of: datetime, window: Window) -> bool:
    if when is None:
        return False
    return _day(when.earliest) <= _day(as_of) and _day(when.latest) >= window_start(as_of, window)


def surely_within(when: When | None, as_of: datetime, window: Window) -> bool:
    if when is None:
        return False
    return window_start(as_of, window) <= _day(when.earliest) <= _day(as_of)


def may_be_within_months(when: When | None, as_of: datetime, n: int) -> bool:
    return may_be_within(when, as_of, Window(n, "months"))


def surely_within_months(when: When | None, as_of: datetime, n: int) -> bool:
    return surely_within(when, as_of, Window(n, "months"))


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
