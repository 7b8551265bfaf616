"""Redis servers the tests start themselves on loopback ports (never the shared one on 6379)."""
from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free and valid too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 50000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair found")


def wait_for(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port, socket_timeout=0.5).ping():
                return
        except redis.RedisError:
            time.sleep(0.05)
    raise RuntimeError(f"redis on port {port} did not start")


class RedisServer:
    """A redis-server of the test's own: AOF on (fsync always), debug commands allowed."""

    def __init__(self, directory: Path, port: int | None = None, *extra: str):
        self.directory = directory
        self.port = port or free_port()
        self.extra = list(extra)
        self.process: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
             "--enable-debug-command", "local", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.port)
        return self

    def kill(self) -> None:
        """Stop it hard, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill()


class RedisCluster3:
    """Three masters on loopback ports, joined with `redis-cli --cluster create`."""

    def __init__(self, directory: Path):
        self.servers = [RedisServer(directory / f"node{i}", None, "--cluster-enabled", "yes",
                                    "--cluster-config-file", "nodes.conf",
                                    "--cluster-node-timeout", "2000")
                        for i in range(3)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    def start(self) -> "RedisCluster3":
        for server in self.servers:
            server.start()
        subprocess.run(["redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{s.port}" for s in self.servers],
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = redis.Redis(port=self.servers[0].port).cluster("INFO")
            if info.get("cluster_state") == "ok":
                return self
            time.sleep(0.1)
        raise RuntimeError("cluster did not become ok")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
