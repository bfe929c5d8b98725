"""`pathway.build()` says which build runs: `make test` runs the suite on both."""

from __future__ import annotations

from pathlib import Path

import pathway
import pathway.cards
import pathway.rules.findings


def test_build_names_the_running_build() -> None:
    modules = (pathway.rules.findings, pathway.cards)
    extensions = [Path(m.__file__ or "").suffix == ".so" for m in modules]
    assert len(set(extensions)) == 1  # never half of one build and half of the other
    assert pathway.build() == ("compiled" if extensions[0] else "source")
