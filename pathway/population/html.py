"""report.html: the population report a quality team reads without a data tool.

One self-contained file (no script, no web font, no CDN: it opens offline and can be mailed):
charts as inline SVG, each with an accessible name and description and, beside it, a table with
the same figures (screen readers, copy into a spreadsheet, colour-blind readers).
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from pathway.population.measures import (
    CASCADE,
    CASCADE_TITLES,
    MEASURES,
    STRATIFIERS,
    PopulationConfig,
    Tally,
)
from pathway.population.reports import rate

PHASES = ("assessment", "stabilization", "maintenance", "recovery", "not-applicable")
PHASE_TITLES = {
    "assessment": "Assessment and engagement",
    "stabilization": "Stabilization",
    "maintenance": "Maintenance",
    "recovery": "Recovery support",
    "not-applicable": "Not in the pathway",
}
SMALL = 10  # a rate over fewer patients than this is marked unstable
BAR = "#1f5f99"  # 7:1 on white; text is never drawn in colour alone
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:72rem;
padding:1.5rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.25rem}h2{margin-top:2.2rem;border-bottom:2px solid #ddd}
h3{margin:1.4rem 0 .4rem}.meta{color:#444}.figure{display:flex;flex-wrap:wrap;gap:1.5rem;
align-items:flex-start}.figure svg{flex:0 0 auto;max-width:100%}table{border-collapse:collapse;
font-variant-numeric:tabular-nums}caption{text-align:left;font-weight:600;padding-bottom:.3rem}
th,td{border:1px solid #bbb;padding:.2rem .5rem;text-align:right}th[scope=row],td.l,th.l{
text-align:left}thead th{background:#f0f0f0}.small{font-style:italic;color:#555}
.note{background:#fff8e1;border-left:4px solid #b7860b;padding:.5rem .8rem}
svg text{font-size:12px;fill:#1b1b1b}@media print{h2{break-before:page}}
"""


def _pct(den: int, num: int) -> str:
    r = rate(den, num)
    return "–" if r is None else f"{100 * r:.1f}%"


def _bars(
    chart_id: str, title: str, desc: str, items: list[tuple[str, int, float, str]], width: int = 640
) -> str:
    """Horizontal bars: (label, bar value, fraction 0..1 of the axis, text at the bar's end)."""
    label_w, row_h, pad = 330, 24, 8
    bar_w = width - label_w - 90
    height = pad * 2 + row_h * max(len(items), 1)
    parts = [
        f'<svg role="img" aria-labelledby="{chart_id}-t {chart_id}-d" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
    ]
    for i, (label, _value, fraction, text) in enumerate(items):
        y = pad + i * row_h
        w = max(0.0, min(1.0, fraction)) * bar_w
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{BAR}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}">{escape(text)}</text>'
        )
    parts.append(
        f'<line x1="{label_w}" y1="{pad}" x2="{label_w}" y2="{height - pad}" stroke="#555"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _table(caption: str, head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    out = [f"<table><caption>{escape(caption)}</caption><thead><tr>"]
    out.extend(
        f'<th scope="col"{" class=l" if i == 0 else ""}>{escape(h)}</th>'
        for i, h in enumerate(head)
    )
    out.append("</tr></thead><tbody>")
    for row in rows:
        cls = ' class="small"' if row and isinstance(row[-1], str) and row[-1].endswith("*") else ""
        out.append(f"<tr{cls}><th scope=row>{escape(str(row[0]))}</th>")
        out.extend(f"<td>{escape(str(c))}</td>" for c in row[1:])
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _figure(svg: str, table: str) -> str:
    return f'<div class="figure">{svg}{table}</div>'


def render(
    tally: Tally,
    as_of: datetime,
    pc: PopulationConfig,
    plan_definition: str,
    source: str,
    problems: list[str],
) -> str:
    total = tally.get("patients")
    when = as_of.isoformat().replace("+00:00", "Z")
    body: list[str] = [
        "<header><h1>OUD care pathway: population report</h1>",
        f'<p class="meta">As of <time datetime="{escape(when)}">{escape(when)}</time> · '
        f"{total:,} patients · rules {escape(plan_definition)} · source {escape(source)}</p>",
        '<p class="note">Decision support figures computed with the same rules as the '
        "point-of-care advice (PATHWAY.md §9). Counts of patients with a substance use "
        "disorder are 42 CFR Part 2 data even in aggregate: share small cells with care. "
        f"Rates over fewer than {SMALL} patients are marked * (unstable).</p></header><main>",
    ]

    # --- phases
    phases = [(p, tally.get("phase", p)) for p in PHASES]
    body.append('<section aria-labelledby="s-phase"><h2 id="s-phase">Phase of care</h2>')
    body.append(
        _figure(
            _bars(
                "phase",
                "Patients by phase of care",
                "Horizontal bars: number of patients in each phase.",
                [
                    (PHASE_TITLES[p], n, n / total if total else 0, f"{n:,} ({_pct(total, n)})")
                    for p, n in phases
                ],
            ),
            _table(
                "Patients by phase",
                ("Phase", "Patients", "Share"),
                [(PHASE_TITLES[p], f"{n:,}", _pct(total, n)) for p, n in phases],
            ),
        )
    )
    body.append("</section>")

    # --- cascade
    steps = [(s, tally.get("cascade", s)) for s in CASCADE]
    first = steps[0][1]
    body.append(
        '<section aria-labelledby="s-cascade"><h2 id="s-cascade">Cascade of care</h2>'
        "<p>Each step counts the patients of the step before who also meet it; the last step is "
        "the numerator of <em>MOUD retention at 180 days</em>.</p>"
    )
    body.append(
        _figure(
            _bars(
                "cascade",
                "Cascade of care",
                "Horizontal bars: patients in the pathway, with OUD evidence, on active MOUD, "
                "and retained 180 days.",
                [
                    (CASCADE_TITLES[s], n, n / first if first else 0, f"{n:,} ({_pct(first, n)})")
                    for s, n in steps
                ],
            ),
            _table(
                "Cascade of care",
                ("Step", "Patients", "Of those in the pathway"),
                [(CASCADE_TITLES[s], f"{n:,}", _pct(first, n)) for s, n in steps],
            ),
        )
    )
    body.append("</section>")

    # --- retention
    den, num = tally.rate("moud-retention-180")
    hist = [(b, tally.get("retention", str(b))) for b in pc.histogram]
    most = max((n for _, n in hist), default=0)
    body.append(
        '<section aria-labelledby="s-ret"><h2 id="s-ret">Retention in treatment</h2>'
        f"<p>{num:,} of {den:,} patients whose latest MOUD episode started 180 to 540 days ago "
        f"stayed in treatment 180 days or more ({_pct(den, num)}).</p>"
    )
    body.append(
        _figure(
            _bars(
                "retention",
                "Days in treatment of the latest MOUD episode",
                "Horizontal bars: patients of the retention measure by length of their episode.",
                [(pc.histogram_label(b), n, n / most if most else 0, f"{n:,}") for b, n in hist],
            ),
            _table(
                "Length of the latest MOUD episode",
                ("Days in treatment", "Patients"),
                [(pc.histogram_label(b), f"{n:,}") for b, n in hist],
            ),
        )
    )
    body.append("</section>")

    # --- measures
    body.append('<section aria-labelledby="s-m"><h2 id="s-m">Measures</h2>')
    overview = []
    for m in MEASURES:
        d, n = tally.rate(m.id)
        overview.append((m.title, f"{d:,}", f"{n:,}", _pct(d, n) + ("*" if 0 < d < SMALL else "")))
    body.append(_table("All measures", ("Measure", "Denominator", "Numerator", "Rate"), overview))
    for m in MEASURES:
        d, n = tally.rate(m.id)
        better = "higher is better" if m.improvement == "increase" else "lower is better"
        body.append(
            f'<h3 id="m-{m.id}">{escape(m.title)} <small>({escape(m.id)})</small></h3>'
            f"<p>Denominator: {escape(m.denominator)}. Numerator: {escape(m.numerator)}. "
            f"{better.capitalize()}. Overall {n:,} / {d:,} = {_pct(d, n)}.</p>"
        )
        for stratifier in STRATIFIERS:
            rows = []
            items = []
            for stratum in pc.strata(stratifier):
                sd, sn = tally.rate(m.id, stratifier, stratum)
                r = rate(sd, sn)
                label = pc.label(stratifier, stratum)
                flag = "*" if 0 < sd < SMALL else ""
                rows.append((label, f"{sd:,}", f"{sn:,}", _pct(sd, sn) + flag))
                items.append(
                    (label, sn, r or 0.0, f"{_pct(sd, sn)}{flag} of {sd:,}" if sd else "none")
                )
            cid = f"{m.id}-{stratifier}"
            body.append(
                _figure(
                    _bars(
                        cid,
                        f"{m.title} by {stratifier}",
                        f"Horizontal bars: the rate of {m.title} in each {stratifier} stratum, "
                        "0 to 100 percent.",
                        items,
                    ),
                    _table(
                        f"{m.title} by {stratifier}",
                        (stratifier.capitalize(), "Denominator", "Numerator", "Rate"),
                        rows,
                    ),
                )
            )
    body.append("</section>")

    # --- data quality
    quality = [
        ("Resources read", tally.get("resources")),
        # dropped after the first pass by both engines (FactReader.may_read with as_of)
        (
            "of them, resources no rule reads (vitals and labs outside every value set; heart "
            "rate and blood pressure older than the rules look)",
            tally.get("not-read"),
        ),
        ("Medications indexed", tally.get("medications")),
        ("Unreadable lines", tally.get("unreadable")),
        ("Resources of patients not in the input", tally.get("orphan-resources")),
        ("Patients whose evaluation failed", tally.get("failed")),
    ]
    no_patient = sorted(
        (k[1], v) for k, v in tally.counts.items() if len(k) == 2 and k[0] == "no-patient"
    )
    quality.extend((f"{t} (not tied to a patient)", n) for t, n in no_patient)
    body.append('<section aria-labelledby="s-q"><h2 id="s-q">Input</h2>')
    body.append(_table("What was read", ("Item", "Count"), [(k, f"{v:,}") for k, v in quality]))
    if problems:
        body.append("<h3>Problems</h3><ul>")
        body.extend(f"<li>{escape(p)}</li>" for p in problems)
        body.append("</ul>")
    body.append("</section></main>")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>OUD pathway population report, {escape(when[:10])}</title>"
        f"<style>{STYLE}</style></head><body>" + "".join(body) + "</body></html>\n"
    )
