"""Run a rules version's policy test kit, and measure the kit with mutants of the rules.

`run_kit` evaluates every case of the kit through the same Policy and engine wrapper a live
decision uses (one process-wide engine lock), with the request read by the live request schema,
the case's prior state and its decision time. `Kits.mutation_run` does the same once per mutant
of the rule files and reports the mutants no case tells apart from the original: thresholds the
kit does not pin. How kit files are read and rules built is handed in (Kits), by bootstrap.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional, Protocol

from marshmallow import ValidationError

from schemas.request import DecideRequestSchema
from service.domain import policy_kit, rulebook
from service.domain.policy import Policy
from service.domain.policy_kit import Case, Kit
from service.domain.product_plan import EvaluationError

KIT_DIR = "tests"   # a rules directory's kit: <dir>/tests/*.yaml


class Mutant(Protocol):
    name: str
    files: Mapping[str, bytes]


@dataclass
class KitResult:
    cases: int = 0
    passed: int = 0
    failures: list[str] = field(default_factory=list)   # readable diffs, one per failing case

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {"cases": self.cases, "passed": self.passed, "failed": len(self.failures),
                "ok": self.ok, "failures": self.failures[:20]}


def check_case(policy: Policy, schema: DecideRequestSchema, case: Case,
               loaded: Optional[dict] = None) -> list[str]:
    """The differences between what the case expects and what the policy decides ([] = pass).

    `loaded` caches each case's request as the schema read it (a third of a mutation run's
    time went to reading the same requests again); the key includes the term ranges, the
    only part of the schema a rules version sets."""
    key = (id(case), tuple(sorted(schema.term_ranges.items())))
    request = loaded.get(key) if loaded is not None else None
    if request is None:
        try:
            request = schema.load(case.request)
        except ValidationError as exc:
            return [f"request refused by the request schema: {exc.messages}"]
        if loaded is not None:
            loaded[key] = request
    state = policy_kit.build_state(case, policy.count_window_start)
    outcome = policy.evaluate(request, state, case.at)
    seen = policy_kit.observed(outcome.decision.to_dict(), outcome.change)
    return policy_kit.differences(case.expect, seen)


def run_kit(policy: Policy, kit: Kit, stop_at_first: bool = False,
            loaded: Optional[dict] = None) -> KitResult:
    """Every case of the kit under this policy; `stop_at_first` ends at the first failure."""
    schema = DecideRequestSchema(term_ranges=policy.book.term_ranges())
    result = KitResult()
    for case in kit.cases:
        result.cases += 1
        try:
            problems = check_case(policy, schema, case, loaded)
        except (EvaluationError, KeyError, ValueError) as exc:   # a mutant may break evaluation
            problems = [f"evaluation failed: {exc}"]
        if problems:
            result.failures.append(policy_kit.describe_failure(case, problems))
            if stop_at_first:
                break
        else:
            result.passed += 1
    return result


@dataclass
class MutationReport:
    mutants: int = 0
    caught: int = 0
    surviving: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        score = self.caught / self.mutants if self.mutants else 1.0
        return {"mutants": self.mutants, "caught": self.caught, "surviving": self.surviving,
                "score": round(score, 4), "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class Kits:
    """How kits are read and rules built, as the adapters do it: `build` a rules book's policy
    (RulesError when the engine refuses it), `parse` a kit's files, `load_files` rule files."""

    build: Callable[[rulebook.RuleBook], Policy]
    parse: Callable[[Mapping[str, bytes]], Kit]
    load_files: Callable[..., rulebook.RuleBook]

    def policy(self, book: rulebook.RuleBook) -> Policy:
        return self.build(book)

    def run_files(self, book: rulebook.RuleBook, files: Mapping[str, bytes],
                  policy: Optional[Policy] = None) -> KitResult:
        """A rules version's kit, given as files (as archived beside the version)."""
        return run_kit(policy or self.build(book), self.parse(files))

    def mutation_run(self, book: rulebook.RuleBook, kit: Kit,
                     candidates: Iterable[Mutant]) -> MutationReport:
        """Evaluate the kit once per mutant; a mutant is caught when a case fails or it does
        not load (a threshold moved into an invalid rule file is caught by validation)."""
        started = time.perf_counter()
        report = MutationReport()
        order = list(kit.cases)   # move-to-front: the case that caught a mutant tries the next first
        loaded: dict = {}
        for mutant in candidates:
            report.mutants += 1
            try:
                policy = self.build(self.load_files(mutant.files))
            except rulebook.RulesError:
                report.caught += 1
                continue
            result = run_kit(policy, Kit(tuple(order)), stop_at_first=True, loaded=loaded)
            if result.ok:
                report.surviving.append(mutant.name)
            else:
                report.caught += 1
                order.insert(0, order.pop(result.passed))
        report.seconds = time.perf_counter() - started
        return report
