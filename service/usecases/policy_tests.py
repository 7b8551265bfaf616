"""Run a rules version's policy test kit, and measure the kit with mutants of the rules.

`run_kit` evaluates every case of the kit through the same Policy and engine wrapper a live
decision uses (service.adapters.rule_engine.policy_for: one process-wide engine lock), with the
request read by the live request schema, the case's prior state and its decision time.
`mutation_run` does the same once per mutant (service.domain.mutation) and reports the mutants
no case tells apart from the original: thresholds the kit does not pin.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional

from marshmallow import ValidationError

from schemas.request import DecideRequestSchema
from service.adapters import rule_mutants, rules_files
from service.adapters.rule_engine import EngineError, policy_for
from service.domain import policy_kit, rulebook
from service.domain.policy import Policy
from service.domain.policy_kit import Case, Kit


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
        except (EngineError, KeyError, ValueError) as exc:   # a mutant may break evaluation
            problems = [f"evaluation failed: {exc}"]
        if problems:
            result.failures.append(policy_kit.describe_failure(case, problems))
            if stop_at_first:
                break
        else:
            result.passed += 1
    return result


def run_directory(rules_dir: Path | str) -> tuple[rulebook.RuleBook, KitResult]:
    """Load a rules directory and run its own kit (RulesError / KitError for a bad one)."""
    book = rules_files.load(rules_dir)
    kit = rules_files.parse_kit(rules_files.kit_files(rules_dir))
    return book, run_kit(_policy(book), kit)


def run_files(book: rulebook.RuleBook, files: Mapping[str, bytes],
              policy: Optional[Policy] = None) -> KitResult:
    """A rules version's kit, given as files (as archived beside the version)."""
    return run_kit(policy or _policy(book), rules_files.parse_kit(files))


def _policy(book: rulebook.RuleBook) -> Policy:
    try:
        return policy_for(book)
    except EngineError as exc:
        raise rulebook.RulesError(str(exc)) from exc


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


def mutation_run(book: rulebook.RuleBook, kit: Kit,
                 candidates: Optional[Iterable[rule_mutants.Mutant]] = None) -> MutationReport:
    """Evaluate the kit once per mutant; a mutant is caught when a case fails or it does not
    load (a threshold moved into an invalid rule file is caught by validation)."""
    started = time.perf_counter()
    report = MutationReport()
    order = list(kit.cases)   # move-to-front: the case that caught a mutant tries the next first
    loaded: dict = {}
    for mutant in candidates if candidates is not None else rule_mutants.mutants(book.files):
        report.mutants += 1
        try:
            policy = _policy(rules_files.load_files(mutant.files))
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
