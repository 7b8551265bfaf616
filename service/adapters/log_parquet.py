"""The decision log as Parquet files: what analysts query with pandas, DuckDB or Spark.

One row per record: typed columns for what analysts filter on (log_records.analyst_fields) and
`record`, the record's exact JSON Lines text, so nothing is lost and a replay of the Parquet
files reads the very text a replay of the JSON Lines export reads.

Written streaming: `ParquetLogWriter` is the text sink the DecisionLog port's `export` writes
JSON Lines to; it parses each line, keeps at most one row group in memory and starts a new part
file (part-00000.parquet, part-00001.parquet, ...) every `rows_per_file` rows, so neither the
export nor any one file grows with the log. pyarrow is the optional extra `parquet`: importing
this module without it raises ImportError, which the CLI turns into an install hint.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from service.domain.decision import parse_iso_utc
from service.usecases.log_records import AnalystFields, analyst_fields

RECORD = "record"
SCHEMA = pa.schema([
    pa.field("kind", pa.string(), nullable=False),
    # microseconds: what Spark and pandas read without a cast (the log's times are whole seconds)
    pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("user_id", pa.string()),
    pa.field("application_id", pa.string()),
    pa.field("product", pa.string()),
    pa.field("outcome", pa.string()),
    pa.field("reason_codes", pa.list_(pa.string())),
    pa.field("rules_version", pa.string()),
    pa.field("arm", pa.string()),
    pa.field("trace_id", pa.string()),
    pa.field(RECORD, pa.string(), nullable=False),
])
ROWS_PER_FILE = 100_000
# a decision record is ~5 KB of JSON: a row group holds ~25 MB of text before it is written
ROWS_PER_GROUP = 5_000


class ParquetLogWriter:
    """A text sink for the JSON Lines export that writes Parquet part files into `directory`.

    `write` takes text as the export writes it (whole lines, or pieces of them); `close`
    writes what is buffered and returns the files written. With no record at all it still
    writes part-00000.parquet, empty: a reader of `DIR/*.parquet` then finds the columns.
    """

    def __init__(self, directory: Path, rows_per_file: int = ROWS_PER_FILE,
                 rows_per_group: int = ROWS_PER_GROUP):
        self.directory = directory
        self.rows_per_file = rows_per_file
        self.rows_per_group = min(rows_per_group, rows_per_file)
        self.files: list[Path] = []
        self._pending = ""
        self._rows: list[tuple[AnalystFields, str]] = []
        self._writer: Optional[pq.ParquetWriter] = None
        self._rows_in_file = 0

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            if line.strip():
                self._add(line)
        return len(text)

    def _add(self, line: str) -> None:
        self._rows.append((analyst_fields(json.loads(line)), line))
        if len(self._rows) >= self.rows_per_group or \
                self._rows_in_file + len(self._rows) >= self.rows_per_file:
            self._flush()

    def _flush(self) -> None:
        if self._writer is None:
            path = self.directory / f"part-{len(self.files):05d}.parquet"
            self._writer = pq.ParquetWriter(path, SCHEMA, compression="zstd")
            self.files.append(path)
        self._writer.write_table(_table(self._rows), row_group_size=len(self._rows) or None)
        self._rows_in_file += len(self._rows)
        self._rows = []
        if self._rows_in_file >= self.rows_per_file:
            self._writer.close()
            self._writer, self._rows_in_file = None, 0

    def close(self) -> list[Path]:
        if self._pending.strip():
            self._add(self._pending)
        self._pending = ""
        if self._rows or not self.files:
            self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.files

    def discard(self) -> None:
        """An export that failed half way leaves no part files behind."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for path in self.files:
            path.unlink(missing_ok=True)


def _table(rows: list[tuple[AnalystFields, str]]) -> pa.Table:
    columns = {name: [] for name in SCHEMA.names}
    for fields, text in rows:
        for name in SCHEMA.names[:-1]:
            columns[name].append(getattr(fields, name))
        columns["at"][-1] = parse_iso_utc(fields.at)
        columns[RECORD].append(text)
    return pa.Table.from_pydict(columns, schema=SCHEMA)


# -- reading -----------------------------------------------------------------------------------------
class NotALogExport(ValueError):
    """A Parquet file that holds no `record` column of text: not a decision log export."""


def record_batches(handle: BinaryIO, batch_size: int = 2_000) -> Iterator[tuple[list[Optional[str]], float]]:
    """The `record` column of a Parquet file, a batch at a time, each with the share of the
    file's rows read so far (for a progress bar): only the one column is read."""
    try:
        parquet = pq.ParquetFile(handle)
    except (pa.ArrowInvalid, OSError) as exc:
        raise NotALogExport(f"not a readable Parquet file ({exc})") from None
    schema = parquet.schema_arrow
    if RECORD not in schema.names:
        raise NotALogExport(f"a Parquet file with no `{RECORD}` column: not a decision log export")
    if not (pa.types.is_string(schema.field(RECORD).type) or pa.types.is_large_string(schema.field(RECORD).type)):
        raise NotALogExport(f"its `{RECORD}` column holds {schema.field(RECORD).type}, not the records' text")
    total, done = parquet.metadata.num_rows or 1, 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_size, columns=[RECORD]):
            done += batch.num_rows
            yield batch.column(0).to_pylist(), done / total
    except (pa.ArrowInvalid, OSError) as exc:
        raise NotALogExport(f"not a readable Parquet file ({exc})") from None
