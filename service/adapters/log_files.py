"""Reading decision logs for replay: several files, a glob or a directory; JSON Lines (plain or
gzip) or the Parquet export; local paths or fsspec URLs.

Replay and simulation take `(line number, text)` pairs (decision_log.read_lines): this module
gives them those pairs from any mix of inputs, numbered on across files in the order given, so
records split over several files replay exactly as the same records in one file, and a line
number still says where a record is (`where` turns it back into a file and its line or row).
A Parquet file gives its `record` column, the exact text the JSON Lines export writes.

What a file holds is found from its first bytes, not its name (gzip's and Parquet's magic
numbers), so a renamed file still reads; a directory contributes its *.jsonl, *.jsonl.gz and
*.parquet files, sorted by name. Anything that is not a log is a LogFileError naming the file
(and the line), never a decoding traceback. A URL with a scheme (s3://, memory://, file://)
needs fsspec (and s3fs for S3: the extras `s3`), imported only then; Parquet needs pyarrow.
"""
from __future__ import annotations

import bisect
import glob
import gzip
import io
import os
import re
import sys
import zlib
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Callable, Iterator, Optional, Sequence

LOG_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GZIP, _PARQUET = b"\x1f\x8b", b"PAR1"
Progress = Callable[[int], None]


class LogFileError(ValueError):
    """An input that cannot be read as a log: the message names it."""


@dataclass(frozen=True)
class LogFile:
    """One input file: `name` as the user wrote it (a path or a URL), `size` in bytes (None when
    unknown, as for stdin), and how to open it as bytes."""
    name: str
    size: Optional[int]
    open: Callable[[], BinaryIO]


STDIN = LogFile("-", None, lambda: sys.stdin.buffer)


# -- finding the files -----------------------------------------------------------------------------
class _Local:
    """The local disk, with the few calls fsspec's filesystems answer too."""

    def glob(self, pattern: str) -> list[str]:
        return sorted(glob.glob(pattern))

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        return [os.path.join(path, name) for name in sorted(os.listdir(path))
                if os.path.isfile(os.path.join(path, name))]

    def file(self, path: str) -> LogFile:
        return LogFile(path, os.path.getsize(path), lambda: open(path, "rb"))


class _Remote:
    """An fsspec filesystem; names are shown (and opened) as full URLs."""

    def __init__(self, fs: Any):
        self.fs = fs

    def glob(self, pattern: str) -> list[str]:
        return sorted(self.fs.glob(pattern))

    def isdir(self, path: str) -> bool:
        return self.fs.isdir(path)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(entry["name"] for entry in self.fs.ls(path, detail=True)
                      if entry.get("type") == "file")

    def file(self, path: str) -> LogFile:
        size = self.fs.size(path)
        return LogFile(self.fs.unstrip_protocol(path), size, lambda: self.fs.open(path, "rb"))


def _filesystem(argument: str) -> tuple[Any, str]:
    if not _URL.match(argument):
        return _Local(), argument
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise LogFileError(f"{argument}: reading a URL needs fsspec (pip install fsspec; for s3:// "
                           "the extra s3: pip install 'loan-decision-engine[s3]')") from None
    try:
        fs, path = url_to_fs(argument)
    except ImportError as exc:   # the scheme's package (s3fs for s3://) is missing
        raise LogFileError(f"{argument}: cannot open this URL ({exc}; for s3:// the extra s3: "
                           "pip install 'loan-decision-engine[s3]')") from None
    except ValueError as exc:    # a scheme fsspec does not know
        raise LogFileError(f"{argument}: cannot open this URL ({exc})") from None
    return _Remote(fs), path


def resolve(arguments: Sequence[str]) -> list[LogFile]:
    """The files the arguments name, in the order given (a glob's and a directory's sorted)."""
    if not arguments:
        raise LogFileError("no log given")
    files: list[LogFile] = []
    for argument in arguments:
        files.extend(_resolve_one(argument))
    return files


def _resolve_one(argument: str) -> list[LogFile]:
    if argument == "-":
        return [STDIN]
    fs, path = _filesystem(argument)
    try:
        if glob.has_magic(path):
            matches = fs.glob(path)
            if not matches:
                raise LogFileError(f"{argument}: no file matches")
            return [f for match in matches for f in _files_at(fs, match, match)]
        if not fs.exists(path):
            raise LogFileError(f"{argument}: no such file or directory")
        return _files_at(fs, path, argument)
    except OSError as exc:
        raise LogFileError(f"{argument}: {exc.strerror or exc}") from None


def _files_at(fs: Any, path: str, shown: str) -> list[LogFile]:
    if not fs.isdir(path):
        return [fs.file(path)]
    found = [fs.file(name) for name in fs.listdir(path) if name.endswith(LOG_SUFFIXES)]
    if not found:
        raise LogFileError(f"{shown}: a directory with no {', '.join('*' + s for s in LOG_SUFFIXES)} file")
    return found


# -- reading them ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Span:
    """Where a file's numbers start (the number before its first line) and what it counts."""
    offset: int
    name: str
    unit: str   # "line" (JSON Lines) or "row" (Parquet)


class LogLines:
    """The (line number, text) pairs of several log files, numbered on across them."""

    def __init__(self, files: Sequence[LogFile]):
        self.files = list(files)
        self._spans: list[_Span] = []

    @classmethod
    def of(cls, arguments: Sequence[str]) -> "LogLines":
        return cls(resolve(arguments))

    def total_size(self) -> Optional[int]:
        """Bytes to read in all, or None when a size is unknown (stdin)."""
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)

    def where(self, number: int) -> str:
        """`name: line N` (or `row N` in a Parquet file) of a line number these lines gave."""
        offsets = [span.offset for span in self._spans]
        index = bisect.bisect_left(offsets, number) - 1
        if index < 0:
            return f"line {number}"
        span = self._spans[index]
        return f"{span.name}: {span.unit} {number - span.offset}"

    def lines(self, on_progress: Optional[Progress] = None) -> Iterator[tuple[int, str]]:
        offset = 0
        for log in self.files:
            offset += yield from self._read(log, offset, on_progress)

    def _read(self, log: LogFile, offset: int, on_progress: Optional[Progress]) -> Iterator[tuple[int, str]]:
        """One file's pairs, numbered from `offset` + 1; returns how many lines it counted."""
        if log is STDIN:   # read as text, as it always was: nothing to sniff or rewind
            self._spans.append(_Span(offset, log.name, "line"))
            return (yield from _numbered(log, sys.stdin, offset))
        try:
            raw = log.open()
        except OSError as exc:
            raise LogFileError(f"{log.name}: {exc.strerror or exc}") from None
        with raw:
            head = _peek(raw)
            parquet = head.startswith(_PARQUET)
            self._spans.append(_Span(offset, log.name, "row" if parquet else "line"))
            if parquet:
                return (yield from _parquet_rows(log, raw, offset, on_progress))
            return (yield from _json_lines(log, raw, head.startswith(_GZIP), offset, on_progress))


def _numbered(log: LogFile, handle: IO[str], offset: int,
              on_line: Optional[Callable[[str], None]] = None) -> Iterator[tuple[int, str]]:
    """decision_log.read_lines, numbered from `offset` + 1, counting the blank lines it skips
    (the next file's numbers go on as one file's would); returns the lines counted."""
    number = 0
    try:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield offset + number, line
                if on_line:
                    on_line(line)
    except UnicodeDecodeError:
        raise LogFileError(f"{log.name}: not UTF-8 text near line {number + 1}: not a JSON Lines "
                           "log, a gzip file or a Parquet file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise LogFileError(f"{log.name}: not a readable gzip file after line {number} ({exc})") from None
    return number


def _json_lines(log: LogFile, raw: BinaryIO, gzipped: bool, offset: int,
                on_progress: Optional[Progress]) -> Iterator[tuple[int, str]]:
    """Plain or gzip JSON Lines; progress in bytes of the file (the compressed ones for gzip)."""
    handle = io.TextIOWrapper(gzip.GzipFile(fileobj=raw) if gzipped else raw, encoding="utf-8")
    done = 0

    def advance(line: str) -> None:
        nonlocal done
        now = min(raw.tell() if gzipped else done + len(line.encode()), log.size or 0)
        on_progress(now - done)
        done = now

    counted = yield from _numbered(log, handle, offset, advance if on_progress and log.size else None)
    if on_progress and log.size and done < log.size:
        on_progress(log.size - done)
    return counted


def _parquet_rows(log: LogFile, raw: BinaryIO, offset: int,
                  on_progress: Optional[Progress]) -> Iterator[tuple[int, str]]:
    """The `record` column, a line each (with the newline a JSON Lines line ends with)."""
    try:
        from service.adapters.log_parquet import NotALogExport, record_batches
    except ImportError:
        raise LogFileError(f"{log.name}: reading Parquet needs pyarrow "
                           "(pip install 'loan-decision-engine[parquet]')") from None
    number, done = 0, 0
    try:
        for records, share in record_batches(raw):
            for text in records:
                number += 1
                yield offset + number, "" if text is None else text + "\n"
            if on_progress and log.size:
                now = int(log.size * share)
                on_progress(now - done)
                done = now
    except NotALogExport as exc:
        raise LogFileError(f"{log.name}: {exc}") from None
    return number


def _peek(raw: BinaryIO) -> bytes:
    """The first bytes, leaving the file where it was."""
    if hasattr(raw, "peek"):
        return raw.peek(4)[:4]
    head = raw.read(4)
    raw.seek(0)
    return head
