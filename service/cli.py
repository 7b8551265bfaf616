"""The `loan-decide` command: serve the API (later: log export, replay, state tools)."""
from __future__ import annotations

import logging

import click

from service import logs
from service.settings import Settings


@click.group()
def main() -> None:
    """Loan-decision rule engine."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="gunicorn worker processes (sync workers: durable_rules is not thread-safe).")
@click.option("--rules", "rules_dir", type=click.Path(exists=True, file_okay=False),
              help="Rules directory (default: RULES_DIR or the bundled rules/).")
def serve(host: str, port: int, workers: int, rules_dir: str | None) -> None:
    """Serve the API under gunicorn; GET /healthz answers once ready."""
    from gunicorn.app.base import BaseApplication

    from service.api import create_app

    from service import redisconn

    settings = Settings.from_env()
    if rules_dir:
        settings = Settings(**{**settings.__dict__, "rules_dir": rules_dir})
    if redisconn.is_embedded(settings.redis_url) and workers > 1:
        raise click.UsageError("the embedded store (no REDIS_URL) lives in one process: "
                               "use --workers 1, or set REDIS_URL to share state between workers")
    logs.configure(settings.log_level)
    # Built before the fork (preload): the durable_rules Host then works in every worker.
    app = create_app(settings)
    logging.getLogger("loan_decide").info("serving", extra={"fields": {
        "bind": f"{host}:{port}", "workers": workers,
        "rules_version": app.extensions["decision_service"].rules_version}})

    class _Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "sync")
            self.cfg.set("preload_app", True)
            self.cfg.set("timeout", 30)
            self.cfg.set("graceful_timeout", 20)

        def load(self):
            return app

    _Server().run()
