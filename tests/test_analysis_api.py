"""The analysis functions of issue 6 over the REST API and the Python client: an endpoint's
SIP trace and series, RFC 6076 KPIs, the R budget, two runs compared; errors as 400/404."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callmeter.client import ApiError, Client
from callmeter.server.testing import Harness
from tests.test_analysis_trace import PROXY, seed_call_run
from tests.test_server_results import DEFINITION


@pytest.fixture
def h(tmp_path: Path) -> Any:
    harness = Harness(tmp_path / "api.duckdb")
    yield harness
    harness.close()


def _runs(h: Harness, *mos_loss: tuple[float, float]) -> list[str]:
    project = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "P"})
    test = h.ok(
        "POST",
        f"/projects/{project['project_id']}/tests",
        h.owner,
        json={"name": "t", "definition": DEFINITION},
    )
    runs = []
    for mos, loss in mos_loss:
        run_id = h.ok("POST", f"/tests/{test['test_id']}/runs", h.owner)["run_id"]
        h.tick()
        seed_call_run(h.store, run_id, mos=mos, loss=loss, create=False)
        h.launcher.finish(run_id)
        h.tick()
        runs.append(run_id)
    return runs


def _client(h: Harness) -> Client:
    token = h.owner["Authorization"].removeprefix("Bearer ")
    return Client("http://testserver", token, http=h.http)


def test_the_sip_trace_and_an_endpoints_series(h: Harness) -> None:
    (run_id,) = _runs(h, (4.3, 0.0))
    trace = h.ok("GET", f"/runs/{run_id}/endpoints/0/sip-trace", h.owner)
    assert [m["first_line"] for m in trace][4:7] == [
        "INVITE sip:u1@127.0.0.1 SIP/2.0",
        "SIP/2.0 100 Trying",
        "SIP/2.0 180 Ringing",
    ]
    assert trace[6]["status_code"] == 180 and trace[6]["peer"] == PROXY
    frame = _client(h).sip_trace(run_id, 0)
    assert list(frame["method"])[-1] == "BYE"
    missing = h.call("GET", f"/runs/{run_id}/endpoints/99/sip-trace", h.owner)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == f"run {run_id!r} has no endpoint 99"
    series = _client(h).endpoint_timeseries(run_id, 0, ["mos", "rtt_ms"])
    assert set(series["direction"]) == {"send", "receive"} and len(series) == 8
    bad = h.call("GET", f"/runs/{run_id}/endpoints/0/timeseries?metric=nope", h.owner)
    assert bad.status_code == 400 and "nope" in bad.json()["error"]["message"]


def test_kpis_and_the_r_budget(h: Harness) -> None:
    (run_id,) = _runs(h, (3.9, 2.0))
    kpis = {k["kpi"]: k for k in h.ok("GET", f"/runs/{run_id}/kpis", h.owner)}
    assert kpis["SER"]["value"] == 50.0 and kpis["SRD"]["value"] == 40.0
    assert kpis["SRD"]["numerator"] is None  # a delay has no ratio parts: null, not NaN
    budget = _client(h).r_budget(run_id)
    assert list(budget["term"])[-1] == "r_factor"
    assert budget.loc[budget["term"] == "r_loss_ie", "value"].iloc[0] == pytest.approx(20.0)
    one = _client(h).r_budget(run_id, endpoint_id=2)
    assert one["value"].isna().all()
    assert _client(h).kpis(run_id).loc[0, "kpi"] == "SER"


def test_two_runs_compared_per_metric(h: Harness) -> None:
    good, bad = _runs(h, (4.3, 0.0), (3.6, 3.0))
    frame = _client(h).compare_metrics(good, bad)
    mos = frame[(frame["metric"] == "mos") & (frame["direction"] == "receive")].iloc[0]
    assert (mos["a"], mos["b"], mos["verdict"]) == (4.3, 3.6, "worse")
    both = _client(h).compare(good, bad)
    assert list(both["run_id"]) == [good, bad]
    response = h.call("GET", f"/runs/{good}/compare/{bad}/metrics?alpha=2", h.owner)
    assert response.status_code == 422
    with pytest.raises(ApiError) as raised:
        _client(h).compare_metrics(good, "run_missing")
    assert raised.value.status == 404


def test_another_organization_sees_none_of_it(h: Harness) -> None:
    good, bad = _runs(h, (4.3, 0.0), (3.6, 3.0))
    _, stranger = h.new_organization()
    for path in (
        f"/runs/{good}/kpis",
        f"/runs/{good}/endpoints/0/sip-trace",
        f"/runs/{good}/r-budget",
        f"/runs/{good}/compare/{bad}/metrics",
    ):
        assert h.call("GET", path, stranger).status_code == 404, path
