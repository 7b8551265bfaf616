#!/usr/bin/env python3
"""CPU cost of one POST /decide inside a worker, by part, on the in-memory stores (no Redis, no server).

    .venv/bin/python bench/decide_path.py [--n 6000] [--seed 1] [--profile [--top 30]]

Builds the HTTP app as tests/golden/decisions.py does (rules_files.load, build_policy,
memory_stores, wire, create_app, the JSON log line written to a null stream as the worker
writes it to stderr), generates n applications with bench/applicants.py (users drawn from n/2,
so repeat users meet the reapply window and cooling-off; every tenth one a resend of the one
before, a replay), moves a fixed clock 7 minutes per request, and sends each through Flask's
test client twice: an untimed warm-up pass on one app, then the timed pass on a fresh one.

Reports µs per request of: the whole request (test client included), the app's WSGI call
(what a worker runs; the test client's own work is the difference), the request schema's
load, the decide use case, Policy.evaluate inside it, engine.fire inside that, and what is
left of each; then Policy.evaluate by outcome, and on refusals the recourse search and the
largest-allowed probe. --profile runs the timed pass under cProfile and prints its top
functions by own time instead. Prints figures; asserts nothing about speed.
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import datetime as dt
import gc
import logging
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))

import applicants  # noqa: E402  (bench/applicants.py, next to this file)
from schemas.request import DecideRequestSchema  # noqa: E402
from service.adapters import rules_files  # noqa: E402
from service.domain import recourse  # noqa: E402
from service.domain.clock import FixedClock  # noqa: E402
from service.entrypoints import logs  # noqa: E402
from service.entrypoints.bootstrap import build_policy, memory_stores, wire  # noqa: E402
from service.entrypoints.http.app import create_app  # noqa: E402
from service.entrypoints.settings import Settings  # noqa: E402

START = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
STEP = dt.timedelta(minutes=7)
# A note on the collector. The in-memory stores keep every record they are given (Redis keeps them, in a worker), so the
# heap grows by about a hundred objects a request, and the collector's passes over it grew with
# it: measured, they cost more than the request itself by the end of a pass. What the stores
# keep is moved out of the collector's sight after each request (gc.freeze, which costs next to
# nothing), as a worker's heap stays the same size; a request's own garbage is collected as it
# is made, as in a worker.


class Timers:
    """Seconds and calls per part; a part is timed by wrapping the callable that does it."""

    def __init__(self) -> None:
        self.seconds: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()

    def wrap(self, name: str, function: Callable, key: Callable[[Any], str] | None = None) -> Callable:
        seconds, calls, clock = self.seconds, self.calls, time.perf_counter

        def timed(*args, **kwargs):
            started = clock()
            result = function(*args, **kwargs)
            elapsed = clock() - started
            part = name if key is None else f"{name}[{key(result)}]"
            seconds[part] += elapsed
            calls[part] += 1
            return result
        return timed


def bodies(n: int, seed: int) -> list[dict]:
    out, previous = [], None
    for i, (_, body) in enumerate(applicants.generate(n, seed, START)):
        if i % 10 == 9 and previous is not None:   # a resend of the application before
            body = previous
        out.append(body)
        previous = body
    return out


def build(timers: Timers | None):
    """A fresh app on fresh in-memory stores; with `timers`, its parts wrapped."""
    book = rules_files.load(ROOT / "rules")
    policy = build_policy(book)
    clock = FixedClock(START)
    settings = Settings()
    services = wire(settings, clock, memory_stores(settings, clock), policy)
    if timers is not None:
        engine = policy.engine
        engine.fire = timers.wrap("engine.fire", engine.fire)
        policy.evaluate = timers.wrap("Policy.evaluate", policy.evaluate,
                                      key=lambda outcome: outcome.decision.outcome)
        policy._largest_allowed = timers.wrap("largest-allowed", policy._largest_allowed)
        services.decisions.decide = timers.wrap("use case", services.decisions.decide)
    app = create_app(settings, services=services)
    if timers is not None:   # what a worker calls: the app's WSGI callable
        app.wsgi_app = timers.wrap("wsgi", app.wsgi_app)
    return app.test_client(), clock


def run_pass(client, clock, payloads: list[dict], timers: Timers | None) -> float:
    post = client.post
    if timers is not None:
        post = timers.wrap("request", post)
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    for n, body in enumerate(payloads):
        clock.set(START + n * STEP)
        post("/decide", json=body)
        gc.freeze()   # what the stores now hold (see the note at START)
    elapsed = time.perf_counter() - started
    gc.unfreeze()
    return elapsed


def report(timers: Timers, n: int) -> None:
    s, c = timers.seconds, timers.calls

    def us(part: str) -> float:
        return s[part] / n * 1e6

    evaluate = sum(v for k, v in s.items() if k.startswith("Policy.evaluate[")) / n * 1e6
    parts = [
        ("whole request (test client)", us("request")),
        ("  test client (environ, response reading)", us("request") - us("wsgi")),
        ("  the app's WSGI call (what a worker runs)", us("wsgi")),
        ("  schema load", us("schema load")),
        ("  decide use case", us("use case")),
        ("    Policy.evaluate", evaluate),
        ("      engine.fire", us("engine.fire")),
        ("      policy's own Python", evaluate - us("engine.fire")),
        ("    use case's own (digest, store, JSON, log record)", us("use case") - evaluate),
        ("  Flask, body, route, log line, metrics", us("wsgi") - us("schema load") - us("use case")),
    ]
    print(f"POST /decide in process: n={n}, µs per request (all requests, replays included)")
    for name, value in parts:
        print(f"  {name:<52}{value:>9.1f}")
    print(f"  {'engine.fire calls per request':<52}{c['engine.fire'] / n:>9.2f}")
    print()
    print("Policy.evaluate by outcome (µs per call, calls):")
    for part in sorted(k for k in s if k.startswith("Policy.evaluate[")):
        print(f"  {part[16:-1]:<20}{s[part] / c[part] * 1e6:>9.1f}  {c[part]:>6}")
    searches = c["recourse.search"]
    if searches:
        print(f"  {'recourse search':<20}{s['recourse.search'] / searches * 1e6:>9.1f}  {searches:>6}"
              "   (inside rejected/review)")
    if c["largest-allowed"]:
        print(f"  {'largest-allowed':<20}{s['largest-allowed'] / c['largest-allowed'] * 1e6:>9.1f}"
              f"  {c['largest-allowed']:>6}   (every evaluated decision; probes only on limit refusals)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=6000, help="requests per pass (default 6000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the applications (default 1)")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed pass instead")
    parser.add_argument("--top", type=int, default=30, help="functions shown with --profile")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(open(os.devnull, "w"))   # the worker writes it to stderr
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    payloads = bodies(args.n, args.seed)

    client, clock = build(None)
    run_pass(client, clock, payloads, None)    # warm-up: caches, first-use imports

    if args.profile:
        client, clock = build(None)
        profiler = cProfile.Profile()
        profiler.enable()
        run_pass(client, clock, payloads, None)
        profiler.disable()
        stats = pstats.Stats(profiler).sort_stats("tottime")
        stats.print_stats(args.top)
        if os.environ.get("CALLEES"):
            stats.print_callees(os.environ["CALLEES"])
        return 0

    timers = Timers()
    original_load, original_search = DecideRequestSchema.load, recourse.search
    DecideRequestSchema.load = timers.wrap("schema load", original_load)
    recourse.search = timers.wrap("recourse.search", original_search)
    try:
        client, clock = build(timers)
        run_pass(client, clock, payloads, timers)
    finally:
        DecideRequestSchema.load, recourse.search = original_load, original_search
    report(timers, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
