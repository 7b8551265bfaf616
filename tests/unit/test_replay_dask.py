"""`replay --engine dask`: the summary of `--jobs 1`, on a local cluster and on a real scheduler.

The partitions run in other processes (a LocalCluster, or `dask scheduler` and two `dask
worker` processes on loopback), so these tests go through the CLI, as an operator would.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.adapters import dask_replay
from service.domain.clock import FixedClock
from service.entrypoints.cli import main
from tests.conftest import NOW, RULES_DIR, memory_services
from tests.loggen import generate

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow   # clusters of processes: left out of `make unit`, run by `make test`
DASK = Path(sys.executable).with_name("dask")


@pytest.fixture(scope="module")
def log(policy, tmp_path_factory) -> Path:
    """A log of 1,200 decisions over 300 users (and some cancels, grace uses), made by the service."""
    services = memory_services(policy, FixedClock(NOW))
    generate(services, 1200, users=300, seed=5)
    out = io.StringIO()
    services.stores.log.export(out)
    path = tmp_path_factory.mktemp("dask-log") / "log.jsonl"
    path.write_text(out.getvalue())
    return path


@pytest.fixture(scope="module")
def candidate(tmp_path_factory) -> Path:
    """Rules under which no rejection opens the 90-day window: many decisions change."""
    path = tmp_path_factory.mktemp("dask-rules") / "rules"
    shutil.copytree(RULES_DIR, path)
    for file in path.glob("*.yaml"):
        file.write_text(file.read_text().replace("starts_cooldown: true", "starts_cooldown: false"))
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["replay", *args])
    return result.exit_code, result.stdout, result.stderr


def expected(log: Path, candidate: Path, tmp_path: Path, simulate: bool) -> tuple[dict, str]:
    """`--jobs 1`'s JSON summary and JSON Lines report."""
    report = tmp_path / "jobs1.jsonl"
    code, out, err = run(str(log), "--rules", str(candidate), "--json", "--report", str(report),
                         *(["--simulate"] if simulate else []))
    assert code == 0, err
    return json.loads(out), report.read_text()


@pytest.mark.parametrize("simulate", [False, True], ids=["replay", "simulate"])
def test_a_local_cluster_gives_the_summary_and_report_of_one_job(log, candidate, tmp_path, simulate):
    summary, report = expected(log, candidate, tmp_path, simulate)
    mine = tmp_path / "dask.jsonl"
    code, out, err = run(str(log), "--rules", str(candidate), "--json", "--report", str(mine),
                         "--engine", "dask", "--jobs", "2", "--partitions", "5",
                         *(["--simulate"] if simulate else []))
    assert code == 0, err
    assert json.loads(out) == summary and mine.read_text() == report
    assert summary["changed"] > 0 and "partition" not in err   # no progress with --json
    assert "warning" not in err   # the local cluster's workers: no MALLOC_TRIM_THRESHOLD_, no profiler


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def scheduler():
    """`dask scheduler` and two `dask worker` processes (one thread each) on loopback."""
    address = f"tcp://127.0.0.1:{free_port()}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port",
                               address.rsplit(":", 1)[1], "--no-dashboard"], **quiet)]
    # the first worker as `dask worker` starts by default (its nanny sets MALLOC_TRIM_THRESHOLD_,
    # its profiler samples), the second told not to: the run warns about one of the two
    unset = dict(os.environ, **dict(setting.split("=", 1) for setting in
                                    (dask_replay.NANNY_UNSET_TRIM, dask_replay.PROFILER_OFF)))
    procs += [subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                "--no-dashboard", "--memory-limit", "0"], env=env, **quiet)
              for env in (None, unset)]
    try:
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.parametrize("simulate", [False, True], ids=["replay", "simulate"])
def test_a_real_scheduler_gives_the_summary_of_one_job(log, candidate, tmp_path, scheduler, simulate):
    summary, _ = expected(log, candidate, tmp_path, simulate)
    code, out, err = run(str(log), "--rules", str(candidate), "--engine", "dask",
                         "--scheduler", scheduler, "--partitions", "7",
                         *(["--simulate"] if simulate else []))
    assert code == 0, err
    assert "partition 7/7 done" in err and "decisions/s so far" in err   # progress, on stderr
    assert "warning: 1 of the Dask workers run with MALLOC_TRIM_THRESHOLD_=65536" in err
    assert "warning: 1 of the Dask workers run their statistical profiler" in err
    code, out, err = run(str(log), "--rules", str(candidate), "--json", "--engine", "dask",
                         "--scheduler", scheduler, "--partitions", "7",
                         *(["--simulate"] if simulate else []))
    assert code == 0, err
    assert json.loads(out) == summary


def mixed_inputs(log: Path, directory: Path) -> list[str]:
    """The log cut in three, in order: a JSON Lines file, a gzip file (found by a glob), and a
    directory holding the rest as Parquet part files."""
    import gzip

    from service.adapters.log_parquet import ParquetLogWriter

    lines = log.read_text().splitlines(keepends=True)
    a, b = len(lines) // 3, 2 * len(lines) // 3
    (directory / "a.jsonl").write_text("".join(lines[:a]))
    with gzip.open(directory / "b.jsonl.gz", "wt") as handle:
        handle.write("".join(lines[a:b]))
    (directory / "c").mkdir()
    writer = ParquetLogWriter(directory / "c", rows_per_file=150)
    writer.write("".join(lines[b:]))
    assert len(writer.close()) > 1
    return [str(directory / "a.jsonl"), str(directory / "b*.gz"), str(directory / "c")]


@pytest.mark.parametrize("simulate", [False, True], ids=["replay", "simulate"])
def test_several_inputs_of_each_kind_give_the_summary_of_the_one_file(log, candidate, tmp_path,
                                                                       scheduler, simulate):
    pytest.importorskip("pyarrow")
    summary, report = expected(log, candidate, tmp_path, simulate)
    mine = tmp_path / "dask.jsonl"
    code, out, err = run(*mixed_inputs(log, tmp_path), "--rules", str(candidate), "--json",
                         "--report", str(mine), "--engine", "dask", "--scheduler", scheduler,
                         "--partitions", "3", *(["--simulate"] if simulate else []))
    assert code == 0, err
    assert json.loads(out) == summary and summary["total"] > 1000
    assert mine.read_text() == report


def test_an_unreachable_scheduler_is_named_within_seconds(log):
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, out, err = run(str(log), "--engine", "dask", "--scheduler", address, "--json")
    assert code == 1 and out == ""
    assert f"cannot reach the Dask scheduler at {address}" in err
    assert time.monotonic() - started < 20


def test_a_failing_partition_names_its_record_and_prints_no_summary(log, tmp_path):
    lines = log.read_text().splitlines(keepends=True)
    number = next(n for n, text in enumerate(lines, 1) if '"kind":"decision"' in text and n > 100)
    record = json.loads(lines[number - 1])
    record["rules_version"] = "sha256:" + "0" * 64          # no such version anywhere
    lines[number - 1] = json.dumps(record) + "\n"
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(lines))
    result = CliRunner(env={"REDIS_URL": None, "RULES_DIR": str(RULES_DIR)}).invoke(
        main, ["replay", str(broken), "--json", "--engine", "dask", "--jobs", "1",
               "--partitions", "3"])
    assert result.exit_code == 1 and result.stdout == ""
    assert f"failed at line {number} (user {record['user_id']}, application " \
           f"{record['application_id']})" in result.stderr
    assert "rules version sha256:000" in result.stderr and "not available" in result.stderr


def test_the_options_of_dask_need_the_dask_engine(log):
    code, _, err = run(str(log), "--partitions", "3")
    assert code == 2 and "--engine dask" in err


def test_without_the_dask_extra_the_error_says_how_to_install_it(log, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "distributed" else real(name, *a))
    code, _, err = run(str(log), "--engine", "dask")
    assert code == 1 and "needs the dask extra" in err and "[dask]" in err
