"""The run queue under pressure, with a fake launcher, fake workers and a fake clock: runs
that do not fit wait in CANNOT_RUN_FOR_NOW with the reason and start by themselves; plan
limits refuse with a clear message; placement by region and by worker is honoured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callmeter.server.queue import Backoff
from callmeter.server.testing import FakeClock, FakeLauncher, Harness, StaticWorkers
from callmeter.server.workers import Demand, WorkerInfo, WorkerStatus, effective_status, fit

NOW = 1_800_000_000.0


def definition(
    callers: int, callees: int | None = None, placement: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    callees = callers if callees is None else callees
    group: dict[str, Any] = {"name": "a", "endpoints": callers, "target": {"group": "b"}}
    other: dict[str, Any] = {"name": "b", "endpoints": callees}
    if placement is not None:
        group["placement"] = other["placement"] = placement
    return {"call_duration_s": 10, **extra, "groups": [group, other]}


def worker(name: str, capacity: int, region: str = "eu", **kw: Any) -> WorkerInfo:
    fields: dict[str, Any] = {"allocated": 0, "status": WorkerStatus.ONLINE, "last_heartbeat": NOW}
    fields.update(kw)
    return WorkerInfo(name, region, capacity, **fields)


class Platform:
    def __init__(self, path: Path, workers: list[WorkerInfo]) -> None:
        self.clock = FakeClock(NOW)
        self.launcher = FakeLauncher()
        self.workers = StaticWorkers(workers)
        self.h = Harness(path, launcher=self.launcher, workers=self.workers, clock=self.clock)
        o = self.h.owner
        self.project = self.h.ok(
            "POST", f"/organizations/{self.h.org}/projects", o, json={"name": "Q"}
        )["project_id"]
        self._tests = 0

    def test(self, body: dict[str, Any]) -> str:
        self._tests += 1
        created = self.h.ok(
            "POST", f"/projects/{self.project}/tests", self.h.owner,
            json={"name": f"t{self._tests}", "definition": body},
        )  # fmt: skip
        return str(created["test_id"])

    def trigger(self, body: dict[str, Any]) -> str:
        run = self.h.ok("POST", f"/tests/{self.test(body)}/runs", self.h.owner)
        assert run["status"] == "QUEUED"
        return str(run["run_id"])

    def run(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.h.ok("GET", f"/runs/{run_id}", self.h.owner)
        return run

    def status(self, run_id: str) -> str:
        return str(self.run(run_id)["status"])

    def plan(self, **limits: Any) -> None:
        self.h.ok("PATCH", f"/organizations/{self.h.org}/plan", self.h.owner, json=limits)

    def finish(self, run_id: str) -> None:
        """The runner ends a run: final status in the store, then it leaves active()."""
        self.h.store.set_status(run_id, "COMPLETED", "all calls ended")
        self.launcher.finish(run_id)


@pytest.fixture
def p(tmp_path: Path) -> Iterator[Platform]:
    platform = Platform(tmp_path / "queue.duckdb", [worker("w1", 10)])
    try:
        yield platform
    finally:
        platform.h.close()


def test_a_run_that_fits_starts_and_completes(p: Platform) -> None:
    run_id = p.trigger(definition(2))
    p.h.tick()
    assert p.status(run_id) == "RUNNING"
    assert p.launcher.started[run_id].total_endpoints == 4
    p.finish(run_id)
    p.h.tick()
    run = p.run(run_id)
    assert (run["status"], run["reason"]) == ("COMPLETED", "all calls ended")


def test_a_run_larger_than_free_capacity_waits_then_starts_by_itself(p: Platform) -> None:
    first = p.trigger(definition(3))  # 6 of 10
    p.h.tick()
    second = p.trigger(definition(3))  # 6 more: only 4 free
    p.h.tick()
    run = p.run(second)
    assert run["status"] == "CANNOT_RUN_FOR_NOW"
    assert run["reason"] == ("not enough free worker capacity: 6 endpoints needed, 4 free")
    assert run["attempts"] == 1 and run["next_attempt_at"] is not None
    p.clock.advance(1)
    p.h.tick()  # not due yet (backoff): still waiting
    assert p.status(second) == "CANNOT_RUN_FOR_NOW"
    assert second not in p.launcher.started
    p.finish(first)  # capacity frees: the waiting run is due at once
    p.h.tick()
    run = p.run(second)
    assert (run["status"], run["attempts"]) == ("RUNNING", 2)
    assert run["next_attempt_at"] is None


def test_retries_back_off_exponentially_until_capacity_appears(p: Platform) -> None:
    p.workers.set([])
    run_id = p.trigger(definition(1))
    delays = []
    for _ in range(4):
        p.h.tick()
        run = p.run(run_id)
        assert run["status"] == "CANNOT_RUN_FOR_NOW"
        assert run["reason"] == "no online worker (needs 2 endpoints)"
        due = run["next_attempt_at"]
        delays.append(round(_epoch(due) - p.clock.now))
        p.clock.now = _epoch(due)
    assert delays == [Backoff().delay_s(n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    p.workers.set([worker("late", 10, last_heartbeat=p.clock.now)])
    p.h.tick()
    assert p.status(run_id) == "RUNNING"


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_a_small_run_is_not_blocked_by_a_big_one_waiting(p: Platform) -> None:
    big = p.trigger(definition(6))  # 12 > 10
    small = p.trigger(definition(1))
    p.h.tick()
    assert p.status(big) == "CANNOT_RUN_FOR_NOW"
    assert p.status(small) == "RUNNING"


def test_placement_by_region_waits_for_a_worker_there(p: Platform) -> None:
    p.workers.set([worker("eu-1", 100, "eu")])
    run_id = p.trigger(definition(2, placement={"region": "us"}))
    p.h.tick()
    run = p.run(run_id)
    assert run["status"] == "CANNOT_RUN_FOR_NOW"
    assert run["reason"] == "no online worker in region us (needs 4 endpoints)"
    p.workers.set([worker("eu-1", 100, "eu"), worker("us-1", 100, "us", last_heartbeat=NOW)])
    p.clock.advance(5)
    p.h.tick()
    assert p.status(run_id) == "RUNNING"
    assert "us-1" in str(p.run(run_id)["reason"])


def test_placement_on_named_workers(p: Platform) -> None:
    p.workers.set([worker("big", 100), worker("small", 3)])
    run_id = p.trigger(definition(2, placement={"workers": ["small"]}))
    p.h.tick()
    run = p.run(run_id)
    assert run["reason"] == (
        "not enough free worker capacity on workers small: 4 endpoints needed, 3 free"
    )
    p.workers.update("small", capacity=4)
    p.clock.advance(5)
    p.h.tick()
    assert p.status(run_id) == "RUNNING"


def test_offline_and_draining_workers_take_no_run(p: Platform) -> None:
    p.workers.set([
        worker("silent", 100, last_heartbeat=NOW - 61),
        worker("draining", 100, status=WorkerStatus.DRAINING),
    ])  # fmt: skip
    listed = p.h.ok("GET", f"/organizations/{p.h.org}/workers", p.h.owner)
    assert {w["name"]: w["status"] for w in listed} == {
        "silent": "OFFLINE",
        "draining": "DRAINING",
    }
    run_id = p.trigger(definition(1))
    p.h.tick()
    assert p.status(run_id) == "CANNOT_RUN_FOR_NOW"


def test_plan_refuses_a_test_larger_than_it_allows(p: Platform) -> None:
    p.plan(plan="free")  # 50 concurrent endpoints, 600 s
    response = p.h.call("POST", f"/tests/{p.test(definition(30))}/runs", p.h.owner)
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "plan_limit",
        "message": "endpoints: the test needs 60 endpoints; plan free allows 50 concurrent "
        "endpoints",
    }
    long_test = p.test(definition(1, call_duration_s=590, buildup_s=20))
    response = p.h.call("POST", f"/tests/{long_test}/runs", p.h.owner)
    assert response.status_code == 409
    assert response.json()["error"]["message"] == (
        "call_duration_s: the test takes 610 s (buildup_s + call_duration_s); "
        "plan free allows 600 s"
    )


def test_plan_room_makes_a_run_wait(p: Platform) -> None:
    p.plan(concurrent_runs=1)
    first = p.trigger(definition(1))
    second = p.trigger(definition(1))
    p.h.tick()
    assert p.status(first) == "RUNNING"
    run = p.run(second)
    assert run["status"] == "CANNOT_RUN_FOR_NOW"
    assert run["reason"] == "plan self-hosted: 1 of 1 concurrent runs already running"
    p.finish(first)
    p.h.tick()
    assert p.status(second) == "RUNNING"


def test_plan_concurrent_endpoints_count_running_runs(p: Platform) -> None:
    p.plan(concurrent_endpoints=6)
    first = p.trigger(definition(2))
    second = p.trigger(definition(2))
    p.h.tick()
    assert p.status(first) == "RUNNING"
    assert p.run(second)["reason"] == (
        "plan self-hosted: 4 of 6 concurrent endpoints in use, this run needs 4"
    )


def test_not_enough_sip_accounts_is_refused_naming_the_registrar(p: Platform) -> None:
    registrar = p.h.ok(
        "POST", f"/projects/{p.project}/registrars", p.h.owner,
        json={"name": "pbx", "domain": "pbx.test"},
    )  # fmt: skip
    p.h.ok("POST", f"/registrars/{registrar['registrar_id']}/accounts", p.h.owner,
           json={"username": "1000", "password": "pw"})  # fmt: skip
    body = definition(1)
    body["groups"][0]["registrar"] = "pbx"
    body["groups"][1]["registrar"] = "pbx"
    test_id = p.test(body)  # saving is fine: accounts may come later
    response = p.h.call("POST", f"/tests/{test_id}/runs", p.h.owner)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "definition: registrars.pbx.accounts: 1 account for 2 endpoints (groups a, b)"
    )
    p.h.ok("POST", f"/registrars/{registrar['registrar_id']}/accounts", p.h.owner,
           json={"username": "1001", "password": "pw"})  # fmt: skip
    run_id = p.h.ok("POST", f"/tests/{test_id}/runs", p.h.owner)["run_id"]
    p.h.tick()
    test = p.launcher.started[run_id]
    assert [a.password for a in test.registrars["pbx"].all_accounts] == ["pw", "pw"]
    with p.h.platform.db.transaction() as tx:
        stored = tx.scalar("SELECT test FROM runs WHERE run_id = ?", [run_id])
    assert '"pw"' not in stored and "***" in stored


def test_stop_a_waiting_run_cancels_it(p: Platform) -> None:
    p.workers.set([])
    run_id = p.trigger(definition(1))
    p.h.tick()
    run = p.h.ok("POST", f"/runs/{run_id}/stop", p.h.owner)
    assert run["status"] == "FAILED"
    assert run["reason"] == f"cancelled by {p.h.OWNER_EMAIL} before it started"
    p.workers.set([worker("w1", 10)])
    p.clock.advance(600)
    p.h.tick()
    assert run_id not in p.launcher.started
    response = p.h.call("POST", f"/runs/{run_id}/stop", p.h.owner)
    assert response.status_code == 409


def test_stop_a_running_run_keeps_what_it_measured(p: Platform) -> None:
    run_id = p.trigger(definition(1))
    p.h.tick()
    run = p.h.ok("POST", f"/runs/{run_id}/stop", p.h.owner)
    assert run["status"] == "STOPPING"
    assert p.launcher.stopped == [run_id]
    p.h.tick()
    run = p.run(run_id)
    assert run["status"] == "COMPLETED"
    assert run["reason"] == "stopped on request; what was measured until then is kept"


def test_a_run_that_ends_without_a_result_fails(p: Platform) -> None:
    run_id = p.trigger(definition(1))
    p.h.tick()
    p.launcher.finish(run_id)  # vanished without writing a final status
    p.h.tick()
    run = p.run(run_id)
    assert (run["status"], run["reason"]) == (
        "FAILED",
        "the run ended without reporting a result",
    )


def test_a_launcher_refusal_fails_the_run_with_its_reason(p: Platform) -> None:
    p.launcher.refuse = "ray is not reachable"
    run_id = p.trigger(definition(1))
    p.h.tick()
    run = p.run(run_id)
    assert (run["status"], run["reason"]) == (
        "FAILED",
        "the launcher refused the run: ray is not reachable",
    )


def test_many_runs_under_pressure_all_complete(p: Platform) -> None:
    p.workers.set([worker("w1", 7), worker("w2", 5)])
    runs = [p.trigger(definition(1 + i % 3)) for i in range(12)]
    for _ in range(200):
        p.h.tick()
        for run_id in runs:
            if p.status(run_id) == "RUNNING":
                p.finish(run_id)
                break
        p.clock.advance(1)
        if all(p.status(r) == "COMPLETED" for r in runs):
            break
    assert [p.status(r) for r in runs] == ["COMPLETED"] * 12
    assert max(len(p.launcher.active()), 0) == 0


# fit() and worker status, directly -----------------------------------------------------------


def test_fit_fills_specific_demands_first_and_own_workers_before_shared() -> None:
    workers = [
        worker("shared-eu", 10, "eu"),
        worker("own-eu", 4, "eu", organization_id="org_a"),
        worker("other-eu", 100, "eu", organization_id="org_b"),
    ]
    result = fit(
        [Demand(6), Demand(5, region="eu"), Demand(2, workers=("shared-eu",))],
        workers, organization_id="org_a", now=NOW,
    )  # fmt: skip
    assert result.reason is None
    # 2 on the named worker; 5 in eu: own-eu first (4), then shared-eu; 6 anywhere: shared-eu
    assert result.allocation == {"shared-eu": 9, "own-eu": 4}
    assert sum(result.allocation.values()) == 13


def test_fit_counts_what_the_queue_reserved() -> None:
    result = fit([Demand(5)], [worker("w", 10, allocated=2)], organization_id="o", now=NOW,
                 reserved={"w": 6})  # fmt: skip
    assert result.allocation is None
    assert result.reason == "not enough free worker capacity: 5 endpoints needed, 4 free"


def test_a_worker_without_heartbeat_for_60_s_is_offline() -> None:
    w = worker("w", 1, last_heartbeat=NOW)
    assert effective_status(w, NOW + 60) is WorkerStatus.ONLINE
    assert effective_status(w, NOW + 60.5) is WorkerStatus.OFFLINE
    assert effective_status(worker("w", 1, last_heartbeat=None), NOW) is WorkerStatus.OFFLINE
