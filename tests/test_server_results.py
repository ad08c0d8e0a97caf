"""Results over the API from the analysis functions: overview, summary, groups, endpoints,
time series, worst endpoints, comparison, export as CSV and Parquet; every role may read and
export; a restart keeps what was stored."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from callmeter.server.testing import Harness
from callmeter.store import ShardBatch, endpoints_table, metrics_table

DEFINITION: dict[str, Any] = {
    "call_duration_s": 3,
    "groups": [
        {"name": "callers", "endpoints": 1, "target": {"group": "callees"}},
        {"name": "callees", "endpoints": 1},
    ],
}


def store_results(h: Harness, run_id: str, mos: float) -> None:
    """What the runner would write: two endpoints, three seconds of media, then COMPLETED."""
    now = time.time()
    endpoints = [
        {"endpoint_id": 0, "group_name": "callers", "username": "u0", "role": "caller",
         "phase": "CLOSED", "outcome": "SUCCESS", "setup_time_ms": 42.0},
        {"endpoint_id": 1, "group_name": "callees", "username": "u1", "role": "callee",
         "phase": "CLOSED", "outcome": "SUCCESS"},
    ]  # fmt: skip
    metrics = [
        {"endpoint_id": e, "ts": now + s, "t_s": float(s), "second": s + 1,
         "direction": "receive", "interval_s": 1.0, "mos": mos, "jitter_ms": 2.0 + s,
         "loss_percent": 0.0}
        for e in (0, 1) for s in range(3)
    ]  # fmt: skip
    batch = ShardBatch(
        run_id, 0, 0,
        metrics=metrics_table(run_id, metrics), endpoints=endpoints_table(run_id, endpoints),
    )  # fmt: skip
    h.store.append(batch)
    h.store.set_status(run_id, "COMPLETED", "all calls ended")
    h.launcher.finish(run_id)
    h.tick()


@pytest.fixture
def h(tmp_path: Path) -> Any:
    harness = Harness(tmp_path / "results.duckdb")
    yield harness
    harness.close()


def _run(h: Harness, mos: float) -> tuple[str, str]:
    pid = h.ok("GET", f"/organizations/{h.org}/projects", h.owner)
    if pid:
        project = pid[0]["project_id"]
    else:
        project = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "R"})[
            "project_id"
        ]
    tests = h.ok("GET", f"/projects/{project}/tests?name=t", h.owner)
    test_id = tests[0]["test_id"] if tests else h.ok(
        "POST", f"/projects/{project}/tests", h.owner, json={"name": "t", "definition": DEFINITION}
    )["test_id"]  # fmt: skip
    run_id = h.ok("POST", f"/tests/{test_id}/runs", h.owner)["run_id"]
    h.tick()
    store_results(h, run_id, mos)
    return project, run_id


def test_results_are_served_from_analysis(h: Harness) -> None:
    _, run_id = _run(h, 4.2)
    overview = h.ok("GET", f"/runs/{run_id}/overview", h.owner)[0]
    assert overview["status"] == "COMPLETED"
    assert overview["success_rate"] == 1.0
    assert overview["mos_avg"] == pytest.approx(4.2)
    summary = h.ok("GET", f"/runs/{run_id}/summary", h.owner)
    assert summary["outcomes"] == {"SUCCESS": 2}
    groups = h.ok("GET", f"/runs/{run_id}/groups", h.owner)
    assert sorted(g["group_name"] for g in groups) == ["callees", "callers"]
    endpoints = h.ok("GET", f"/runs/{run_id}/endpoints", h.owner)
    assert [e["username"] for e in endpoints] == ["u0", "u1"]
    series = h.ok("GET", f"/runs/{run_id}/timeseries?metric=mos&metric=jitter_ms&by=run", h.owner)
    assert [(r["run_second"], r["jitter_ms"]) for r in series] == [(0, 2.0), (1, 3.0), (2, 4.0)]
    worst = h.ok("GET", f"/runs/{run_id}/worst-endpoints?by=jitter_ms&n=1", h.owner)
    assert len(worst) == 1
    response = h.call("GET", f"/runs/{run_id}/timeseries?metric=no_such_key", h.owner)
    assert response.status_code == 400
    assert "no_such_key" in response.json()["error"]["message"]


def test_two_runs_compared(h: Harness) -> None:
    _, first = _run(h, 4.0)
    _, second = _run(h, 3.5)
    both = h.call("GET", f"/runs/{first}/compare/{second}", h.owner).json()
    assert [r["run_id"] for r in both["data"]] == [first, second]
    assert both["meta"]["delta"]["mos_avg"] == pytest.approx(-0.5)


@pytest.mark.parametrize("role", ["Viewer", "Tester", "Editor", "Admin"])
def test_every_role_exports_csv_and_parquet(h: Harness, role: str) -> None:
    _, run_id = _run(h, 4.1)
    _, headers = h.add_member(role)
    csv = h.call("GET", f"/runs/{run_id}/export?table=metrics&format=csv", headers)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(csv.text))
    assert len(frame) == 6 and set(frame["mos"]) == {4.1}
    parquet = h.call("GET", f"/runs/{run_id}/export?table=per_endpoint&format=parquet", headers)
    assert parquet.status_code == 200
    assert list(pd.read_parquet(io.BytesIO(parquet.content))["username"]) == ["u0", "u1"]


def test_results_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "keep.duckdb"
    h = Harness(path)
    _, run_id = _run(h, 4.3)
    headers = h.owner
    h.close()
    h = Harness(path)
    try:
        overview = h.ok("GET", f"/runs/{run_id}/overview", headers)[0]
        assert (overview["status"], overview["mos_avg"]) == ("COMPLETED", pytest.approx(4.3))
    finally:
        h.close()
