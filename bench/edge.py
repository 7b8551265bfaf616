#!/usr/bin/env python3
"""The HTTP edge's CPU per POST /decide, in process: what the service adds around the use case.

    .venv/bin/python bench/bodies.py /tmp/bodies.tsv
    PYTHONPATH=. .venv/bin/python bench/edge.py /tmp/bodies.tsv [--rounds 9] [--n 2000]
    PYTHONPATH=. valgrind --tool=callgrind .venv/bin/python bench/edge.py /tmp/bodies.tsv \\
        --only hooks --rounds 1 --n 1200     # minus the same with --n 200: instructions per call

Bodies from bench/bodies.py (@@APP@@/@@USER@@ filled). The app is the real one (create_app,
embedded store, one client key, the JSON log formatter writing to /dev/null, prometheus_client
in multiprocess mode as under gunicorn unless --single-process). Each figure is the CPU time of
this process (time.process_time: the machine is shared), the best of --rounds rounds of --n
calls, in µs per call:

  parse     jsonbody.parse of a raw body (strict JSON: duplicates, depth, lone surrogates)
  tree      jsonbody._check_tree of a parsed body alone (the walk the raw-text checks can skip)
  hooks     _begin + count_decision + _end + _teardown in a POST /decide request context (request
            id, client key, rules sync check, metrics, the one JSON log line written)
  log       JsonFormatter.format of the /decide request's record (masking included)
  metrics   count_decision of a decision with one reason
  edge      a POST /decide through the Flask test client with the use case and the request
            schema stubbed (a recorded decision answers): Flask, the test client and the edge
  request   a real POST /decide through the test client (use case included: context only;
            --n / 20 calls a round)
"""
from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))

KEY = "bench-client-key"
FIGURES = ("parse", "tree", "hooks", "log", "metrics", "edge", "request")


def best(fn: Callable[[], object], n: int, rounds: int) -> float:
    """µs of CPU per call: the best round's mean (other processes only ever add to it)."""
    times = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            fn()
        times.append((time.process_time() - start) / n * 1e6)
    return min(times)


class _Loaded:
    """A request schema stand-in: the payload as it came (the edge figure leaves schemas out)."""

    @staticmethod
    def load(payload: dict) -> dict:
        return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bodies", type=Path)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--only", type=lambda text: text.split(","), default=list(FIGURES),
                        help="the figures to measure, comma-separated (default: all)")
    parser.add_argument("--single-process", action="store_true",
                        help="prometheus_client's in-memory values, not the multiprocess files")
    args = parser.parse_args(argv)
    if not args.single_process:   # before prometheus_client is imported, as gunicorn.conf.py does
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="edge-bench-")

    from flask import Response, g

    from service.entrypoints import logs
    from service.entrypoints.http import app as http_app
    from service.entrypoints.http import jsonbody, metrics
    from service.entrypoints.settings import Settings

    logs.configure("INFO")
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w", encoding="utf-8"))
    app = http_app.create_app(Settings(**{**Settings().__dict__, "api_keys": (KEY,)}))
    client = app.test_client()
    bodies = [line.split("\t", 1)[1]
              for line in args.bodies.read_text(encoding="utf-8").splitlines()[1:]]
    serial = itertools.count()

    def filled() -> bytes:
        i = next(serial)
        return bodies[i % len(bodies)].replace("@@APP@@", f"b-{i}").replace("@@USER@@", f"v-{i}").encode()

    raws = [filled() for _ in bodies]
    docs = [jsonbody.parse(raw) for raw in raws]
    cycle_raw, cycle_doc = itertools.cycle(raws), itertools.cycle(docs)

    def post(body: bytes) -> None:
        response = client.post("/decide", data=body, content_type="application/json",
                               headers={"X-API-Key": KEY, "X-Request-ID": "bench-1"})
        assert response.status_code == 200, response.get_data(as_text=True)

    for _ in range(20):   # warm: rules compiled, schema cached, label children made
        post(filled())
    decisions, rules = app.extensions["services"].decisions, app.extensions["services"].rules
    recorded = decisions.decide(docs[0], app.extensions["decide_schemas"][rules.version].load(docs[0]))
    decision = dict(recorded.decision, reasons=[{"code": "AGE_OUT_OF_RANGE"}])
    fields = {"decision_id": decision["decision_id"], "product": decision["product"],
              "outcome": decision["outcome"], "replayed": False,
              "rules_version": decision["rules_version"]}

    def hooks() -> None:
        http_app._begin()
        g.fields = fields
        metrics.count_decision(decision)
        http_app._end(Response(b"{}", mimetype="application/json"))
        http_app._teardown(None)

    record = logging.LogRecord("loan_decide.api", logging.INFO, __file__, 1, "request", None, None)
    record.request_id, record.fields = "bench-1", {"method": "POST", "route": "/decide",
                                                   "status": 200, "latency_ms": 3.21, **fields}
    formatter = logs.JsonFormatter()

    def stubbed() -> None:
        """From here on the use case answers the recorded decision and the schema passes."""
        decisions.decide = lambda payload, request: recorded
        app.extensions["decide_schemas"] = {rules.version: _Loaded()}

    plan: dict[str, tuple[Callable[[], object], int]] = {
        "parse": (lambda: jsonbody.parse(next(cycle_raw)), args.n),
        "tree": (lambda: jsonbody._check_tree(next(cycle_doc)), args.n),
        "hooks": (hooks, args.n),
        "log": (lambda: formatter.format(record), args.n),
        "metrics": (lambda: metrics.count_decision(decision), args.n),
        "request": (lambda: post(filled()), max(args.n // 20, 20)),
        "edge": (lambda: post(raws[0]), max(args.n // 4, 50)),   # last: the use case is stubbed
    }
    figures = {}
    for name, (fn, n) in plan.items():
        if name not in args.only:
            continue
        if name == "edge":
            stubbed()
        if name == "hooks":
            with app.test_request_context("/decide", method="POST", data=raws[0],
                                          content_type="application/json",
                                          headers={"X-API-Key": KEY, "X-Request-ID": "bench-1"}):
                figures[name] = best(fn, n, args.rounds)
        else:
            figures[name] = best(fn, n, args.rounds)
    mode = "single-process" if args.single_process else "multiprocess"
    print(f"edge: µs of CPU per call, best of {args.rounds} rounds ({mode} metrics, "
          f"{len(raws)} bodies, mean {sum(map(len, raws)) // len(raws)} B)")
    for name in FIGURES:
        if name in figures:
            print(f"edge:   {name:<9} {figures[name]:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
