"""`log export --format parquet` from the real Redis, filled through the service: the same records
as the JSON Lines export (parsed and as text), typed columns, part files of bounded size, read by
pyarrow and DuckDB; and a replay of the Parquet export gives the JSON Lines export's summary."""
from __future__ import annotations

import datetime as dt
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from service.domain.clock import FixedClock
from service.entrypoints.cli import main
from tests.conftest import NOW, redis_services
from tests.loggen import generate

pytestmark = pytest.mark.integration


@pytest.fixture
def filled(policy, real_redis_url, monkeypatch) -> list[str]:
    """300 decisions with cancels and grace uses, and two review cases closed either way; the
    JSON Lines export's lines."""
    service = redis_services(real_redis_url, policy, FixedClock(NOW))
    generate(service, 300, users=40)
    service.rules.archive_own()
    monkeypatch.setenv("REDIS_URL", real_redis_url)
    lines = export_lines()
    in_review = [json.loads(l) for l in lines if '"outcome":"review"' in l and '"kind":"decision"' in l]
    service.clock.advance(seconds=3600)
    for record, outcome in zip(in_review[:2], ("approved", "rejected")):
        service.reviews.review(record["application_id"], {
            "user_id": record["user_id"], "reviewer_id": "rev-1", "outcome": outcome,
            "reason_codes": [] if outcome == "approved" else ["DEBT_TOO_HIGH"], "note": "checked"})
    return export_lines()


def export_lines(*args: str) -> list[str]:
    result = CliRunner().invoke(main, ["log", "export", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def export_parquet(directory, *args: str) -> str:
    result = CliRunner().invoke(main, ["log", "export", "--format", "parquet", "--output", str(directory), *args])
    assert result.exit_code == 0, result.output
    return result.stderr


def test_parquet_export_holds_the_json_lines_records(filled, tmp_path):
    assert sum('"kind":"review"' in line for line in filled) == 2
    said = export_parquet(tmp_path / "out", "--rows-per-file", "128")
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(len(files))]
    assert len(files) == -(-len(filled) // 128) and f"exported {len(filled)} records to {len(files)}" in said
    assert all(pq.ParquetFile(f).metadata.num_rows <= 128 for f in files)

    table = pq.read_table(tmp_path / "out")
    assert table.column("record").to_pylist() == filled
    assert [json.loads(t) for t in table.column("record").to_pylist()] == [json.loads(l) for l in filled]
    rows = duckdb.sql(f"""select record from read_parquet('{tmp_path}/out/*.parquet', filename = true,
                          file_row_number = true) order by filename, file_row_number""").fetchall()
    assert [row[0] for row in rows] == filled


def test_parquet_columns_are_typed_and_filled_per_kind(filled, tmp_path):
    export_parquet(tmp_path / "out")
    table = pq.read_table(tmp_path / "out")
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("reason_codes").type == pa.list_(pa.string())
    for row, line in zip(table.to_pylist(), filled):
        record = json.loads(line)
        assert row["at"] == dt.datetime.strptime(record["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
        assert (row["kind"], row["user_id"], row["application_id"], row["rules_version"]) == \
            (record["kind"], record["user_id"], record["application_id"], record["rules_version"])
        if record["kind"] == "decision":
            assert row["product"] == record["request"]["product"]
            assert row["outcome"] == record["decision"]["outcome"]
            assert row["reason_codes"] == [r["code"] for r in record["decision"]["reasons"]]
        elif record["kind"] == "review":
            assert (row["outcome"], row["reason_codes"]) == (record["review"]["outcome"],
                                                             record["review"]["reason_codes"])
        else:
            assert row["product"] is row["outcome"] is row["reason_codes"] is row["arm"] is None
    counts = dict(duckdb.sql(f"""select kind, count(*) from '{tmp_path}/out/*.parquet'
                                 where "at" >= timestamptz '2026-11-23 00:00:00+00' group by kind""").fetchall())
    assert counts["decision"] == 300 and counts["review"] == 2


def test_since_and_until_cut_the_parquet_export_as_the_json_lines_one(filled, tmp_path):
    since, until = json.loads(filled[50])["at"], json.loads(filled[250])["at"]
    window = ["--since", since, "--until", until]
    export_parquet(tmp_path / "window", *window)
    assert pq.read_table(tmp_path / "window").column("record").to_pylist() == export_lines(*window)


def test_replay_of_the_parquet_export_is_the_json_lines_replay(filled, tmp_path):
    (tmp_path / "log.jsonl").write_text("\n".join(filled) + "\n")
    export_parquet(tmp_path / "out", "--rows-per-file", "100")
    runner = CliRunner()
    for extra in ([], ["--simulate"]):
        jsonl = runner.invoke(main, ["replay", str(tmp_path / "log.jsonl"), "--json", "--jobs", "1", *extra])
        parquet = runner.invoke(main, ["replay", str(tmp_path / "out"), "--json", "--jobs", "2", *extra])
        assert jsonl.exit_code == parquet.exit_code == 0, jsonl.output + parquet.output
        assert json.loads(parquet.stdout) == json.loads(jsonl.stdout)
        assert json.loads(jsonl.stdout)["total"] == 300
