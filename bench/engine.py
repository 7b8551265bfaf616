#!/usr/bin/env python3
"""Rule evaluations per second of the engine alone (full rulebook, one process, no HTTP).

    .venv/bin/python bench/engine.py [--n 20000] [--seed 1] [--rules DIR] [--json]

Pre-generates n seeded applicants across all 7 products (bench/applicants.py: approvals,
rejections with 1-3 reasons, missing data, special groups, 60+), validates them with
DecideRequestSchema, then times
  1. Policy.decide(request, UserState(), now)         the whole decision function
  2. policy.engine.fire(product, fact.values)         durable_rules alone, facts built once
and reports evaluations/s, mean rules fired per evaluation (the sentinel rule not counted),
and the process RSS before and after the timed loops. Prints figures; asserts nothing about
speed.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH and the installed package

import applicants  # noqa: E402  (bench/applicants.py, next to this file)
from schemas.request import DecideRequestSchema  # noqa: E402
from service.adapters import rules_files  # noqa: E402
from service.domain.facts import build_fact  # noqa: E402
from service.domain.policy import POLICY_TZ  # noqa: E402
from service.adapters.rule_engine import policy_for  # noqa: E402
from service.domain.userstate import UserState  # noqa: E402

# A fixed decision time (16:00 in Shanghai), so a seed always gives the same decisions.
NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)


def _status_mb(key: str) -> float:
    """A memory figure of this process from Linux /proc/self/status, in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def timed(loop) -> float:
    gc.collect()
    started = time.perf_counter()
    loop()
    return time.perf_counter() - started


def run(n: int, seed: int, warmup: int, rules_dir: Path) -> dict:
    rss_start = rss_mb()
    book = rules_files.load(rules_dir)
    policy = policy_for(book)
    schema = DecideRequestSchema(term_ranges=book.term_ranges())

    generated = applicants.generate(n, seed, NOW)
    requests = [schema.load(payload) for _, payload in generated]
    scenarios = collections.Counter(s for s, _ in generated)
    state = UserState()
    today = NOW.astimezone(POLICY_TZ).date()
    facts = [(r["product"], build_fact(r, state, today, policy.engine.plans[r["product"]].ref_dates).values)
             for r in requests]

    # Outcomes and reasons of the mix (untimed; doubles as the warm-up).
    outcomes: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    for request in requests:
        decision = policy.decide(request, state, NOW)
        outcomes[decision.outcome] += 1
        reasons.update({r.code for r in decision.reasons})
    for product, values in facts[:warmup]:
        policy.engine.fire(product, values)

    rss_before = rss_mb()
    decide, fire = policy.decide, policy.engine.fire
    fired_counts: list[int] = []

    def decide_loop() -> None:
        for request in requests:
            decide(request, state, NOW)

    def fire_loop() -> None:
        append = fired_counts.append
        for product, values in facts:
            append(len(fire(product, values)))

    t_decide = timed(decide_loop)
    t_fire = timed(fire_loop)
    rss_after = rss_mb()

    rules_per_product = {name: len(plan.rules) for name, plan in policy.engine.plans.items()}
    return {
        "n": n, "seed": seed, "python": platform.python_version(),
        "rules_dir": str(rules_dir), "rules_version": book.version,
        "rules_per_product": rules_per_product,
        "decide_evals_per_s": round(n / t_decide, 1),
        "decide_us_per_eval": round(t_decide / n * 1e6, 1),
        "fire_evals_per_s": round(n / t_fire, 1),
        "fire_us_per_eval": round(t_fire / n * 1e6, 1),
        "fire_share_of_decide": round(t_fire / t_decide, 3),
        "mean_rules_fired": round(sum(fired_counts) / n, 3),
        "max_rules_fired": max(fired_counts),
        "rss_start_mb": round(rss_start, 1),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "rss_delta_mb": round(rss_after - rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "scenarios": dict(sorted(scenarios.items())),
        "outcomes": dict(outcomes.most_common()),
        "reasons": dict(reasons.most_common()),
    }


def print_table(r: dict) -> None:
    rows = [
        ("Policy.decide", f"{r['decide_evals_per_s']:>10,.0f} evals/s", f"{r['decide_us_per_eval']:>8.1f} us/eval"),
        ("engine.fire (durable_rules)", f"{r['fire_evals_per_s']:>10,.0f} evals/s", f"{r['fire_us_per_eval']:>8.1f} us/eval"),
    ]
    print(f"engine benchmark: n={r['n']} seed={r['seed']} python {r['python']}, one process, "
          f"rules {r['rules_version'][:19]}...")
    print("rules per product: " + ", ".join(f"{k} {v}" for k, v in r["rules_per_product"].items()))
    print()
    for name, rate, per in rows:
        print(f"  {name:<30}{rate}  {per}")
    print(f"  {'fire share of decide':<30}{r['fire_share_of_decide'] * 100:>10.0f} %")
    print(f"  {'rules fired per eval':<30}{r['mean_rules_fired']:>10.2f} mean   (max {r['max_rules_fired']}, sentinel not counted)")
    print(f"  {'RSS before / after timing':<30}{r['rss_before_mb']:>10.1f} / {r['rss_after_mb']:.1f} MB"
          f"   (delta {r['rss_delta_mb']:+.1f}, start {r['rss_start_mb']:.1f}, peak {r['peak_rss_mb']:.1f})")
    print()
    print("mix: scenarios " + ", ".join(f"{k} {v}" for k, v in r["scenarios"].items()))
    print("     outcomes  " + ", ".join(f"{k} {v}" for k, v in r["outcomes"].items()))
    print("     reasons   " + ", ".join(f"{k} {v}" for k, v in r["reasons"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="evaluations per timed loop (default 20000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated applicants (default 1)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed engine.fire calls first (default 500)")
    parser.add_argument("--rules", type=Path, default=Path(os.environ.get("RULES_DIR") or ROOT / "rules"),
                        help="rules directory (default: $RULES_DIR or the repository's rules/)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    result = run(args.n, args.seed, args.warmup, args.rules)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
