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
- The tasks start before the split ends: a worker reads its partition's file as the client
  writes it, up to the end line the client writes last (`end`, tab, the number of records,
  checked). Splitting 200,000 records took the time of a twentieth of the replay, with every
  worker idle; now it overlaps the first partitions, and so does building the engines.
- Workers are processes with one thread each: durable_rules is not thread-safe. The local
  cluster is built so; a remote cluster's workers are started with `--nthreads 1`.
- The Dask nanny starts its workers with MALLOC_TRIM_THRESHOLD_=65536 (to hand memory back to
  the OS sooner); with it glibc trims the heap after every durable_rules session and a decision
  costs about twice as much (measured: 9.3 against 4.3 s for 20,000 records). A local cluster
  is started without it; workers started elsewhere that have it are named in a warning, with
  the setting that unsets it (NANNY_UNSET_TRIM).
- A worker's own profiler (on by default) walks the running task's stack every 10 ms from the
  event loop; over durable_rules' deep stacks that cost a worker a fifth of its time (measured:
  87 against 72 s for 200,000 records on one worker, `--jobs 1` 70 s). A local cluster is
  started without it; remote workers that sample are named in a warning (PROFILER_OFF).
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
END = b"end\t"            # a partition file's last line: END, then the number of records it holds
POLL_SECONDS = 0.02        # a worker that has read all the client has written so far waits this
STALL_SECONDS = 600.0      # a partition file that grows not at all for this long fails its task
CHECK_EVERY = 10_000       # records between the client's looks for a partition that failed
TRIM = "MALLOC_TRIM_THRESHOLD_"
# a worker's event loop took a sixth of its process's samples, mostly the system monitor reading
# every disk's counters twice a second and a 20 ms tick; a replay has no use for either
QUIET = {"distributed.admin.system-monitor.disk": False,
         "distributed.admin.system-monitor.interval": "2s",
         "distributed.admin.tick.interval": "1s",
         "distributed.worker.profile.enabled": False}
# the environment variable that tells `dask worker`'s nanny not to set TRIM for its workers
NANNY_UNSET_TRIM = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON={'MALLOC_TRIM_THRESHOLD_': None}"
# and the one that starts a worker without its statistical profiler
PROFILER_OFF = "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False"


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
    """One partition's file; the counts are known once the client has written all of it."""

    index: int
    path: str
    records: int = 0
    first_line: int = 0
    last_line: int = 0

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
    """The slice's (line number, text) as the client writes them, up to its end line; notes in
    `at` the record being worked on. Read as bytes: the client's writes may end mid-character."""
    count, pending, waited = 0, b"", 0.0
    with path.open("rb") as handle:
        while True:
            row = handle.readline()
            if not row.endswith(b"\n"):   # all the client has written so far
                pending += row
                _wait(path, waited)
                time.sleep(POLL_SECONDS)
                waited += POLL_SECONDS
                continue
            row, pending, waited = pending + row, b"", 0.0
            if row.startswith(END):
                written = int(row[len(END):])
                if written != count:
                    raise PartitionFailed(f"read {count} of the {written} records the client wrote")
                return
            number, _, text = row.decode("utf-8").partition("\t")
            count += 1
            at[:] = [int(number), text]
            yield int(number), text


def _wait(path: Path, waited: float) -> None:
    """Raises when the client will write no more: its file removed, or still for too long."""
    if not path.exists():
        raise PartitionFailed("the client stopped before it had written the whole partition")
    if waited >= STALL_SECONDS:
        raise PartitionFailed(f"the client wrote nothing to the partition for {STALL_SECONDS:g} s")


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
        raise PartitionFailed(f"{piece.path} is not readable on worker {socket.gethostname()}: "
                              "the workers must see the client's partition directory (TMPDIR) "
                              "at the same path")
    at: list = []
    try:
        run = _simulate if work.simulate else _replay
        return run(work, _source(work), _read(path, at))
    except Exception as exc:   # e.g. a rules version that cannot be found
        raise PartitionFailed(f"failed at {_record(at)}: {exc}") from None


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
def partition_files(partitions: int, directory: Path) -> list[Slice]:
    """One empty file a partition, readable by workers running as another user."""
    pieces = [Slice(i, str(directory / f"partition-{i:04d}.tsv")) for i in range(partitions)]
    for piece in pieces:
        Path(piece.path).touch(mode=0o644)
        os.chmod(piece.path, 0o644)
    return pieces


def split(lines: Iterable[tuple[int, str]], pieces: list[Slice],
          check: Callable[[], None] = lambda: None) -> list[Slice]:
    """Stream the log into the partitions' files, by `simulate.partition_of`, then end each with
    its count; `check` every CHECK_EVERY records (it raises when a partition has failed)."""
    partitions = len(pieces)
    counts, first, last = [0] * partitions, [0] * partitions, [0] * partitions
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(open(piece.path, "w", encoding="utf-8", newline=""))
                   for piece in pieces]
        for seen, (number, text) in enumerate(lines, 1):
            index = simulating.partition_of(text, partitions)
            handles[index].write(f"{number}\t{text if text.endswith(chr(10)) else text + chr(10)}")
            counts[index] += 1
            first[index] = first[index] or number
            last[index] = number
            if seen % CHECK_EVERY == 0:
                check()
        for handle, count in zip(handles, counts):
            handle.write(f"{END.decode()}{count}\n")
    return [Slice(p.index, p.path, counts[p.index], first[p.index], last[p.index]) for p in pieces]


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


def _slow_settings(dask_worker=None) -> dict:
    """What makes this worker slower at a replay: TRIM set, its profiler sampling."""
    profiling = dask_worker is not None and "profile" in dask_worker.periodic_callbacks
    return {"trim": os.environ.get(TRIM), "profiling": profiling}


def slow_warnings(client) -> list[str]:
    """A warning for each setting that slows some of the workers, naming how many and the fix."""
    settings = client.run(_slow_settings)
    trimmed = [found["trim"] for found in settings.values() if found["trim"]]
    profiling = sum(1 for found in settings.values() if found["profiling"])
    warnings = []
    if trimmed:
        warnings.append(f"{len(trimmed)} of the Dask workers run with {TRIM}={trimmed[0]} (the "
                        "nanny's default), which makes a decision about twice as slow: start "
                        f"`dask worker` with {NANNY_UNSET_TRIM!r} in its environment, or with "
                        "--no-nanny")
    if profiling:
        warnings.append(f"{profiling} of the Dask workers run their statistical profiler (the "
                        "default), which costs a replay about a fifth of its time: start "
                        f"`dask worker` with {PROFILER_OFF!r} in its environment")
    return warnings


def _outcome(future, piece: Slice) -> Simulation:
    """A finished task's result, or PartitionFailed naming the partition (with the counts the
    client knows) and, from the worker, the record it was on."""
    try:
        return future.result()
    except PartitionFailed as exc:
        raise PartitionFailed(f"{piece.describe()} {exc}") from None
    except Exception as exc:   # the worker died (KilledWorker), or could not run it
        raise PartitionFailed(f"{piece.describe()} failed: {type(exc).__name__}: {exc}") from None


def _run(client, work: Work, lines: Iterable[tuple[int, str]], pieces: list[Slice],
         on_progress: Optional[Callable[[Progress], None]]) -> Simulation:
    """Submit one task a partition, split the log into their files as they run, merge the
    results as they come; stop at the first failure (and the workers stop reading)."""
    from distributed import as_completed

    started, decisions = time.monotonic(), 0
    futures = [client.submit(run_partition, work, piece, pure=False, retries=0)
               for piece in pieces]

    def check() -> None:
        for future, piece in zip(futures, pieces):
            if future.status == "error":
                _outcome(future, piece)

    total = Simulation(impact=Impact() if work.impact else None)
    try:
        pieces = split(lines, pieces, check)
        by_future = dict(zip(futures, pieces))
        for done, future in enumerate(as_completed(futures), 1):
            result = _outcome(future, by_future[future])
            future.release()
            total.merge(result)
            decisions += result.summary.total
            if on_progress:
                on_progress(Progress(done, len(pieces), decisions, time.monotonic() - started))
    finally:
        client.cancel(futures)
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
        for warning in slow_warnings(client):
            if on_warning:
                on_warning(warning)
        partitions = cluster.partitions or workers * PARTITIONS_PER_WORKER
        directory = Path(tempfile.mkdtemp(prefix="loan-decide-partitions-"))
        try:
            os.chmod(directory, 0o755)   # workers may run as another user on a shared volume
            result = _run(client, work, lines, partition_files(partitions, directory), on_progress)
        finally:   # a worker still reading a partition stops when its file goes
            shutil.rmtree(directory, ignore_errors=True)
    result.bad.sort()
    bads = [BadRecord(line, problem) for line, problem in result.bad]
    if bads and not skip_bad:
        raise bads[0]
    return result
