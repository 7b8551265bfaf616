"""docker-compose.dask.yml read as Compose reads it (no engine): what the Dask replay relies on."""
from __future__ import annotations

import yaml

from tests.deploy.conftest import ROOT

DASK_COMPOSE = ROOT / "docker-compose.dask.yml"


def services() -> dict:
    return yaml.safe_load(DASK_COMPOSE.read_text())["services"]


def test_scheduler_and_workers_run_from_the_service_image():
    found = services()
    for name in ("api", "dask-scheduler", "dask-worker", "replay"):
        assert found[name]["image"] == "loan-decide:latest", name
    assert found["dask-worker"]["deploy"]["replicas"] == 2


def test_workers_run_one_thread_in_one_process():
    command = services()["dask-worker"]["command"]
    assert command[:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    assert command[command.index("--nthreads") + 1] == "1"
    assert command[command.index("--nworkers") + 1] == "1"


def test_the_client_writes_its_partitions_where_the_workers_read_them():
    found = services()
    tmpdir = found["replay"]["environment"]["TMPDIR"]
    client = {v.split(":")[1] for v in found["replay"]["volumes"]}
    workers = {v.split(":")[1] for v in found["dask-worker"]["volumes"]}
    assert tmpdir in client and tmpdir in workers
    assert "--scheduler tcp://dask-scheduler:8786" in " ".join(found["replay"]["entrypoint"])
