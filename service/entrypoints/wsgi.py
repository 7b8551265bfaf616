"""The WSGI entry point gunicorn serves: `gunicorn -c docker/gunicorn.conf.py service.entrypoints.wsgi:app`.

Settings come from the environment (service.entrypoints.settings). Built at import, i.e. in the master
before the fork when gunicorn preloads.
"""
import os

if os.environ.get("WORKER_CLASS", "gevent") == "gevent":   # docker/gunicorn.conf.py's default
    from service.entrypoints.gunicorn_worker import patch_early

    patch_early()

from service.entrypoints import logs  # noqa: E402  (after the gevent patch)
from service.entrypoints.http.app import create_app  # noqa: E402
from service.entrypoints.settings import Settings  # noqa: E402

_settings = Settings.from_env()
logs.configure(_settings.log_level)
app = create_app(_settings)

