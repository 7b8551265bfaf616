"""Soak: N decisions through the policy and its durable_rules engine in one process, with the
resident memory sampled every --every decisions. Flat means <= 5% growth after the warm-up sample.

    .venv/bin/python bench/soak.py                 # 1,000,000 decisions, sampled every 100,000
    .venv/bin/python bench/soak.py --n 200000 --every 20000 --json
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.applicants import generate as generate_applicants  # noqa: E402
from schemas.request import DecideRequestSchema  # noqa: E402
from service.adapters import rules_files  # noqa: E402
from service.adapters.rule_engine import policy_for  # noqa: E402
from service.domain.userstate import UserState  # noqa: E402
from tests.conftest import NOW  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    policy = policy_for(rules_files.load(ROOT / "rules"))
    schema = DecideRequestSchema(term_ranges=policy.book.term_ranges())
    requests = [schema.load(doc) for _, doc in generate_applicants(2000, args.seed, NOW)]
    states = [UserState(), UserState(applications_6m=3)]
    samples, outcomes = [], {}
    started = time.perf_counter()
    source = itertools.cycle(requests)
    for i in range(1, args.n + 1):
        decision = policy.decide(next(source), states[i % 2], NOW)
        outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
        if i % args.every == 0:
            samples.append({"decisions": i, "rss_mib": round(rss_mib(), 2),
                            "seconds": round(time.perf_counter() - started, 1)})
            if not args.json:
                print(f"{i:>10,} decisions  rss {samples[-1]['rss_mib']:8.2f} MiB  "
                      f"{samples[-1]['seconds']:7.1f} s", flush=True)
    warm = samples[0]["rss_mib"]
    growth = (max(s["rss_mib"] for s in samples) - warm) / warm
    result = {"decisions": args.n, "decisions_per_s": round(args.n / (time.perf_counter() - started)),
              "warm_rss_mib": warm, "max_rss_mib": max(s["rss_mib"] for s in samples),
              "growth_after_warmup": round(growth, 4), "flat": growth <= 0.05,
              "outcomes": outcomes, "samples": samples}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"growth after warm-up: {growth:.2%} ({'flat' if result['flat'] else 'NOT flat'}); "
              f"{result['decisions_per_s']:,} decisions/s; outcomes {outcomes}")


if __name__ == "__main__":
    main()
