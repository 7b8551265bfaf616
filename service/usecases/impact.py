"""The impact of other rules on a log: the figures the impact report charts.

Built from replayed (or simulated) decisions, one at a time, in any order: every figure is a
count, so partitions of a log (simulate's --jobs) add up to the same impact as the whole.
"Approved" counts the decisions that lend: `approved` and `cooling_off` (approved with the
funds held). Groups are the applicant's special groups as the request lists them, and
`elderly` for an applicant aged 60 or more (RULEBOOK "Special groups"; the request has no such
group, the rules flag it); an applicant in none counts as "none".

The page opens with what changed in the rules (service.domain.rules_diff), for each pair of
the log's version and the candidate's that the decisions name.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from service.domain.rulebook import RuleBook, RulesError
from service.domain.rules_diff import RulesDiff, diff
from service.usecases.ports import StoreUnavailable
from service.usecases.replay import Replayed, change_report

LENDS = frozenset({"approved", "cooling_off"})
NO_GROUP = "none"
ROW_LIMIT = 5000   # changed decisions listed in the report's table (the first, by line)
# RULEBOOK: "users aged 60+". A segment of the applicants, fixed by their own data rather than
# by either rules version's `elderly.age` parameter, so before and after count the same people.
ELDERLY, ELDERLY_AGE = "elderly", 60
GROUP_ORDER = ("student", "overseas", "sme_owner", "blue_collar", ELDERLY, NO_GROUP)


@dataclass(frozen=True)
class Rate:
    """The approval rate of one product or special group, before (the log) and after."""

    segment: str      # "product" | "group"
    name: str
    decisions: int
    before: float     # a share, 0..1
    after: float

    @property
    def change_points(self) -> float:
        """after - before, in percentage points."""
        return (self.after - self.before) * 100


def groups_of(request: dict) -> list[str]:
    applicant = request.get("applicant") if isinstance(request, dict) else None
    applicant = applicant if isinstance(applicant, dict) else {}
    groups = applicant.get("groups")
    found = set(groups) if isinstance(groups, list) else set()
    age = applicant.get("age")
    if isinstance(age, (int, float)) and not isinstance(age, bool) and age >= ELDERLY_AGE:
        found.add(ELDERLY)
    return sorted(found) or [NO_GROUP]


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
    versions: Counter = field(default_factory=Counter)   # (log's version, candidate's) -> decisions
    # changed decisions a refusal by state stands on one side of: no rule ran there, so they
    # are left out of the per-rule counts (simulate.rules_run_both_times)
    by_state: int = 0

    def add(self, item: Replayed, refused_by_state: bool = False) -> None:
        if not isinstance(item, Replayed) or item.kind != "decision" or item.new is None:
            return
        record, old, new = item.record, item.record["decision"], item.new
        before, after = old["outcome"] in LENDS, new["outcome"] in LENDS
        self.decisions += 1
        self.versions[(record["rules_version"], new["rules_version"])] += 1
        self.by_state += item.changed and refused_by_state
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
        self.by_state += other.by_state
        for name in ("products", "groups", "days", "matrix", "gained", "lost", "versions"):
            getattr(self, name).update(getattr(other, name))
        self.rows = sorted(self.rows + other.rows, key=lambda row: row["line"])[:ROW_LIMIT]

    def headline(self) -> list[Rate]:
        """Every product (by name), then the special groups in the rulebook's order."""
        return ([Rate("product", *r) for r in self.rates("products")]
                + [Rate("group", *r) for r in self.rates("groups")])

    def rates(self, which: str) -> list[tuple[str, int, float, float]]:
        """(name, decisions, approval rate before, after) by product (by name) or by group (in
        the rulebook's order)."""
        counter: Counter = getattr(self, which)
        rank = {name: i for i, name in enumerate(GROUP_ORDER)} if which == "groups" else {}
        names = sorted({key for key, _ in counter}, key=lambda n: (rank.get(n, len(rank)), n))
        return [(n, counter[(n, "total")], counter[(n, "before")] / max(counter[(n, "total")], 1),
                 counter[(n, "after")] / max(counter[(n, "total")], 1)) for n in names]


@dataclass(frozen=True)
class VersionChange:
    """One pair of the log's rules version and the candidate's, with the decisions that name
    it and what changed between them (or why that cannot be said here)."""

    old_version: str
    new_version: str
    decisions: int
    diff: Optional[RulesDiff] = None
    unavailable: Optional[str] = None


def version_changes(impact: Impact, book: Callable[[str], RuleBook]) -> list[VersionChange]:
    """The rules diff of every version pair that differs, the most decisions first.

    `book(version)` finds a version's rules (PolicySource.book); a log version that cannot be
    found (replayed under --rules DIR without the archive) is reported, not fatal: the replay
    itself did not need it."""
    out = []
    for (old, new), count in sorted(impact.versions.items(), key=lambda kv: (-kv[1], kv[0])):
        if old == new:
            continue
        try:
            out.append(VersionChange(old, new, count, diff(book(old), book(new))))
        except (LookupError, RulesError, StoreUnavailable) as exc:
            out.append(VersionChange(old, new, count, unavailable=str(exc)))
    return out
