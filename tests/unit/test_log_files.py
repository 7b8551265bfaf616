"""Replay's inputs (service/adapters/log_files.py): records split over several files, a directory,
a glob, gzip, Parquet, an fsspec URL or stdin replay and simulate with the summary of one file;
numbers go on across files as in one file; what is not a log is an error naming it.

On the old log of tests/data (every record kind), under the rules version its records name.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from service.adapters import decision_log
from service.adapters.log_files import LogFileError, LogLines
from service.adapters.log_parquet import ParquetLogWriter
from service.entrypoints.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
OLD_RULES = DATA / "rules_before_hardening2"


@pytest.fixture(scope="module")
def old_text() -> str:
    return gzip.decompress((DATA / "log_before_hardening2.jsonl.gz").read_bytes()).decode()


@pytest.fixture(scope="module")
def logs(old_text, tmp_path_factory) -> Path:
    """The old log as one file, in three pieces (plain, gzip, plain), and as Parquet part files."""
    root = tmp_path_factory.mktemp("logs")
    (root / "one.jsonl").write_text(old_text)
    lines = old_text.splitlines(keepends=True)
    pieces = root / "pieces"
    pieces.mkdir()
    (pieces / "a.jsonl").write_text("".join(lines[:500]))
    (pieces / "b.jsonl.gz").write_bytes(gzip.compress("".join(lines[500:900]).encode()))
    (pieces / "c.jsonl").write_text("".join(lines[900:]))
    (pieces / "notes.txt").write_text("not a log: left out of a directory")
    (root / "one.jsonl.gz").write_bytes(gzip.compress(old_text.encode()))
    (root / "parquet").mkdir()
    writer = ParquetLogWriter(root / "parquet", rows_per_file=600)
    writer.write(old_text)
    writer.close()
    return root


def summary(*args: str, input: str | None = None) -> dict:
    result = CliRunner().invoke(main, ["replay", *args, "--rules", str(OLD_RULES), "--json", "--jobs", "1"],
                                input=input)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def one_file(logs) -> dict:
    found = summary(str(logs / "one.jsonl"))
    assert found["total"] == 1342 and found["reviews"]["total"] == 38
    return found


def test_pieces_given_in_order_replay_as_one_file(logs, one_file):
    pieces = logs / "pieces"
    assert summary(str(pieces / "a.jsonl"), str(pieces / "b.jsonl.gz"), str(pieces / "c.jsonl")) == one_file


@pytest.mark.parametrize("shape", ["directory", "glob", "gzip", "parquet", "parquet glob"])
def test_every_shape_of_input_replays_as_one_file(shape, logs, one_file):
    argument = {"directory": logs / "pieces", "glob": logs / "pieces" / "*.jsonl*",
                "gzip": logs / "one.jsonl.gz", "parquet": logs / "parquet",
                "parquet glob": logs / "parquet" / "part-*.parquet"}[shape]
    assert summary(str(argument)) == one_file


def test_an_fsspec_url_and_stdin_replay_as_one_file(logs, old_text, one_file):
    memory = fsspec.filesystem("memory")
    for path in sorted((logs / "parquet").iterdir()):
        memory.pipe(f"/replay-inputs/{path.name}", path.read_bytes())
    assert summary("memory://replay-inputs/") == one_file
    assert summary("-", input=old_text) == one_file


def test_simulation_of_pieces_and_parquet_is_the_recorded_one(logs):
    expected = json.loads((DATA / "log_before_hardening2.simulate.json").read_text())
    assert summary(str(logs / "pieces"), "--simulate") == expected
    assert summary(str(logs / "parquet"), "--simulate", "--jobs", "2") == expected


def test_numbers_go_on_across_files_as_in_one_file(tmp_path):
    text_a, text_b = '{"n": 1}\n\n{"n": 2}\n\n\n', '\n{"n": 3}\n'
    (tmp_path / "a.jsonl").write_text(text_a)
    (tmp_path / "b.jsonl").write_text(text_b)
    (tmp_path / "whole.jsonl").write_text(text_a + text_b)
    both = LogLines.of([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")])
    whole = list(decision_log.read_lines(open(tmp_path / "whole.jsonl", encoding="utf-8")))
    assert list(both.lines()) == whole == [(1, '{"n": 1}\n'), (3, '{"n": 2}\n'), (7, '{"n": 3}\n')]
    assert both.where(3) == f"{tmp_path / 'a.jsonl'}: line 3"
    assert both.where(7) == f"{tmp_path / 'b.jsonl'}: line 2"


def test_progress_reaches_the_total_size(logs):
    inputs = LogLines.of([str(logs / "pieces"), str(logs / "parquet")])
    steps: list[int] = []
    assert sum(1 for _ in inputs.lines(on_progress=steps.append)) == 2 * 1439
    assert all(step >= 0 for step in steps) and sum(steps) == inputs.total_size()


# -- what is not a log -------------------------------------------------------------------------------
def failure(*args: str) -> str:
    result = CliRunner().invoke(main, ["replay", *args, "--rules", str(OLD_RULES), "--jobs", "1"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    return result.output


def test_a_missing_path_an_empty_glob_and_a_directory_without_logs(tmp_path):
    assert f"Error: {tmp_path / 'gone.jsonl'}: no such file or directory" in failure(str(tmp_path / "gone.jsonl"))
    assert f"Error: {tmp_path}/*.jsonl: no file matches" in failure(str(tmp_path / "*.jsonl"))
    (tmp_path / "readme.txt").write_text("hello")
    assert "a directory with no *.jsonl, *.jsonl.gz, *.parquet file" in failure(str(tmp_path))
    assert "Missing argument 'LOG...'" in CliRunner().invoke(main, ["replay"]).output


def test_a_text_file_that_is_not_json_lines_names_the_file_and_its_line(logs, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "decision"}\nname,amount\n')
    output = failure(str(logs / "pieces" / "a.jsonl"), str(bad))
    assert f"Error: {bad}: line 1: missing field(s) at, user_id" in output


def test_binary_files_are_named_not_decoded(logs, tmp_path):
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"\xff\xfe\x00\x81 not text")
    assert f"Error: {junk}: not UTF-8 text near line 1" in failure(str(junk))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)   # gzip's magic, then junk
    assert f"Error: {broken}: not a readable gzip file" in failure(str(broken))
    part = next((logs / "parquet").iterdir()).read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(part[:len(part) // 2])
    assert f"Error: {cut}: not a readable Parquet file" in failure(str(cut))


def test_a_parquet_file_without_a_record_column(tmp_path):
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"user_id": ["u-1"], "amount": [5000]}), other)
    assert f"Error: {other}: a Parquet file with no `record` column" in failure(str(other))
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"record": [1, 2]}), numbers)
    assert "its `record` column holds int64" in failure(str(numbers))


def test_a_parquet_row_that_is_not_a_record_names_the_file_and_row(logs, tmp_path):
    odd = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"record": pa.array([None], pa.string())}), odd)
    assert f"Error: {odd}: row 1: not valid JSON" in failure(str(logs / "pieces" / "a.jsonl"), str(odd))


def test_what_is_read_is_found_from_the_bytes_not_the_name(logs, tmp_path, one_file):
    renamed = tmp_path / "export.jsonl"
    renamed.write_bytes((logs / "one.jsonl.gz").read_bytes())
    assert summary(str(renamed)) == one_file


def test_urls_need_fsspec_and_a_known_scheme(monkeypatch):
    assert "nosuch://logs/x.jsonl: cannot open this URL" in failure("nosuch://logs/x.jsonl")
    assert "memory://nowhere/x.jsonl: no such file or directory" in failure("memory://nowhere/x.jsonl")
    monkeypatch.setitem(sys.modules, "fsspec", None)
    monkeypatch.setitem(sys.modules, "fsspec.core", None)
    assert "s3://bucket/logs/: reading a URL needs fsspec" in failure("s3://bucket/logs/")


def test_parquet_without_pyarrow_says_what_to_install(logs, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.delitem(sys.modules, "service.adapters.log_parquet")
    assert "reading Parquet needs pyarrow" in failure(str(logs / "parquet"))


def test_log_lines_refuse_nothing_given():
    with pytest.raises(LogFileError):
        LogLines.of([])
