#!/usr/bin/env python3
"""Microseconds per `DecideRequestSchema.load` for the bench mix, beside marshmallow's own load.

    .venv/bin/python bench/bodies.py BODIES.tsv
    .venv/bin/python bench/schema.py BODIES.tsv [--n 20000] [--rounds 5] [--rules DIR]

Takes the bodies bench/http.sh sends (bench/bodies.py's output), schedules them by its `#mix`
weights the way bench/payloads.lua does (a "cooldown" slot is an approved-pool body; its
cooldown_first body is sent once per user, so it is left out), fills @@APP@@ and @@USER@@ with
ids of payloads.lua's shape, and times, alternating rounds, best of --rounds:

  load    schema.load(body), what POST /decide calls
  plain   marshmallow.Schema.load(schema, body), the per-field marshmallow load

Checks once that both give the same result for every body. Prints figures; asserts nothing
about speed.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from marshmallow import Schema

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH and the installed package

from schemas.request import DecideRequestSchema  # noqa: E402
from service.adapters import rules_files  # noqa: E402


def mix_bodies(path: Path, n: int) -> list[dict]:
    """n payloads in the mix's proportions, pools and bodies taken in turn."""
    lines = path.read_text().splitlines()
    weights = [(name, int(w)) for name, w in
               (item.split(":") for item in lines[0].removeprefix("#mix ").split(","))]
    pools: dict[str, list[str]] = {}
    for line in lines[1:]:
        pool, body = line.split("\t", 1)
        pools.setdefault(pool, []).append(body)
    slots = [("approved" if name == "cooldown" else name) for name, w in weights for _ in range(w)]
    used: dict[str, int] = {}
    out = []
    for i in range(n):
        pool = slots[i % len(slots)]
        used[pool] = used.get(pool, 0) + 1
        body = pools[pool][(used[pool] - 1) % len(pools[pool])]
        app = f"a1-t1-{i + 1}"
        out.append(json.loads(body.replace("@@APP@@", app).replace("@@USER@@", "u-" + app)))
    return out


def best_us(load: Callable[[Any], Any], bodies: list[dict]) -> float:
    """One timed pass over the bodies, in microseconds per load."""
    gc.collect()
    started = time.perf_counter()
    for body in bodies:
        load(body)
    return (time.perf_counter() - started) / len(bodies) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bodies", type=Path)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rules", type=Path, default=ROOT / "rules")
    args = parser.parse_args(argv)

    schema = DecideRequestSchema(term_ranges=rules_files.load(args.rules).term_ranges())
    bodies = mix_bodies(args.bodies, args.n)
    loads = {"load": schema.load, "plain": lambda body: Schema.load(schema, body)}
    for body in bodies[:200]:
        assert loads["load"](body) == loads["plain"](body), body
    times: dict[str, list[float]] = {name: [] for name in loads}
    for _ in range(args.rounds):
        for name, load in loads.items():
            times[name].append(best_us(load, bodies))
    best = {name: min(t) for name, t in times.items()}
    print(f"schema: {args.n} loads of the bench mix, best of {args.rounds} rounds")
    for name, us in best.items():
        print(f"schema:   {name:<6} {us:8.1f} us per load")
    print(f"schema:   plain/load {best['plain'] / best['load']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
