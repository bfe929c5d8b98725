"""Counts of property-based cases tried, printed at the end of the test run."""

from collections import Counter

COUNTS: Counter[str] = Counter()
