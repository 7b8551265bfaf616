"""Build the Redis client REDIS_URL names: a server or a Redis Cluster.

- `redis://` / `rediss://` / `unix://`: one server (redis-py).
- `redis+cluster://host:port[,host:port]`: Redis Cluster (redis-py's RedisCluster).
- unset: no Redis at all; the service runs on the in-memory adapters (service.adapters.memory),
  a single process's memory: fine to try the service, refused with several workers
  (`loan-decide serve` checks).
"""
from __future__ import annotations

from typing import Union

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

CLUSTER_SCHEME = "redis+cluster://"
Client = Union[redis.Redis, RedisCluster]


def is_embedded(url: str | None) -> bool:
    return not url


def connect(url: str, timeout: float = 0.5) -> Client:
    if is_embedded(url):
        raise ValueError("no REDIS_URL: the embedded default runs on the in-memory adapters")
    options = dict(socket_timeout=timeout, socket_connect_timeout=timeout)
    if url.startswith(CLUSTER_SCHEME):
        rest = url[len(CLUSTER_SCHEME):].split("/", 1)[0]
        nodes = [ClusterNode(*_host_port(part)) for part in rest.split(",") if part]
        return RedisCluster(startup_nodes=nodes, **options)
    # One retry on a fresh connection covers a server that restarted since the pool's
    # connections were made; beyond that, fail fast and answer 503. Never on a timeout: the
    # server may still run the command (the state store retries its idempotent scripts itself).
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
                                **options)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1"), int(port or 6379)
