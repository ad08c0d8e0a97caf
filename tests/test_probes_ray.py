"""Probes placing real calls on a local Ray, through the app, with a clock the test drives:
an impairment changed between executions moves the health HEALTHY -> DEGRADED -> UNHEALTHY
-> HEALTHY, each execution stored like a run; a registrar that stops answering gives UNKNOWN.

One local Ray for the module (loopback only, its own temp dir), stopped by this module only
if this module started it. Calls are 3 s long.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from actors import LOCAL_ENV  # noqa: F401  # first: it sets what Ray reads when imported

ray = pytest.importorskip("ray")

from actors.cluster import connect, disconnect  # noqa: E402
from callmeter.probes.executor import RayProbeExecutor  # noqa: E402
from callmeter.probes.scheduler import ProbeScheduler  # noqa: E402
from callmeter.registrar import RunningRegistrar  # noqa: E402
from callmeter.server.testing import FakeClock, Harness  # noqa: E402
from callmeter.transport.thread import LoopThread  # noqa: E402

pytestmark = [pytest.mark.slow]

MIN = 60.0
THRESHOLDS = {
    "loss_percent": {"warning": 2.0, "critical": 12.0},
    "mos": {"warning": 3.0, "critical": 1.5},
}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    started = not ray.is_initialized()
    if started:
        connect(num_cpus=2)
    try:
        yield
    finally:
        if started:
            disconnect()


@pytest.fixture
def h(local_ray: None, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "probes.duckdb", clock=FakeClock())
    harness.app.state.probes.executor = RayProbeExecutor(harness.store)
    try:
        yield harness
    finally:
        harness.app.state.probes.close(timeout_s=60)
        harness.close()


def scheduler(h: Harness) -> ProbeScheduler:
    found: ProbeScheduler = h.app.state.probes
    return found


def latest(h: Harness, probe: str) -> dict[str, Any]:
    found: dict[str, Any] = h.ok("GET", f"/probes/{probe}/executions?limit=1", h.owner)[0]
    return found


def stored(h: Harness, run_id: str, sql: str) -> Any:
    with closing(h.store.cursor()) as con:
        return con.execute(sql, [run_id]).fetchone()[0]  # type: ignore[index]


def test_impairment_moves_health_and_back(h: Harness) -> None:
    pid = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "Lab"})[
        "project_id"
    ]
    probe = h.ok("POST", f"/projects/{pid}/probes", h.owner,
                 json={"name": "builtin-loop", "call_duration_s": 3,
                       "thresholds": THRESHOLDS})["probe_id"]  # fmt: skip
    steps = [
        (None, "HEALTHY"),
        ({"loss_percent": 6, "seed": 3}, "DEGRADED"),
        ({"loss_percent": 30, "seed": 3}, "UNHEALTHY"),
        (None, "HEALTHY"),
    ]
    seen = []
    for impairment, _ in steps:
        h.ok("PATCH", f"/probes/{probe}", h.owner, json={"impairment": impairment})
        assert scheduler(h).run_pending(timeout_s=90) == 1
        execution = latest(h, probe)
        seen.append((execution["health"], execution))
        h.clock.advance(5 * MIN)  # the next slot
    assert [health for health, _ in seen] == [health for _, health in steps]

    healthy, degraded, unhealthy, recovered = (e for _, e in seen)
    assert healthy["breaches"] == [] and healthy["measurements"]["mos"] > 4.0
    assert healthy["measurements"]["loss_percent"] == 0.0
    assert healthy["measurements"]["setup_time_ms"] is not None
    breached = [(b["metric"], b["level"]) for b in degraded["breaches"]]
    assert breached == [("loss_percent", "warning")]
    assert 2.0 < degraded["measurements"]["loss_percent"] < 12.0
    first = unhealthy["breaches"][0]
    assert (first["metric"], first["level"]) == ("loss_percent", "critical")
    assert unhealthy["measurements"]["loss_percent"] > 12.0
    assert unhealthy["measurements"]["mos"] < degraded["measurements"]["mos"]
    assert recovered["previous_health"] == "UNHEALTHY"
    assert h.ok("GET", f"/probes/{probe}", h.owner)["health"] == "HEALTHY"

    for _, execution in seen:  # each one stored like a run, served by the results API
        run_id = execution["run_id"]
        run = h.ok("GET", f"/runs/{run_id}", h.owner)
        assert (run["status"], run["triggered_by"], run["project_id"]) == (
            "COMPLETED", "probe builtin-loop", pid,
        )  # fmt: skip
        assert run["endpoints"] == 2
        assert stored(h, run_id, "SELECT count(*) FROM metrics WHERE run_id = ?") >= 3 * 2 * 2
        assert stored(h, run_id, "SELECT count(*) FROM sip_trace WHERE run_id = ?") >= 8
        assert stored(h, run_id, "SELECT count(*) FROM endpoint_events WHERE run_id = ?") > 0
        overview = h.ok("GET", f"/runs/{run_id}/overview", h.owner)[0]
        assert overview["calls_successful"] == 1


def test_a_registrar_that_stops_gives_unknown(h: Harness) -> None:
    thread = LoopThread("probe-test-registrar")
    registrar = RunningRegistrar("127.0.0.1", 0, transport="tcp", accounts=2)
    thread.call(registrar.start(), timeout=30)
    try:
        host, port = registrar.address
        pid = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "Ops"})[
            "project_id"
        ]
        rid = h.ok("POST", f"/projects/{pid}/registrars", h.owner,
                   json={"name": "pbx", "domain": host, "port": port,
                         "transport": "TCP"})["registrar_id"]  # fmt: skip
        a, b = registrar.accounts
        for account in (a, b):
            h.ok("POST", f"/registrars/{rid}/accounts", h.owner,
                 json={"username": account.username, "password": account.password})  # fmt: skip
        probe = h.ok("POST", f"/projects/{pid}/probes", h.owner,
                     json={"name": "pbx", "registrar": "pbx", "account": a.username,
                           "target": {"kind": "endpoint", "account": b.username},
                           "call_duration_s": 3, "thresholds": THRESHOLDS})["probe_id"]  # fmt: skip
        assert scheduler(h).run_pending(timeout_s=90) == 1
        assert latest(h, probe)["health"] == "HEALTHY"
    finally:
        thread.close(registrar.close)  # the registrar stops

    h.clock.advance(5 * MIN)
    assert scheduler(h).run_pending(timeout_s=90) == 1
    execution = latest(h, probe)
    assert (execution["health"], execution["previous_health"]) == ("UNKNOWN", "HEALTHY")
    assert execution["breaches"] == []
    assert execution["reason"].startswith("the call ended REGISTRATION_FAILED")
    assert all(value is None for value in execution["measurements"].values())
    run = h.ok("GET", f"/runs/{execution['run_id']}", h.owner)
    assert run["status"] in ("COMPLETED", "FAILED")
    sql = "SELECT outcome FROM endpoints WHERE run_id = ? AND role = 'caller'"
    outcome = stored(h, execution["run_id"], sql)
    assert outcome == "REGISTRATION_FAILED"


def test_a_server_stop_mid_call_fails_that_run_and_keeps_the_slot(h: Harness) -> None:
    from callmeter.probes.executor import INTERRUPTED_REASON
    from callmeter.probes.scheduler import RESTART_REASON

    pid = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "Stop"})[
        "project_id"
    ]
    probe = h.ok("POST", f"/projects/{pid}/probes", h.owner,
                 json={"name": "long", "call_duration_s": 20})["probe_id"]  # fmt: skip
    [execution_id] = scheduler(h).tick()
    run_id = latest(h, probe)["run_id"]
    deadline = time.monotonic() + 60
    while h.ok("GET", f"/runs/{run_id}", h.owner)["status"] != "RUNNING":
        assert time.monotonic() < deadline, "the probe call never started"
        time.sleep(0.2)
    scheduler(h).close(timeout_s=60)  # what the app's shutdown does
    execution = latest(h, probe)
    assert (execution["execution_id"], execution["status"]) == (execution_id, "PENDING")
    assert execution["reason"] == RESTART_REASON and execution["health"] is None
    run = h.ok("GET", f"/runs/{run_id}", h.owner)
    assert run["status"] == "FAILED" and run["reason"].startswith(INTERRUPTED_REASON)
