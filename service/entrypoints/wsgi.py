"""The WSGI entry point gunicorn serves: `gunicorn -c docker/gunicorn.conf.py service.entrypoints.wsgi:app`.

Settings come from the environment (service.entrypoints.settings). Built at import, i.e. in the master
before the fork when gunicorn preloads.
"""
from service.entrypoints import logs
from service.entrypoints.http.app import create_app
from service.entrypoints.settings import Settings

_settings = Settings.from_env()
logs.configure(_settings.log_level)
app = create_app(_settings)

