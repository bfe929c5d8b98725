"""Render the patient-view card as a clinician sees it, and save a screenshot.

    .venv/bin/python scripts/card_screenshot.py [SCENARIO] [--out docs/img/card.png] [--width 720]

Asks the service (in-process, authentication off, an empty temporary database) for the
patient-view card of a worked scenario (default: buprenorphine day 45 with a fentanyl-positive
screen, the return-to-use case), renders the card the way a CDS client does (the detail's
Markdown through markdown-it with soft line breaks and tables, as the CDS Hooks Sandbox's
react-markdown does; the summary in the indicator's colour; source; suggestion and link buttons),
in Debian's Chromium driven by Playwright, and saves the card's screenshot. It prints the card's
rendered height in px and the detail's line count.

Needs `apt-get install chromium` and Playwright for Python (in the dev extra); Playwright's own
browser download is not used. PYTHONPATH decides which build of the service renders (e.g. an
exported older commit, to measure the card before a change).
"""

from __future__ import annotations

import argparse
import html
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIO = ROOT / "tests" / "data" / "scenarios" / "bup-day45-fentanyl-return-to-use.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COLOURS = {"info": "#0079be", "warning": "#ffae42", "critical": "#c00"}

# Styled after a CDS client's card (the CDS Hooks Sandbox's card list): a bordered box whose left
# edge has the indicator's colour, an 18 px bold summary in that colour, the source in small
# italics, the detail, then suggestions (filled buttons) and links (outlined buttons).
CSS = """
body { margin: 0; padding: 12px; background: #fff;
       font: 14px/1.45 "Liberation Sans", Arial, Helvetica, sans-serif; color: #1c1f21; }
.card { box-sizing: border-box; padding: 15px; background: #fcfcfc; border: 2px solid #ddd;
        border-left-width: 3px; border-radius: 4px; }
.summary { font-size: 18px; font-weight: 700; margin: 0 0 5px; }
.source { font-size: .85em; font-style: italic; margin: 0 0 5px; }
.source a { color: blue; text-decoration: none; }
.detail p { margin: 0 0 8px; }
.detail ul, .detail ol { margin: 0 0 8px; padding-left: 22px; }
.detail li { margin: 0; }
.detail table { border-collapse: collapse; margin: 0 0 8px; }
.detail th, .detail td { border: 1px solid #ccc; padding: 3px 6px; text-align: left;
                         vertical-align: top; }
.buttons { margin-top: 6px; }
.buttons span { display: inline-block; margin: 4px 6px 0 0; padding: 5px 10px; border-radius: 3px;
                font-size: 13px; }
.suggestion { background: #007cc3; color: #fff; }
.link { border: 1px solid #007cc3; color: #007cc3; }
"""


def pathway_card(scenario: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from cds_support import hook_request, prefetch_of

    from pathway import create_app
    from pathway.settings import Settings

    case = orjson.loads(scenario.read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_mapping(
            {
                "PATHWAY_AUTH_MODE": "off",
                "PATHWAY_DATABASE_URL": f"sqlite:///{tmp}/card.db",
                "PATHWAY_LOG_LEVEL": "ERROR",
                # the clinician's app enabled: its SMART link is on the card
                "PATHWAY_SMART_APP_CLIENT_ID": "oud-pathway-app",
                "PATHWAY_PUBLIC_URL": "https://cds.example.org",
            }
        )
        app = create_app({"settings": settings})
        moment = datetime.fromisoformat(case["asOf"].replace("Z", "+00:00"))
        app.extensions["pathway"].clock = lambda: moment
        request = hook_request("patient-view", "p1", prefetch_of(case["bundle"]))
        body = app.test_client().post("/cds-services/oud-pathway", json=request).get_json()
    (card,) = body["cards"]
    result: dict[str, Any] = card
    return result


def card_html(card: dict[str, Any]) -> str:
    markdown = MarkdownIt("commonmark", {"breaks": True, "html": False}).enable("table")
    colour = COLOURS.get(card["indicator"], "#333")
    source = card.get("source", {})
    buttons = [
        f'<span class="suggestion">{html.escape(s["label"])}</span>'
        for s in card.get("suggestions", [])
    ] + [f'<span class="link">{html.escape(x["label"])}</span>' for x in card.get("links", [])]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>OUD pathway card</title>
<style>{CSS}</style></head><body>
<div class="card" style="border-left-color: {colour}">
  <div class="summary" style="color: {colour}">{html.escape(card["summary"])}</div>
  <div class="source">Source: <a href="#">{html.escape(source.get("label", ""))}</a></div>
  <div class="detail">{markdown.render(card["detail"])}</div>
  <div class="buttons">{"".join(buttons)}</div>
</div></body></html>"""


def screenshot(page_html: str, out: Path, width: int) -> int:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width + 24, "height": 800})
            page.set_content(page_html)
            card = page.locator(".card")
            box = card.bounding_box()
            if box is None:
                raise RuntimeError("the card did not render")
            out.parent.mkdir(parents=True, exist_ok=True)
            card.screenshot(path=str(out))
            return round(box["height"])
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", type=Path, default=DEFAULT_SCENARIO)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "card.png")
    # 720 px: the width at which the card of 0.1 rendered the ~1,150 px measured in the
    # CDS Hooks Sandbox (issue 13), so heights here compare with the sandbox's
    parser.add_argument("--width", type=int, default=720, help="card width in px")
    args = parser.parse_args(argv)
    card = pathway_card(args.scenario)
    height = screenshot(card_html(card), args.out, args.width)
    lines = sum(1 for line in card["detail"].split("\n") if line.strip())
    print(
        f"{args.scenario.name}: card {args.width} px wide, {height} px tall; "
        f"detail {lines} lines; saved {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
