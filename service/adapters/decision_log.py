"""The decision log in Redis: its JSON Lines export, and the reading of log files.

The records (service.usecases.log_records) are appended to the user's stream (`ld:{u}:log`)
by the same Lua script that commits the state change, so state and log never disagree.

Export reads every user's stream, keeps the records in [since, until) and writes them ordered
by time. It sorts in bounded memory (sorted runs spilled to temporary files, then merged), so
a log larger than memory exports too.
"""
from __future__ import annotations

import heapq
import json
import os
import tempfile
from typing import IO, Iterable, Iterator, Optional

from service.usecases import ports
from service.usecases.log_records import encode

# -- export ----------------------------------------------------------------------------------------
def log_keys(client, prefix: str) -> Iterator[str]:
    """Every user's log stream, on one server or on every master of a cluster."""
    pattern = f"{prefix}:{{*}}:log"
    seen = set()
    for key in client.scan_iter(match=pattern, count=1000, _type="stream"):
        key = key.decode() if isinstance(key, bytes) else key
        if key not in seen:   # SCAN may return a key twice
            seen.add(key)
            yield key


def stream_records(client, key: str, batch: int = 500) -> Iterator[tuple[str, dict]]:
    start = "-"
    while True:
        entries = client.xrange(key, min=start, max="+", count=batch)
        if not entries:
            return
        for entry_id, fields in entries:
            entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            raw = fields.get(b"r") if b"r" in fields else fields.get("r")
            yield entry_id, json.loads(raw)
        if len(entries) < batch:
            return
        start = "(" + entry_id


def export(client, prefix: str, out: IO[str], since: Optional[str] = None,
           until: Optional[str] = None, run_size: int = 50_000) -> int:
    """Write the records with since <= at < until as JSON Lines, ordered by (at, user, id)."""
    runs: list[str] = []
    buffer: list[tuple[str, str, str, str]] = []

    def spill() -> None:
        buffer.sort()
        handle = tempfile.NamedTemporaryFile("w", delete=False, suffix=".jsonl", encoding="utf-8")
        with handle:
            for item in buffer:
                handle.write("\t".join(item[:3]) + "\t" + item[3] + "\n")
        runs.append(handle.name)
        buffer.clear()

    for key in log_keys(client, prefix):
        for entry_id, record in stream_records(client, key):
            at = record["at"]
            if (since and at < since) or (until and at >= until):
                continue
            ms, _, seq = entry_id.partition("-")
            buffer.append((at, record["user_id"], f"{int(ms):015d}-{int(seq or 0):06d}", encode(record)))
            if len(buffer) >= run_size:
                spill()
    try:
        if not runs:
            buffer.sort()
            for item in buffer:
                out.write(item[3] + "\n")
            return len(buffer)
        if buffer:
            spill()
        count = 0
        files = [open(name, encoding="utf-8") for name in runs]
        try:
            for line in heapq.merge(*files):
                out.write(line.split("\t", 3)[3])
                count += 1
        finally:
            for handle in files:
                handle.close()
        return count
    finally:
        for name in runs:
            os.unlink(name)


def read_lines(handle: IO[str]) -> Iterable[tuple[int, str]]:
    for number, line in enumerate(handle, 1):
        if line.strip():
            yield number, line


class RedisDecisionLog(ports.DecisionLog):
    """The log as the Redis store keeps it: one stream per user, and the erasure stream."""

    def __init__(self, client, prefix: str):
        self.client, self.prefix = client, prefix

    def export(self, out: IO[str], since: Optional[str] = None, until: Optional[str] = None) -> int:
        return export(self.client, self.prefix, out, since, until)

    def recent_decisions(self, limit: int, per_user: int = 5) -> Iterator[str]:
        found = 0
        for key in log_keys(self.client, self.prefix):
            for _, fields in self.client.xrevrange(key, count=per_user):
                raw = fields.get(b"r") if b"r" in fields else fields.get("r")
                text = raw.decode() if isinstance(raw, bytes) else raw
                if '"kind":"decision"' in text:
                    yield text
                    found += 1
                    if found >= limit:
                        return
