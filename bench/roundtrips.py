#!/usr/bin/env python3
"""Redis round trips per decision, and in-process decisions/s on real Redis vs the embedded store.

    .venv/bin/python bench/roundtrips.py [--n 3000] [--seed 1] [--redis-url URL]
                                         [--replay-share 0.25] [--cooldown-share 0.25] [--json]

The service is built in this process (service.entrypoints.bootstrap.build_services) and each request goes
through `services.decisions.decide(payload, DecideRequestSchema(term_ranges=...).load(payload))`, the
path POST /decide takes without Flask and JSON. N decisions, in three measured phases:

  fresh     a new user and application each (bench/applicants.py: approvals, rejections,
            missing data, special groups, 60+; all 7 products)
  replay    the same application (same id, same payload) sent again: an idempotent replay
            of a decision stored in the set-up
  cooldown  new applications of users a set-up rejection put into the T1 reapply window
            (R5 DEBT_TOO_HIGH starts it): refused by state, REAPPLY_COOLDOWN

Each phase's outcome is checked (replayed / REAPPLY_COOLDOWN / neither); the set-up decisions
and a warm-up of every kind (script loading, the connection, durable_rules) are not counted.

Round trips per decision, two ways:
  client   RedisStateStore.round_trips (one per store call: a script call, a GET, a pipeline)
  server   INFO commandstats deltas on the Redis server: the commands clients sent
           (EVALSHA/EVAL/SCRIPT/FCALL and any command the Lua scripts do not use), and next to
           it every command including those the scripts ran (SET, HGETALL, ZCOUNT, ...).
           INFO itself is not counted. A pipeline would count one command per entry, and a
           command both the scripts and a client use (GET) is taken as run inside a script:
           so the client and server figures agreeing is the check, not a given.
The server figures need a server only this run uses: by default a private redis-server on a free
loopback port (no persistence), stopped at the end; with --redis-url, other clients' commands
would be counted too.

Then decisions/s for the same phases on the embedded default (Settings(redis_url=None): the
in-memory adapters, in this process); its "client RT" is the number of calls to the user-store
port (each would be one round trip on Redis). "store ms" is the time spent inside the store's
calls (RedisStateStore._do; the port's methods in memory), per decision. Prints figures; asserts
nothing about speed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import logging
import platform
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH and the installed package

import redis  # noqa: E402

import applicants  # noqa: E402  (bench/applicants.py, next to this file)
from marshmallow import ValidationError  # noqa: E402
from schemas.request import DecideRequestSchema  # noqa: E402
from service.adapters import state_store  # noqa: E402
from service.entrypoints.bootstrap import build_services  # noqa: E402
from service.entrypoints.settings import Settings  # noqa: E402

PHASES = ("fresh", "replay", "cooldown")
ENTRY = re.compile(r"^(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro|script\|.*)$")
# the commands the state store's Lua scripts run: counted by the server, but not sent by a client
IN_SCRIPT = {m.lower() for src in (state_store._BEGIN, state_store._COMMIT, state_store._RELEASE)
             for m in re.findall(r"redis\.call\('([A-Za-z]+)'", src)}


# -- a private redis-server -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """redis-server on a free loopback port, no persistence; stopped (by its pid) on exit."""

    def __init__(self):
        if not shutil.which("redis-server"):
            raise SystemExit("redis-server not found (apt-get install redis-server), or pass --redis-url")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="roundtrips-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"redis-server exited with {self.proc.returncode}")
                time.sleep(0.05)
        self.stop()
        raise SystemExit("redis-server did not answer PING")

    def version(self) -> str:
        return redis.Redis.from_url(self.url).info("server")["redis_version"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def commandstats(client: redis.Redis) -> Counter:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()
                    if name != "cmdstat_info"})


# -- the workload -------------------------------------------------------------------------------
class Workload:
    """The payloads of every phase, with ids unique to one target (tag) so stores never meet."""

    def __init__(self, n: int, replay_share: float, cooldown_share: float, seed: int,
                 now: dt.datetime, schema: DecideRequestSchema):
        self.counts = {"replay": round(n * replay_share), "cooldown": round(n * cooldown_share)}
        self.counts["fresh"] = n - self.counts["replay"] - self.counts["cooldown"]
        if min(self.counts.values()) < 0:
            raise SystemExit("--replay-share + --cooldown-share must be at most 1")
        pool = []
        for scenario, payload in applicants.generate(self.counts["fresh"] * 2 + 50, seed, now):
            try:
                schema.load(payload)
            except ValidationError:
                continue                     # not a request the service would decide
            pool.append(payload)
        if len(pool) < self.counts["fresh"] + 20:
            raise SystemExit("too few valid generated payloads")
        self.fresh_pool = pool
        self.approved = applicants.approved(random.Random(seed), "we2000", now)
        self.rejected = applicants.approved(random.Random(seed + 1), "weilidai", now)
        self.rejected["applicant"]["debt_to_income"] = 0.9          # R5: starts the T1 window
        self.cooldown_users = 16

    @staticmethod
    def _with(payload: dict, application_id: str, user_id: str) -> dict:
        return dict(payload, application_id=application_id, user_id=user_id)

    def setup(self, tag: str) -> list[tuple[str, dict]]:
        """Decided before the phases: the application to replay, the users to cool down."""
        out = [("replay-original", self._with(self.approved, f"{tag}-replayed", f"u-{tag}-replayer"))]
        out += [("cooldown-start", self._with(self.rejected, f"{tag}-cd{u}-0", f"u-{tag}-cd{u}"))
                for u in range(self.cooldown_users)]
        return out

    def warmup(self, tag: str) -> list[tuple[str, dict]]:
        """A few of every kind on ids of their own, before measuring (loads the scripts)."""
        w = f"{tag}-w"
        out = [("fresh", self._with(p, f"{w}-f{i}", f"u-{w}-f{i}"))
               for i, p in enumerate(self.fresh_pool[-20:])]
        out.append(("replay-original", self._with(self.approved, f"{w}-r", f"u-{w}-r")))
        out += [("replay", self._with(self.approved, f"{w}-r", f"u-{w}-r"))] * 5
        out.append(("cooldown-start", self._with(self.rejected, f"{w}-c0", f"u-{w}-c")))
        out += [("cooldown", self._with(self.approved, f"{w}-c{i}", f"u-{w}-c")) for i in range(1, 6)]
        return out

    def phase(self, name: str, tag: str) -> list[dict]:
        n = self.counts[name]
        if name == "fresh":
            return [self._with(p, f"{tag}-f{i}", f"u-{tag}-f{i}") for i, p in enumerate(self.fresh_pool[:n])]
        if name == "replay":
            return [self._with(self.approved, f"{tag}-replayed", f"u-{tag}-replayer")] * n
        return [self._with(self.approved, f"{tag}-cd{i % self.cooldown_users}-{i + 1}",
                           f"u-{tag}-cd{i % self.cooldown_users}") for i in range(n)]


def check(kind: str, result) -> Optional[str]:
    """None if the decision is what the phase means, else what is wrong."""
    codes = [r["code"] for r in result.decision["reasons"]]
    if kind == "replay" and not result.replayed:
        return "not replayed"
    if kind in ("fresh", "replay-original", "cooldown-start") and result.replayed:
        return "replayed"
    if kind == "cooldown" and codes != ["REAPPLY_COOLDOWN"]:
        return f"reasons {codes}, not REAPPLY_COOLDOWN"
    if kind == "cooldown-start" and not result.decision.get("reapply_after"):
        return f"no reapply_after ({result.decision['outcome']} {codes})"
    return None


# -- one target ---------------------------------------------------------------------------------
def run_target(label: str, url: Optional[str], work: Workload, stats_client: Optional[redis.Redis]) -> dict:
    services = build_services(Settings(redis_url=url))
    schema = DecideRequestSchema(term_ranges=services.rules.policy.book.term_ranges())
    store = services.stores.users
    store_time = [0.0]
    calls = [0]

    def timed(inner, counted: bool):             # time spent in the store's calls
        def call(*args, **kwargs):
            calls[0] += counted
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                store_time[0] += time.perf_counter() - t0
        return call

    if hasattr(store, "_do"):                    # Redis: one round trip per _do (store.round_trips)
        store._do = timed(store._do, False)
        round_trips = lambda: store.round_trips  # noqa: E731
    else:                                        # in memory: the user-store port's calls
        for name in ("begin", "commit", "release", "application", "applications", "state"):
            setattr(store, name, timed(getattr(store, name), True))
        round_trips = lambda: calls[0]  # noqa: E731
    tag = f"rt{secrets.token_hex(3)}-{label}"
    problems: Counter = Counter()

    def decide(kind: str, payload: dict) -> None:
        result = services.decisions.decide(payload, schema.load(payload))
        wrong = check(kind, result)
        if wrong:
            problems[f"{kind}: {wrong}"] += 1

    for kind, payload in work.warmup(tag) + work.setup(tag):
        decide(kind, payload)
    phases = {}
    for name in PHASES:
        payloads = work.phase(name, tag)
        gc.collect()
        rt0, st0 = round_trips(), store_time[0]
        cs0 = commandstats(stats_client) if stats_client else None
        t0 = time.perf_counter()
        for payload in payloads:
            decide(name, payload)
        elapsed = time.perf_counter() - t0
        cs1 = commandstats(stats_client) if stats_client else None
        n = len(payloads)
        row = {"n": n, "seconds": elapsed, "client_round_trips": round_trips() - rt0,
               "store_seconds": store_time[0] - st0}
        if cs0 is not None:
            delta = {k: v for k, v in (cs1 - cs0).items() if v}
            row["server_commands"] = delta
            row["server_sent"] = sum(v for k, v in delta.items() if k not in IN_SCRIPT or ENTRY.match(k))
            row["server_all"] = sum(delta.values())
        phases[name] = row
    return {"label": label, "url": url or "embedded (in memory)", "phases": phases,
            "problems": dict(problems)}


def total(phases: dict, key: str) -> float:
    return sum(p[key] for p in phases.values())


def report(results: list[dict], work: Workload, args, redis_version: str) -> None:
    n = sum(work.counts.values())
    print(f"in-process decide: {n} decisions = " +
          ", ".join(f"{work.counts[p]} {p}" for p in PHASES) +
          f" (+ set-up and warm-up, not counted); Python {platform.python_version()}, "
          f"redis-server {redis_version}, seed {args.seed}")
    for res in results:
        print(f"  {res['label']}: {res['url']}")
    print()
    head = f"{'target':<9} {'phase':<9} {'n':>6} {'client RT/dec':>13} {'server sent/dec':>15} " \
           f"{'server all/dec':>14} {'dec/s':>8} {'ms/dec':>7} {'store ms/dec':>12}"
    print(head)
    for res in results:
        rows = list(res["phases"].items()) + [("all", None)]
        for name, row in rows:
            if row is None:
                ph = res["phases"]
                row = {"n": total(ph, "n"), "seconds": total(ph, "seconds"),
                       "client_round_trips": total(ph, "client_round_trips"),
                       "store_seconds": total(ph, "store_seconds")}
                if all("server_sent" in p for p in ph.values()):
                    row["server_sent"] = total(ph, "server_sent")
                    row["server_all"] = total(ph, "server_all")
            k = row["n"]
            sent = f"{row['server_sent'] / k:.3f}" if "server_sent" in row else "-"
            every = f"{row['server_all'] / k:.3f}" if "server_all" in row else "-"
            print(f"{res['label']:<9} {name:<9} {k:>6} {row['client_round_trips'] / k:>13.3f} {sent:>15} "
                  f"{every:>14} {k / row['seconds']:>8.1f} {1000 * row['seconds'] / k:>7.3f} "
                  f"{1000 * row['store_seconds'] / k:>12.3f}")
    print()
    for res in results:
        for name, row in res["phases"].items():
            if "server_commands" in row:
                cmds = ", ".join(f"{k} {v / row['n']:.2f}" for k, v in
                                 sorted(row["server_commands"].items(), key=lambda kv: -kv[1]))
                print(f"server commands per decision, {res['label']} {name}: {cmds}")
    by = {r["label"]: r for r in results}
    if "redis" in by and "embedded" in by:
        r, e = (total(by[x]["phases"], "seconds") for x in ("redis", "embedded"))
        print(f"\nall phases: redis {n / r:.1f} dec/s, embedded {n / e:.1f} dec/s "
              f"(redis/embedded {e / r:.2f}x the decisions/s)")
    print("client RT: RedisStateStore.round_trips delta (embedded: user-store port calls); "
          "server sent: commands a client sent (EVALSHA/EVAL/SCRIPT, and any not used inside the scripts: " + ", ".join(sorted(IN_SCRIPT)) +
          "); server all: also the commands run inside the scripts. Time includes the schema load.")
    for res in results:
        for problem, count in res["problems"].items():
            print(f"warning: {res['label']}: {count} decision(s) {problem}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="measured decisions per target")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-url", help="a Redis server to use instead of a private one "
                        "(only this run should use it, or the server figures count others too)")
    parser.add_argument("--replay-share", type=float, default=0.25)
    parser.add_argument("--cooldown-share", type=float, default=0.25)
    parser.add_argument("--no-embedded", action="store_true", help="skip the embedded-store run")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = parser.parse_args(argv)
    logging.getLogger("loan_decide").setLevel(logging.ERROR)   # the embedded-store warning

    now = dt.datetime.now(dt.timezone.utc)                      # the service decides on the system clock
    private = None if args.redis_url else PrivateRedis()
    url = args.redis_url or private.url
    try:
        stats_client = redis.Redis.from_url(url) if url.startswith(("redis://", "rediss://", "unix://")) else None
        version = stats_client.info("server")["redis_version"] if stats_client else "?"
        probe = build_services(Settings(redis_url=None))
        schema = DecideRequestSchema(term_ranges=probe.rules.policy.book.term_ranges())
        work = Workload(args.n, args.replay_share, args.cooldown_share, args.seed, now, schema)
        del probe
        results = [run_target("redis", url, work, stats_client)]
        if not args.no_embedded:
            results.append(run_target("embedded", None, work, None))
    finally:
        if private:
            private.stop()
    report(results, work, args, version)
    if args.json:
        print(json.dumps(results, indent=1, default=str))
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
