"""The golden decisions: what the service answers and logs for a seeded stream of applications.

    .venv/bin/python -m tests.golden.decisions --write     record tests/data/golden_decisions.jsonl.gz

A stream of `COUNT` applications over all products and scenarios (bench/applicants.py), about
half of them from users seen before (so state refusals, cooling-off and resends occur), each sent
through the HTTP app on the in-memory stores at a clock that moves on 7 minutes per request.
For each: the status, the response body and every decision-log record it wrote, as text. Random
identifiers (decision and grace ids) are replaced by their order of appearance, so a rerun gives
the same bytes; the trace id each record ends with (a new trace per request) is left out: it says
which request wrote the record, not what was decided. Recorded before the service's hot path was
rewritten for speed: a rewrite must give every byte back (tests/unit/test_golden_decisions.py).
"""
from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import re
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden_decisions.jsonl.gz"
COUNT = 3000
SEED = 23
START = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
STEP = dt.timedelta(minutes=7)
_HEX_ID = re.compile(r"\b[0-9a-f]{16,32}\b")
_TRACE_ID = re.compile(r',"trace_id":"[0-9a-f]{32}"\}$')


def without_trace_id(text: str) -> str:
    """A record's text without the trace id it ends with (service.usecases.log_records)."""
    return _TRACE_ID.sub("}", text)


def stream() -> Iterator[tuple[int, str, list[str]]]:
    """(status, response text, log record texts) for each application of the stream."""
    sys.path.insert(0, str(ROOT / "bench"))
    import applicants

    from service.adapters import rules_files
    from service.domain.clock import FixedClock
    from service.entrypoints.bootstrap import build_policy, memory_stores, wire
    from service.entrypoints.http.app import create_app
    from service.entrypoints.settings import Settings

    policy = build_policy(rules_files.load(ROOT / "rules"))
    clock = FixedClock(START)
    settings = Settings()
    stores = memory_stores(settings, clock)
    app = create_app(settings, services=wire(settings, clock, stores, policy))
    client = app.test_client()
    data = stores.log.data        # the in-memory log: each user's (seq, at, text) records
    last = 0
    for n, (_, body) in enumerate(applicants.generate(COUNT, SEED, START)):
        if n % 10 == 9:                      # a resend of the application before
            body = previous
        clock.set(START + n * STEP)
        response = client.post("/decide", json=body)
        new = [(seq, text) for seq, _, text in data.user(body["user_id"]).log if seq > last]
        last = max([last] + [seq for seq, _ in new])
        records = [without_trace_id(text) for _, text in new]
        yield response.status_code, response.get_data(as_text=True), records
        previous = body


def normalised(rows: Iterator[tuple[int, str, list[str]]]) -> Iterator[str]:
    """Each row as one JSON line, random ids numbered by first appearance."""
    names: dict[str, str] = {}

    def name(match: re.Match) -> str:
        return names.setdefault(match.group(0), f"id{len(names):06d}")

    for status, text, records in rows:
        line = json.dumps({"status": status, "response": text, "records": records}, ensure_ascii=False)
        yield _HEX_ID.sub(name, line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    lines = list(normalised(stream()))
    if args.write:
        with gzip.open(GOLDEN, "wt", encoding="utf-8") as out:
            out.writelines(line + "\n" for line in lines)
    print(f"{len(lines)} decisions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
