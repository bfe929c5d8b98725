"""A machine-speed probe printed by the benchmarks, so that figures taken on a shared or
virtual machine can be compared across runs: the same pure-Python loop (10 million additions),
best of three. A quiet modern core does it in about 0.3-0.6 s; on a busy or throttled host the
same code takes longer, and so does everything the benchmark measures."""

from __future__ import annotations

import time


def speed_probe() -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best


def describe() -> str:
    return f"machine probe: 10 M pure-Python additions in {speed_probe():.2f} s (best of 3)"
