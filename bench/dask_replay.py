#!/usr/bin/env python3
"""`replay --engine dask` on a real scheduler: 1 vs 2 workers, and Dask vs --jobs.

    .venv/bin/python bench/dask_replay.py [--records 200000] [--users 50000] [--seed 11]
                                          [--partitions 8] [--simulate] [--wait-idle SECONDS]
                                          [--repeat N] [--runs dask1,dask2,jobs2] [--parquet]

1. The log: tests/loggen.generate through the service on the in-memory stores, as
   bench/simulate.py makes it, but with a retention period longer than the log (200,000
   decisions span about three years of the generator's clock: under the default 400 days the
   export would hold only the last part). Two processes each generate half, over their own
   users, and their exports are concatenated. Cached as
   bench/out/dask-log-n<N>-u<U>-seed<S>.jsonl: generated once, reused. A generator holds its
   whole log in memory, about 12 GB at 500,000 decisions: on a 24 GB machine the 1,000,000
   log's two halves cannot be made at once (make one with --child-generate, then the other).
   --input replays another log instead (the Parquet export of that log, say).
2. For W = 1 and 2: `dask scheduler` and W `dask worker --nthreads 1` processes on loopback,
   fresh for each W (so each worker's VmHWM is that run's peak), then `loan-decide replay LOG
   --json --engine dask --scheduler ADDR --partitions P` timed as a subprocess (start-up and
   the client's split of the log included). decisions/s = summary total / wall seconds.
3. `loan-decide replay LOG --json --jobs W` for the same W: the cost of Dask at the same
   parallelism. Every summary must equal `--jobs 1`'s (asserted).
4. --repeat N runs 1-3 N times in turn (on a shared machine one run's speed varies by a fifth):
   the figures are each run's median, and every round's ratios are printed too.

Peak RSS per worker: VmHWM of each worker process (the nanny's child). Other load: the
machine's busy CPU less the command's and the workers'. Writes bench/out/dask-<UTC time>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import replay as bench_replay  # noqa: E402  (measure, log, /proc readers)

ROOT, OUT, log = bench_replay.ROOT, bench_replay.OUT, bench_replay.log
DASK = bench_replay.VENV_BIN / "dask"


def log_path(records: int, users: int, seed: int) -> Path:
    return OUT / f"dask-log-n{records}-u{users}-seed{seed}.jsonl"


GENERATORS = 2   # processes generating the log, each its own users: their logs are concatenated


def child_generate(records: int, users: int, seed: int, prefix: str, out_path: str) -> None:
    """In a child process: generate one share of the log and export it whole (atomically)."""
    sys.path.insert(0, str(ROOT))
    from service.adapters import rules_files
    from service.domain.clock import FixedClock
    from service.entrypoints.bootstrap import build_policy
    from tests.conftest import NOW, memory_services
    from tests.loggen import generate

    services = memory_services(build_policy(rules_files.load(bench_replay.RULES)), FixedClock(NOW),
                               lock_ttl_ms=3_600_000, retention_days=100_000)
    written = generate(services, records, users=users, seed=seed, prefix=prefix)
    tmp = Path(out_path + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        assert services.stores.log.export(out) == written
    os.replace(tmp, out_path)


def ensure_log(records: int, users: int, seed: int) -> tuple[Path, dict]:
    """The cached log, or a new one: GENERATORS shares made in parallel, each over its own users
    (ids prefixed `s<K>-`), concatenated. Every record of a user is in one share, in order."""
    path = log_path(records, users, seed)
    if path.exists():
        log(f"reusing {path.relative_to(ROOT)}")
        return path, {"cached": True}
    log(f"generating {records:,} decisions over {users:,} users in {GENERATORS} processes (minutes)")
    started = time.monotonic()
    shares = [Path(f"{path}.share{k}") for k in range(GENERATORS)]
    children = [subprocess.Popen([str(bench_replay.PYTHON), str(Path(__file__).resolve()),
                                  "--child-generate", str(records // GENERATORS + (k < records % GENERATORS)),
                                  str(users // GENERATORS), str(seed + k), f"s{k}-", str(share)])
                for k, share in enumerate(shares)]
    if any(child.wait() for child in children):
        raise SystemExit("generating the log failed")
    with open(f"{path}.tmp", "wb") as out:
        for share in shares:
            with open(share, "rb") as handle:
                shutil.copyfileobj(handle, out)
            share.unlink()
    os.replace(f"{path}.tmp", path)
    return path, {"cached": False, "generate_wall_s": round(time.monotonic() - started, 1),
                  "generators": GENERATORS}


def parquet_of(path: Path) -> Path:
    """The log as `log export --format parquet` writes it: a directory of part files."""
    out = path.with_suffix(".parquet")
    if out.is_dir():
        log(f"reusing {out.relative_to(ROOT)}")
        return out
    sys.path.insert(0, str(ROOT))
    from service.adapters.log_parquet import ParquetLogWriter

    log(f"writing {out.relative_to(ROOT)}")
    tmp = out.with_suffix(".parquet.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    writer = ParquetLogWriter(tmp)
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            writer.write(line)
    writer.close()
    os.replace(tmp, out)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    children = [int(p) for p in out.stdout.split()]
    return children + [d for c in children for d in _descendants(c)]


class Cluster:
    """A scheduler and `workers` one-thread workers on loopback, for one measurement."""

    def __init__(self, workers: int):
        self.address = f"tcp://127.0.0.1:{free_port()}"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": ROOT}
        self.scheduler = subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port",
                                           self.address.rsplit(":", 1)[1], "--no-dashboard"], **quiet)
        # as docs/decision-log-and-replay.md says to start them: no MALLOC_TRIM_THRESHOLD_ from the nanny, a quieter monitor,
        # no profiler
        env = dict(os.environ, DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="{'MALLOC_TRIM_THRESHOLD_': None}",
                   DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__DISK="False",
                   DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL="2s",
                   DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL="1s",
                   DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED="False")
        self.workers = [subprocess.Popen([str(DASK), "worker", self.address, "--nthreads", "1",
                                          "--nworkers", "1", "--no-dashboard", "--memory-limit", "0"],
                                         env=env, **quiet) for _ in range(workers)]
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=120)

    def worker_pids(self) -> list[int]:
        """The worker processes proper (each nanny's deepest child)."""
        return [_descendants(w.pid)[-1] if _descendants(w.pid) else w.pid for w in self.workers]

    def figures(self) -> dict:
        pids = self.worker_pids()
        return {"worker_peak_rss_mb": [round(bench_replay._status(p).get("VmHWM", 0) / 1024, 1)
                                       for p in pids],
                "worker_cpu_s": round(sum(bench_replay._cpu_s(p) for p in pids), 1)}

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(command: list[str], label: str, cluster: Cluster | None = None) -> dict:
    before = cluster.figures()["worker_cpu_s"] if cluster else 0.0
    result = bench_replay.measure(command, label)
    summary = json.loads(result["stdout"].strip().splitlines()[-1])
    out = {"label": label, "wall_s": result["wall_s"], "summary": summary,
           "decisions_per_s": round(summary["total"] / result["wall_s"], 1),
           "client_max_rss_mb": result["max_rss_mb"], "client_cpu_s": result["user_s"]}
    if cluster:
        figures = cluster.figures()
        worker_cpu = figures["worker_cpu_s"] - before
        out.update(figures, worker_cpu_s=round(worker_cpu, 1),
                   other_cores_busy=round(max(result["other_cpu_s"] - worker_cpu, 0) / result["wall_s"], 2))
    else:
        out["other_cores_busy"] = result["other_cores_busy"]
        out["max_worker_peak_rss_mb"] = result.get("max_worker_peak_rss_mb")
    log(f"{label}: {out['decisions_per_s']:,.0f} decisions/s, other cores busy {out['other_cores_busy']}")
    return out


def one_round(cli: list[str], wanted: set[str], partitions: int) -> list[dict]:
    """`--jobs 1`, then the Dask runs and `--jobs 2` wanted, one after the other."""
    runs = [run([*cli, "--jobs", "1"], "jobs 1")]
    for workers in (1, 2):
        if f"dask{workers}" not in wanted:
            continue
        cluster = Cluster(workers)
        try:
            runs.append(run([*cli, "--engine", "dask", "--scheduler", cluster.address,
                             "--partitions", str(partitions)], f"dask {workers} worker(s)", cluster))
        finally:
            cluster.close()
    if "jobs2" in wanted:
        runs.append(run([*cli, "--jobs", "2"], "jobs 2"))
    return runs


def ratios(by: dict) -> tuple[float, float, float]:
    """2 vs 1 workers, and Dask's cost against --jobs at 1 and at 2, from decisions/s by label."""
    nan = float("nan")
    return (by.get("dask 2 worker(s)", nan) / by.get("dask 1 worker(s)", nan),
            1 - by.get("dask 1 worker(s)", nan) / by["jobs 1"],
            1 - by.get("dask 2 worker(s)", nan) / by.get("jobs 2", nan))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-generate"]:
        child_generate(int(argv[1]), int(argv[2]), int(argv[3]), argv[4], argv[5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--simulate", action="store_true")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS")
    parser.add_argument("--log-only", action="store_true", help="generate (or find) the log, then stop")
    parser.add_argument("--runs", default="dask1,dask2,jobs2",
                        help="besides --jobs 1 (always: the summary the others must equal)")
    parser.add_argument("--parquet", action="store_true",
                        help="replay the log's Parquet export (made from it once, cached beside it)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run every measurement N times, interleaved; figures are medians")
    parser.add_argument("--input", help="replay this log instead (e.g. the log's Parquet export, a directory)")
    args = parser.parse_args(argv)
    bench_replay.WAIT_IDLE_S = args.wait_idle
    OUT.mkdir(parents=True, exist_ok=True)
    path, meta = ensure_log(args.records, args.users, args.seed)
    if args.log_only:
        print(path)
        return 0
    if args.parquet:
        path = parquet_of(path)
    if args.input:
        path, meta = Path(args.input).resolve(), {"cached": True, "input": args.input}
    cli = [str(bench_replay.CLI), "replay", str(path), "--json", *(["--simulate"] if args.simulate else [])]
    wanted = set(args.runs.split(","))
    rounds = [one_round(cli, wanted, args.partitions) for _ in range(args.repeat)]
    runs = [r for one in rounds for r in one]
    for other in runs[1:]:
        assert other["summary"] == runs[0]["summary"], (other["label"], other["summary"])
    by = {label: statistics.median(r["decisions_per_s"] for r in runs if r["label"] == label)
          for label in dict.fromkeys(r["label"] for r in runs)}
    ratio, cost1, cost2 = ratios(by)
    result = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "log": str(path), "log_meta": meta, "args": vars(args), "runs": runs,
              "median_decisions_per_s": by, "per_round": [ratios({r["label"]: r["decisions_per_s"]
                                                                  for r in one}) for one in rounds],
              "ratio_2_vs_1_workers": round(ratio, 2), "dask_cost_at_1": round(cost1, 3),
              "dask_cost_at_2": round(cost2, 3)}
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (OUT / f"dask-{stamp}.json").write_text(json.dumps(result, indent=1))
    print(f"{'run':<20} {'wall s':>8} {'decisions/s':>12} {'worker peak RSS MB':>20} {'other busy':>10}")
    for r in runs:
        print(f"{r['label']:<20} {r['wall_s']:>8.1f} {r['decisions_per_s']:>12,.0f} "
              f"{str(r.get('worker_peak_rss_mb') or r.get('max_worker_peak_rss_mb') or '-'):>20} "
              f"{r['other_cores_busy']:>10}")
    if args.repeat > 1:
        for k, (r, c1, c2) in enumerate(result["per_round"], 1):
            print(f"round {k}: 2 vs 1 workers {r:.2f}x; Dask cost {c1:.1%} at 1, {c2:.1%} at 2")
        print(f"medians of {args.repeat} rounds: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in by.items()))
    print(f"2 vs 1 workers: {ratio:.2f}x; Dask cost vs --jobs: {cost1:.1%} at 1, {cost2:.1%} at 2")
    print(f"results: bench/out/dask-{stamp}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
