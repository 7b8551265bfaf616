"""The impact report: one self-contained HTML page with the charts of a replay or a simulation.

No network: the charts are inline SVG drawn by matplotlib (Agg, no display; fonts as paths),
the style is inline, there is no script. Charts: approval rate by product and by special group
before/after, the outcome transition matrix, reasons gained and lost, approvals per day
before/after; then the table of changed decisions (the page's only table).
"""
from __future__ import annotations

import html
import io
from typing import Callable

from service.usecases.impact import ROW_LIMIT, Impact

BEFORE, AFTER = "#8c8c8c", "#1f77b4"
OUTCOME_ORDER = ("approved", "cooling_off", "review", "rejected")
STYLE = ("body{font-family:sans-serif;margin:1.5em;max-width:1100px}figure{margin:1em 0}"
         "figcaption{font-weight:bold;margin-bottom:.3em}td,th{border:1px solid #ccc;padding:4px;"
         "vertical-align:top;font-size:13px}table{border-collapse:collapse}dt{font-weight:bold}"
         "dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "impact"})
    import matplotlib.pyplot as plt

    return plt


def _svg(draw: Callable, size: tuple[float, float]) -> str:
    """One chart as an inline <svg> element."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=size)
    try:
        draw(axes)
        figure.tight_layout()
        out = io.StringIO()
        figure.savefig(out, format="svg",   # no metadata block: nothing but the drawing
                       metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    finally:
        plt.close(figure)
    text = out.getvalue()
    return text[text.index("<svg"):]


def _empty(axes, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what}", ha="center", va="center")
    axes.set_axis_off()


def _rates(rows: list[tuple[str, int, float, float]], what: str) -> Callable:
    def draw(axes):
        if not rows:
            return _empty(axes, what)
        xs = range(len(rows))
        axes.bar([x - 0.2 for x in xs], [r[2] * 100 for r in rows], 0.4, label="before", color=BEFORE)
        axes.bar([x + 0.2 for x in xs], [r[3] * 100 for r in rows], 0.4, label="after", color=AFTER)
        axes.set_xticks(list(xs), [f"{r[0]}\n(n={r[1]:,})" for r in rows], fontsize=8)
        axes.set_ylabel("approval rate (%)")
        axes.set_ylim(0, 100)
        axes.legend()
    return draw


def _matrix(impact: Impact) -> Callable:
    names = [o for o in OUTCOME_ORDER if any(o in key for key in impact.matrix)]
    names += sorted({o for key in impact.matrix for o in key} - set(names))

    def draw(axes):
        if not names:
            return _empty(axes, "decisions")
        grid = [[impact.matrix[(old, new)] for new in names] for old in names]
        axes.imshow(grid, cmap="Blues")
        top = max(max(row) for row in grid) or 1
        for i, row in enumerate(grid):
            for j, count in enumerate(row):
                axes.text(j, i, f"{count:,}", ha="center", va="center",
                          color="white" if count > top / 2 else "black")
        axes.set_xticks(range(len(names)), names)
        axes.set_yticks(range(len(names)), names)
        axes.set_xlabel("after")
        axes.set_ylabel("before (the log)")
    return draw


def _reasons(impact: Impact) -> Callable:
    codes = sorted(set(impact.gained) | set(impact.lost),
                   key=lambda c: (-(impact.gained[c] + impact.lost[c]), c))[:20][::-1]

    def draw(axes):
        if not codes:
            return _empty(axes, "reasons gained or lost")
        ys = range(len(codes))
        axes.barh(list(ys), [impact.gained[c] for c in codes], color="#d62728", label="gained")
        axes.barh(list(ys), [-impact.lost[c] for c in codes], color="#2ca02c", label="lost")
        axes.set_yticks(list(ys), codes, fontsize=8)
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_xlabel("decisions (lost to the left, gained to the right)")
        axes.legend()
    return draw


def _days(impact: Impact) -> Callable:
    days = sorted({day for day, _ in impact.days})

    def draw(axes):
        if not days:
            return _empty(axes, "decisions")
        xs = range(len(days))
        axes.plot(list(xs), [impact.days[(d, "before")] for d in days], label="before", color=BEFORE,
                  marker=".")
        axes.plot(list(xs), [impact.days[(d, "after")] for d in days], label="after", color=AFTER,
                  marker=".")
        step = max(len(days) // 10, 1)
        axes.set_xticks(list(xs)[::step], days[::step], rotation=30, fontsize=8)
        axes.set_ylabel("approvals")
        axes.legend()
    return draw


def _summary(summary: dict) -> str:
    items = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>"
                    for k, v in summary.items())
    return f"<dl id=summary>{items}</dl>"


def _table(impact: Impact) -> str:
    e = html.escape

    def cell(change: dict, side: str) -> str:
        window = change[side].get("reapply_after")
        return e(f"{change[side]['outcome']}: {', '.join(change[side]['reasons']) or '-'}"
                 + (f" (window until {window})" if window else ""))

    def rules(names: list[str]) -> str:
        return e(", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else ""))

    rows = "".join(
        f"<tr><td>{c['line']}</td><td>{e(c['at'])}</td><td>{e(c['user_id'])}</td>"
        f"<td>{e(c['application_id'])}</td><td>{cell(c, 'old')}</td><td>{cell(c, 'new')}</td>"
        f"<td>{rules(c['changed_rules'])}</td></tr>\n" for c in impact.rows)
    note = (f"<p>The first {ROW_LIMIT:,} of {impact.changed:,} changed decisions, by line.</p>"
            if impact.changed > len(impact.rows) else "")
    return (f"<h2>Changed decisions ({impact.changed:,})</h2>{note}<table id=changes>"
            "<tr><th>line</th><th>time</th><th>user</th><th>application</th><th>old</th>"
            f"<th>new</th><th>rules</th></tr>\n{rows}</table>\n")


def render(impact: Impact, summary: dict, simulated: bool) -> str:
    kind = "simulation (state carried forward)" if simulated else "replay (recorded state)"
    charts = [("by-product", "Approval rate by product, before and after",
               _rates(impact.rates("products"), "products"), (9, 3.6)),
              ("by-group", "Approval rate by special group, before and after",
               _rates(impact.rates("groups"), "groups"), (9, 3.6)),
              ("transitions", "Outcome transitions (rows: the log; columns: the new rules)",
               _matrix(impact), (6, 4.5)),
              ("reasons", "Reasons gained and lost", _reasons(impact), (9, 5)),
              ("per-day", "Approvals per day, before and after", _days(impact), (9, 3.6))]
    figures = "".join(f"<figure class=chart id={name}><figcaption>{html.escape(title)}</figcaption>"
                      f"{_svg(draw, size)}</figure>\n" for name, title, draw, size in charts)
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>Impact: {kind}</title>"
            f"<style>{STYLE}</style><h1>Impact of the rules: {kind}</h1>"
            f"<p>{impact.decisions:,} decisions; approved counts approved and cooling_off.</p>"
            f"{_summary(summary)}\n{figures}{_table(impact)}</html>\n")


def write(path: str, impact: Impact, summary: dict, simulated: bool) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.write(render(impact, summary, simulated))
