"""Unit tests of pathway/rules/timing.py: the time windows of PATHWAY.md §8.

"In the last N days" compares calendar days (UTC): 0 <= (as_of date - value date) <= N.
"In the last N h" compares instants and includes its edge. A value after as_of is never inside.
Partial dates ("2025", "2025-06", date-only) are ranges: may_* (some point inside) raises
concern, surely_* (every possible point up to as_of inside) reassures.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from pathway.fhir.facts import parse_when
from pathway.rules import timing
from pathway.rules.model import When

AS_OF = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


def at(value: str) -> When:
    w = parse_when(value)
    assert w is not None, value
    return w


def instant(delta: timedelta) -> When:
    t = AS_OF - delta
    return When(t, t)


# ------------------------------------------------------------------ parsing partial dates


@pytest.mark.parametrize(
    ("value", "earliest", "latest", "precision"),
    [
        (
            "2025",
            datetime(2025, 1, 1, tzinfo=UTC),
            datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            "year",
        ),
        (
            "2024-02",
            datetime(2024, 2, 1, tzinfo=UTC),
            datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
            "month",
        ),
        (
            "2025-06-08",
            datetime(2025, 6, 8, tzinfo=UTC),
            datetime(2025, 6, 8, 23, 59, 59, 999999, tzinfo=UTC),
            "day",
        ),
        (
            "2025-06-08T10:30:00Z",
            datetime(2025, 6, 8, 10, 30, tzinfo=UTC),
            datetime(2025, 6, 8, 10, 30, tzinfo=UTC),
            "instant",
        ),
        (
            "2025-06-08T10:30:00+02:00",
            datetime(2025, 6, 8, 8, 30, tzinfo=UTC),
            datetime(2025, 6, 8, 8, 30, tzinfo=UTC),
            "instant",
        ),
    ],
)
def test_partial_dates_are_ranges_in_utc(value, earliest, latest, precision):
    """§8: date-only values are calendar dates in UTC; partial dates span their period."""
    w = at(value)
    assert (w.earliest, w.latest, w.precision) == (earliest, latest, precision)
    assert w.date_only is (precision != "instant")


@pytest.mark.parametrize(
    "value", ["", "20", "2025-13", "2025-13-01", "2025-6-1", "yesterday", None, 2025, 20250615]
)
def test_unreadable_dates_are_none(value):
    """§1: missing or unreadable dates are unknown (None), never a guess."""
    assert parse_when(value) is None


# ------------------------------------------------------------------ calendar days


@pytest.mark.parametrize(
    ("value", "days", "inside"),
    [
        ("2025-06-15", 0, True),
        ("2025-06-14", 0, False),
        ("2025-06-08", 7, True),
        ("2025-06-07", 7, False),
        ("2025-05-16", 30, True),
        ("2025-05-15", 30, False),
        ("2024-06-15", 365, True),
        ("2024-06-14", 365, False),
        ("2025-06-16", 30, False),  # tomorrow: after as_of, never inside
    ],
)
@pytest.mark.parametrize("fn", [timing.may_be_within_days, timing.surely_within_days])
def test_days_window_compares_calendar_dates(fn, value, days, inside):
    """§8: "in the last N days": 0 <= (as_of date - value date) <= N, for date-only values."""
    assert fn(at(value), AS_OF, days) is inside


@pytest.mark.parametrize(
    ("value", "inside"),
    [
        ("2025-06-08T00:00:00Z", True),  # 7 days 12 h ago, but 7 calendar days
        ("2025-06-08T23:59:00Z", True),
        ("2025-06-07T23:59:00Z", False),  # 7 days 12 h 1 min ago: 8 calendar days
        ("2025-06-15T11:59:00Z", True),
        ("2025-06-16T00:00:00Z", False),  # the next calendar day
    ],
)
def test_days_window_on_instants_compares_calendar_days_too(value, inside):
    """§8: an instant in a days window is compared by its calendar day (UTC), not by 24 h
    periods. (An instant later on as_of's own day satisfies the §8 formula 0 <= diff; the rules
    drop such future data before any window, see test_phase.py.)"""
    assert timing.may_be_within_days(at(value), AS_OF, 7) is inside
    assert timing.surely_within_days(at(value), AS_OF, 7) is inside


def test_days_window_uses_utc_calendar_day():
    """§8: calendar dates in UTC: 2025-06-08T01:00+02:00 is 2025-06-07T23:00Z (8 days)."""
    assert timing.may_be_within_days(at("2025-06-08T01:00:00+02:00"), AS_OF, 7) is False


@pytest.mark.parametrize(
    ("value", "days", "may", "surely"),
    [
        ("2025", 30, True, False),
        ("2025", 200, True, True),
        ("2024", 365, True, False),  # 2024-06-15 .. 2024-12-31 may be inside
        ("2024", 530, True, False),  # 2024-01-01 is 531 days before as_of
        ("2024", 531, True, True),
        ("2023", 365, False, False),
        ("2025-06", 30, True, True),  # 2025-06-01 .. as_of: all inside 30 days
        ("2025-06", 0, True, False),
        ("2025-05", 30, True, False),  # 2025-05-16 .. 31 inside, 2025-05-01 not
        ("2025-04", 30, False, False),
        ("2026", 30, False, False),
    ],
)
def test_partial_dates_may_and_surely_within_days(value, days, may, surely):
    """Partial dates: may_* is true when some day of the range is inside, surely_* when every
    day of the range up to as_of is inside."""
    w = at(value)
    assert timing.may_be_within_days(w, AS_OF, days) is may
    assert timing.surely_within_days(w, AS_OF, days) is surely


def test_unknown_date_is_never_inside():
    """An unknown date is neither "may be" nor "surely" inside a window."""
    assert timing.may_be_within_days(None, AS_OF, 365) is False
    assert timing.surely_within_days(None, AS_OF, 365) is False
    assert timing.may_be_within_hours(None, AS_OF, 72) is False
    assert timing.surely_within_hours(None, AS_OF, 72) is False
    assert timing.not_after(None, AS_OF) is False


# ------------------------------------------------------------------ hour windows


@pytest.mark.parametrize(
    ("delta", "hours", "inside"),
    [
        (timedelta(0), 24, True),
        (timedelta(hours=24), 24, True),  # the edge is included (§8)
        (timedelta(hours=24, minutes=1), 24, False),
        (timedelta(hours=24, microseconds=1), 24, False),
        (timedelta(hours=12), 12, True),
        (timedelta(hours=12, minutes=1), 12, False),
        (timedelta(hours=72), 72, True),
        (timedelta(hours=72, minutes=1), 72, False),
        (timedelta(minutes=-1), 24, False),  # a minute after as_of
        (timedelta(hours=-5), 72, False),
    ],
    ids=[
        "now-24h",
        "24h-edge",
        "24h1m",
        "24h1us",
        "12h-edge",
        "12h1m",
        "72h-edge",
        "72h1m",
        "future-1min",
        "future-5h",
    ],
)
@pytest.mark.parametrize(
    "fn", [timing.may_be_within_hours, timing.surely_within_hours], ids=["may", "surely"]
)
def test_hours_window_compares_instants_and_includes_its_edge(fn, delta, hours, inside):
    """§8: hours-based windows compare instants; a value exactly N h old is "in the last N h";
    a value after as_of is never inside."""
    assert fn(instant(delta), AS_OF, hours) is inside


@pytest.mark.parametrize(
    ("value", "hours", "may", "surely"),
    [
        ("2025-06-15", 24, True, True),  # today: 00:00 .. as_of, all within 24 h
        ("2025-06-15", 6, True, False),  # today 00:00 is 12 h ago
        ("2025-06-14", 24, True, False),  # yesterday: 12:00 .. 23:59 inside, 00:00 not
        ("2025-06-13", 24, False, False),
        ("2025-06-12", 72, True, False),
        ("2025-06-16", 24, False, False),  # tomorrow
    ],
)
def test_date_only_values_in_hour_windows(value, hours, may, surely):
    """A date-only value in an hours window: it may be inside when part of its day is; it is
    surely inside only when the whole day up to as_of is."""
    w = at(value)
    assert timing.may_be_within_hours(w, AS_OF, hours) is may
    assert timing.surely_within_hours(w, AS_OF, hours) is surely


# ------------------------------------------------------------------ other helpers


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(0), True),
        (timedelta(microseconds=-1), False),
        (timedelta(days=3), True),
    ],
)
def test_not_after(delta, expected):
    """Future-dated data (after as_of) is not yet known."""
    assert timing.not_after(instant(delta), AS_OF) is expected


def test_not_after_partial_dates():
    """A partial date that may have started by as_of counts as known (its earliest point)."""
    assert timing.not_after(at("2025"), AS_OF) is True
    assert timing.not_after(at("2025-06-15"), AS_OF) is True
    assert timing.not_after(at("2025-06-16"), AS_OF) is False


@pytest.mark.parametrize(
    ("value", "days"),
    [
        ("2025-06-15", 0),
        ("2025-06-08", 7),
        ("2025-06-08T23:59:00Z", 7),
        ("2025-05-16", 30),
        ("2025-05", 15),
        ("2024", 166),
    ],
)
def test_days_before_counts_calendar_days_from_latest_possible_day(value, days):
    """days_before: calendar days from the value's latest possible day to as_of."""
    assert timing.days_before(at(value), AS_OF) == days


def test_sort_key_orders_unknown_first_then_by_latest():
    """Newest-first ordering: unknown dates sort as the oldest; a date-only day sorts after an
    instant earlier that day."""
    values = [None, at("2025-06-10T08:00:00Z"), at("2025-06-10"), at("2025-06-09")]
    ordered = sorted(values, key=timing.sort_key)
    assert ordered == [None, at("2025-06-09"), at("2025-06-10T08:00:00Z"), at("2025-06-10")]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2025-06-08T10:30:00Z", "2025-06-08 10:30 UTC"),
        ("2025-06-08T10:30:59.5+02:00", "2025-06-08 08:30 UTC"),
        ("2025-06-08", "2025-06-08"),
        ("2025-06", "2025-06"),
        ("2025", "2025"),
    ],
)
def test_describe(value, text):
    """Reasons quote dates at the precision they were recorded."""
    assert timing.describe(at(value)) == text
    assert timing.describe(None) == "date unknown"


def test_date_only_values_are_remembered_exactly_and_boundedly() -> None:
    """parse_when remembers date-only values (a population reads the same days again and
    again): the remembered answer is the one reading it afresh gives, for readable and
    unreadable values alike, and the memo never grows past its bound."""
    from pathway.fhir import facts

    values = ["2025", "2025-02", "2024-02-29", "2025-02-29", "2025-W01-1", " 2025-01", "20xx"]
    facts._parse_day.cache_clear()
    cold = [facts.parse_when(v) for v in values]
    warm = [facts.parse_when(v) for v in values]
    assert cold == warm == [facts._parse_when(v) for v in values]
    assert cold[2] is not None and cold[2].precision == "day" and cold[3] is None
    bound = facts._parse_day.cache_info().maxsize
    assert bound is not None
    for day in range(bound + 100):
        facts.parse_when((date(2000, 1, 1) + timedelta(days=day)).isoformat())
    assert facts._parse_day.cache_info().currsize == bound
    assert facts.parse_when("2024-02-29") == cold[2]
