"""Counts of property-based cases tried, and of security attacks played, printed at the end of the
test run."""

from collections import Counter

COUNTS: Counter[str] = Counter()
ATTACKS: Counter[str] = Counter()  # tests/ops/test_security_attacks.py, one per attack played
