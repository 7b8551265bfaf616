"""A bounded load of decisions against a live server, and the checks every fault test makes."""
from __future__ import annotations

import io
import itertools
import json
import threading
import time
from dataclasses import dataclass, field

from tests.conftest import payload
from tests.e2e.conftest import http


@dataclass
class Sent:
    user_id: str
    application_id: str
    status: int            # 0: the connection failed (no HTTP answer at all)
    body: dict | None


@dataclass
class Load:
    url: str
    threads: int = 4
    users: int = 30
    results: list[Sent] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ids: itertools.count = field(default_factory=itertools.count)

    def _run(self, worker: int) -> None:
        while not self._stop.is_set():
            n = next(self._ids)
            user, app = f"load-{n % self.users}", f"app-{n}"
            doc = dict(payload(age=17 if n % 7 == 0 else 30, credit_applications_6m=0),
                       user_id=user, application_id=app)
            try:
                status, body, _ = http("POST", self.url + "/decide", doc)
            except OSError:
                status, body = 0, None
            self.results.append(Sent(user, app, status, body))

    def __enter__(self) -> "Load":
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(self.threads)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def retry_unanswered(self) -> None:
        """What a client does after a 503 or a dropped connection: send the same application again."""
        for sent in list(self.results):
            if sent.status != 200:
                doc = dict(payload(age=17 if int(sent.application_id[4:]) % 7 == 0 else 30,
                                   credit_applications_6m=0),
                           user_id=sent.user_id, application_id=sent.application_id)
                for _ in range(50):
                    status, body, _ = http("POST", self.url + "/decide", doc)
                    if status == 200:
                        sent.status, sent.body = status, body
                        break
                    time.sleep(0.1)


def check_log_and_state(load: Load, redis_url: str, policy) -> dict:
    """No 5xx but 503; every answered decision logged exactly once; state diff = 0."""
    from service.adapters import decision_log, redis_connection
    from service.domain.clock import SystemClock
    from service.usecases import rebuild
    from tests.conftest import memory_services, redis_services

    statuses = {s.status for s in load.results}
    assert statuses <= {200, 503, 0}, statuses
    client = redis_connection.connect(redis_url, timeout=5)
    out = io.StringIO()
    decision_log.export(client, "ld", out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    logged = [(r["user_id"], r["application_id"]) for r in records if r["kind"] == "decision"]
    assert len(logged) == len(set(logged)), "a decision was logged twice"
    logged_ids = {app for _, app in logged}
    answered = [s for s in load.results if s.status == 200]
    assert all(s.application_id in logged_ids for s in answered), "an answered decision is not in the log"
    by_app = {r["application_id"]: r["decision"] for r in records if r["kind"] == "decision"}
    assert all(by_app[s.application_id] == s.body for s in answered), "the log disagrees with an answer"
    live = redis_services(redis_url, policy, SystemClock(), redis_timeout=5)
    implied = memory_services(policy, SystemClock())
    lines = enumerate(out.getvalue().splitlines(), 1)
    rebuilder = rebuild.Rebuilder(implied.work, implied.rules, implied.stores.erased)
    result = rebuild.diff(rebuilder, live.work, rebuild.records(lines))
    assert result.differences == [], result.differences[:3]
    return {"sent": len(load.results), "answered": len(answered), "logged": len(logged),
            "statuses": sorted(statuses)}
