"""The impact of other rules on a log: the figures the impact report charts.

Built from replayed (or simulated) decisions, one at a time, in any order: every figure is a
count, so partitions of a log (simulate's --jobs) add up to the same impact as the whole.
"Approved" counts the decisions that lend: `approved` and `cooling_off` (approved with the
funds held). Groups are the applicant's special groups; an applicant in none counts as "none".
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from service.usecases.replay import Replayed, change_report

LENDS = frozenset({"approved", "cooling_off"})
NO_GROUP = "none"
ROW_LIMIT = 5000   # changed decisions listed in the report's table (the first, by line)


def groups_of(request: dict) -> list[str]:
    applicant = request.get("applicant") if isinstance(request, dict) else None
    groups = (applicant or {}).get("groups") if isinstance(applicant, dict) else None
    return sorted(set(groups)) if isinstance(groups, list) and groups else [NO_GROUP]


@dataclass
class Impact:
    """Before (the log) and after (the other rules), counted by product, group and day."""

    decisions: int = 0
    changed: int = 0
    products: Counter = field(default_factory=Counter)   # (product, "total"|"before"|"after")
    groups: Counter = field(default_factory=Counter)     # (group, "total"|"before"|"after")
    days: Counter = field(default_factory=Counter)       # (YYYY-MM-DD, "before"|"after")
    matrix: Counter = field(default_factory=Counter)     # (old outcome, new outcome)
    gained: Counter = field(default_factory=Counter)     # reason codes the new decision adds
    lost: Counter = field(default_factory=Counter)       # reason codes it no longer gives
    rows: list = field(default_factory=list)             # change reports, at most ROW_LIMIT

    def add(self, item: Replayed) -> None:
        if not isinstance(item, Replayed) or item.kind != "decision" or item.new is None:
            return
        record, old, new = item.record, item.record["decision"], item.new
        before, after = old["outcome"] in LENDS, new["outcome"] in LENDS
        self.decisions += 1
        for counter, key in ((self.products, record["request"].get("product", "?")),
                             *((self.groups, g) for g in groups_of(record["request"]))):
            counter[(key, "total")] += 1
            counter[(key, "before")] += before
            counter[(key, "after")] += after
        day = record["at"][:10]
        self.days[(day, "before")] += before
        self.days[(day, "after")] += after
        self.matrix[(old["outcome"], new["outcome"])] += 1
        old_codes = {r["code"] for r in old["reasons"]}
        new_codes = {r["code"] for r in new["reasons"]}
        self.gained.update(new_codes - old_codes)
        self.lost.update(old_codes - new_codes)
        if item.changed:
            self.changed += 1
            if len(self.rows) < ROW_LIMIT:
                self.rows.append(change_report(item))

    def merge(self, other: "Impact") -> None:
        """Add another partition's impact (the rows stay the first ROW_LIMIT by line)."""
        self.decisions += other.decisions
        self.changed += other.changed
        for name in ("products", "groups", "days", "matrix", "gained", "lost"):
            getattr(self, name).update(getattr(other, name))
        self.rows = sorted(self.rows + other.rows, key=lambda row: row["line"])[:ROW_LIMIT]

    def rates(self, which: str) -> list[tuple[str, int, float, float]]:
        """(name, decisions, approval rate before, after) by product or by group."""
        counter: Counter = getattr(self, which)
        names = sorted({key for key, _ in counter})
        return [(n, counter[(n, "total")], counter[(n, "before")] / max(counter[(n, "total")], 1),
                 counter[(n, "after")] / max(counter[(n, "total")], 1)) for n in names]
