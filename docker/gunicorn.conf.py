"""gunicorn settings for the service, from environment variables with production defaults.

gevent worker processes, never threads (service/entrypoints/gunicorn_worker.py): a slow client costs a
socket, not a worker, so a few connections that dribble their headers cannot stop the service,
and requests are served first come first served with connections spread evenly over the workers
(service/entrypoints/fair_serving.py); durable_rules, process-global and not thread-safe, evaluates under one lock with no
I/O inside it. WORKER_CLASS=sync selects the one-request-at-a-time worker instead. The app is
built before the fork (preload), so every worker shares the compiled rules, and a worker that
dies is replaced by a fork of the same master.
"""
import os
import tempfile

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WORKERS", "2"))
_WORKER_CLASSES = {"gevent": "service.entrypoints.gunicorn_worker.JsonGeventWorker",
                   "sync": "service.entrypoints.gunicorn_worker.JsonSyncWorker"}
worker_class = _WORKER_CLASSES[os.environ.get("WORKER_CLASS", "gevent")]
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "1000"))  # open sockets per worker
# APP_CONCURRENCY (default 2): requests a gevent worker runs in the app at once, the others
# waiting in arrival order (service/entrypoints/fair_serving.py); read by the worker
threads = 1
preload_app = True
timeout = int(os.environ.get("TIMEOUT", "30"))                  # a stuck worker is killed after this
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))  # SIGTERM: finish in-flight requests
keepalive = int(os.environ.get("KEEPALIVE", "5"))
max_requests = int(os.environ.get("MAX_REQUESTS", "10000"))      # recycle workers: bounded memory
max_requests_jitter = int(os.environ.get("MAX_REQUESTS_JITTER", "1000"))
worker_tmp_dir = os.environ.get("WORKER_TMP_DIR") or None

# The app writes one JSON line per request (request id, decision id, outcome, latency);
# gunicorn's own access log, in JSON too, only when asked for. gunicorn's lines (its error log
# quotes bad header names and request lines) go through the service's masking JSON formatter:
# the access format is read back as the line's fields, and the line's `ts` is the formatter's.
logger_class = "service.entrypoints.gunicorn_worker.JsonLogger"
accesslog = "-" if os.environ.get("ACCESS_LOG", "").lower() in ("1", "true", "yes") else None
access_log_format = ('{"remote":"%(h)s","method":"%(m)s","path":"%(U)s",'
                     '"status":%(s)s,"bytes":%(B)s,"duration_ms":%(M)s,'
                     '"request_id":"%({x-request-id}o)s"}')
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# prometheus-client in multiprocess mode: every worker writes its samples to this directory and
# /metrics adds them up. It must be set before the app (and prometheus_client) is imported.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="loan-decide-metrics-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def on_starting(server):
    # The embedded store (no REDIS_URL) is one process's memory: several workers would each
    # keep a different state. Refuse, as `loan-decide serve` does.
    if not os.environ.get("REDIS_URL") and server.cfg.workers > 1:
        raise RuntimeError("REDIS_URL is not set: the embedded store lives in one process; "
                           "set REDIS_URL or WORKERS=1")
    # samples of an earlier run would be added to this one's
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    if worker_class.endswith("JsonGeventWorker"):   # a worker that died does not hold connections
        from service.entrypoints.gunicorn_worker import CONNECTIONS

        CONNECTIONS.forget(worker.pid)


def post_worker_init(worker):
    # A worker forked after a rules reload starts from the master's (older) rules: switch it to
    # the version every worker runs before it serves anything.
    app = getattr(worker.wsgi, "app", worker.wsgi)     # the Flask app inside the gevent worker's gate
    services = getattr(app, "extensions", {}).get("services")
    if services is not None:
        services.rules.sync(force=True)
