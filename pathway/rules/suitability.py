"""PATHWAY.md §4 (with §8): one status per medication option, with reasons, evidence and rule
ids. The rules live one module per option in pathway/rules/options/; this module gathers them
for callers that want the whole set."""

from __future__ import annotations

from pathway.rules.options.adjuncts import clonidine, lofexidine
from pathway.rules.options.buprenorphine import buprenorphine
from pathway.rules.options.common import (
    PRECEDENCE,
    current_qtc,
    liver_ratio,
    negative_opioid_screen,
    recent_full_agonist_exposure,
)
from pathway.rules.options.methadone import methadone
from pathway.rules.options.naloxone import naloxone
from pathway.rules.options.naltrexone import naltrexone

__all__ = [
    "PRECEDENCE",
    "buprenorphine",
    "clonidine",
    "current_qtc",
    "liver_ratio",
    "lofexidine",
    "methadone",
    "naloxone",
    "naltrexone",
    "negative_opioid_screen",
    "recent_full_agonist_exposure",
]
