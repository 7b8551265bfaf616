#!/usr/bin/env python3
"""`replay --simulate` against plain `replay` of the same log, same jobs: decisions/s and ratio.

    .venv/bin/python bench/simulate_ratio.py [--records 20000] [--users 1500] [--jobs 1]
                                             [--rounds 3] [--bin PATH/loan-decide]

The log is made once by the service itself (tests/loggen.generate on the in-memory stores,
the bundled rules, a moving clock) and cached as bench/out/ratio-log-n<N>-u<U>.jsonl. Then
`loan-decide replay LOG --json --jobs J` and the same with `--simulate` run as subprocesses,
taking turns for `--rounds` rounds; decisions/s = the summary's total / wall seconds of the
command (start-up included, as a user waits for it). Each round prints both rates and the
ratio; the last line gives the best of each and their ratio. `--bin` runs another checkout's
command on the same log (a before/after comparison in one run of the machine).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))


def make_log(records: int, users: int) -> Path:
    path = OUT / f"ratio-log-n{records}-u{users}.jsonl"
    if path.exists():
        return path
    from service.domain.clock import FixedClock
    from service.entrypoints.bootstrap import build_services
    from service.entrypoints.settings import Settings
    from tests.conftest import NOW
    from tests.loggen import generate

    OUT.mkdir(parents=True, exist_ok=True)
    services = build_services(Settings(), FixedClock(NOW), publish=False)
    generate(services, records, users=users)
    with path.open("w", encoding="utf-8") as out:
        services.stores.log.export(out)
    return path


def run(binary: str, log: Path, jobs: int, simulate: bool) -> tuple[float, dict]:
    command = [binary, "replay", str(log), "--json", "--jobs", str(jobs)] + (["--simulate"] if simulate else [])
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True,
                          env={**os.environ, "REDIS_URL": ""})
    seconds = time.perf_counter() - started
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return summary["total"] / seconds, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bin", default=str(ROOT / ".venv" / "bin" / "loan-decide"))
    args = parser.parse_args()
    log = make_log(args.records, args.users)
    best = {"replay": 0.0, "simulate": 0.0}
    summaries = {}
    for round_ in range(1, args.rounds + 1):
        rates = {}
        for kind in ("replay", "simulate"):
            rates[kind], summaries[kind] = run(args.bin, log, args.jobs, kind == "simulate")
            best[kind] = max(best[kind], rates[kind])
        print(f"round {round_}: replay {rates['replay']:.0f}/s  simulate {rates['simulate']:.0f}/s  "
              f"ratio {rates['simulate'] / rates['replay']:.3f}")
    same = {k: v for k, v in summaries["simulate"].items() if k in summaries["replay"]} == summaries["replay"]
    print(f"best: replay {best['replay']:.0f}/s  simulate {best['simulate']:.0f}/s  ratio "
          f"{best['simulate'] / best['replay']:.3f}  ({summaries['replay']['total']} decisions, "
          f"jobs {args.jobs}; the simulation's summary has the replay's fields equal: {same})")


if __name__ == "__main__":
    main()
