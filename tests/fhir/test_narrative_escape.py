"""The narrative's escaping is html.escape's (quote=True), kept local for the compiled build."""

from __future__ import annotations

import html

from hypothesis import given
from hypothesis import strategies as st

from pathway.fhir.careplan import escape


@given(st.text(max_size=200) | st.sampled_from(["<&>\"'", "a&amp;b"]))
def test_escape_is_html_escape(text: str) -> None:
    assert escape(text) == html.escape(text, quote=True)
