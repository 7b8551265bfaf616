#!/usr/bin/env python3
"""Summarise py-spy raw (collapsed) stacks of the /decide workers: share of samples per part.

    .venv/bin/python bench/profile_summary.py bench/out/profile-.../cpu.txt [--exclude-pid MASTER] [--top 25]

Input: `py-spy record --format raw` output, one `frame;frame;...;frame COUNT` line per distinct
stack, root first (with --subprocesses the first frame names the process). Each sample is given
to ONE part: the first of the parts below, in this order, that has a frame in its stack (so JSON
encoding done by the log formatter counts as logging, the engine called by the policy as engine):

  logging        logging/ (stdlib), service/entrypoints/logs.py
  metrics        prometheus_client/, service/entrypoints/http/metrics.py
  recourse       service/domain/recourse.py: the search for a refusal's options, with every
                 evaluation it makes (their engine, facts and verdicts count here)
  engine         durable/ (durable_rules and its C extension), service/adapters/rule_engine.py
  schema         marshmallow/, schemas/ (request validation)
  redis          redis/ (client, connection, Lua EVALSHA), service/adapters/state_store.py, redisconn.py
  json           json/ (stdlib), service/adapters/jsontext.py (orjson): request body, the
                 decision, record and log-record JSON
  policy         service/domain/policy.py, facts.py, decision.py, pricing.py, conditions.py,
                 userstate.py, rulebook.py (facts, trace, decision assembly)
  decide         service/usecases/decide.py, decisionlog.py (the use case: digest, plan, log record)
  flask          flask/, werkzeug/, service/entrypoints/http/app.py, security.py (routing, request/response, hooks)
  gunicorn       gunicorn/ (HTTP parsing, socket I/O, worker loop)
  gevent         gevent/ (the hub and socket waits of the gevent worker)
  other          anything else (e.g. the interpreter's own frames)

Samples whose leaf is gevent's `acquire_with_timeout` are left out and counted apart: they are a
gevent helper thread of each worker parked on its lock (py-spy counts a thread blocked in C as
active), not the worker's work; in the wall recording they would double the idle share.

Prints the parts' shares, then the top functions by self samples (the leaf frame) and by
inclusive samples among service/ and schemas/ functions.
"""
from __future__ import annotations

import argparse
import collections
import re
import sys

PARTS = [
    ("logging", ("/logging/", "/service/entrypoints/logs.py")),
    ("metrics", ("/prometheus_client/", "/service/entrypoints/http/metrics.py")),
    ("recourse", ("/service/domain/recourse.py",)),
    ("engine", ("/durable/", "/service/adapters/rule_engine.py")),
    ("schema", ("/marshmallow/", "/schemas/")),
    ("redis", ("/redis/", "/service/adapters/state_store.py", "/service/adapters/redis_connection.py")),
    ("json", ("/json/", "/service/adapters/jsontext.py")),
    ("policy", ("/service/domain/policy.py", "/service/domain/facts.py", "/service/domain/decision.py", "/service/domain/pricing.py",
                "/service/domain/conditions.py", "/service/domain/userstate.py", "/service/domain/rulebook.py")),
    ("decide", ("/service/usecases/decide.py", "/service/adapters/decision_log.py")),
    ("flask", ("/flask/", "/werkzeug/", "/service/entrypoints/http/app.py", "/service/entrypoints/security.py")),
    ("gunicorn", ("/gunicorn/",)),
    ("gevent", ("/gevent/",)),
]
PARKED = "acquire_with_timeout (gevent/_threading.py"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(path: str, exclude: set[str]):
    """(frames, count) per stack; with --subprocesses a worker's stack starts with its parents'
    `process PID:"cmd"` frames, so the last such frame names the sampled process."""
    for raw in open(path, encoding="utf-8", errors="replace"):
        raw = raw.rstrip("\n")
        if not raw:
            continue
        stack, _, count = raw.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        processes = [f for f in frames if f.startswith("process ")]
        if processes and processes[-1].split(":", 1)[0].split()[-1] in exclude:
            continue
        yield frames, int(count)


def file_of(frame: str) -> str:
    """The frame's file with a leading slash: py-spy writes `func (json/encoder.py:12)`."""
    m = FRAME.match(frame)
    return "/" + m.group("file") if m else ""


def part_of(frames: list[str]) -> str:
    files = [file_of(f) for f in frames]
    for name, needles in PARTS:
        if any(n in f for f in files for n in needles):
            return name
    return "other"


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw")
    parser.add_argument("--exclude-pid", action="append", default=[])
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    parts, leaf, inclusive = collections.Counter(), collections.Counter(), collections.Counter()
    total = parked = 0
    for frames, count in parse(args.raw, set(args.exclude_pid)):
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1].startswith(PARKED):
            parked += count
            continue
        total += count
        parts[part_of(frames)] += count
        leaf[short(frames[-1])] += count
        for f in {short(f) for f in frames if file_of(f).startswith(("/service/", "/schemas/"))}:
            inclusive[f] += count
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} samples ({parked} more of a gevent helper thread parked on its lock, left out)")
    print("\npart        share")
    for name, _ in PARTS + [("other", ())]:
        print(f"{name:<10} {parts[name] / total:6.1%}")
    print(f"\ntop {args.top} functions by self samples (leaf frame)")
    for name, n in leaf.most_common(args.top):
        print(f"  {n / total:6.1%}  {name}")
    print(f"\ntop {args.top} service/ and schemas/ functions by inclusive samples")
    for name, n in inclusive.most_common(args.top):
        print(f"  {n / total:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
