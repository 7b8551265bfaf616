"""The impact report: one self-contained HTML page with the charts of a replay or a simulation.

No network: the charts are inline SVG drawn by matplotlib (Agg, no display; fonts as paths),
the style is inline, there is no script. It opens with what changed in the rules when the
candidate's version differs from the log's (the same words as `loan-decide rules diff`), then
the headline table (approval rate per product and special group, before and after, the change
in percentage points), the summary and the rules whose results changed; then the charts:
approval rate by product and by special group before/after, the outcome transition matrix,
reasons gained and lost, approvals per day before/after; last the table of changed decisions.
Everything shown is written out as text (no Python dict or repr) and escaped.
"""
from __future__ import annotations

import html
import io
from typing import Any, Callable, Sequence

from service.usecases.impact import ROW_LIMIT, Impact, VersionChange
from service.usecases.simulate import STATE_REFUSALS

BEFORE, AFTER = "#8c8c8c", "#1f77b4"
OUTCOME_ORDER = ("approved", "cooling_off", "review", "rejected")
STYLE = ("body{font-family:sans-serif;margin:1.5em;max-width:1100px}figure{margin:1em 0}"
         "figcaption{font-weight:bold;margin-bottom:.3em}td,th{border:1px solid #ccc;padding:4px;"
         "vertical-align:top;font-size:13px}table{border-collapse:collapse}dt{font-weight:bold}"
         "dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}"
         "td.num{text-align:right;font-variant-numeric:tabular-nums}.up{color:#2ca02c}"
         ".down{color:#d62728}#rules-diff ul{margin:.2em 0 .6em;font-family:monospace;font-size:13px}"
         "#rules-diff h3{margin:.5em 0 0;font-size:15px}")


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


def _text(value: Any) -> str:
    """A summary value in words: mappings as `name: value` lists, `a->b` as `a → b`."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{str(k).replace('->', ' → ')}: {_text(v)}" for k, v in value.items()) or "none"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _summary(summary: dict) -> str:
    """The replay's summary fields, but `rules` (its own table below)."""
    items = "".join(f"<dt>{html.escape(k.replace('_', ' '))}</dt><dd>{html.escape(_text(v))}</dd>"
                    for k, v in summary.items() if k != "rules")
    return f"<h2>Summary</h2><dl id=summary>{items}</dl>"


def _rules_diff(changes: Sequence[VersionChange]) -> str:
    """What changed in the rules, per pair of the log's version and the candidate's."""
    e = html.escape
    parts = []
    for change in changes:
        head = (f"<h2>Rules changed: {e(change.old_version[:19])}… → {e(change.new_version[:19])}…"
                f" ({change.decisions:,} decisions)</h2>")
        if change.diff is None:
            parts.append(f"{head}<p class=unavailable>Not shown: {e(change.unavailable or '')}</p>")
            continue
        body = "".join(f"<h3 data-rule-id=\"{e(rule.rule_id)}\">{e(rule.rule_id)}"
                       f"{'' if rule.status == 'changed' else ' (' + e(rule.status) + ')'}</h3>"
                       f"<ul>{''.join(f'<li>{e(line)}</li>' for line in rule.lines())}</ul>"
                       for rule in change.diff.rules)
        if change.diff.settings:
            body += ("<h3>Settings outside the rules</h3><ul>"
                     + "".join(f"<li>{e(s.line())}</li>" for s in change.diff.settings) + "</ul>")
        if not change.diff.changes_meaning:
            body += "<p>No rule or setting changed: the files differ in comments or layout only.</p>"
        files = ", ".join(change.diff.files_changed) or "none"
        parts.append(f"{head}{body}<p>Files changed: {e(files)}</p>")
    return f"<section id=rules-diff>{''.join(parts)}</section>\n" if parts else ""


def _headline(impact: Impact) -> str:
    """Approval rate per product and special group, before → after, in percentage points."""
    def row(rate) -> str:
        points = rate.change_points
        mark = "up" if points > 0.05 else "down" if points < -0.05 else "same"
        return (f"<tr class={rate.segment}><td>{rate.segment}</td><td>{html.escape(rate.name)}</td>"
                f"<td class=num>{rate.decisions:,}</td><td class=num>{rate.before:.1%}</td>"
                f"<td class=num>{rate.after:.1%}</td><td class=\"num {mark}\">"
                f"{'0.0' if mark == 'same' else format(points, '+.1f')} pp</td></tr>")

    rows = "".join(row(rate) for rate in impact.headline())
    return ("<h2>Approval rate, before and after</h2><table id=headline><tr><th>by</th><th>name</th>"
            "<th>decisions</th><th>before</th><th>after</th><th>change</th></tr>"
            f"{rows}</table>\n")


def _rule_counts(impact: Impact, summary: dict) -> str:
    """The rules whose results changed, with counts; what a refusal by state left out."""
    counts = sorted(summary.get("rules", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td class=num>{count:,}</td></tr>"
                   for name, count in counts)
    table = (f"<table id=rules><tr><th>rule</th><th>decisions</th></tr>{rows}</table>"
             if rows else "<p>No rule's result changed.</p>")
    note = (f"<p id=left-out>{impact.by_state:,} changed decisions are refused by state on one side "
            f"({', '.join(sorted(STATE_REFUSALS))}): no rule ran there, so they are not counted "
            "here (see state refusals in the summary).</p>" if impact.by_state else "")
    return f"<h2>Rules whose results changed</h2>{table}{note}\n"


def _table(impact: Impact) -> str:
    e = html.escape

    def cell(change: dict, side: str) -> str:
        window = change[side].get("reapply_after")
        return e(f"{change[side]['outcome']}: {', '.join(change[side]['reasons']) or '-'}"
                 + (f" (window until {window})" if window else ""))

    def rules(change: dict) -> str:
        names = change["changed_rules"]
        if not names and STATE_REFUSALS & {*change["old"]["reasons"], *change["new"]["reasons"]}:
            return "none compared: refused by state"
        return e(", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
                 or "-")

    rows = "".join(
        f"<tr><td>{c['line']}</td><td>{e(c['at'])}</td><td>{e(c['user_id'])}</td>"
        f"<td>{e(c['application_id'])}</td><td>{cell(c, 'old')}</td><td>{cell(c, 'new')}</td>"
        f"<td>{rules(c)}</td></tr>\n" for c in impact.rows)
    note = (f"<p>The first {ROW_LIMIT:,} of {impact.changed:,} changed decisions, by line.</p>"
            if impact.changed > len(impact.rows) else "")
    return (f"<h2>Changed decisions ({impact.changed:,})</h2>{note}<table id=changes>"
            "<tr><th>line</th><th>time</th><th>user</th><th>application</th><th>old</th>"
            f"<th>new</th><th>rules</th></tr>\n{rows}</table>\n")


def render(impact: Impact, summary: dict, simulated: bool,
           changes: Sequence[VersionChange] = ()) -> str:
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
            f"{_rules_diff(changes)}{_headline(impact)}{_summary(summary)}\n"
            f"{_rule_counts(impact, summary)}{figures}{_table(impact)}</html>\n")


def write(path: str, impact: Impact, summary: dict, simulated: bool,
          changes: Sequence[VersionChange] = ()) -> None:
    """The page, with the rules diff of `changes` (impact.version_changes) at its top."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(render(impact, summary, simulated, changes))
