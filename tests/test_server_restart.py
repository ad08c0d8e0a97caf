"""A restart loses nothing: people, projects, tests, accounts, sessions and API keys stay; runs
that were RUNNING are FAILED with the reason; waiting runs stay queued and start later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callmeter.server.queue import RESTART_REASON
from callmeter.server.testing import FakeClock, Harness, StaticWorkers
from callmeter.server.workers import WorkerInfo, WorkerStatus

NOW = 1_800_000_000.0
DEFINITION: dict[str, Any] = {
    "call_duration_s": 30,
    "groups": [
        {"name": "a", "endpoints": 3, "registrar": "pbx", "target": {"group": "b"}},
        {"name": "b", "endpoints": 3, "registrar": "pbx"},
    ],
}
ACCOUNTS = "username,password,realm\n" + "".join(f"10{i:02d},pw{i},pbx.test\n" for i in range(6))


def _workers(capacity: int) -> StaticWorkers:
    return StaticWorkers([WorkerInfo("w1", "eu", capacity, 0, WorkerStatus.ONLINE, NOW)])


def test_restart_keeps_everything_and_fails_only_the_running_runs(tmp_path: Path) -> None:
    path = tmp_path / "platform.duckdb"
    h = Harness(path, workers=_workers(8), clock=FakeClock(NOW))
    o = h.owner
    project = h.ok("POST", f"/organizations/{h.org}/projects", o, json={"name": "Keep"})
    pid = project["project_id"]
    registrar = h.ok("POST", f"/projects/{pid}/registrars", o,
                     json={"name": "pbx", "domain": "pbx.test"})  # fmt: skip
    h.ok("POST", f"/registrars/{registrar['registrar_id']}/accounts/import",
         {**o, "content-type": "text/csv"}, content=ACCOUNTS)  # fmt: skip
    test = h.ok("POST", f"/projects/{pid}/tests", o, json={"name": "t", "definition": DEFINITION})
    key = h.ok("POST", f"/organizations/{h.org}/api-keys", o, json={"name": "ci"})["key"]
    running = h.ok("POST", f"/tests/{test['test_id']}/runs", o)["run_id"]
    h.tick()
    waiting = h.ok("POST", f"/tests/{test['test_id']}/runs", o)["run_id"]
    h.tick()
    queued = h.ok("POST", f"/tests/{test['test_id']}/runs", o)["run_id"]  # never ticked
    assert h.ok("GET", f"/runs/{running}", o)["status"] == "RUNNING"
    assert h.ok("GET", f"/runs/{waiting}", o)["status"] == "CANNOT_RUN_FOR_NOW"
    assert h.ok("GET", f"/runs/{queued}", o)["status"] == "QUEUED"
    h.close()  # the server dies with a run in progress

    h = Harness(path, workers=_workers(8), clock=FakeClock(NOW + 60))
    try:
        assert h.ok("GET", "/me", o)["email"] == h.OWNER_EMAIL  # the old session still works
        key_headers = {"Authorization": f"Bearer {key}"}
        assert h.ok("GET", f"/projects/{pid}", key_headers)["slug"] == "keep"
        assert h.ok("GET", f"/tests/{test['test_id']}", o)["definition"] == DEFINITION
        accounts = h.ok("GET", f"/registrars/{registrar['registrar_id']}/accounts", o)
        assert [a["username"] for a in accounts] == [f"10{i:02d}" for i in range(6)]
        run = h.ok("GET", f"/runs/{running}", o)
        assert (run["status"], run["reason"]) == ("FAILED", RESTART_REASON)
        assert run["finished_at"] is not None
        assert h.ok("GET", f"/runs/{waiting}", o)["status"] == "CANNOT_RUN_FOR_NOW"
        assert h.ok("GET", f"/runs/{queued}", o)["status"] == "QUEUED"
        h.tick()  # the failed run freed its capacity: the oldest waiting run starts
        assert h.ok("GET", f"/runs/{waiting}", o)["status"] == "RUNNING"
        assert h.ok("GET", f"/runs/{queued}", o)["status"] == "CANNOT_RUN_FOR_NOW"
        started = h.launcher.started[waiting]
        assert [a.password for a in started.registrars["pbx"].all_accounts] == [
            f"pw{i}" for i in range(6)
        ]
        listed = h.ok("GET", f"/projects/{pid}/runs", o)
        assert [r["run_id"] for r in listed] == [queued, waiting, running]
    finally:
        h.close()


def test_a_second_start_does_not_create_another_owner(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    Harness(path).close()
    h = Harness(path)
    try:
        members = h.ok("GET", f"/organizations/{h.org}/members", h.owner)
        assert len(members) == 1
        assert len(h.ok("GET", "/organizations", h.owner)) == 1
    finally:
        h.close()
