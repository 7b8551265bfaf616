"""The partition files of `replay --engine dask`: a worker reads one while the client writes it.

No cluster here: the writer is `split` (or a thread writing bytes as a slow client would) and
the reader is the worker's `_read`, in this process.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from service.adapters import dask_replay
from service.adapters.dask_replay import PartitionFailed, partition_files, split
from service.usecases.simulate import partition_of


def record(user: str, n: int) -> str:
    return f'{{"kind":"decision","user_id":"{user}","application_id":"a{n}","name":"张三"}}\n'


@pytest.fixture(autouse=True)
def quick_poll(monkeypatch):
    monkeypatch.setattr(dask_replay, "POLL_SECONDS", 0.001)


def test_split_writes_each_user_to_one_file_in_order_and_ends_each_with_its_count(tmp_path):
    lines = [(n, record(f"u{n % 7}", n)) for n in range(1, 51)]
    pieces = split(lines, partition_files(3, tmp_path))
    assert sum(p.records for p in pieces) == 50
    for piece in pieces:
        read = list(dask_replay._read(Path(piece.path), []))
        assert read == [(n, t) for n, t in lines if partition_of(t, 3) == piece.index]
        assert piece.records == len(read)
        assert (piece.first_line, piece.last_line) == ((read[0][0], read[-1][0]) if read else (0, 0))


def test_a_worker_reads_what_a_slow_client_writes_even_cut_inside_a_character(tmp_path):
    path = tmp_path / "partition-0000.tsv"
    path.touch()
    data = "".join(f"{n}\t{record('u1', n)}" for n in range(1, 6)).encode() + b"end\t5\n"
    cut = data.index("张".encode()) + 1          # the middle of a three-byte character

    def client() -> None:
        with path.open("ab", buffering=0) as handle:
            for chunk in (data[:cut], data[cut:cut + 40], data[cut + 40:]):
                handle.write(chunk)
                time.sleep(0.05)

    writer = threading.Thread(target=client)
    writer.start()
    read = list(dask_replay._read(path, []))
    writer.join()
    assert [n for n, _ in read] == [1, 2, 3, 4, 5]
    assert all("张三" in text for _, text in read)


def test_a_worker_stops_when_the_client_removes_the_partition_unfinished(tmp_path):
    path = tmp_path / "partition-0000.tsv"
    path.write_text(f"7\t{record('u1', 7)}")
    at: list = []
    reader = dask_replay._read(path, at)
    assert next(reader)[0] == 7
    path.unlink()
    with pytest.raises(PartitionFailed, match="client stopped before it had written the whole"):
        next(reader)
    assert at[0] == 7   # the task's error names the record it was on


def test_a_partition_that_holds_fewer_records_than_its_end_line_says_fails(tmp_path):
    path = tmp_path / "partition-0000.tsv"
    path.write_text(f"3\t{record('u1', 3)}end\t2\n")
    with pytest.raises(PartitionFailed, match="read 1 of the 2 records the client wrote"):
        list(dask_replay._read(path, []))


def test_a_partition_the_client_stopped_writing_fails_after_the_stall_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(dask_replay, "STALL_SECONDS", 0.05)
    path = tmp_path / "partition-0000.tsv"
    path.write_text(f"3\t{record('u1', 3)}")
    with pytest.raises(PartitionFailed, match="wrote nothing to the partition for 0.05 s"):
        list(dask_replay._read(path, []))


def test_the_split_stops_as_soon_as_its_check_reports_a_failed_partition(tmp_path):
    calls = []

    def check() -> None:
        calls.append(1)
        raise PartitionFailed("partition 1 failed at line 3")

    lines = ((n, record(f"u{n}", n)) for n in range(1, 10 * dask_replay.CHECK_EVERY))
    with pytest.raises(PartitionFailed, match="partition 1 failed"):
        split(lines, partition_files(2, tmp_path), check)
    assert len(calls) == 1
    assert next(lines)[0] == dask_replay.CHECK_EVERY + 1   # read no further than the check
    assert "end\t" not in (tmp_path / "partition-0000.tsv").read_text()   # nothing ends it
