"""Replay and simulate a decision log on a Dask cluster: `--jobs`'s partitions, as Dask tasks.

Why it is built this way:

- The partitions are `simulate.partition_of`'s (a stable hash of `user_id`), so every record of
  a user lands in one partition, in log order (a simulation carries each user's state forward),
  and each partition runs the code `--jobs` runs: `replay.run` for a plain replay,
  `simulate.Partition` for `--simulate`. Every figure is a count and the changed decisions are
  keyed by line, so the merged partitions give the summary of `--jobs 1` for any number of
  partitions and workers.
- The client never holds the log: it streams it once into one file per partition (line number,
  tab, text) in a directory the workers read (the client's TMPDIR; on several machines, a shared
  volume mounted at the same path) and sends each task only the file's path and the rules.
- Workers are processes with one thread each: durable_rules is not thread-safe. The local
  cluster is built so; a remote cluster's workers are started with `--nthreads 1`.
- The Dask nanny starts its workers with MALLOC_TRIM_THRESHOLD_=65536 (to hand memory back to
  the OS sooner); with it glibc trims the heap after every durable_rules session and a decision
  costs about twice as much (measured: 9.3 against 4.3 s for 20,000 records). A local cluster
  is started without it; workers started elsewhere that have it are named in a warning, with
  the setting that unsets it (NANNY_UNSET_TRIM).
- A partition that fails fails the run, naming the partition, its lines and the record it was on;
  no summary is made from the others, so nothing that was not compared is counted as identical.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from service.usecases import replay as replaying
from service.usecases import simulate as simulating
from service.usecases.impact import Impact
from service.usecases.replay import BadRecord, PolicySource
from service.usecases.simulate import Simulation, StoresFactory

CONNECT_SECONDS = 5.0      # a scheduler that does not answer within this is reported unreachable
WORKERS_SECONDS = 30.0     # a reachable scheduler with no worker after this is reported idle
PARTITIONS_PER_WORKER = 4  # a few tasks a worker: a slow partition does not leave the others idle
TRIM = "MALLOC_TRIM_THRESHOLD_"
# a worker's event loop took a sixth of its process's samples, mostly the system monitor reading
# every disk's counters twice a second and a 20 ms tick; a replay has no use for either
QUIET = {"distributed.admin.system-monitor.disk": False,
         "distributed.admin.system-monitor.interval": "2s",
         "distributed.admin.tick.interval": "1s"}
# the environment variable that tells `dask worker`'s nanny not to set TRIM for its workers
NANNY_UNSET_TRIM = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON={'MALLOC_TRIM_THRESHOLD_': None}"


class EngineError(RuntimeError):
    """The cluster could not run the replay: unreachable, no workers, or a partition failed."""


class PartitionFailed(EngineError):
    """One partition's task failed; the message names its lines and the record it was on."""


@dataclass(frozen=True)
class Cluster:
    """Where the partitions run: a scheduler's address, or a local cluster of `workers`."""

    scheduler: Optional[str] = None
    workers: int = 1
    partitions: Optional[int] = None   # None: PARTITIONS_PER_WORKER per worker


@dataclass(frozen=True)
class Slice:
    """One partition's records, as the client wrote them for a worker to read."""

    index: int
    path: str
    records: int
    first_line: int
    last_line: int

    def describe(self) -> str:
        lines = f"lines {self.first_line}-{self.last_line}" if self.records else "no lines"
        return f"partition {self.index} ({self.records} records, {lines})"


@dataclass(frozen=True, eq=False)
class Work:
    """What every partition does: replay or simulate, under which rules, keeping what."""

    source: PolicySource
    source_key: str               # the same rules: the worker reuses the engines it built
    simulate: bool
    stores: Optional[StoresFactory]
    skip_bad: bool
    keep_changes: bool
    impact: bool


@dataclass(frozen=True)
class Progress:
    done: int
    partitions: int
    decisions: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.decisions / self.seconds if self.seconds > 0 else 0.0


# -- on a worker -----------------------------------------------------------------------------------
_SOURCES: dict[str, PolicySource] = {}


def _source(work: Work) -> PolicySource:
    """The worker's copy of the rules, kept across tasks (building the engines costs seconds)."""
    if work.source_key not in _SOURCES:
        if len(_SOURCES) >= 4:
            _SOURCES.clear()
        _SOURCES[work.source_key] = work.source
    return _SOURCES[work.source_key]


def _read(path: Path, at: list) -> Iterator[tuple[int, str]]:
    """The slice's (line number, text), noting in `at` the record being worked on."""
    with path.open(encoding="utf-8") as handle:
        for row in handle:
            number, _, text = row.partition("\t")
            at[:] = [int(number), text]
            yield int(number), text


def _replay(work: Work, source: PolicySource, lines: Iterable[tuple[int, str]]) -> Simulation:
    """A plain replay of one partition: `replay.run`, as `--jobs 1`, kept as a partition's result."""
    result = Simulation(impact=Impact() if work.impact else None)
    # in one process `run` takes one record at a time: a failure is at the record `_read` gave last
    for item in replaying.run(lines, source, jobs=1, skip_bad=work.skip_bad):
        if isinstance(item, BadRecord):
            result.summary.bad_lines += 1
            result.bad.append((item.line, item.problem))
            continue
        result.summary.add(item)
        if result.impact is not None:
            result.impact.add(item)
        if item.changed and work.keep_changes and item.kind == "decision":
            result.changes.append(replaying.change_report(item))
    return result


def _simulate(work: Work, source: PolicySource, lines: Iterable[tuple[int, str]]) -> Simulation:
    """One partition simulated on stores of its own: `simulate.Partition`, as `--jobs`."""
    part = simulating.Partition(source, work.stores, work.skip_bad, work.keep_changes, work.impact)
    for number, text in lines:
        part.feed(number, text)
        if part.stopped:
            break
    return part.result


def run_partition(work: Work, piece: Slice) -> Simulation:
    """The Dask task: one partition replayed or simulated, or PartitionFailed naming where."""
    path = Path(piece.path)
    if not path.is_file():
        raise PartitionFailed(f"{piece.describe()}: {piece.path} is not readable on worker "
                              f"{socket.gethostname()}: the workers must see the client's "
                              "partition directory (TMPDIR) at the same path")
    at: list = []
    try:
        run = _simulate if work.simulate else _replay
        return run(work, _source(work), _read(path, at))
    except Exception as exc:   # e.g. a rules version that cannot be found
        raise PartitionFailed(f"{piece.describe()} failed at {_record(at)}: {exc}") from None


def _record(at: list) -> str:
    """`line N (user U, application A)` of the record a partition was on."""
    if not at:
        return "its start"
    number, text = at
    try:
        record = json.loads(text)
        ids = f" (user {record.get('user_id')}, application {record.get('application_id')})"
    except (ValueError, AttributeError):
        ids = ""
    return f"line {number}{ids}"


# -- on the client ---------------------------------------------------------------------------------
def split(lines: Iterable[tuple[int, str]], partitions: int, directory: Path) -> list[Slice]:
    """Stream the log into one file per partition, by `simulate.partition_of`."""
    paths = [directory / f"partition-{index:04d}.tsv" for index in range(partitions)]
    counts, first, last = [0] * partitions, [0] * partitions, [0] * partitions
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(path.open("w", encoding="utf-8")) for path in paths]
        for number, text in lines:
            index = simulating.partition_of(text, partitions)
            handles[index].write(f"{number}\t{text if text.endswith(chr(10)) else text + chr(10)}")
            counts[index] += 1
            first[index] = first[index] or number
            last[index] = number
    return [Slice(i, str(paths[i]), counts[i], first[i], last[i]) for i in range(partitions)]


@contextlib.contextmanager
def connect(cluster: Cluster) -> Iterator:
    """A distributed Client: on the scheduler named, or on a local cluster of processes."""
    from distributed import Client, LocalCluster

    if cluster.scheduler is None:
        # processes, one thread each (durable_rules); no
        # memory limit: a nanny that pauses a shared machine's worker would stall the replay
        # (the dashboard, when bokeh is installed, on a free port)
        import dask

        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{TRIM}": None, **QUIET}):
            local = LocalCluster(n_workers=cluster.workers, threads_per_worker=1, processes=True,
                                 host="127.0.0.1", dashboard_address=":0", memory_limit=0,
                                 silence_logs=40)
        with local, Client(local) as client:
            yield client
        return
    try:
        client = Client(cluster.scheduler, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError) as exc:
        raise EngineError(f"cannot reach the Dask scheduler at {cluster.scheduler} within "
                          f"{CONNECT_SECONDS:g} s ({exc})") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKERS_SECONDS)
        except (OSError, TimeoutError):
            raise EngineError(f"the Dask scheduler at {cluster.scheduler} has no worker after "
                              f"{WORKERS_SECONDS:g} s") from None
        yield client


def _trim_setting() -> Optional[str]:
    return os.environ.get(TRIM)


def trim_warning(client) -> Optional[str]:
    """A warning naming the workers that run with TRIM set, or None."""
    trimmed = {address: value for address, value in client.run(_trim_setting).items() if value}
    if not trimmed:
        return None
    return (f"{len(trimmed)} of the Dask workers run with {TRIM}="
            f"{next(iter(trimmed.values()))} (the nanny's default), which makes a decision about "
            f"twice as slow: start `dask worker` with {NANNY_UNSET_TRIM!r} in its environment, or "
            "with --no-nanny")


def _gather(client, work: Work, pieces: list[Slice],
            on_progress: Optional[Callable[[Progress], None]]) -> Simulation:
    """Submit one task a partition; merge the results as they come; stop at the first failure."""
    from distributed import as_completed

    started, decisions = time.monotonic(), 0
    futures = {client.submit(run_partition, work, piece, pure=False, retries=0): piece
               for piece in pieces}
    total = Simulation(impact=Impact() if work.impact else None)
    try:
        for done, future in enumerate(as_completed(futures), 1):
            piece = futures[future]
            try:
                result = future.result()
            except PartitionFailed:
                raise
            except Exception as exc:   # the worker died (KilledWorker), or could not run it
                raise PartitionFailed(f"{piece.describe()} failed: {type(exc).__name__}: {exc}") from None
            future.release()
            total.merge(result)
            decisions += result.summary.total
            if on_progress:
                on_progress(Progress(done, len(pieces), decisions, time.monotonic() - started))
    finally:
        client.cancel(list(futures))
    return total


def replay_on_dask(lines: Iterable[tuple[int, str]], source: PolicySource, cluster: Cluster, *,
                   simulate: bool = False, stores: Optional[StoresFactory] = None,
                   skip_bad: bool = False, keep_changes: bool = False, impact: bool = False,
                   on_progress: Optional[Callable[[Progress], None]] = None,
                   on_warning: Optional[Callable[[str], None]] = None) -> Simulation:
    """The log replayed (or simulated) partition by partition on the cluster; merged as one.

    Raises the first BadRecord unless skip_bad (as `--jobs`), EngineError when the cluster
    cannot be reached or a partition fails."""
    work = Work(source, hashlib.sha256(pickle.dumps(source)).hexdigest(), simulate, stores,
                skip_bad, keep_changes, impact)
    with connect(cluster) as client:
        workers = len(client.scheduler_info()["workers"]) or 1
        warning = trim_warning(client)
        if warning and on_warning:
            on_warning(warning)
        partitions = cluster.partitions or workers * PARTITIONS_PER_WORKER
        directory = Path(tempfile.mkdtemp(prefix="loan-decide-partitions-"))
        try:
            os.chmod(directory, 0o755)   # workers may run as another user on a shared volume
            pieces = split(lines, partitions, directory)
            for piece in pieces:
                os.chmod(piece.path, 0o644)
            result = _gather(client, work, pieces, on_progress)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    result.bad.sort()
    bads = [BadRecord(line, problem) for line, problem in result.bad]
    if bads and not skip_bad:
        raise bads[0]
    return result
