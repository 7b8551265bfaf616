#!/usr/bin/env python3
"""What the recourse search (issue 13) costs: added time per refused decision, none on offers.

    .venv/bin/python bench/recourse.py [--n 3000] [--seed 1] [--rounds 5] [--json]

Pre-generates n seeded applicants across all 7 products (bench/applicants.py), validates them,
and evaluates each under two policies built from the same rules directory: with
rules/recourse.yaml, and without it (the rules as they were before issue 13). Offers and
refusals are timed separately, rounds alternating between the two policies; the figure per
round is the mean per decision, and the median round is reported. Also reports how many
candidate evaluations a refusal's search made (mean, max, the declared cap) and how often it
found options or listed unreachable reasons. Prints figures; asserts nothing about speed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH and the installed package

import applicants  # noqa: E402  (bench/applicants.py, next to this file)
from schemas.request import DecideRequestSchema  # noqa: E402
from service.adapters import rules_files  # noqa: E402
from service.adapters.rule_engine import policy_for  # noqa: E402
from service.domain import rulebook  # noqa: E402
from service.domain.userstate import UserState  # noqa: E402

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
STATE = UserState()


def per_decision_us(policy, requests: list) -> float:
    gc.collect()
    started = time.perf_counter()
    for request in requests:
        policy.evaluate(request, STATE, NOW)
    return (time.perf_counter() - started) / max(len(requests), 1) * 1e6


def compare(with_recourse, without, requests: list, rounds: int) -> dict:
    pairs = [(per_decision_us(with_recourse, requests), per_decision_us(without, requests))
             for _ in range(rounds)]
    on = statistics.median(p[0] for p in pairs)
    off = statistics.median(p[1] for p in pairs)
    return {"decisions": len(requests), "with_recourse_us": round(on, 1),
            "without_recourse_us": round(off, 1), "added_us": round(on - off, 1)}


def search_counts(policy, refusals: list) -> dict:
    """Candidate evaluations per refusal (Policy.verdict calls: a candidate that comes up again
    reuses its verdict), and what the searches found."""
    counts, found, unreachable = [], 0, 0
    verdict = policy.verdict
    calls = [0]

    def counting(*args):
        calls[0] += 1
        return verdict(*args)

    policy.verdict = counting
    try:
        for request in refusals:
            calls[0] = 0
            recourse = policy.evaluate(request, STATE, NOW).decision.recourse
            counts.append(calls[0])
            found += bool(recourse.options)
            unreachable += bool(recourse.unreachable)
    finally:
        del policy.verdict
    return {"evaluations_mean": round(statistics.mean(counts), 2) if counts else 0,
            "evaluations_max": max(counts, default=0),
            "cap": policy.book.recourse.max_evaluations,
            "with_options": found, "with_unreachable": unreachable}


def run(n: int, seed: int, rounds: int) -> dict:
    book = rules_files.load(ROOT / "rules")
    old_files = {k: v for k, v in book.files.items() if k != rulebook.RECOURSE_FILE}
    with_recourse, without = policy_for(book), policy_for(rules_files.load_files(old_files))
    schema = DecideRequestSchema(term_ranges=book.term_ranges())
    requests = [schema.load(payload) for _, payload in applicants.generate(n, seed, NOW)]
    offers, refusals = [], []
    for request in requests:
        outcome = without.evaluate(request, STATE, NOW).decision.outcome
        (offers if outcome in ("approved", "cooling_off") else refusals).append(request)
    per_decision_us(with_recourse, requests[:200])   # warm-up: the first sessions cost more
    per_decision_us(without, requests[:200])
    return {"n": n, "seed": seed, "rounds": rounds,
            "offers": compare(with_recourse, without, offers, rounds),
            "refusals": compare(with_recourse, without, refusals, rounds),
            "search": search_counts(with_recourse, refusals)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.n, args.seed, args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for kind in ("offers", "refusals"):
        r = result[kind]
        print(f"{kind:9} {r['decisions']:6d} decisions: {r['with_recourse_us']:8.1f} us with recourse, "
              f"{r['without_recourse_us']:8.1f} us without, added {r['added_us']:+8.1f} us per decision")
    s = result["search"]
    print(f"search    {s['evaluations_mean']} candidate evaluations per refusal (max {s['evaluations_max']}, "
          f"cap {s['cap']}); options found for {s['with_options']}, unreachable listed for "
          f"{s['with_unreachable']}")


if __name__ == "__main__":
    main()
