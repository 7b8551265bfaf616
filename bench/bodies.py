#!/usr/bin/env python3
"""Write the JSON bodies bench/http.sh sends with wrk, after checking each one answers 200.

    .venv/bin/python bench/bodies.py OUT.jsonl [--count 16] [--seed 1]

One body per line, from bench/applicants.py (the first 7 cover every product; the mix has
approvals, rejections, missing data, special groups and 60+). Each body is first POSTed
through the real app's Flask test client (service.api.create_app()) and must get 200 with a
decision; then its application_id is replaced by the placeholder @@ID@@, which
bench/payloads.lua fills with a fresh id per request.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    client = create_app().test_client()
    now = dt.datetime.now(dt.timezone.utc)          # the live service decides on the system clock
    lines, outcomes, sizes = [], collections.Counter(), []
    for scenario, payload in applicants.generate(args.count, args.seed, now):
        response = client.post("/decide", json=payload)
        if response.status_code != 200 or "outcome" not in (response.get_json() or {}):
            print(f"bodies.py: {scenario} {payload['product']} got {response.status_code}: "
                  f"{response.get_data(as_text=True)[:500]}", file=sys.stderr)
            return 1
        decision = response.get_json()
        outcomes[f"{payload['product']}:{decision['outcome']}"] += 1
        sizes.append(len(response.get_data()))
        payload["application_id"] = PLACEHOLDER
        lines.append(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"bodies: {len(lines)} checked (200) -> {args.out}; mean request {sum(map(len, lines)) // len(lines)} B, "
          f"mean response {sum(sizes) // len(sizes)} B")
    print("bodies: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
