"""The Parquet form of the decision log: typed columns beside each record's exact JSON Lines text,
in part files of bounded size, read back the same by pyarrow and DuckDB.

On the old log of tests/data (every record kind the service writes: decisions, cancels, grace
uses, reviews both ways, overrides, erasures), written through the writer `log export` uses.
The export from a real Redis through the CLI is tests/integration/test_log_parquet.py's.
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from service.adapters.log_parquet import ParquetLogWriter
from service.entrypoints.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
COLUMNS = ["kind", "at", "user_id", "application_id", "product", "outcome", "reason_codes",
           "rules_version", "arm", "trace_id", "record"]


@pytest.fixture(scope="module")
def old_lines() -> list[str]:
    text = gzip.decompress((DATA / "log_before_hardening2.jsonl.gz").read_bytes()).decode()
    return text.splitlines()


def write_parquet(lines: list[str], directory: Path, rows_per_file: int, chunk: int = 7) -> list[Path]:
    """As the export writes: whole lines, here also cut at odd places, as any text sink takes."""
    writer = ParquetLogWriter(directory, rows_per_file=rows_per_file, rows_per_group=100)
    text = "".join(line + "\n" for line in lines)
    for start in range(0, len(text), 4096 + chunk):
        writer.write(text[start:start + 4096 + chunk])
    return writer.close()


@pytest.fixture(scope="module")
def parquet_dir(old_lines, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("parquet")
    files = write_parquet(old_lines, directory, rows_per_file=500)
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(3)]
    return directory


def test_the_record_column_is_the_json_lines_text_in_order(old_lines, parquet_dir):
    table = pq.read_table(parquet_dir)
    assert table.column("record").to_pylist() == old_lines
    assert [pq.ParquetFile(f).metadata.num_rows for f in sorted(parquet_dir.iterdir())] == [500, 500, 439]
    assert max(pq.ParquetFile(f).metadata.row_group(0).num_rows for f in parquet_dir.iterdir()) == 100


def test_column_types(parquet_dir):
    schema = pq.read_schema(next(parquet_dir.iterdir()))
    assert schema.names == COLUMNS
    assert schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("reason_codes").type == pa.list_(pa.string())
    assert all(schema.field(name).type == pa.string() for name in COLUMNS if name not in ("at", "reason_codes"))


def expected_columns(record: dict) -> dict:
    """The typed columns of one record, as the table in docs/decision-log-and-replay.md says."""
    kind, request = record["kind"], record.get("request") or {}
    outcome = codes = arm = None
    if kind == "decision":
        outcome, arm = record["decision"]["outcome"], record["decision"].get("arm")
        codes = [r["code"] for r in record["decision"]["reasons"]]
    elif kind == "review":
        outcome, codes = record["review"]["outcome"], record["review"]["reason_codes"]
    return {"kind": kind, "at": dt.datetime.strptime(record["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc),
            "user_id": record["user_id"], "application_id": record["application_id"],
            "product": request.get("product"), "outcome": outcome, "reason_codes": codes,
            "rules_version": record["rules_version"], "arm": arm, "trace_id": record.get("trace_id")}


def test_pyarrow_reads_the_typed_columns_of_every_kind(old_lines, parquet_dir):
    rows = pq.read_table(parquet_dir).to_pylist()
    records = [json.loads(line) for line in old_lines]
    assert [{k: v for k, v in row.items() if k != "record"} for row in rows] == \
        [expected_columns(record) for record in records]
    kinds = {row["kind"] for row in rows}
    assert kinds == {"decision", "cancel", "grace", "review", "override", "erasure"}
    reviewed = [row for row in rows if row["kind"] == "review"]
    assert {row["outcome"] for row in reviewed} == {"approved", "rejected"}
    assert all(row["product"] for row in reviewed)
    assert all(row["outcome"] is None and row["reason_codes"] is None
               for row in rows if row["kind"] in ("cancel", "grace", "override", "erasure"))


def test_duckdb_reads_the_same_records(old_lines, parquet_dir):
    # `at` is a keyword in DuckDB's SQL: quoted
    rows = duckdb.sql(f"""select record, kind, "at", reason_codes
                          from read_parquet('{parquet_dir}/*.parquet', filename = true, file_row_number = true)
                          order by filename, file_row_number""").fetchall()
    assert [row[0] for row in rows] == old_lines
    assert [json.loads(row[0]) for row in rows] == [json.loads(line) for line in old_lines]
    first = json.loads(old_lines[0])
    assert rows[0][1] == first["kind"]
    assert rows[0][2].astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") == first["at"]
    by_outcome = dict(duckdb.sql(
        f"select outcome, count(*) from '{parquet_dir}/*.parquet' where kind = 'decision' group by outcome").fetchall())
    assert sum(by_outcome.values()) == sum('"kind":"decision"' in line for line in old_lines)


def test_an_empty_log_is_one_empty_file_with_the_columns(tmp_path):
    files = ParquetLogWriter(tmp_path).close()
    assert [f.name for f in files] == ["part-00000.parquet"]
    table = pq.read_table(files[0])
    assert table.num_rows == 0 and table.schema.names == COLUMNS


def test_a_failed_export_leaves_no_part_files(old_lines, tmp_path):
    writer = ParquetLogWriter(tmp_path, rows_per_file=100, rows_per_group=50)
    for line in old_lines[:250]:
        writer.write(line + "\n")
    writer.discard()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--format", "parquet"], "give --output DIR"),
    (["--output", "x"], "--output is for --format parquet"),
])
def test_export_options_are_checked_before_anything_is_read(args, message, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    result = CliRunner().invoke(main, ["log", "export", *args])
    assert result.exit_code == 2 and message in result.output


def test_export_refuses_an_output_that_is_not_a_new_or_empty_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.parquet").write_bytes(b"")
    (tmp_path / "file").write_text("x")
    for name, message in (("full", "exists and is not an empty directory"), ("file", "is a file")):
        result = CliRunner().invoke(main, ["log", "export", "--format", "parquet",
                                           "--output", str(tmp_path / name)])
        assert result.exit_code == 2 and message in result.output
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["old.parquet"]
    assert (tmp_path / "file").read_text() == "x"


def test_export_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    monkeypatch.delitem(__import__("sys").modules, "service.adapters.log_parquet", raising=False)
    result = CliRunner().invoke(main, ["log", "export", "--format", "parquet", "--output", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "needs pyarrow" in result.output and "loan-decision-engine[parquet]" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_a_records_trace_id_is_its_column(old_lines, tmp_path):
    """Records written by a request carry its trace id last; older ones have none (null)."""
    traced = json.loads(old_lines[0])
    traced["trace_id"] = "4bf92f3577b34da6a3ce929d0e0e4736"
    write_parquet([json.dumps(traced, ensure_ascii=False), old_lines[1]], tmp_path, rows_per_file=10)
    assert pq.read_table(tmp_path).column("trace_id").to_pylist() == ["4bf92f3577b34da6a3ce929d0e0e4736", None]
