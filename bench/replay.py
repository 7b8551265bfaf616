#!/usr/bin/env python3
"""Replay throughput of the decision log: decisions/s and peak memory, one process and all cores.

    .venv/bin/python bench/replay.py [--records 100000] [--seed 11] [--regenerate]
                                     [--no-inprocess] [--wait-idle SECONDS] [--json]

1. The log. tests/loggen.generate drives the wired use cases (tests.conftest.memory_services:
   the in-memory stores, the bundled rules, a moving FixedClock) through `--records` decisions
   plus the cancels and grace uses it makes on the way (2-3% more log records), and the
   decision log port's export writes it as JSON Lines. That takes ~2 ms a decision (minutes at
   100,000), so the file is cached as bench/out/replay-log-n<N>-seed<S>.jsonl (git-ignored)
   with a .meta.json next to it, and reused unless --regenerate is given or the bundled rules
   changed since (the log must be replayable under them). Generation runs in a child process,
   so its time and peak RSS are measured like the replays.
2. Replay under the rules that made the log: `loan-decide replay LOG --json --jobs J` as a
   subprocess, for J=1 and J=0 (all cores: os.cpu_count()). decisions/s = summary total /
   wall seconds of the whole command (interpreter start, imports, engine build included; the
   same command on an empty log gives that fixed cost, shown separately). The run must
   reproduce every decision: the script asserts identical == total (and reports exact, the
   byte-for-byte count).
3. Replay under changed rules: a copy of rules/ with E2 min_age 18 -> 21
   (bench/out/rules-e2-min-age-21/), `--rules DIR --report bench/out/...jsonl`, J=1 and J=0.
   Asserts that the changed count is the number of evaluated decisions aged 18-20 in the log,
   that E2.age moved in each of them, that every transition is to rejected, and that the report
   has one line per changed decision. (Other rules may move along: a decision E2 now refuses
   no longer gets T4's raised limits, so a limit check can flip; the summary lists them.)
4. In-process (unless --no-inprocess): service.usecases.replay.replay(read_lines(open(LOG)),
   bootstrap.policy_source(Settings(rules_dir=rules/)), jobs=J) in a fresh child interpreter, the policy built
   before the clock starts (the workers of J>1 are forked from it and inherit it): the
   steady-state rate without start-up.

Memory. Each command runs under `/usr/bin/time -v`: its "Maximum resident set size" is the
kernel's ru_maxrss of the command, which for J>1 is the largest of the parent and of its
worker processes (max, not sum: the workers are separate processes). A sampler reading /proc
every 0.5 s adds the parent's own peak (VmHWM), the largest worker peak, and the peak sum of PSS
over the whole process tree (the footprint of all processes together, shared pages split
between them; sampled, so a short spike can be missed). Without /usr/bin/time the command runs
under a small Python wrapper that reports getrusage(RUSAGE_CHILDREN).ru_maxrss (the same
max-over-the-tree figure).

Other load. The cores may be shared (another test run, say): each run reports how many cores
the rest of the machine kept busy meanwhile ('other', from /proc/stat minus the command's own
CPU), and --wait-idle SECONDS waits, before each run, for them to go quiet.

Prints a table (or one JSON object with --json) and writes the JSON to
bench/out/replay-n<N>-seed<S>-<UTC time>.json. Asserts correctness, not speed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RULES = ROOT / "rules"
VENV_BIN = ROOT / ".venv" / "bin"
CLI = VENV_BIN / "loan-decide"
PYTHON = VENV_BIN / "python" if (VENV_BIN / "python").exists() else Path(sys.executable)
GNU_TIME = Path("/usr/bin/time")
SAMPLE_S = 0.5   # VmHWM is the kernel's own peak: sampling rate matters only for the PSS sum


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# -- memory -----------------------------------------------------------------------------------------
def _status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB) and PPid of a process, from /proc/<pid>/status; {} once it is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "PPid"):
                    out[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            rest = handle.read().rpartition(")")[2].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Polls /proc for a process tree: each process's last VmHWM, the peak PSS sum, the process count."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root = root
        self.hwm_kb: dict[int, int] = {}
        self.cpu_s: dict[int, float] = {}
        self.depth: dict[int, int] = {}
        self.peak_pss_kb = 0
        self.peak_rss_sum_kb = 0
        self.max_processes = 0
        self._halt = threading.Event()

    def _tree(self) -> dict[int, int]:
        """pid -> depth below the root (root 0)."""
        parents: dict[int, int] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                ppid = _status(int(name)).get("PPid")
                if ppid is not None:
                    parents[int(name)] = ppid
        depth = {self.root: 0}
        changed = True
        while changed:
            changed = False
            for pid, ppid in parents.items():
                if pid not in depth and ppid in depth:
                    depth[pid] = depth[ppid] + 1
                    changed = True
        return depth

    def sample(self) -> None:
        depth = self._tree()
        pss = rss = 0
        alive = 0
        for pid, level in depth.items():
            status = _status(pid)
            if not status:
                continue
            alive += 1
            self.depth.setdefault(pid, level)
            self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), status.get("VmHWM", 0))
            self.cpu_s[pid] = max(self.cpu_s.get(pid, 0.0), _cpu_s(pid))
            rss += status.get("VmRSS", 0)
            pss += _pss_kb(pid)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)
        self.peak_rss_sum_kb = max(self.peak_rss_sum_kb, rss)
        self.max_processes = max(self.max_processes, alive)

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(SAMPLE_S)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def figures(self, command_depth: int) -> dict:
        """Peaks of the command's own process (at command_depth) and of its descendants."""
        own = [kb for pid, kb in self.hwm_kb.items() if self.depth[pid] == command_depth]
        workers = [kb for pid, kb in self.hwm_kb.items() if self.depth[pid] > command_depth]
        own_cpu = [s for pid, s in self.cpu_s.items() if self.depth[pid] == command_depth]
        worker_cpu = [s for pid, s in self.cpu_s.items() if self.depth[pid] > command_depth]
        return {
            # CPU seconds as last sampled (up to SAMPLE_S short of the final figure)
            "parent_cpu_s": round(sum(own_cpu), 1),
            "workers_cpu_s": round(sum(worker_cpu), 1) if worker_cpu else None,
            "parent_peak_rss_mb": round(max(own, default=0) / 1024, 1),
            "workers": len(workers),
            "max_worker_peak_rss_mb": round(max(workers, default=0) / 1024, 1) if workers else None,
            "tree_peak_pss_mb": round(self.peak_pss_kb / 1024, 1),
            "tree_peak_rss_sum_mb": round(self.peak_rss_sum_kb / 1024, 1),
        }


def _busy_s() -> float:
    """CPU seconds all cores of the machine have been busy so far, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)     # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


WAIT_IDLE_S = 0.0     # --wait-idle: before each run, wait up to this long for the machine to be quiet


def wait_idle(limit_s: float, threshold: float = 0.15, window_s: float = 3.0) -> float:
    """Wait (at most limit_s) until other processes keep < threshold cores busy over window_s.

    Returns the load of the last window. This process is idle meanwhile, so the load is others'.
    """
    started = time.monotonic()
    while True:
        before = _busy_s()
        time.sleep(window_s)
        load = (_busy_s() - before) / window_s
        if load < threshold or time.monotonic() - started >= limit_s:
            return load


_WRAPPER = ("import resource, subprocess, sys, json\n"
            "rc = subprocess.call(sys.argv[2:])\n"
            "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "open(sys.argv[1], 'w').write(json.dumps({'max_rss_kb': ru.ru_maxrss, 'user_s': ru.ru_utime,"
            " 'sys_s': ru.ru_stime, 'rc': rc}))\n"
            "sys.exit(rc)\n")


def _parse_time_v(text: str) -> dict:
    fields = {"Maximum resident set size (kbytes)": "max_rss_kb", "User time (seconds)": "user_s",
              "System time (seconds)": "sys_s", "Percent of CPU this job got": "cpu_percent",
              "Exit status": "rc"}
    out: dict = {}
    for line in text.splitlines():
        key, _, value = line.strip().rpartition(": ")
        if key in fields:
            value = value.rstrip("%")
            out[fields[key]] = float(value) if "." in value else int(value)
    return out


def measure(command: list[str], label: str, show_stderr: bool = False) -> dict:
    """Run a command; its wall time, stdout, CPU and memory figures. Raises if it fails."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt", dir=OUT, delete=False) as report:
        report_path = report.name
    if GNU_TIME.exists():
        wrapped, how = [str(GNU_TIME), "-v", "-o", report_path, *command], "/usr/bin/time -v"
    else:
        wrapped, how = [sys.executable, "-c", _WRAPPER, report_path, *command], "getrusage(RUSAGE_CHILDREN)"
    if WAIT_IDLE_S > 0:
        load = wait_idle(WAIT_IDLE_S)
        if load >= 0.15:
            log(f"{label}: machine still busy ({load:.2f} cores) after waiting {WAIT_IDLE_S:.0f} s: running anyway")
    log(f"{label}: {' '.join(command)}")
    busy = _busy_s()
    started = time.perf_counter()
    process = subprocess.Popen(wrapped, stdout=subprocess.PIPE,
                               stderr=None if show_stderr else subprocess.PIPE, text=True, cwd=ROOT)
    sampler = TreeSampler(process.pid)
    sampler.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    busy = _busy_s() - busy
    sampler.stop()
    try:
        raw = Path(report_path).read_text()
    finally:
        os.unlink(report_path)
    usage = _parse_time_v(raw) if GNU_TIME.exists() else json.loads(raw or "{}")
    if process.returncode != 0:
        raise SystemExit(f"{label} failed (exit {process.returncode}):\n{(stderr or '(stderr above)')[-3000:]}")
    # CPU the rest of the machine used meanwhile (other jobs compete for the cores; the
    # sampler's own /proc reading is counted here too, a few % of one core)
    own = (usage.get("user_s") or 0) + (usage.get("sys_s") or 0)
    other = max(busy - own, 0.0)
    log(f"{label}: {wall:.1f} s (other processes used {other / wall:.2f} cores meanwhile)")
    return {
        "machine_busy_cpu_s": round(busy, 1), "other_cpu_s": round(other, 1),
        "other_cores_busy": round(other / wall, 2),
        "command": command, "wall_s": round(wall, 3), "stdout": stdout, "stderr": stderr,
        "memory_by": how,
        "max_rss_mb": round(usage.get("max_rss_kb", 0) / 1024, 1),
        "user_s": usage.get("user_s"), "sys_s": usage.get("sys_s"),
        # the command itself is the wrapper's child: depth 1 below the wrapper
        **sampler.figures(command_depth=1),
    }


# -- the log ----------------------------------------------------------------------------------------
def log_paths(records: int, seed: int) -> tuple[Path, Path]:
    stem = OUT / f"replay-log-n{records}-seed{seed}"
    return stem.with_suffix(".jsonl"), stem.with_suffix(".meta.json")


def rules_version(rules_dir: Path) -> str:
    from service.adapters import rules_files
    return rules_files.load(rules_dir).version


def child_generate(records: int, seed: int, out_path: str, meta_path: str) -> None:
    """In a child process: generate the log, export it (atomically) and write its metadata."""
    sys.path.insert(0, str(ROOT))
    from service.adapters import rules_files
    from service.domain.clock import FixedClock
    from service.entrypoints.bootstrap import build_policy
    from tests.conftest import NOW, memory_services
    from tests.loggen import generate

    policy = build_policy(rules_files.load(RULES))
    services = memory_services(policy, FixedClock(NOW))
    made = [0]
    decide, step = services.decisions.decide, max(1, records // 10)

    def counting_decide(*args, **kwargs):   # progress on stderr every 10%
        made[0] += 1
        if made[0] % step == 0:
            log(f"generated {made[0]:,} / {records:,} decisions")
        return decide(*args, **kwargs)

    services.decisions.decide = counting_decide
    started = time.perf_counter()
    written = generate(services, records, seed=seed)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    tmp = Path(out_path + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        exported = services.stores.log.export(out)
    exported_s = time.perf_counter() - started
    assert exported == written, (exported, written)
    kinds = {"decision": 0, "cancel": 0, "grace": 0}
    evaluated = 0
    with open(tmp, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            kinds[record["kind"]] = kinds.get(record["kind"], 0) + 1
            evaluated += bool(record.get("evaluated"))
    os.replace(tmp, out_path)
    meta = {"records": exported, "decisions": kinds["decision"], "kinds": kinds,
            "evaluated": evaluated, "seed": seed, "users": 1500,
            "rules_version": policy.book.version, "generate_s": round(generated, 1),
            "export_s": round(exported_s, 1), "bytes": os.path.getsize(out_path),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    Path(meta_path).write_text(json.dumps(meta, indent=1) + "\n")


def ensure_log(records: int, seed: int, regenerate: bool) -> tuple[Path, dict]:
    path, meta_path = log_paths(records, seed)
    current = rules_version(RULES)
    if path.exists() and meta_path.exists() and not regenerate:
        meta = json.loads(meta_path.read_text())
        if meta.get("rules_version") == current and meta.get("bytes") == path.stat().st_size:
            log(f"reusing {path.relative_to(ROOT)} (generated {meta['created']}; --regenerate to redo)")
            return path, dict(meta, cached=True)
        log(f"{path.relative_to(ROOT)} is stale (other rules version or size): regenerating")
    log(f"generating {records:,} decisions, seed {seed} (~2 ms a decision)")
    run = measure([str(PYTHON), str(Path(__file__).resolve()), "--child-generate",
                   str(records), str(seed), str(path), str(meta_path)], "generate", show_stderr=True)
    meta = json.loads(meta_path.read_text())
    meta.update(cached=False, generate_wall_s=run["wall_s"], generate_peak_rss_mb=run["max_rss_mb"],
                generate_other_cores_busy=run["other_cores_busy"])
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "cached"}, indent=1) + "\n")
    return path, meta


# -- the changed rules ------------------------------------------------------------------------------
def modified_rules() -> Path:
    """A copy of rules/ with E2 min_age 18 -> 21 (as tests/unit/test_decision_log.py does)."""
    import yaml

    target = OUT / "rules-e2-min-age-21"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(RULES, target)
    eligibility = yaml.safe_load((target / "eligibility.yaml").read_text(encoding="utf-8"))
    e2 = next(rule for rule in eligibility["rules"] if rule["id"] == "E2")
    assert e2["params"]["min_age"] == 18, e2["params"]
    e2["params"]["min_age"] = 21
    (target / "eligibility.yaml").write_text(yaml.safe_dump(eligibility, allow_unicode=True), encoding="utf-8")
    return target


def expected_age_changes(path: Path) -> int:
    """Evaluated decisions aged 18-20: exactly the ones min_age 21 changes."""
    count = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if '"kind":"decision"' not in line[:40]:
                continue
            record = json.loads(line)
            if record["evaluated"] and 18 <= record["request"]["applicant"].get("age", 0) <= 20:
                count += 1
    return count


# -- in-process -------------------------------------------------------------------------------------
def child_inprocess(path: str, jobs: int) -> None:
    """In a fresh child interpreter: time service.usecases.replay.replay alone; print one JSON object."""
    sys.path.insert(0, str(ROOT))
    from service.adapters import decision_log
    from service.entrypoints.bootstrap import policy_source
    from service.entrypoints.settings import Settings
    from service.usecases import replay

    started = time.perf_counter()
    source = policy_source(Settings(rules_dir=RULES))
    source.for_version(rules_version(RULES))     # build the engine before the clock starts
    build_s = time.perf_counter() - started
    with open(path, encoding="utf-8") as handle:
        started = time.perf_counter()
        summary = replay.replay(decision_log.read_lines(handle), source, jobs=jobs)
        seconds = time.perf_counter() - started
    print(json.dumps({"summary": summary.to_dict(), "seconds": seconds, "build_s": build_s}))


# -- runs -------------------------------------------------------------------------------------------
def cli_run(path: Path, jobs: int, label: str, rules_dir: Path | None = None,
            report: Path | None = None) -> dict:
    command = [str(CLI), "replay", str(path), "--json", "--jobs", str(jobs)]
    if rules_dir:
        command += ["--rules", str(rules_dir)]
    if report:
        command += ["--report", str(report)]
    run = measure(command, label)
    summary = json.loads(run["stdout"].strip().splitlines()[-1])
    return {"jobs": jobs, "summary": summary, "wall_s": run["wall_s"],
            "decisions_per_s": round(summary["total"] / run["wall_s"], 1),
            "ms_per_decision": round(run["wall_s"] / max(summary["total"], 1) * 1000, 3),
            **{k: run[k] for k in ("max_rss_mb", "parent_peak_rss_mb", "workers", "max_worker_peak_rss_mb",
                                   "tree_peak_pss_mb", "tree_peak_rss_sum_mb", "user_s", "sys_s",
                                   "parent_cpu_s", "workers_cpu_s", "other_cores_busy",
                                   "memory_by", "command")}}


def inprocess_run(path: Path, jobs: int) -> dict:
    run = measure([str(PYTHON), str(Path(__file__).resolve()), "--child-inprocess", str(path), str(jobs)],
                  f"in-process jobs={jobs}")
    doc = json.loads(run["stdout"].strip().splitlines()[-1])
    total = doc["summary"]["total"]
    return {"jobs": jobs, "summary": doc["summary"], "seconds": round(doc["seconds"], 3),
            "engine_build_s": round(doc["build_s"], 3),
            "decisions_per_s": round(total / doc["seconds"], 1),
            "ms_per_decision": round(doc["seconds"] / max(total, 1) * 1000, 3),
            **{k: run[k] for k in ("max_rss_mb", "parent_peak_rss_mb", "workers", "max_worker_peak_rss_mb",
                                   "tree_peak_pss_mb", "user_s", "sys_s", "parent_cpu_s", "workers_cpu_s",
                                   "other_cores_busy")}}


def git_state() -> dict:
    """The commit measured, and whether the code the replay runs differs from it."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"git_head": git("rev-parse", "--short", "HEAD") or None,
            "service_or_rules_modified": bool(git("status", "--porcelain", "--", "service", "schemas", "rules"))}


def run_all(records: int, seed: int, regenerate: bool, inprocess: bool) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    path, meta = ensure_log(records, seed, regenerate)
    all_cores = os.cpu_count() or 1
    result: dict = {
        "records_arg": records, "seed": seed, "python": platform.python_version(), **git_state(),
        "cpu_count": all_cores, "affinity_cpus": len(os.sched_getaffinity(0)),
        "log": {"path": str(path.relative_to(ROOT)), "mb": round(meta["bytes"] / 1e6, 1),
                "mib": round(meta["bytes"] / 2**20, 1), **meta},
    }
    empty = OUT / "replay-empty.jsonl"
    empty.write_text("")
    start_up = cli_run(empty, 1, "start-up (empty log)")
    result["cli_startup_s"] = start_up["wall_s"]
    result["cli_startup_peak_rss_mb"] = start_up["max_rss_mb"]

    # 1. under the rules that made the log: every decision must come out the same
    same = {}
    for jobs in (1, 0):
        run = cli_run(path, jobs, f"replay jobs={jobs}")
        s = run["summary"]
        assert s["total"] == meta["decisions"], (s, meta)
        assert s["identical"] == s["total"] and s["changed"] == 0 and s["bad_lines"] == 0, s
        assert s["other_records"] == meta["records"] - meta["decisions"], s
        run["decisions_per_s_without_startup"] = round(s["total"] / (run["wall_s"] - start_up["wall_s"]), 1)
        same[f"jobs={jobs}"] = run
    one, every = same["jobs=1"], same["jobs=0"]
    assert one["summary"] == every["summary"], (one["summary"], every["summary"])
    result["same_rules"] = same
    result["identical_equals_total"] = True
    result["speedup_all_cores"] = round(every["decisions_per_s"] / one["decisions_per_s"], 2)

    # 2. under changed rules: E2 min_age 21
    rules_dir = modified_rules()
    expected = expected_age_changes(path)
    changed = {}
    for jobs in (1, 0):
        report = OUT / f"replay-changes-n{records}-seed{seed}-jobs{jobs}.jsonl"
        run = cli_run(path, jobs, f"replay --rules E2 min_age 21 jobs={jobs}", rules_dir, report)
        s = run["summary"]
        lines = sum(1 for _ in open(report, encoding="utf-8"))
        # E2.age moves in exactly the decisions aged 18-20; other rules may move with it as a
        # consequence (a decision E2 now refuses no longer gets T4's raised limits, so a limit
        # check that passed under limit_factor 1.5 fails under 1.0)
        assert s["changed"] == expected == lines and s["rules"].get("E2.age") == expected, (s, expected, lines)
        assert all(name.endswith("->rejected") for name in s["transitions"]), s["transitions"]
        assert s["identical"] + s["changed"] == s["total"] == meta["decisions"], s
        run["report"] = {"path": str(report.relative_to(ROOT)), "lines": lines,
                         "mb": round(report.stat().st_size / 1e6, 2)}
        run["decisions_per_s_without_startup"] = round(s["total"] / (run["wall_s"] - start_up["wall_s"]), 1)
        changed[f"jobs={jobs}"] = run
    assert changed["jobs=1"]["summary"] == changed["jobs=0"]["summary"]
    result["changed_rules"] = {"rules_dir": str(rules_dir.relative_to(ROOT)), "change": "E2 min_age 18 -> 21",
                               "rules_version": rules_version(rules_dir), "expected_changed": expected,
                               "runs": changed}

    # 3. in-process, engine built first
    if inprocess:
        runs = {}
        for jobs in (1, all_cores):
            run = inprocess_run(path, jobs)
            assert run["summary"] == one["summary"], (run["summary"], one["summary"])
            runs[f"jobs={jobs}"] = run
        result["in_process"] = runs
    return result


def print_table(r: dict) -> None:
    g = r["log"]
    print(f"replay benchmark: {g['decisions']:,} decisions, seed {r['seed']}, python {r['python']}, "
          f"{r['cpu_count']} cores (jobs=0 = {r['cpu_count']} processes), at {r['git_head']}"
          + (" + local changes" if r["service_or_rules_modified"] else ""))
    print(f"log  {g['path']}: {g['records']:,} records ({g['kinds']['decision']:,} decisions, "
          f"{g['kinds']['cancel']:,} cancels, {g['kinds']['grace']:,} grace uses), {g['mb']} MB ({g['mib']} MiB)")
    gen = (f"generated in {g['generate_s']:.0f} s ({g['generate_s'] / g['decisions'] * 1000:.2f} ms/decision) "
           f"+ export {g['export_s']:.0f} s")
    if "generate_peak_rss_mb" in g:
        gen += f", child wall {g['generate_wall_s']:.0f} s, peak RSS {g['generate_peak_rss_mb']:.0f} MB"
    print(f"     {gen}" + ("   [cached file reused]" if g.get("cached") else ""))
    print(f"CLI start-up (empty log): {r['cli_startup_s']:.2f} s, peak RSS {r['cli_startup_peak_rss_mb']:.0f} MB")
    print()
    head = (f"  {'run':<36}{'wall s':>8}{'dec/s':>9}{'ms/dec':>8}{'w/o start':>10}"
            f"{'max RSS':>9}{'parent':>8}{'worker':>8}{'PSS sum':>9}{'CPU par':>8}{'CPU wrk':>8}{'other':>7}")
    print(head)

    def row(name: str, x: dict, wall_key: str = "wall_s") -> None:
        worker = f"{x['max_worker_peak_rss_mb']:.0f}" if x.get("max_worker_peak_rss_mb") else "-"
        cpu_workers = f"{x['workers_cpu_s']:.1f}" if x.get("workers_cpu_s") else "-"
        print(f"  {name:<36}{x[wall_key]:>8.1f}{x['decisions_per_s']:>9,.0f}{x['ms_per_decision']:>8.3f}"
              + (f"{x['decisions_per_s_without_startup']:>10,.0f}" if "decisions_per_s_without_startup" in x
                 else f"{'-':>10}") +
              f"{x['max_rss_mb']:>9.0f}{x['parent_peak_rss_mb']:>8.0f}{worker:>8}{x['tree_peak_pss_mb']:>9.0f}"
              f"{x['parent_cpu_s']:>8.1f}{cpu_workers:>8}{x['other_cores_busy']:>7.2f}")

    for key, x in r["same_rules"].items():
        row(f"own rules, CLI {key}", x)
    for key, x in r["changed_rules"]["runs"].items():
        row(f"E2 min_age 21 --report, CLI {key}", x)
    for key, x in r.get("in_process", {}).items():
        row(f"in-process replay() {key}", x, "seconds")
    print("  (dec/s: decisions / wall s of the whole command; w/o start: the empty-log start-up subtracted;\n"
          "   MB: max RSS = kernel ru_maxrss of the command = max over parent and workers, not a sum;\n"
          "   parent / worker = peak VmHWM of the parent / of the largest worker; PSS sum = peak total\n"
          "   footprint of all its processes; CPU par / wrk = CPU seconds of the parent / all workers;\n"
          "   other = cores the rest of the machine kept busy meanwhile: > 0 means the run shared its cores)")
    runs = [*r["same_rules"].values(), *r["changed_rules"]["runs"].values(), *r.get("in_process", {}).values()]
    busiest = max(x["other_cores_busy"] for x in runs)
    if busiest > 0.2:
        print(f"  WARNING: other processes kept up to {busiest:.2f} cores busy during a run: the figures "
              "(all cores above all) are low; rerun on a quiet machine")
    s = r["same_rules"]["jobs=1"]["summary"]
    print()
    print(f"own rules: total {s['total']:,}  identical {s['identical']:,}  exact {s['exact']:,}  changed "
          f"{s['changed']}  other records {s['other_records']:,}  -> identical == total: asserted, holds "
          f"(jobs=1 and jobs=0)")
    print(f"all cores / one process: {r['speedup_all_cores']:.2f}x")
    c = r["changed_rules"]
    cs = c["runs"]["jobs=1"]["summary"]
    rep = c["runs"]["jobs=1"]["report"]
    print(f"E2 min_age 21: changed {cs['changed']:,} of {cs['total']:,} (expected {c['expected_changed']:,}: evaluated "
          f"decisions aged 18-20), rules {cs['rules']}")
    if set(cs["rules"]) != {"E2.age"}:
        print("     (rules other than E2.age move with it: a decision E2 now refuses loses T4's raised "
              "limits, limit_factor 1.5 -> 1.0)")
    print(f"     transitions {cs['transitions']}")
    print(f"     report {rep['path']}: {rep['lines']:,} lines, {rep['mb']} MB")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-generate"]:
        child_generate(int(argv[1]), int(argv[2]), argv[3], argv[4])
        return 0
    if argv[:1] == ["--child-inprocess"]:
        child_inprocess(argv[1], int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000,
                        help="decisions in the generated log (default 100000; the log also holds the "
                             "~3%% cancels and grace uses made on the way)")
    parser.add_argument("--seed", type=int, default=11, help="seed of tests/loggen.generate (default 11)")
    parser.add_argument("--regenerate", action="store_true", help="generate the log even if it is cached")
    parser.add_argument("--no-inprocess", dest="inprocess", action="store_false",
                        help="skip the in-process service.replay.replay runs")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each timed run, wait up to SECONDS for other processes to leave the "
                             "cores idle (default 0: don't wait; the 'other' column shows what they used)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    global WAIT_IDLE_S
    WAIT_IDLE_S = args.wait_idle
    if args.records < 1:
        parser.error("--records must be at least 1")
    if not CLI.exists():
        parser.error(f"{CLI} not found: run `make setup` first")
    sys.path.insert(0, str(ROOT))
    result = run_all(args.records, args.seed, args.regenerate, args.inprocess)
    result["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    saved = OUT / f"replay-n{args.records}-seed{args.seed}-{stamp}.json"
    saved.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print_table(result)
        print(f"\nfull results: {saved.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
