#!/usr/bin/env python3
"""Simulation throughput (`loan-decide replay LOG --simulate`): decisions/s and peak memory.

    .venv/bin/python bench/simulate.py [--records 100000] [--users 1500 100000] [--seed 11]
                                       [--regenerate] [--wait-idle SECONDS]

1. The logs. For each `--users` count, tests/loggen.generate drives the service (the
   in-memory stores, the bundled rules, a moving clock) through `--records` decisions spread over that many
   users, plus the cancels and grace uses it makes, and the log is exported as JSON Lines.
   1,500 users is bench/replay.py's log (each user applies ~67 times, so many records are
   refusals by state); 100,000 users makes most records run the rules. Cached as
   bench/out/simulate-log-n<N>-u<U>-seed<S>.jsonl (git-ignored) unless --regenerate.
2. For each log: `loan-decide replay LOG --simulate --json --jobs J` as a subprocess, for J=1
   and J=0 (all cores), under the rules that made the log. decisions/s = summary total / wall
   seconds of the whole command (start-up included). Each run must reproduce the log
   (identical == total: the candidate is the log's own rules, and the log starts from empty
   state), and the summaries of J=1 and J=0 must be equal.

Memory and other load are measured as bench/replay.py does (its `measure`: /usr/bin/time -v
max RSS, the largest worker's peak, the peak PSS sum of the process tree, the other cores'
load). Writes bench/out/simulate-<UTC time>.json and prints a table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import replay as bench_replay  # noqa: E402  (bench/replay.py: measure, log, paths)

ROOT, OUT, log = bench_replay.ROOT, bench_replay.OUT, bench_replay.log


def log_path(records: int, users: int, seed: int) -> Path:
    return OUT / f"simulate-log-n{records}-u{users}-seed{seed}.jsonl"


def child_generate(records: int, users: int, seed: int, out_path: str) -> None:
    """In a child process: generate the log and export it (atomically)."""
    sys.path.insert(0, str(ROOT))
    from service.adapters import rules_files
    from service.domain.clock import FixedClock
    from service.entrypoints.bootstrap import build_policy
    from tests.conftest import NOW, memory_services
    from tests.loggen import generate

    # one thread: a loaded machine must not expire the lock
    services = memory_services(build_policy(rules_files.load(bench_replay.RULES)), FixedClock(NOW),
                               lock_ttl_ms=3_600_000)
    written = generate(services, records, users=users, seed=seed)
    tmp = Path(out_path + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        assert services.stores.log.export(out) == written
    os.replace(tmp, out_path)


def ensure_log(records: int, users: int, seed: int, regenerate: bool) -> tuple[Path, dict]:
    path = log_path(records, users, seed)
    if path.exists() and not regenerate:
        log(f"reusing {path.relative_to(ROOT)}")
        return path, {"cached": True}
    log(f"generating {records:,} decisions over {users:,} users (minutes)")
    run = bench_replay.measure([str(bench_replay.PYTHON), str(Path(__file__).resolve()), "--child-generate",
                                str(records), str(users), str(seed), str(path)], "generate", show_stderr=True)
    return path, {"cached": False, "generate_wall_s": run["wall_s"]}


def cli_command() -> list[str]:
    if bench_replay.CLI.exists():
        return [str(bench_replay.CLI)]
    return [sys.executable, "-c", "from service.entrypoints.cli import main; main()"]


def simulate_run(path: Path, jobs: int, label: str) -> dict:
    run = bench_replay.measure([*cli_command(), "replay", str(path), "--simulate", "--json",
                                "--jobs", str(jobs)], label)
    summary = json.loads(run["stdout"].strip().splitlines()[-1])
    assert summary["simulated"] and summary["identical"] == summary["total"], summary
    return {"jobs": jobs, "summary": summary, "wall_s": run["wall_s"],
            "decisions_per_s": round(summary["total"] / run["wall_s"], 1),
            **{k: run.get(k) for k in ("max_rss_mb", "parent_peak_rss_mb", "workers",
                                       "max_worker_peak_rss_mb", "tree_peak_pss_mb",
                                       "other_cores_busy", "user_s", "sys_s")}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-generate"]:
        child_generate(int(argv[1]), int(argv[2]), int(argv[3]), argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--users", type=int, nargs="+", default=[1500, 100_000])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS")
    args = parser.parse_args(argv)
    bench_replay.WAIT_IDLE_S = args.wait_idle
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    result: dict = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "cpu_count": os.cpu_count(), "logs": []}
    for users in args.users:
        path, meta = ensure_log(args.records, users, args.seed, args.regenerate)
        if args.generate_only:
            continue
        runs = [simulate_run(path, jobs, f"simulate u={users} jobs={jobs}") for jobs in (1, 0)]
        assert runs[0]["summary"] == runs[1]["summary"], "the job count changed the answer"
        result["logs"].append({"users": users, "path": str(path.relative_to(ROOT)),
                               "bytes": path.stat().st_size, **meta, "runs": runs})
    result["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    saved = OUT / f"simulate-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    saved.write_text(json.dumps(result, indent=1) + "\n")
    for entry in result["logs"]:
        for r in entry["runs"]:
            s = r["summary"]
            print(f"users {entry['users']:>7,}  jobs {r['jobs']}  total {s['total']:,}  "
                  f"refused by state {s['state_refusals']['before']:,}  {r['wall_s']:.1f} s  "
                  f"{r['decisions_per_s']:,.1f} decisions/s  max RSS {r['max_rss_mb']} MB  "
                  f"tree PSS {r['tree_peak_pss_mb']} MB  other cores {r['other_cores_busy']}")
    print(f"full results: {saved.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
