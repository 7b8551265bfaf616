# loan-decide: the decision service under gunicorn.
#
#   DOCKER_BUILDKIT=1 docker build -t loan-decide:latest .     # or: bash scripts/docker-build.sh
#   docker run -p 8000:8000 -e REDIS_URL=redis://HOST:6379/0 -e API_KEYS=... loan-decide:latest
#
# Two stages. durable_rules 2.0.28 ships as source only and compiles a C extension, so the
# compiler lives in the builder, which turns the project and every dependency into wheels;
# the runtime image installs those wheels offline and has no compiler. durable_rules does not
# build on Python 3.13: both stages stay on 3.11 (pyproject: requires-python <3.13).
# BuildKit's built-in Dockerfile frontend is enough (RUN --mount): no `# syntax=` line, which would
# fetch a frontend image from a registry and fail in offline and air-gapped builds.

############################ build: wheels for the project and its dependencies
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package index the wheels come from, when it is not PyPI (a mirror or proxy): build args,
# unset by default. scripts/docker-build.sh passes the host's pip settings.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, from pyproject.toml alone: this layer (the durable_rules compile) is
# rebuilt only when the dependency list changes, not on every code change. With the `dask` and `parquet`
# extras: the same image runs `replay --engine dask`, a Dask scheduler's workers and Parquet exports
# (docker-compose.dask.yml).
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['dask'] + p['optional-dependencies']['parquet']))" > requirements.txt \
 && pip wheel --wheel-dir /wheels -r requirements.txt

# Then the project itself (packages service and schemas; the rules are data, copied below).
COPY service ./service
COPY schemas ./schemas
RUN pip wheel --no-deps --wheel-dir /wheels .

############################ runtime
FROM python:3.11-slim-bookworm AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user with a fixed uid, so mounted volumes can be given to it.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin app

# Install from the builder's wheels only: no index, no compiler. The wheels are bind-mounted
# for this one step, so they add no layer to the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl

WORKDIR /app

# gunicorn's settings, and the rules baked in. RULES_DIR can point elsewhere, or a volume can
# be mounted over /app/rules (read-only) to run other rules without rebuilding: see
# docker-compose.yml. No VOLUME here: an anonymous volume on /app/rules would keep the old
# rules across an image upgrade under compose.
COPY docker/gunicorn.conf.py docker/gunicorn.conf.py
COPY rules/ rules/

# prometheus-client's multiprocess directory (gunicorn.conf.py empties it at start) and the
# directories for decision-log exports and for the partition files of `replay --engine dask`
# (docker-compose.dask.yml): writable by the app user, everything else is not.
RUN mkdir -p /tmp/metrics /app/exports /app/partitions \
 && chown app:app /tmp/metrics /app/exports /app/partitions

# HOME=/tmp: gunicorn (>= 25) puts its control socket in $HOME/.gunicorn, and /app is not
# writable. WORKER_TMP_DIR: the workers' heartbeat files on tmpfs, not the overlay filesystem.
ENV RULES_DIR=/app/rules \
    PROMETHEUS_MULTIPROC_DIR=/tmp/metrics \
    WORKER_TMP_DIR=/dev/shm \
    HOME=/tmp

USER app:app

EXPOSE 8000

# Liveness without curl: the python the image already has. The port follows BIND when set.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('BIND', '0.0.0.0:8000').rsplit(':', 1)[-1]; urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=2)"]

# gunicorn is PID 1 (exec form, no shell): SIGTERM from `docker stop` reaches it directly and
# starts its graceful shutdown (GRACEFUL_TIMEOUT).
CMD ["gunicorn", "-c", "docker/gunicorn.conf.py", "service.entrypoints.wsgi:app"]
