#!/usr/bin/env python3
"""Write the JSON bodies bench/http.sh sends with wrk, after checking each one answers 200.

    .venv/bin/python bench/bodies.py OUT.jsonl [--count 16] [--seed 1]

One body per line, from bench/applicants.py: the scenarios (approved, rejected, missing
data, special groups, 60+) in the generator's proportions, every product at least once. Each body is first POSTed
through the real app's Flask test client (service.api.create_app()) and must get 200 with a
decision; then application_id and user_id get the placeholder @@ID@@ (user_id "u-@@ID@@"),
which bench/payloads.lua fills with a fresh id per request: every request is a new
application of a new user.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH and the installed package

import applicants  # noqa: E402
from service.api import create_app  # noqa: E402

PLACEHOLDER = "@@ID@@"


def pick(count: int, seed: int, now: dt.datetime) -> list[tuple[str, dict]]:
    """`count` payloads: scenario quotas by weight (largest remainder), all 7 products covered."""
    total = sum(w for _, w in applicants.SCENARIOS)
    exact = {name: count * w / total for name, w in applicants.SCENARIOS}
    quota = {name: int(x) for name, x in exact.items()}
    for name in sorted(exact, key=lambda k: exact[k] - quota[k], reverse=True)[:count - sum(quota.values())]:
        quota[name] += 1
    chosen: list[tuple[str, dict]] = []
    uncovered = set(applicants.PRODUCTS)
    for scenario, payload in applicants.generate(count * 50, seed, now):
        if len(chosen) == count:
            break
        if quota[scenario] == 0:
            continue
        if payload["product"] not in uncovered and count - len(chosen) <= len(uncovered):
            continue
        quota[scenario] -= 1
        uncovered.discard(payload["product"])
        chosen.append((scenario, payload))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    client = create_app().test_client()
    now = dt.datetime.now(dt.timezone.utc)          # the live service decides on the system clock
    lines, outcomes, sizes, scenarios = [], collections.Counter(), [], collections.Counter()
    for i, (scenario, payload) in enumerate(pick(args.count, args.seed, now)):
        payload["user_id"] = f"u-bench-check-{args.seed}-{i}"     # one application per user, as in the run
        response = client.post("/decide", json=payload)
        if response.status_code != 200 or "outcome" not in (response.get_json() or {}):
            print(f"bodies.py: {scenario} {payload['product']} got {response.status_code}: "
                  f"{response.get_data(as_text=True)[:500]}", file=sys.stderr)
            return 1
        decision = response.get_json()
        outcomes[f"{payload['product']}:{decision['outcome']}"] += 1
        scenarios[scenario] += 1
        sizes.append(len(response.get_data()))
        payload["application_id"] = PLACEHOLDER
        payload["user_id"] = "u-" + PLACEHOLDER
        lines.append(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"bodies: {len(lines)} checked (200) -> {args.out}; mean request {sum(map(len, lines)) // len(lines)} B, "
          f"mean response {sum(sizes) // len(sizes)} B")
    print("bodies: " + ", ".join(f"{k} {v}" for k, v in sorted(scenarios.items())))
    print("bodies: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
