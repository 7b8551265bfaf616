"""The `loan-decide` command: serve the API (later: log export, replay, state tools)."""
from __future__ import annotations

import logging

import click

from service.entrypoints import logs
from service.entrypoints.settings import Settings


@click.group()
def main() -> None:
    """Loan-decision rule engine."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="gunicorn worker processes (gevent, no threads: durable_rules is not thread-safe).")
@click.option("--rules", "rules_dir", type=click.Path(exists=True, file_okay=False),
              help="Rules directory (default: RULES_DIR or the bundled rules/).")
def serve(host: str, port: int, workers: int, rules_dir: str | None) -> None:
    """Serve the API under gunicorn (docker/gunicorn.conf.py); GET /healthz answers once ready."""
    import os
    import tempfile
    from pathlib import Path

    # before prometheus_client is imported: every worker's samples go to one directory
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="loan-decide-metrics-"))
    from gunicorn.app.base import BaseApplication

    # nothing that imports redis (and ssl) before the gevent patch in build(): modules imported
    # before it keep their unpatched socket and ssl, and gevent warns at start-up
    settings = _settings_or_exit(Settings.from_env)
    if rules_dir:
        settings = Settings(**{**settings.__dict__, "rules_dir": rules_dir})
    if not settings.redis_url and workers > 1:
        raise click.UsageError("the embedded store (no REDIS_URL) lives in one process: "
                               "use --workers 1, or set REDIS_URL to share state between workers")
    logs.configure(settings.log_level)

    def build():
        """The app, built as the container's `gunicorn ... service.entrypoints.wsgi:app` builds it:
        by gunicorn's arbiter before the fork (preload: the durable_rules Host then works in every
        worker), the gevent patch first and after the arbiter exists (see patch_early)."""
        if os.environ.get("WORKER_CLASS", "gevent") == "gevent":   # docker/gunicorn.conf.py's default
            from service.entrypoints.gunicorn_worker import patch_early

            patch_early()
        from service.entrypoints.http.app import create_app

        app = _settings_or_exit(lambda: create_app(settings))
        logging.getLogger("loan_decide").info("serving", extra={"fields": {
            "bind": f"{host}:{port}", "workers": workers,
            "rules_version": app.extensions["services"].rules.version}})
        return app

    config_file = Path(__file__).resolve().parents[2] / "docker" / "gunicorn.conf.py"

    class _Server(BaseApplication):
        def load_config(self) -> None:
            if config_file.exists():       # the same settings and hooks as the container
                import runpy

                for key, value in runpy.run_path(str(config_file)).items():
                    if key in self.cfg.settings and value is not None:
                        self.cfg.set(key, value)
            else:
                self.cfg.set("worker_class", "service.entrypoints.gunicorn_worker.JsonGeventWorker")
                self.cfg.set("logger_class", "service.entrypoints.gunicorn_worker.JsonLogger")
                self.cfg.set("preload_app", True)
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)

        def load(self):
            return build()

    _Server().run()


def _settings_or_exit(build):
    """What `build` makes; a setting it refuses (ValueError: RATE_LIMITS, ADMIN_API_KEYS, keys
    that overlap...) ends the command with its message, not a traceback."""
    try:
        return build()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


# -- the decision log ------------------------------------------------------------------------------
def _redis_services(require_url: bool = True):
    from service.entrypoints.bootstrap import build_services

    settings = Settings.from_env()
    if require_url and not settings.redis_url:
        raise click.UsageError("set REDIS_URL to the service's Redis")
    return build_services(settings, publish=False)


def _instant(value: str | None, name: str) -> str | None:
    """A date or a UTC time, as the log's `at` strings compare."""
    if value is None:
        return None
    import datetime as dt

    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value).strftime("%Y-%m-%dT00:00:00Z")
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise click.BadParameter(f"{value!r}: use YYYY-MM-DD or an ISO 8601 time", param_hint=name)


@main.group()
def log() -> None:
    """The decision log (kept in Redis beside the state it changed)."""


@log.command("export")
@click.option("--since", help="First time included (YYYY-MM-DD or ISO time, UTC).")
@click.option("--until", help="First time excluded.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default="jsonl",
              show_default=True, help="JSON Lines to stdout, or Parquet files into --output.")
@click.option("--output", type=click.Path(file_okay=False),
              help="(parquet) The directory for the part files: new, or empty.")
@click.option("--rows-per-file", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="(parquet) Rows in each part file.")
def log_export(since: str | None, until: str | None, fmt: str, output: str | None,
               rows_per_file: int) -> None:
    """Write the log ordered by time (REDIS_URL selects the store): as JSON Lines to stdout, or
    as Parquet part files (part-00000.parquet, ...) into --output, columns as docs/decision-log-and-replay.md says."""
    import sys

    window = _instant(since, "--since"), _instant(until, "--until")
    if fmt == "jsonl":
        if output:
            raise click.UsageError("--output is for --format parquet (JSON Lines go to stdout)")
        count = _redis_services().stores.log.export(sys.stdout, *window)
        click.echo(f"exported {count} records", err=True)
        return
    writer = _parquet_writer(output, rows_per_file)
    try:
        count = _redis_services().stores.log.export(writer, *window)
        files = writer.close()
    except BaseException:
        writer.discard()
        raise
    click.echo(f"exported {count} records to {len(files)} Parquet file{'s' * (len(files) != 1)} "
               f"in {output}", err=True)


def _parquet_writer(output: str | None, rows_per_file: int):
    """The Parquet sink of `log export`, once pyarrow is there and --output is new or empty."""
    from pathlib import Path

    if not output:
        raise click.UsageError("--format parquet writes files: give --output DIR")
    try:
        from service.adapters.log_parquet import ParquetLogWriter
    except ImportError:
        raise click.ClickException("--format parquet needs pyarrow: "
                                   "pip install 'loan-decision-engine[parquet]'") from None
    directory = Path(output)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise click.BadParameter(f"{output} exists and is not an empty directory", param_hint="--output")
    directory.mkdir(parents=True, exist_ok=True)
    return ParquetLogWriter(directory, rows_per_file=rows_per_file)


def _log_lines(logs, progress: bool):
    """(line number, text) of the log files, streamed, with a progress bar on stderr."""
    import sys

    total = logs.total_size()
    if not (progress and total and sys.stderr.isatty()):
        yield from logs.lines()
        return
    with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
        yield from logs.lines(on_progress=bar.update)


def _open_logs(paths: tuple[str, ...]):
    """The replay's inputs, found before any work starts (a missing file is an error at once)."""
    from service.adapters.log_files import LogFileError, LogLines

    try:
        return LogLines.of(paths)
    except LogFileError as exc:
        raise click.ClickException(str(exc)) from None


def _lines(path: str, progress: bool):
    """(line number, text) of one log file (the state tools'), as replay reads it."""
    from service.adapters.log_files import LogFileError

    try:
        yield from _log_lines(_open_logs((path,)), progress)
    except LogFileError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("logs", metavar="LOG...", nargs=-1, required=True)
@click.option("--rules", "rules_dir", type=click.Path(exists=True, file_okay=False),
              help="Replay every record under this rules directory.")
@click.option("--rules-version", help="Replay every record under this archived version (sha256:...).")
@click.option("--report", type=click.Path(dir_okay=False, writable=True),
              help="Write every changed decision to this file (.jsonl or .html).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--jobs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Processes (0: all cores).")
@click.option("--skip-bad", is_flag=True, help="Report malformed lines and go on.")
@click.option("--simulate", is_flag=True,
              help="Carry state forward: each user's state is built from the new decisions.")
@click.option("--engine", type=click.Choice(["processes", "dask"]), default="processes",
              show_default=True,
              help="processes: --jobs processes here; dask: partitions as Dask tasks (the dask extra).")
@click.option("--scheduler", metavar="ADDRESS",
              help="With --engine dask: the scheduler (tcp://host:8786); default a local cluster "
                   "of --jobs workers. Its workers must read this machine's TMPDIR.")
@click.option("--partitions", type=click.IntRange(min=1),
              help="With --engine dask: partitions by user (default: 4 a worker).")
def replay(logs: tuple[str, ...], rules_dir: str | None, rules_version: str | None, report: str | None,
           as_json: bool, jobs: int, skip_bad: bool, simulate: bool, engine: str,
           scheduler: str | None, partitions: int | None) -> None:
    """Re-run each logged decision at its recorded time and state; summarise what changed.

    LOG: files, globs, directories (their *.jsonl, *.jsonl.gz and *.parquet files, sorted),
    local or fsspec URLs (s3://...), or - for stdin; JSON Lines (plain or gzip) or the Parquet
    export, read in the order given as one log.

    By default each record runs under its own rules version (the bundled rules, or the Redis
    archive named by REDIS_URL). With --simulate, the decisions are made again in time order
    on the state the new decisions build (see service/usecases/simulate.py). A --report
    ending in .html is the impact page (charts and the changed decisions).
    """
    import os
    from pathlib import Path

    from service.adapters.log_files import LogFileError
    from service.usecases import replay as replaying

    if rules_dir and rules_version:
        raise click.UsageError("give --rules or --rules-version, not both")
    from service.entrypoints.bootstrap import policy_source

    if engine != "dask" and (scheduler or partitions):
        raise click.UsageError("--scheduler and --partitions go with --engine dask")
    inputs = _open_logs(logs)
    source = policy_source(Settings.from_env(), Path(rules_dir) if rules_dir else None, rules_version)
    if engine == "dask":
        return _replay_on_dask(inputs, source, report, as_json, skip_bad, simulate,
                              scheduler, partitions, jobs or os.cpu_count() or 1)
    if simulate:
        return _simulate(inputs, source, report, as_json, jobs or os.cpu_count() or 1, skip_bad)
    impact = _impact(report)
    writer = _ReportWriter(report) if report and impact is None else None
    try:
        summary = replaying.replay(
            _log_lines(inputs, progress=not as_json), source, jobs=jobs or os.cpu_count() or 1,
            skip_bad=skip_bad, on_change=writer.add if writer else None,
            on_bad=_skipped(inputs) if skip_bad else None,
            on_item=impact.add if impact is not None else None)
    except replaying.BadRecord as bad:
        raise click.ClickException(f"{inputs.where(bad.line)}: {bad.problem} (use --skip-bad to go on)")
    except (LogFileError, LookupError) as problem:
        raise click.ClickException(str(problem))
    finally:
        if writer:
            writer.close()
    if impact is not None:
        _write_impact(report, impact, summary.to_dict(), simulated=False, source=source)
    _print_summary(summary.to_dict(), as_json, report)


def _skipped(inputs):
    """Tells of a malformed line --skip-bad went past, by file and line."""
    return lambda bad: click.echo(f"skipped {inputs.where(bad.line)}: {bad.problem}", err=True)


def _print_summary(doc: dict, as_json: bool, report: str | None) -> None:
    import json

    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False))
        return
    click.echo(f"total {doc['total']}  identical {doc['identical']}  changed {doc['changed']}  "
               f"(exact {doc['exact']}, other records {doc['other_records']}, "
               f"bad lines {doc['bad_lines']})")
    click.echo(f"reviews {doc['reviews']['total']} (identical {doc['reviews']['identical']})  "
               f"overrides {doc['overrides']['total']} (identical {doc['overrides']['identical']})  "
               f"requests for a person {doc['human_reviews']['total']} "
               f"(identical {doc['human_reviews']['identical']})")
    if doc["transitions"]:
        click.echo("\noutcome transitions")
        for name, count in doc["transitions"].items():
            click.echo(f"  {name.replace('->', ' -> '):<28} {count}")
    if doc["rules"]:
        click.echo("\nrules whose results changed")
        for name, count in sorted(doc["rules"].items(), key=lambda kv: (-kv[1], kv[0])):
            click.echo(f"  {name:<28} {count}")
    if doc.get("simulated"):
        click.echo(f"\nsimulated: refusals by state {doc['state_refusals']}; applied "
                   f"{doc['applied']}, no longer apply {doc['no_longer_apply']}, "
                   f"skipped kinds {doc['skipped_kinds']}")
    if report:
        click.echo(f"\nchanged decisions written to {report}")


def _impact(report: str | None):
    """The impact figures a .html report charts (None for other reports)."""
    if not (report and report.endswith((".html", ".htm"))):
        return None
    from service.usecases.impact import Impact

    return Impact()


def _write_impact(path: str, impact, summary: dict, simulated: bool, source) -> None:
    """The impact page, opening with the rules diff of each log version and the candidate's."""
    from service.entrypoints import impact_page
    from service.usecases.impact import version_changes

    impact_page.write(path, impact, summary, simulated=simulated,
                      changes=version_changes(impact, source.book))


def _simulate(inputs, source, report: str | None, as_json: bool, jobs: int,
              skip_bad: bool) -> None:
    """`replay --simulate`: the same summary plus what carrying state forward changed."""
    from service.adapters.log_files import LogFileError
    from service.entrypoints.bootstrap import simulation_stores
    from service.usecases import replay as replaying
    from service.usecases import simulate as simulating

    html = _impact(report) is not None
    try:
        result = simulating.simulate(
            _log_lines(inputs, progress=not as_json), source, simulation_stores, jobs=jobs,
            skip_bad=skip_bad, keep_changes=bool(report) and not html, impact=html,
            on_bad=_skipped(inputs))
    except replaying.BadRecord as bad:
        raise click.ClickException(f"{inputs.where(bad.line)}: {bad.problem} (use --skip-bad to go on)")
    except (LogFileError, LookupError) as problem:
        raise click.ClickException(str(problem))
    if html:
        _write_impact(report, result.impact, result.to_dict(), simulated=True, source=source)
    elif report:
        writer = _ReportWriter(report)
        for change in result.changes:
            writer.add(change)
        writer.close()
    _print_summary(result.to_dict(), as_json, report)


def _replay_on_dask(inputs, source, report: str | None, as_json: bool, skip_bad: bool,
                    simulate: bool, scheduler: str | None, partitions: int | None,
                    workers: int) -> None:
    """`replay --engine dask`: the partitions of --jobs as Dask tasks, merged into one summary."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise click.ClickException("--engine dask needs the dask extra: "
                                   "pip install 'loan-decision-engine[dask]'")
    from service.adapters import dask_replay
    from service.adapters.log_files import LogFileError
    from service.entrypoints.bootstrap import simulation_stores
    from service.usecases import replay as replaying

    html = _impact(report) is not None
    try:
        result = dask_replay.replay_on_dask(
            _log_lines(inputs, progress=not as_json), source,
            dask_replay.Cluster(scheduler, workers, partitions), simulate=simulate,
            stores=simulation_stores if simulate else None, skip_bad=skip_bad,
            keep_changes=bool(report) and not html, impact=html,
            on_progress=None if as_json else _echo_progress,
            on_warning=lambda text: click.echo(f"warning: {text}", err=True))
    except replaying.BadRecord as bad:
        raise click.ClickException(f"{inputs.where(bad.line)}: {bad.problem} (use --skip-bad to go on)")
    except (LogFileError, LookupError, dask_replay.EngineError) as exc:
        raise click.ClickException(str(exc))
    for line, problem in result.bad:
        click.echo(f"skipped {inputs.where(line)}: {problem}", err=True)
    doc = result.to_dict() if simulate else result.summary.to_dict()
    if html:
        _write_impact(report, result.impact, doc, simulated=simulate)
    elif report:
        writer = _ReportWriter(report)
        for change in result.changes:
            writer.add(change)
        writer.close()
    _print_summary(doc, as_json, report)


def _echo_progress(progress) -> None:
    click.echo(f"partition {progress.done}/{progress.partitions} done: "
               f"{progress.decisions:,} decisions, {progress.rate:,.0f} decisions/s so far", err=True)


class _ReportWriter:
    """Changed decisions as JSON Lines, or as one HTML table."""

    def __init__(self, path: str):
        import html
        import json

        self.path, self.html, self.json = path, html, json
        self.is_html = path.endswith((".html", ".htm"))
        self.handle = open(path, "w", encoding="utf-8")
        if self.is_html:
            self.handle.write("<!doctype html><meta charset=utf-8><title>replay: changed decisions</title>"
                              "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px;"
                              "vertical-align:top}table{border-collapse:collapse}</style>"
                              "<h1>Changed decisions</h1><table><tr><th>line</th><th>time</th><th>user</th>"
                              "<th>application</th><th>old</th><th>new</th><th>rules</th></tr>\n")

    def add(self, change: dict) -> None:
        if not self.is_html:
            self.handle.write(self.json.dumps(change, ensure_ascii=False) + "\n")
            return
        e = self.html.escape
        cell = lambda side: e(f"{change[side]['outcome']}: {', '.join(change[side]['reasons']) or '-'}")
        self.handle.write(f"<tr><td>{change['line']}</td><td>{e(change['at'])}</td><td>{e(change['user_id'])}"
                          f"</td><td>{e(change['application_id'])}</td><td>{cell('old')}</td>"
                          f"<td>{cell('new')}</td><td>{e(', '.join(change['changed_rules']))}</td></tr>\n")

    def close(self) -> None:
        if self.is_html:
            self.handle.write("</table>\n")
        self.handle.close()


# -- state tools ----------------------------------------------------------------------------------
@main.group()
def state() -> None:
    """Per-user state: rebuild it from the decision log, or compare the two."""


@state.command("rebuild")
@click.argument("logfile", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def state_rebuild(logfile: str) -> None:
    """Apply every record of LOGFILE, in order, to the Redis that REDIS_URL names."""
    from service.usecases import rebuild as rebuilding

    services = _redis_services()
    count = _rebuilder(services).rebuild(rebuilding.records(_lines(logfile, progress=True)))
    click.echo(f"applied {count} records", err=True)
    repaired = services.cases.repair()   # the pending index is not in the log: found again
    click.echo(f"review cases pending {repaired['pending']} (indexed again {repaired['added']})", err=True)


@state.command("diff")
@click.argument("logfile", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def state_diff(logfile: str) -> None:
    """Compare the state LOGFILE implies with the live Redis; exit 1 on any difference."""
    import json

    from service.entrypoints.bootstrap import build_services
    from service.usecases import rebuild as rebuilding

    live = _redis_services()
    implied = build_services(Settings(**{**Settings.from_env().__dict__, "redis_url": None}), publish=False)
    result = rebuilding.diff(_rebuilder(implied), live.work,
                             rebuilding.records(_lines(logfile, progress=True)))
    for d in result.differences:
        click.echo(json.dumps({"user_id": d.user_id, "key": d.key, "log": d.log, "live": d.live},
                              ensure_ascii=False, default=str))
    click.echo(f"{result.users} users, {len(result.differences)} differences", err=True)
    if result.differences:
        raise SystemExit(1)


def _rebuilder(services):
    from service.usecases.rebuild import Rebuilder

    return Rebuilder(services.work, services.rules, services.stores.erased,
                     services.settings.erasure_secret, overrides=services.stores.overrides)


# -- review cases ---------------------------------------------------------------------------
@main.group()
def reviews() -> None:
    """Review cases: the pending index beside the per-user records."""


@reviews.command("repair")
def reviews_repair() -> None:
    """Re-add open review cases the pending index lacks (an index write lost after a commit)."""
    import json

    click.echo(json.dumps(_redis_services().cases.repair()))


# -- rule changes: the policy test kit and archived versions ------------------------------------
@main.command("test")
@click.option("--rules", "rules_dir", type=click.Path(exists=True, file_okay=False),
              help="Rules directory whose kit (DIR/tests) runs (default: RULES_DIR or rules/).")
@click.option("--mutate", is_flag=True,
              help="Move every threshold one step each way; report the mutants no case catches.")
@click.option("--min-score", default=0.95, show_default=True, type=click.FloatRange(0, 1),
              help="With --mutate: exit 1 when fewer mutants than this share are caught.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def test_kit(rules_dir: str | None, mutate: bool, min_score: float, as_json: bool) -> None:
    """Run the rules' policy test kit; exit 1 on a failing case (or, with --mutate, when
    fewer than --min-score of the mutants are caught)."""
    import json

    from service.adapters import rule_mutants, rules_files
    from service.domain import policy_kit, rulebook
    from service.entrypoints.bootstrap import KITS
    from service.usecases import policy_tests

    directory = rules_dir or str(Settings.from_env().rules_dir)
    try:
        book = rules_files.load(directory)
        kit = KITS.parse(rules_files.kit_files(directory))
        result = policy_tests.run_kit(KITS.policy(book), kit)
    except (rulebook.RulesError, policy_kit.KitError) as exc:
        raise click.ClickException(str(exc))
    if not mutate:
        if as_json:
            click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        else:
            for failure in result.failures:
                click.echo(failure)
            click.echo(f"{result.passed}/{result.cases} cases pass ({book.version[:19]})")
        raise SystemExit(0 if result.ok else 1)
    if not result.ok:
        raise click.ClickException(f"the kit fails on the rules themselves "
                                   f"({len(result.failures)} cases); fix that first:\n"
                                   + "\n".join(result.failures))
    report = KITS.mutation_run(book, kit, rule_mutants.mutants(book.files)).to_dict()
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        for name in report["surviving"]:
            click.echo(f"SURVIVED {name}")
        click.echo(f"{report['caught']}/{report['mutants']} mutants caught "
                   f"({report['score']:.1%}) in {report['seconds']:.1f}s")
    raise SystemExit(0 if report["score"] >= min_score else 1)


@main.group()
def rules() -> None:
    """Rules versions: archive a directory as a version (what shadow and challenger name)."""


@rules.command("archive")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def rules_archive(directory: str) -> None:
    """Validate DIRECTORY, run its own kit (reported, not refused), store it as a version in
    the Redis that REDIS_URL names, and print the version. The kit is part of the version: the
    same rules archived again with another kit (or none) are refused."""
    from service.adapters import rules_files
    from service.domain import policy_kit, rulebook
    from service.entrypoints.bootstrap import KITS, redis_stores
    from service.usecases import rule_changes
    from service.usecases.ports import StoreUnavailable

    settings = Settings.from_env()
    if not settings.redis_url:
        raise click.UsageError("set REDIS_URL to the service's Redis")
    try:
        book, kit_files = rules_files.load(directory), rules_files.kit_files(directory)
        result = rule_changes.archive_version(KITS, redis_stores(settings).archive, book, kit_files)
    except (rulebook.RulesError, policy_kit.KitError) as exc:
        raise click.ClickException(str(exc))
    except StoreUnavailable as exc:
        raise click.ClickException(f"the service's Redis did not answer; run the command again (archiving twice is safe): {exc}")
    kit = result["kit"]
    for failure in kit["failures"]:
        click.echo(failure, err=True)
    if not kit["cases"]:
        click.echo("kit: no case (DIRECTORY/tests/*.yaml): this version may shadow, never go live",
                   err=True)
    else:
        click.echo(f"kit: {kit['passed']}/{kit['cases']} cases pass", err=True)
    click.echo(result["rules_version"])


@rules.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print the diff as one JSON object.")
def rules_diff(old: str, new: str, as_json: bool) -> None:
    """What changed from OLD to NEW, per rule id: parameters, conditions, checks added and
    removed, messages. Each is a rules directory or an archived version (sha256:..., from the
    rules archive of the Redis that REDIS_URL names). Exit 0 whether or not they differ."""
    import json

    from service.domain import rules_diff

    found = rules_diff.diff(_rules_book(old, "OLD"), _rules_book(new, "NEW"))
    if as_json:
        click.echo(json.dumps(found.to_dict(), ensure_ascii=False))
    else:
        click.echo("\n".join(found.lines()))


def _rules_book(spec: str, name: str):
    """The RuleBook an argument names; a click error naming the argument when it names none."""
    from pathlib import Path

    from service.adapters import rules_files
    from service.domain.rulebook import RulesError

    if spec.startswith("sha256:"):
        return _archived_book(spec, name)
    if not Path(spec).is_dir():
        raise click.BadParameter(f"{spec!r} is neither a directory nor an archived version "
                                 "(sha256:...)", param_hint=name)
    try:
        return rules_files.load(spec)
    except RulesError as exc:
        raise click.BadParameter(f"{spec!r} is not a usable rules directory: {exc}", param_hint=name)


def _archived_book(version: str, name: str):
    """An archived version, from the rules archive of the Redis that REDIS_URL names."""
    from service.domain.rulebook import RulesError
    from service.entrypoints.bootstrap import redis_stores
    from service.usecases.ports import StoreUnavailable

    settings = Settings.from_env()
    if not settings.redis_url:
        raise click.BadParameter(f"{version} is an archived version: set REDIS_URL to the Redis "
                                 "whose rules archive holds it", param_hint=name)
    try:
        book = redis_stores(settings).archive.load(version)
    except StoreUnavailable as exc:
        raise click.BadParameter(f"the Redis of REDIS_URL did not answer: {exc}", param_hint=name)
    except RulesError as exc:
        raise click.BadParameter(f"{version}: the archived files are not usable: {exc}", param_hint=name)
    if book is None:
        raise click.BadParameter(f"{version} is not in the rules archive of REDIS_URL",
                                 param_hint=name)
    return book


if __name__ == "__main__":   # `python -m service.entrypoints.cli`: the CLI of the code on PYTHONPATH
    main()
