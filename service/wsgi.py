"""The WSGI entry point gunicorn serves: `gunicorn -c docker/gunicorn.conf.py service.wsgi:app`.

Settings come from the environment (service.settings). Built at import, i.e. in the master
before the fork when gunicorn preloads.
"""
from service import logs
from service.api import create_app
from service.settings import Settings

_settings = Settings.from_env()
logs.configure(_settings.log_level)
app = create_app(_settings)

