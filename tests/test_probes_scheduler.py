"""The probe scheduler on the real app and store, with a clock the test drives and a scripted
executor: slots, one catch-up for missed slots, one execution per probe at a time, pause and
resume, and restarts (graceful and not) that lose and double nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callmeter.probes.executor import Measurement, ProbeJob
from callmeter.probes.scheduler import RESTART_REASON, ProbeScheduler
from callmeter.probes.testing import ScriptedExecutor, failed, measured
from callmeter.server.testing import FakeClock, Harness

NOW = 1_800_000_000.0
MIN = 60.0


def open_harness(path: Path, clock: FakeClock, executor: Any) -> Harness:
    h = Harness(path, clock=clock)
    h.app.state.probes.executor = executor
    return h


def shut(h: Harness) -> None:
    h.app.state.probes.close(timeout_s=10)
    h.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def executor() -> ScriptedExecutor:
    return ScriptedExecutor()


@pytest.fixture
def h(tmp_path: Path, clock: FakeClock, executor: ScriptedExecutor) -> Iterator[Harness]:
    harness = open_harness(tmp_path / "p.duckdb", clock, executor)
    try:
        yield harness
    finally:
        executor.release()
        shut(harness)


def scheduler(h: Harness) -> ProbeScheduler:
    found: ProbeScheduler = h.app.state.probes
    return found


def project(h: Harness, name: str = "Main") -> str:
    found: str = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": name})[
        "project_id"
    ]
    return found


def new_probe(h: Harness, pid: str, **fields: Any) -> str:
    body = {"name": "pbx", "call_duration_s": 3, **fields}
    probe_id: str = h.ok("POST", f"/projects/{pid}/probes", h.owner, json=body)["probe_id"]
    return probe_id


def executions(h: Harness, probe_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = h.ok("GET", f"/probes/{probe_id}/executions", h.owner)
    return list(reversed(found))  # oldest first


def slots(h: Harness, probe_id: str) -> list[float]:
    from datetime import datetime

    return [
        datetime.fromisoformat(e["scheduled_for"]).timestamp() - NOW
        for e in executions(h, probe_id)
        if e["scheduled_for"] is not None
    ]


def test_a_probe_runs_at_once_then_every_interval(h: Harness, clock: FakeClock) -> None:
    probe = new_probe(h, project(h))
    assert scheduler(h).run_pending() == 1
    clock.advance(5 * MIN - 1)
    assert scheduler(h).run_pending() == 0
    clock.advance(1)
    assert scheduler(h).run_pending() == 1
    clock.advance(5 * MIN)
    assert scheduler(h).run_pending() == 1
    assert slots(h, probe) == [0.0, 300.0, 600.0]
    found = executions(h, probe)
    assert [e["status"] for e in found] == ["DONE"] * 3
    assert [e["missed_slots"] for e in found] == [0, 0, 0]
    assert h.ok("GET", f"/probes/{probe}", h.owner)["next_run_at"] == "2027-01-15T08:15:00Z"


def test_missed_slots_give_one_catch_up_not_a_burst(h: Harness, clock: FakeClock) -> None:
    probe = new_probe(h, project(h))
    scheduler(h).run_pending()
    clock.advance(23 * MIN)  # slots at +5, +10, +15 and +20 passed unseen
    assert scheduler(h).run_pending() == 1
    latest = executions(h, probe)[-1]
    assert latest["scheduled_for"] == "2027-01-15T08:05:00Z"
    assert latest["missed_slots"] == 3
    assert h.ok("GET", f"/probes/{probe}", h.owner)["next_run_at"] == "2027-01-15T08:25:00Z"
    clock.advance(2 * MIN)
    assert scheduler(h).run_pending() == 1
    assert slots(h, probe) == [0.0, 300.0, 1500.0]


class Concurrency:
    """Wraps an executor and records the most executions of one probe at once."""

    def __init__(self, inner: ScriptedExecutor) -> None:
        self.inner = inner
        self.active: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self._lock = threading.Lock()

    def execute(self, job: ProbeJob) -> Measurement:
        with self._lock:
            self.active[job.probe_id] = self.active.get(job.probe_id, 0) + 1
            self.most[job.probe_id] = max(self.most.get(job.probe_id, 0), self.active[job.probe_id])
        try:
            return self.inner.execute(job)
        finally:
            with self._lock:
                self.active[job.probe_id] -= 1


def test_never_the_same_probe_twice_at_once(
    h: Harness, clock: FakeClock, executor: ScriptedExecutor
) -> None:
    watch = Concurrency(executor)
    scheduler(h).executor = watch
    pid = project(h)
    a, b = new_probe(h, pid, name="a"), new_probe(h, pid, name="b")
    executor.hold.set()
    assert len(scheduler(h).tick()) == 2  # two probes may run at once
    assert executor.entered.acquire(timeout=5) and executor.entered.acquire(timeout=5)
    first = h.ok("POST", f"/probes/{a}/trigger", h.owner)
    again = h.ok("POST", f"/probes/{a}/trigger", h.owner)
    assert first["status"] == "PENDING" and again["execution_id"] == first["execution_id"]
    clock.advance(6 * MIN)  # a's next slot is due too: it folds into the waiting execution
    assert scheduler(h).tick() == []
    executor.release()
    assert scheduler(h).wait_idle(10)
    assert scheduler(h).run_pending() == 2  # a's waiting one, b's slot
    assert watch.most == {a: 1, b: 1}
    assert [e["trigger"] for e in executions(h, a)] == ["schedule", "manual"]
    assert len(executions(h, b)) == 2


def test_pause_resume_and_a_new_interval(h: Harness, clock: FakeClock) -> None:
    probe = new_probe(h, project(h))
    scheduler(h).run_pending()
    h.ok("PATCH", f"/probes/{probe}", h.owner, json={"enabled": False})
    assert h.ok("GET", f"/probes/{probe}", h.owner)["next_run_at"] is None
    clock.advance(60 * MIN)
    assert scheduler(h).run_pending() == 0
    h.ok("POST", f"/probes/{probe}/trigger", h.owner)  # a paused probe still runs on demand
    assert scheduler(h).run_pending() == 1
    clock.advance(MIN)
    h.ok("PATCH", f"/probes/{probe}", h.owner, json={"enabled": True})
    assert scheduler(h).run_pending() == 1  # resumed: due at once
    h.ok("PATCH", f"/probes/{probe}", h.owner, json={"interval_min": 60})
    assert h.ok("GET", f"/probes/{probe}", h.owner)["next_run_at"] == "2027-01-15T10:01:00Z"
    assert [e["trigger"] for e in executions(h, probe)] == ["schedule", "manual", "schedule"]


def test_a_call_that_cannot_be_built_is_unknown_without_a_run(
    h: Harness, executor: ScriptedExecutor
) -> None:
    pid = project(h)
    registrar = h.ok("POST", f"/projects/{pid}/registrars", h.owner,
                     json={"name": "pbx", "domain": "pbx.test"})  # fmt: skip
    rid = registrar["registrar_id"]
    for user in ("1000", "1001"):
        h.ok("POST", f"/registrars/{rid}/accounts", h.owner,
             json={"username": user, "password": "pw"})  # fmt: skip
    probe = new_probe(h, pid, registrar="pbx", account="1000",
                      target={"kind": "endpoint", "account": "1001"})  # fmt: skip
    h.ok("DELETE", f"/registrars/{rid}", h.owner)
    assert scheduler(h).run_pending() == 1  # judged as it starts: no call was placed
    [execution] = executions(h, probe)
    assert (execution["status"], execution["health"], execution["run_id"]) == (
        "DONE", "UNKNOWN", None,
    )  # fmt: skip
    assert execution["reason"].startswith("the probe's call cannot be built: ")
    assert "pbx" in execution["reason"]
    assert executor.jobs == []


def test_a_deleted_project_takes_its_probes(h: Harness, executor: ScriptedExecutor) -> None:
    pid = project(h)
    probe = new_probe(h, pid)
    h.ok("POST", f"/projects/{pid}/status-pages", h.owner,
         json={"name": "Gone", "slug": "gone", "components": [{"probe_id": probe}]})  # fmt: skip
    h.ok("DELETE", f"/projects/{pid}", h.owner)
    assert h.call("GET", f"/probes/{probe}", h.owner).status_code == 404  # at once
    assert h.http.get("/status/gone").status_code == 404
    assert scheduler(h).run_pending() == 0
    with h.platform.db.transaction() as tx:  # and the next pass removes them
        assert tx.scalar("SELECT count(*) FROM probes") == 0
        assert tx.scalar("SELECT count(*) FROM status_pages") == 0
    assert executor.jobs == []


# -- restarts --------------------------------------------------------------------------------------


def test_a_graceful_restart_mid_call_runs_that_slot_once_more(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "restart.duckdb"
    first = ScriptedExecutor()
    first.hold.set()
    h = open_harness(path, clock, first)
    probe = new_probe(h, project(h))
    [started] = scheduler(h).tick()
    assert first.entered.acquire(timeout=5)
    shut(h)  # the server stops during the call: the call is stopped, its slot kept
    assert [job.execution_id for job in first.stopped] == [started]

    clock.advance(22 * MIN)  # down long enough to miss four slots
    second = ScriptedExecutor()
    h = open_harness(path, clock, second)
    try:
        [pending] = executions(h, probe)
        assert (pending["status"], pending["reason"]) == ("PENDING", RESTART_REASON)
        assert scheduler(h).run_pending() == 1  # the interrupted slot, which is the catch-up
        assert [job.execution_id for job in second.jobs] == [started]
        clock.advance(3 * MIN)
        assert scheduler(h).run_pending() == 1
        found = executions(h, probe)
        assert [(e["execution_id"] == started, e["status"], e["attempts"]) for e in found] == [
            (True, "DONE", 2), (False, "DONE", 1),
        ]  # fmt: skip
        assert slots(h, probe) == [0.0, 1500.0]
    finally:
        shut(h)


def test_a_crash_mid_call_neither_loses_nor_doubles(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "crash.duckdb"
    zombie = ScriptedExecutor()
    h = open_harness(path, clock, zombie)
    pid = project(h)
    probe = new_probe(h, pid)
    assert scheduler(h).run_pending() == 1  # slot 0 done before the crash
    clock.advance(5 * MIN)
    zombie.hold.set()
    [interrupted] = scheduler(h).tick()  # slot +5 in progress when the process dies
    assert zombie.entered.acquire(timeout=5)
    h.close()  # no graceful stop: the worker thread is left hanging, as in a crash

    clock.advance(MIN)
    survivor = ScriptedExecutor()
    h2 = open_harness(path, clock, survivor)
    try:
        assert scheduler(h2).run_pending() == 1
        assert [job.execution_id for job in survivor.jobs] == [interrupted]
        zombie.release()  # the dead process's worker wakes up: it must change nothing
        clock.advance(4 * MIN)
        assert scheduler(h2).run_pending() == 1
        found = executions(h2, probe)
        assert slots(h2, probe) == [0.0, 300.0, 600.0]
        assert [e["status"] for e in found] == ["DONE", "DONE", "DONE"]
        assert [e["attempts"] for e in found] == [1, 2, 1]
    finally:
        shut(h2)


def test_a_call_interrupted_twice_is_given_up(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "twice.duckdb"
    probe = ""
    for attempt in range(3):
        executor = ScriptedExecutor()
        executor.hold.set()
        h = open_harness(path, clock, executor)
        if attempt == 0:
            probe = new_probe(h, project(h))
        started = scheduler(h).tick()
        if attempt < 2:
            assert len(started) == 1 and executor.entered.acquire(timeout=5)
            h.close()  # crash
            executor.release()
        else:
            assert started == []
            [execution] = executions(h, probe)
            assert execution["status"] == "INTERRUPTED"
            assert execution["reason"] == "interrupted 2 times by server stops; given up"
            assert execution["health"] is None
            assert h.ok("GET", f"/probes/{probe}", h.owner)["health"] == "UNKNOWN"
            shut(h)


def test_health_follows_the_executions(h: Harness, executor: ScriptedExecutor) -> None:
    probe = new_probe(h, project(h))
    executor.push(
        measured(mos=4.4, loss_percent=0.0),
        measured(mos=3.8, loss_percent=0.2),
        measured(mos=3.1, loss_percent=7.0),
        failed(),
    )
    seen = []
    for _ in range(4):
        h.ok("POST", f"/probes/{probe}/trigger", h.owner)
        scheduler(h).run_pending()
        seen.append(h.ok("GET", f"/probes/{probe}", h.owner)["health"])
    assert seen == ["HEALTHY", "DEGRADED", "UNHEALTHY", "UNKNOWN"]
    found = executions(h, probe)
    assert [e["previous_health"] for e in found] == ["UNKNOWN", "HEALTHY", "DEGRADED", "UNHEALTHY"]
    assert found[2]["breaches"][0] == {
        "metric": "mos", "label": "MOS", "unit": "MOS", "value": 3.1, "level": "critical",
        "threshold": 3.6, "warning": 4.0, "critical": 3.6,
    }  # fmt: skip
    assert found[3]["reason"] == "the call ended REGISTRATION_FAILED (408): Request Timeout"
    only = h.ok("GET", f"/probes/{probe}/executions?health=DEGRADED", h.owner)
    assert [e["execution_id"] for e in only] == [found[1]["execution_id"]]


def test_the_app_runs_the_scheduler_by_itself(tmp_path: Path) -> None:
    """As ``callmeter serve`` does: the app's lifespan starts and stops the scheduler."""
    import time

    from fastapi.testclient import TestClient

    from callmeter.server.app import bootstrap_owner, create_app
    from callmeter.store import Store

    executor = ScriptedExecutor()
    with Store(tmp_path / "served.duckdb") as store:
        app = create_app(store, probe_executor=executor)
        bootstrap_owner(app.state.platform.db, "owner@example.com", "correct horse")
        with TestClient(app) as http:

            def call(method: str, path: str, **kw: Any) -> Any:
                response = http.request(method, f"/api/v1{path}", headers=auth, **kw)
                assert response.status_code < 300, response.text
                return response.json()["data"]

            auth: dict[str, str] = {}
            login = {"email": "owner@example.com", "password": "correct horse"}
            auth["Authorization"] = f"Bearer {call('POST', '/auth/login', json=login)['token']}"
            org = call("GET", "/organizations")[0]["organization_id"]
            pid = call("POST", f"/organizations/{org}/projects", json={"name": "Live"})
            pid = pid["project_id"]
            probe = call("POST", f"/projects/{pid}/probes", json={"name": "live"})["probe_id"]
            deadline = time.monotonic() + 10
            while True:
                found = call("GET", f"/probes/{probe}")
                if found["health"] == "HEALTHY":
                    break
                assert time.monotonic() < deadline, found
                time.sleep(0.05)
        assert len(executor.jobs) == 1
        assert app.state.probes.tick() == []  # closed with the app
