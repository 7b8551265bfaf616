"""docker-compose.dask.yml run for real: a log exported from the service's Redis, replayed on a
Dask scheduler and two workers started from the service's own image.

Decisions are made through the api, then `docker compose run --rm replay` exports the log into
the shared `partitions` volume and replays it with `--engine dask --scheduler
tcp://dask-scheduler:8786`; its summary must be `--jobs 1`'s on the same export. Needs what
test_compose_run.py needs (skipped with the reason otherwise).
"""
from __future__ import annotations

import json

import pytest

from tests.deploy.dockerrun import UP_BOUND_S, application, stack_fixture

pytestmark = pytest.mark.docker

stack = stack_fixture("docker-compose.dask.yml", "loan-decide-dockertest-dask")

WAIT_FOR_TWO_WORKERS = ("from distributed import Client\n"
                        "with Client('tcp://dask-scheduler:8786', timeout=10) as client:\n"
                        "    client.wait_for_workers(2, timeout=60)\n"
                        "    print(len(client.scheduler_info()['workers']))\n")


def summary_of(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_scheduler_and_two_workers_come_up(stack):
    assert stack.up_seconds[0] < UP_BOUND_S
    assert len(stack.containers("dask-worker")) == 2
    for container in stack.containers("dask-scheduler") + stack.containers("api"):
        assert (container["State"], container["Health"]) == ("running", "healthy"), container
    out = stack.compose("exec", "-T", "api", "python", "-c", WAIT_FOR_TWO_WORKERS).stdout
    assert out.strip().splitlines()[-1] == "2"


def test_a_log_exported_from_redis_replays_on_the_workers_as_with_one_job(stack):
    docs = [application("dask", age=age) for age in (30, 17, 45, 61, 25, 33)]
    for doc in docs:
        status, body, _ = stack.decide(doc)
        assert status == 200, body
    stack.compose("exec", "-T", "api", "python", "-c", WAIT_FOR_TWO_WORKERS)
    dask = summary_of(stack.compose("run", "--rm", "replay", "--json", "--partitions", "4",
                                    timeout=300))
    assert dask["total"] >= len(docs) and dask["identical"] == dask["total"], dask
    # the same export, replayed in one process inside the replay container
    plain = summary_of(stack.compose(
        "run", "--rm", "--entrypoint", "loan-decide", "replay", "replay",
        "/app/partitions/log.jsonl", "--json", "--jobs", "1", timeout=300))
    assert dask == plain
    simulated = summary_of(stack.compose("run", "--rm", "replay", "--json", "--simulate",
                                         timeout=300))
    assert simulated["simulated"] is True and simulated["total"] == dask["total"]
