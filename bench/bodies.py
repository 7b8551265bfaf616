#!/usr/bin/env python3
"""Write the pools of JSON bodies bench/http.sh sends with wrk (bench/payloads.lua), after
checking each one gets the outcome its pool stands for.

    .venv/bin/python bench/bodies.py OUT.tsv [--per-pool 8] [--seed 1] [--mix approved:28,...]

Pools (bench/applicants.py generators, products in turn so all 7 appear in each pool):

  approved       passes every rule, amount <= 60% of monthly income (no cooling-off)   -> approved
  rejected       1-3 failing checks (E1-E11, R1-R5, amount out of range)                 -> rejected
  cooling_off    an approval whose amount is 65%-150% of monthly income (T2)            -> cooling_off
  group          student / overseas / sme_owner / blue_collar, documents complete or not -> any
  missing        1-3 needed fields absent or null (MISSING_DATA)                        -> review mostly
  elderly        age 60+ (60: approved with elderly_care; above: rejected)              -> any
  cooldown_first bureau_major_adverse: true (R-adverse, starts the 90-day window, T1)    -> rejected
                 with reapply_after set

The "cooldown" share of the mix is the repeat-user share: payloads.lua keeps a small set of
user ids per wrk thread; a user's first request is a cooldown_first body, every later one an
approved-pool body, which the service refuses by state (rejected, REAPPLY_COOLDOWN, no rule
evaluated). Every other share is a new application of a new user.

Each body is POSTed through the real app's Flask test client (service.entrypoints.http.app.create_app(),
embedded store) with a user of its own and must answer 200 with its pool's outcome; the
cooldown path (first body, then a repeat of the same user) is checked once too. Then
application_id becomes @@APP@@ and user_id @@USER@@, which payloads.lua fills per request.

Output: line 1 `#mix name:weight,...` (the shares payloads.lua schedules), then one
`pool<TAB>json` line per body. With --sizes FILE, also the mean bytes, weighted by the mix, of
what a decision writes and answers: {"response", "record" (the application record), "log" (the
decision-log record)}, read back from the embedded store's ports (the record as the Redis
adapter stores its text, the log record as exported); bench/stateful_app.py (the stateful
ceiling) writes and answers records of these sizes.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import io
import json
import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH and the installed package
sys.path.append(str(ROOT / "bench"))

import applicants  # noqa: E402
from service.adapters.state_store import record_text  # noqa: E402
from service.entrypoints.http.app import create_app  # noqa: E402

DEFAULT_MIX = "approved:28,rejected:22,cooldown:15,cooling_off:10,group:15,missing:5,elderly:5"
POOLS = ("approved", "rejected", "cooling_off", "group", "missing", "elderly", "cooldown_first")
EXPECT = {"approved": {"approved"}, "rejected": {"rejected"}, "cooling_off": {"cooling_off"},
          "cooldown_first": {"rejected"}}


def _income_for_share(rng: random.Random, amount: int, low: float, high: float) -> int:
    """A monthly income (multiple of 100) making amount/income fall in (low, high]."""
    share = rng.uniform(low, high)
    income = int(amount / share) // 100 * 100
    return max(100, income)


def make(pool: str, rng: random.Random, product: str, now: dt.datetime) -> dict:
    if pool == "approved":
        p = applicants.approved(rng, product, now)
        a = p["applicant"]
        if p["amount"] > 0.6 * a["monthly_income"] or (a["monthly_income"] < 5000 and p["amount"] > 3000):
            a["monthly_income"] = max(5000, math.ceil(p["amount"] / 0.6 * rng.uniform(1.05, 2.5) / 100) * 100)
        return p
    if pool == "cooling_off":
        p = applicants.approved(rng, product, now)
        p["applicant"]["monthly_income"] = _income_for_share(rng, p["amount"], 0.65, 1.5)
        return p
    if pool == "cooldown_first":
        p = make("approved", rng, product, now)
        p["applicant"]["bureau_major_adverse"] = True
        return p
    return applicants.GENERATORS[pool](rng, product, now)


def parse_mix(text: str) -> list[tuple[str, int]]:
    mix = []
    for part in text.split(","):
        name, _, weight = part.partition(":")
        if name not in set(POOLS) - {"cooldown_first"} | {"cooldown"} or not weight.isdigit():
            raise SystemExit(f"bodies.py: bad --mix entry {part!r} (pools: approved, rejected, "
                             "cooldown, cooling_off, group, missing, elderly)")
        mix.append((name, int(weight)))
    return mix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-pool", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mix", default=DEFAULT_MIX)
    parser.add_argument("--sizes", type=Path, help="write the mix's mean response/record/log bytes here")
    args = parser.parse_args(argv)
    mix = parse_mix(args.mix)

    flask_app = create_app()
    client = flask_app.test_client()
    services = flask_app.extensions["services"]
    store = services.stores.users
    measured: list[tuple[str, str, str, int, int]] = []   # pool, user, application, response, record

    def measure(pool: str, payload: dict, decision: dict) -> None:
        """The bytes this decision answered and wrote (application record; its log record at the end)."""
        stored = store.application(payload["user_id"], payload["application_id"])
        record = record_text(stored, None).encode() if stored is not None else b""
        measured.append((pool, payload["user_id"], payload["application_id"],
                         len(json.dumps(decision, ensure_ascii=False, separators=(",", ":")).encode()),
                         len(record)))

    def written() -> dict[str, list[tuple[int, int, int]]]:
        """Each measured decision's (response, record, log record) bytes, by pool."""
        out = io.StringIO()
        services.stores.log.export(out)
        logged = {}
        for line in out.getvalue().splitlines():
            record = json.loads(line)
            if record["kind"] == "decision":
                logged[(record["user_id"], record["application_id"])] = len(line.encode())
        by_pool: dict[str, list[tuple[int, int, int]]] = collections.defaultdict(list)
        for pool, user, app, response, record in measured:
            by_pool[pool].append((response, record, logged.get((user, app), 0)))
        return by_pool
    now = dt.datetime.now(dt.timezone.utc)          # the live service decides on the system clock
    rng = random.Random(args.seed)
    lines = [f"#mix {','.join(f'{n}:{w}' for n, w in mix)}"]
    outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    sizes = []
    n = 0

    def post(payload: dict) -> dict:
        response = client.post("/decide", json=payload)
        body = response.get_json(silent=True) or {}
        if response.status_code != 200 or "outcome" not in body:
            raise SystemExit(f"bodies.py: {payload['product']} got {response.status_code}: "
                             f"{response.get_data(as_text=True)[:500]}")
        return body

    for pool in POOLS:
        made, attempts = 0, 0
        while made < args.per_pool:
            attempts += 1
            if attempts > args.per_pool * 200:
                print(f"bodies.py: could not make {args.per_pool} {pool} bodies", file=sys.stderr)
                return 1
            product = applicants.PRODUCTS[made % len(applicants.PRODUCTS)]
            payload = make(pool, rng, product, now)
            n += 1
            payload["application_id"] = f"bench-check-{args.seed}-{n}"
            payload["user_id"] = f"u-bench-check-{args.seed}-{n}"
            decision = post(payload)
            if pool in EXPECT and decision["outcome"] not in EXPECT[pool]:
                continue                               # e.g. a random draw that trips another rule
            if pool == "cooldown_first" and not decision.get("reapply_after"):
                continue
            made += 1
            measure(pool, payload, decision)
            outcomes[pool][decision["outcome"]] += 1
            sizes.append(len(json.dumps(decision)))
            payload["application_id"] = "@@APP@@"
            payload["user_id"] = "@@USER@@"
            lines.append(pool + "\t" + json.dumps(payload, ensure_ascii=False, separators=(",", ":")))

    # the cooldown path once: a cooldown_first body, then an approved body of the same user
    first = json.loads(next(l for l in lines if l.startswith("cooldown_first\t")).split("\t", 1)[1])
    repeat = json.loads(next(l for l in lines if l.startswith("approved\t")).split("\t", 1)[1])
    first.update(application_id="bench-check-cd-1", user_id=f"u-bench-check-cd-{args.seed}")
    repeat.update(application_id="bench-check-cd-2", user_id=f"u-bench-check-cd-{args.seed}")
    post(first)
    again = post(repeat)
    measure("cooldown", repeat, again)
    codes = [r["code"] for r in again["reasons"]]
    if again["outcome"] != "rejected" or codes != ["REAPPLY_COOLDOWN"]:
        print(f"bodies.py: a repeat after a cooldown rejection got {again['outcome']} {codes}", file=sys.stderr)
        return 1

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bodies = [l.split("\t", 1)[1] for l in lines[1:]]
    print(f"bodies: {len(bodies)} checked (200, pool outcome) -> {args.out}; mean request "
          f"{sum(map(len, bodies)) // len(bodies)} B, mean response {sum(sizes) // len(sizes)} B")
    for pool in POOLS:
        print(f"bodies:   {pool:<15} " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes[pool].items())))
    print("bodies: repeat of a cooldown user -> rejected REAPPLY_COOLDOWN (checked)")
    print(f"bodies: mix {args.mix}")
    if args.sizes:
        total = sum(w for _, w in mix)
        written_by_pool = written()
        mean = [sum(w * sum(s[i] for s in written_by_pool[name]) / len(written_by_pool[name])
                    for name, w in mix) / total
                for i in range(3)]
        sizes = dict(zip(("response", "record", "log"), (round(m) for m in mean)))
        args.sizes.write_text(json.dumps(sizes) + "\n", encoding="utf-8")
        print(f"bodies: mean bytes over the mix: response {sizes['response']}, application record "
              f"{sizes['record']}, log record {sizes['log']} -> {args.sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
