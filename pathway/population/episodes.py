"""The latest MOUD episode (PATHWAY.md §8 chain, §9 duration), from the pure findings.

`Findings.episode_start` covers only an episode that is still active; retention needs the latest
episode whether or not it ended, so this walks the same chain (the same statuses, the same
`moud_drug`, the same gap rule as pathway.rules.findings) from the latest MOUD request instead
of the latest active one. Pure: no clock, no I/O.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import NamedTuple

from pathway.rules import timing
from pathway.rules.findings import EPISODE_STATUSES, Findings, moud_drug


class Episode(NamedTuple):
    start: date  # the earliest authoredOn of the chain
    last: date  # the chain's latest authoredOn
    active: bool  # a request at the latest authoredOn is active
    end: date  # T when active, else last + tail days
    days: int  # end - start, calendar days
    refs: tuple[str, ...]


def latest_episode(findings: Findings, gap_days: int, tail_days: int) -> Episode | None:
    """§8: MOUD requests (active, completed, stopped) ordered by authoredOn; consecutive ones at
    most `gap_days` apart are one episode. §9: its duration runs from the start to T when a
    request at the latest authoredOn is active, otherwise to that authoredOn + `tail_days`.

    Partial dates (a month, a year) are read the conservative way for a quality measure: the
    start as late as it can be, the last request as early as it can be (never a longer episode
    than the data shows). `findings.orders` holds nothing authored after T."""
    chain = sorted(
        (
            o
            for o in findings.orders
            if o.status in EPISODE_STATUSES
            and o.authored is not None
            and moud_drug(o, findings.oud_evidence) is not None
        ),
        key=lambda o: timing.sort_key(o.authored),
    )
    if not chain:
        return None
    newest = chain[-1]
    assert newest.authored is not None
    members = [newest]
    first = newest
    for o in reversed(chain[:-1]):
        assert o.authored is not None
        assert first.authored is not None
        gap = (first.authored.earliest.date() - o.authored.latest.date()).days
        if gap > gap_days:
            break
        members.append(o)
        first = o
    assert first.authored is not None
    start = first.authored.latest.date()
    last_day = newest.authored.latest.date()
    active = any(
        o.status == "active" and o.authored is not None and o.authored.latest.date() == last_day
        for o in members
    )
    last = newest.authored.earliest.date()
    end = findings.as_of.date() if active else last + timedelta(days=tail_days)
    return Episode(
        start=start,
        last=last,
        active=active,
        end=end,
        days=(end - start).days,
        refs=tuple(o.ref for o in reversed(members)),
    )
