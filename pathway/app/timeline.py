"""The last 12 months of a patient, as rows of marks for the page's SVG and its data table.

Pure: facts and findings in, plain values out. What counts as a MOUD order and as an illicit
screen comes from the rules (pathway.rules.findings), never decided again here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pathway.rules.config import PathwayConfig
from pathway.rules.findings import EPISODE_STATUSES, Findings, moud_drug
from pathway.rules.model import Facts, MedicationOrder, Result, When

WINDOW_DAYS = 365
MOUD_DRUGS = ("buprenorphine", "methadone", "naltrexone")
MEASURE_ROWS = (("cows", "COWS"), ("qtc", "QTc (ms)"), ("alt", "ALT (U/L)"), ("ast", "AST (U/L)"))


@dataclass(frozen=True, slots=True)
class Mark:
    row: str  # the row's label
    start: date
    end: date | None  # bars only
    label: str  # what the data table says
    tone: str  # css class: episode | positive | illicit | negative | unknown | value | high | rx
    ref: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class Timeline:
    start: date
    end: date
    rows: tuple[str, ...]
    marks: tuple[Mark, ...]

    def x(self, d: date, width: float) -> float:
        span = max((self.end - self.start).days, 1)
        return round(width * min(max((d - self.start).days, 0), span) / span, 1)

    def months(self) -> list[date]:
        out: list[date] = []
        d = date(self.start.year, self.start.month, 1)
        while d <= self.end:
            if d >= self.start:
                out.append(d)
            d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
        return out


def _day(w: When | None) -> date | None:
    return w.earliest.date() if w is not None else None


def _episodes(
    orders: tuple[MedicationOrder, ...], oud: bool, as_of: datetime, cfg: PathwayConfig
) -> list[Mark]:
    """Per drug, MOUD requests chained by authoredOn (consecutive ones at most the pathway's
    episode gap apart, as in PATHWAY §8); a bar runs from the first request of a chain to the
    last one, or to now while the last one is active."""
    out: list[Mark] = []
    gap = cfg.phase.episode_gap_days
    for drug in MOUD_DRUGS:
        chain = sorted(
            (
                o
                for o in orders
                if o.authored is not None
                and o.status in EPISODE_STATUSES
                and moud_drug(o, oud) == drug
            ),
            key=lambda o: o.authored.earliest if o.authored else as_of,
        )
        groups: list[list[MedicationOrder]] = []
        for o in chain:
            assert o.authored is not None
            if groups:
                last = groups[-1][-1].authored
                assert last is not None
                if (o.authored.earliest.date() - last.latest.date()).days <= gap:
                    groups[-1].append(o)
                    continue
            groups.append([o])
        for g in groups:
            first, last = g[0].authored, g[-1].authored
            assert first is not None
            assert last is not None
            active = g[-1].status == "active"
            end = as_of.date() if active else last.latest.date()
            n = len(g)
            label = (
                f"{drug}: {n} request{'s' * (n != 1)}, {first.earliest.date().isoformat()} to "
                + ("now (active)" if active else f"{end.isoformat()} ({g[-1].status})")
            )
            out.append(
                Mark(drug.capitalize(), first.earliest.date(), end, label, "episode", g[-1].ref)
            )
    return out


def build(
    facts: Facts, findings: Findings, as_of: datetime, cfg: PathwayConfig, days: int = WINDOW_DAYS
) -> Timeline:
    end = as_of.date()
    start = end - timedelta(days=days)
    marks: list[Mark] = [
        m
        for m in _episodes(findings.orders, findings.oud_evidence, as_of, cfg)
        if m.end is None or m.end >= start
    ]
    illicit = {s.ref for s in findings.illicit}
    for s in findings.screens:
        d = _day(s.when)
        if d is None or d < start or d > end:
            continue
        if s.result is Result.POSITIVE:
            tone, word = (
                ("illicit", "positive, illicit")
                if s.ref in illicit
                else ("positive", "positive, explained by a prescription")
            )
        elif s.result is Result.NEGATIVE:
            tone, word = "negative", "negative"
        else:
            tone, word = "unknown", "result unknown"
        row = f"Screen: {s.analyte}"
        marks.append(Mark(row, d, None, f"{s.analyte} {word}", tone, s.ref, word))
    latest = findings.latest
    for m in findings.measurements:
        d = _day(m.when)
        labels = dict(MEASURE_ROWS)
        if m.kind not in labels or d is None or d < start or d > end:
            continue
        value = "unknown" if m.value is None else f"{m.value:g}"
        high = _high(m.kind, m.value, m.upper_limit, cfg)
        tone = "high" if high else "value"
        extra = " (high)" if high else ""
        if latest.get(m.kind) is m:
            extra += " (latest)"
        marks.append(
            Mark(labels[m.kind], d, None, f"{labels[m.kind]} {value}{extra}", tone, m.ref, value)
        )
    for o in findings.orders:
        d = _day(o.authored)
        if "naloxone-rescue" not in o.groups or d is None or d < start or d > end:
            continue
        name = o.name or "naloxone"
        marks.append(Mark("Naloxone", d, None, f"{name} ({o.status})", "rx", o.ref, o.status))
    order = ["Buprenorphine", "Methadone", "Naltrexone"]
    screens = sorted({m.row for m in marks if m.row.startswith("Screen: ")})
    rows = [r for r in order if any(m.row == r for m in marks)]
    rows += screens
    rows += [label for _, label in MEASURE_ROWS if any(m.row == label for m in marks)]
    if any(m.row == "Naloxone" for m in marks):
        rows.append("Naloxone")
    marks.sort(key=lambda m: (rows.index(m.row), m.start))
    return Timeline(start, end, tuple(rows), tuple(marks))


def _high(kind: str, value: float | None, upper: float | None, cfg: PathwayConfig) -> bool:
    if value is None:
        return False
    if kind == "cows":
        return value >= cfg.cows.withdrawal_min
    if kind == "qtc":
        return value >= cfg.methadone.qtc_caution_min_ms
    if kind in ("alt", "ast") and upper:
        return value > upper
    return False
