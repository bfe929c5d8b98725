"""The patient-view card as a clinician reads it (issue 13): taken in at a glance.

For every worked scenario (tests/data/scenarios): the detail stays within MAX_DETAIL_LINES lines
(README, "The pathway card", says why that bound); the phase and why come first, then the
safety flags (critical first), then the most urgent tasks, then one short line per medication
option and per remaining task, grouped as due now / this week / later; the extension for
machines is the whole assessment, unchanged by the layout.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import AS_OF, BUP_NALOXONE_FILM, condition, day_ago, med, patient
from cds_support import hook_request, prefetch_of
from flask import Flask
from markdown_it import MarkdownIt

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.settings import Settings

ROOT = Path(__file__).parent.parent.parent
SCENARIOS = sorted((ROOT / "tests" / "data" / "scenarios").glob("*.json"))
MAX_DETAIL_LINES = 26  # the bound the README gives and justifies
MAX_ITEM_CHARS = 110  # an option's or a task's line, as rendered text: one line on the card
SEVERITY = {"info": 0, "warning": 1, "critical": 2}
GROUPS = ("Also due now", "This week", "Later")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, config: LoadedConfig) -> Flask:
    tmp = tmp_path_factory.mktemp("card")
    settings = Settings.from_mapping(
        {"PATHWAY_AUTH_MODE": "off", "PATHWAY_DATABASE_URL": f"sqlite:///{tmp / 'c.db'}"}
    )
    return create_app({"settings": settings, "config": config})


def card_for(app: Flask, bundle: dict[str, Any], as_of: str) -> dict[str, Any] | None:
    moment = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    app.extensions["pathway"].clock = lambda: moment
    request = hook_request("patient-view", "p1", prefetch_of(bundle))
    resp = app.test_client().post("/cds-services/oud-pathway", json=request)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    cards = resp.get_json()["cards"]
    return cards[0] if cards else None


def text_of(line: str) -> str:
    """A Markdown line as the clinician reads it (markers and escapes removed)."""
    line = re.sub(r"^(- |\d+\. )", "", line)
    return re.sub(r"\\(.)", r"\1", line.replace("**", "").replace("_", ""))


TASK_LINE = re.compile(r"^(.+?)(?: \((?:urgent|asap|stat)\))?, (?:due|overdue)")


def task_name(line: str) -> str | None:
    """The task a line names ('- Name (urgent), due …' or '1. Name, due …: why')."""
    if not re.match(r"^(- |\d\. )", line):
        return None
    found = TASK_LINE.match(text_of(line))
    return found.group(1) if found else None


def due_rank(code_due: tuple[date, str], today: date) -> tuple[int, date]:
    due, priority = code_due
    if due <= today or priority != "routine":
        return (0, due)
    return (1 if due <= today + timedelta(days=7) else 2, due)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_scenario_card_is_short_and_urgent_first(app: Flask, path: Path) -> None:
    case = orjson.loads(path.read_bytes())
    card = card_for(app, case["bundle"], case["asOf"])
    if case["expect"]["phase"] == "not-applicable":
        assert card is None
        return
    assert card is not None
    assert len(card["summary"]) < 140
    lines = [line for line in card["detail"].split("\n") if line.strip()]
    assert len(lines) <= MAX_DETAIL_LINES, card["detail"]

    # the decision behind it, from the same evaluation the hook made
    svc = app.extensions["pathway"]
    moment = datetime.fromisoformat(case["asOf"].replace("Z", "+00:00"))
    d = svc.evaluator.evaluate(case["bundle"], moment, patient_id="p1").decision
    today = moment.date()
    names = svc.evaluator.writer.action_display

    # 1. the phase and why, on one line
    assert lines[0].startswith("**") and d.phase_reasons[0][:20] in text_of(lines[0])
    headings = [line for line in lines if line.startswith("**") and line.endswith("**")]
    order = ["**Safety**", "**Next steps**"] + [f"**{g}**" for g in GROUPS]
    positions = [lines.index(h) for h in order if h in headings]
    assert positions == sorted(positions)
    options_at = next(i for i, x in enumerate(lines) if x.startswith("**Medication options**"))

    # 2. safety flags right after the phase, critical first
    if d.flags:
        at = lines.index("**Safety**")
        assert at == 1
        shown = lines[at + 1 : at + 1 + len(d.flags)]
        ranks = [2 if "CRITICAL" in x else 1 if "Warning" in x else 0 for x in shown]
        assert ranks == sorted(ranks, reverse=True)
        assert sorted(ranks) == sorted(SEVERITY[f.indicator] for f in d.flags)
    else:
        assert "**Safety**" not in lines

    # 3. the two or three most urgent tasks before the options; the rest after, grouped
    due = {names[t.code]: (t.due, t.priority) for t in d.tasks}
    listed = {name: i for i, x in enumerate(lines) if (name := task_name(x))}
    assert sorted(listed) == sorted(due)  # every task once
    if d.tasks:
        at = lines.index("**Next steps**")
        first = [t for t, i in listed.items() if at < i < options_at]
        assert len(first) == min(3, len(due))
        later = [t for t in due if t not in first]
        worst_first = max(due_rank(due[t], today) for t in first)
        assert all(worst_first <= due_rank(due[t], today) for t in later)
        for t in later:  # under its group's heading, after the options
            assert listed[t] > options_at
            group = GROUPS[due_rank(due[t], today)[0]]
            heading = max(i for i, x in enumerate(lines[: listed[t]]) if x.startswith("**"))
            assert lines[heading] == f"**{group}**"

    # 4. one short line per medication option: name, status, first reason
    option_lines = [x for x in lines[options_at + 1 :] if x.startswith("- **")]
    assert [re.match(r"- \*\*(\w+)\*\*", x).group(1) for x in option_lines] == [  # type: ignore[union-attr]
        m.medication for m in d.medications
    ]
    for line in lines:
        if line.startswith(("- ", "1. ", "2. ", "3. ")) and not line.startswith("- **CRITICAL"):
            assert len(text_of(line)) <= MAX_ITEM_CHARS, line

    # 5. the machines' assessment is all there
    assert card["extension"]["io.github.oud-pathway.assessment"] == svc.cards.assessment(d)


def test_the_card_renders_as_safe_markdown(app: Flask) -> None:
    """Text from the EHR (a drug's display name) cannot become a link, an image or HTML in the
    card, even in a client that renders HTML in Markdown (the CDS Hooks Sandbox does)."""
    evil = "x) <img src=x onerror=alert(1)> [click](https://evil.example) `code` (y"
    bup = med(BUP_NALOXONE_FILM, authored=day_ago(40), display=evil)
    bup["medicationCodeableConcept"]["text"] = evil
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (patient(), condition(), bup)],
    }
    card = card_for(app, bundle, AS_OF.isoformat())  # the day day_ago counts from
    assert card is not None
    assert "\\<img src=x onerror=alert" in card["detail"]  # the name is there, escaped
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(card["detail"])
    assert "<img" not in rendered and "href=" not in rendered and "<code>" not in rendered
    assert "<table" not in rendered  # options are a list now, not a table whose cells wrap


def test_the_app_link_comes_first_and_the_detail_points_to_it(app: Flask) -> None:
    case = orjson.loads(SCENARIOS[0].read_bytes())
    svc = app.extensions["pathway"]
    moment = datetime.fromisoformat(case["asOf"].replace("Z", "+00:00"))
    ev = svc.evaluator.evaluate(case["bundle"], moment, patient_id="p1")
    link = {
        "label": "Open the pathway app",
        "url": "https://cds.example.org/app/launch",
        "type": "smart",
    }
    card = svc.cards.pathway_card(ev.decision, ev.notes, ev.evidence_dates, app_link=link)
    assert card["links"][0] == link
    assert [x["url"] for x in card["links"][1:]] == [x["url"] for x in svc.cards.s.links]
    assert "**open the app** (link below)" in card["detail"]
    plain = svc.cards.pathway_card(ev.decision, ev.notes, ev.evidence_dates)
    assert plain["links"] == svc.cards.s.links and "link below" not in plain["detail"]


def test_tasks_due_later_give_way_when_the_card_would_pass_its_bound(app: Flask) -> None:
    """However many tasks a decision plans, the detail keeps within the bound: the tasks due
    later than a week are cut first, and counted on one line."""
    case = orjson.loads(next(p for p in SCENARIOS if "nlx-suitable" in p.name).read_bytes())
    svc = app.extensions["pathway"]
    moment = datetime.fromisoformat(case["asOf"].replace("Z", "+00:00"))
    ev = svc.evaluator.evaluate(case["bundle"], moment, patient_id="p1")
    d = ev.decision
    today = moment.date()
    extra = [
        d.tasks[-1]._replace(code=f"task-{i}", due=today + timedelta(days=20 + i))
        for i in range(15)
    ]
    crowded = dataclasses.replace(d, tasks=(*d.tasks, *extra))
    card = svc.cards.pathway_card(crowded, ev.notes, ev.evidence_dates)
    lines = [x for x in card["detail"].split("\n") if x.strip()]
    assert len(lines) == MAX_DETAIL_LINES
    (more,) = [x for x in lines if " more, due by " in x]
    last = max(t.due for t in crowded.tasks).isoformat()
    assert more.startswith("- ") and more.endswith(f"due by {last} (all in the care plan)")
    hidden = int(more[2:].split(" ")[0])
    assert sum(1 for x in lines if task_name(x) and x != more) + hidden == len(crowded.tasks)
    assert card["extension"]["io.github.oud-pathway.assessment"]["tasks"] == [
        t.code for t in crowded.tasks
    ]


def test_the_bound_is_the_one_the_readme_gives() -> None:
    from pathway.cards import MAX_DETAIL_LINES as CODE_BOUND

    readme = (ROOT / "README.md").read_text()
    assert CODE_BOUND == MAX_DETAIL_LINES
    assert f"at most **{MAX_DETAIL_LINES} lines**" in readme
