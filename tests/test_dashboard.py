"""The Streamlit app against a real server: every page renders without exception on a seeded
database, and the interactions that matter work (log in, a bad field in the test builder shows
the API's message below it, the run button starts a run, the results drill down to an
endpoint's series and SIP ladder, two runs compare).

The server is the platform app over a real store file (``Harness``) served by uvicorn on
127.0.0.1; the runs' results are written the way the shards write them. Streamlit's AppTest
runs the app in this process, talking to the server over HTTP like a browser session would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from callmeter.registrar import Account, RunningRegistrar
from callmeter.server.testing import Harness
from callmeter.transport.thread import LoopThread
from tests.test_analysis_trace import seed_call_run
from tests.test_client import free_port, until

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
PAGES = (
    "tests",
    "live",
    "results",
    "compare",
    "registrars",
    "media",
    "probes",
    "status_pages",
    "workers",
    "members",
    "plan",
)
TITLES = {
    "tests": "Tests",
    "live": "Live run",
    "results": "Results",
    "compare": "Compare runs",
    "registrars": "Registrars & SIP accounts",
    "media": "Media files",
    "probes": "Probes",
    "status_pages": "Status pages",
    "workers": "Workers & regions",
    "members": "Members & API keys",
    "plan": "Plan & limits",
}
DEFINITION: dict[str, Any] = {
    "call_duration_s": 4,
    "groups": [
        {"name": "callers", "endpoints": 2, "target": {"group": "callees"}},
        {"name": "callees", "endpoints": 2},
    ],
}


class Seeded:
    """The server and what it holds."""

    def __init__(self, h: Harness, url: str) -> None:
        self.h, self.url = h, url
        self.project = h.ok(
            "POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "Demo"}
        )["project_id"]
        registrar = h.ok(
            "POST",
            f"/projects/{self.project}/registrars",
            h.owner,
            json={"name": "pbx", "domain": "pbx.test"},
        )
        h.ok(
            "POST",
            f"/registrars/{registrar['registrar_id']}/accounts/import",
            {**h.owner, "content-type": "text/csv"},
            content=b"username,password\n100,a\n101,b\n",
        )
        self.test = h.ok(
            "POST",
            f"/projects/{self.project}/tests",
            h.owner,
            json={"name": "calls", "definition": DEFINITION},
        )["test_id"]
        self.good = self._run(mos=4.3, loss=0.0)
        self.bad = self._run(mos=3.6, loss=3.0)
        self.live = self._run(mos=4.1, loss=0.0, finish=False)
        h.ok(
            "POST",
            f"/organizations/{h.org}/invitations",
            h.owner,
            json={"email": "new@example.com", "role": "Tester"},
        )
        h.ok("POST", f"/organizations/{h.org}/api-keys", h.owner, json={"name": "ci"})
        self.token = h.owner["Authorization"].removeprefix("Bearer ")

    def _run(self, *, mos: float, loss: float, finish: bool = True) -> str:
        run_id: str = self.h.ok("POST", f"/tests/{self.test}/runs", self.h.owner)["run_id"]
        until(lambda: run_id in self.h.launcher.started)
        seed_call_run(self.h.store, run_id, mos=mos, loss=loss, create=False, finish=finish)
        if finish:
            self.h.launcher.finish(run_id)
            until(
                lambda: self.h.ok("GET", f"/runs/{run_id}", self.h.owner)["status"] == "COMPLETED"
            )
        return run_id


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    h = Harness(tmp_path_factory.mktemp("dashboard") / "dashboard.duckdb")
    h.clock.now = time.time()
    h.platform.queue._poll_interval_s = 0.05  # the harness app starts no queue thread
    h.platform.queue.start()
    port = free_port()
    config = uvicorn.Config(h.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until(lambda: server.started)
    try:
        yield Seeded(h, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        h.close()


class _NavigationOnly(PagesManager):
    """AppTest re-reads "is there a pages/ folder" before every run and then runs a page's
    file directly (multipage v1); a server decides it once, and ``st.navigation`` turns it off
    on the first run. The app uses ``st.navigation``: say so up front."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        PagesManager.uses_pages_directory = False
        super().__init__(*args, **kwargs)


@pytest.fixture
def app(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The app, logged in as the Owner, on the seeded server."""
    monkeypatch.setattr("streamlit.testing.v1.app_test.PagesManager", _NavigationOnly)
    monkeypatch.setenv("CALLMETER_URL", seeded.url)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["cm_token"] = seeded.token
    at.session_state["cm_email"] = seeded.h.OWNER_EMAIL
    return at.run()


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("markdown", "caption", "info", "success", "warning", "error")
        for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


def _next_to(block: Any, key: str) -> Any:
    """The element drawn right after the widget ``key`` in its block (None: not found)."""
    children = list(getattr(block, "children", {}).values())
    for index, child in enumerate(children):
        if getattr(child, "key", None) == key:
            return children[index + 1] if index + 1 < len(children) else None
        found = _next_to(child, key)
        if found is not None:
            return found
    return None


def _charts(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]


def test_logging_in_through_the_form(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streamlit.testing.v1.app_test.PagesManager", _NavigationOnly)
    monkeypatch.setenv("CALLMETER_URL", seeded.url)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert [t.value for t in at.title] == ["📞 callmeter"]
    at.text_input(key="login_email").input(seeded.h.OWNER_EMAIL)
    at.text_input(key="login_password").input("wrong password")
    at.button[0].click().run()
    assert at.error and "cm_token" not in at.session_state
    at.text_input(key="login_password").input(seeded.h.PASSWORD)
    at.button[0].click().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Tests"]  # the log-in lands on the test builder
    assert at.sidebar.selectbox(key="sb_project").value == seeded.project
    at.sidebar.button(key="sb_logout").click().run()
    assert [t.value for t in at.title] == ["📞 callmeter"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_seeded_database(app: AppTest, page: str) -> None:
    at = _open(app, page)
    assert [t.value for t in at.title] == [TITLES[page]]
    assert not at.error, [e.value for e in at.error]


def test_the_builder_shows_the_apis_message_next_to_the_bad_field(app: AppTest) -> None:
    at = _open(app, "tests")
    at.number_input(key="b_g0_endpoints").set_value(0)
    at.button(key="bb_save").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "`groups[0].endpoints`: Input should be greater than or equal to 1, got 0"
    ]
    # Each message is drawn in the block of its field, right after it.
    after = _next_to(at.main, "b_g0_endpoints")
    assert after is not None and "groups[0].endpoints" in after.value
    # A test-wide field: the total must match the groups.
    at.number_input(key="b_g0_endpoints").set_value(5)
    at.number_input(key="b_endpoints").set_value(7)
    at.button(key="bb_save").click().run()
    assert [e.value for e in at.error] == [
        "`endpoints`: 7 endpoints, but the groups add up to 10 (callers 5, callees 5)"
    ]
    # Fixed, the test saves and the messages go.
    at.number_input(key="b_endpoints").set_value(0)
    at.text_input(key="b_name").input("builder-made")
    at.button(key="bb_save").click().run()
    assert not at.error and "Saved test 'builder-made'." in _texts(at)


def test_the_run_button_starts_a_run_and_shows_it_live(seeded: Seeded, app: AppTest) -> None:
    before = set(seeded.h.launcher.started)
    at = _open(app, "tests")
    at.selectbox(key="t_pick").set_value(seeded.test)
    at.button(key="t_run").click().run()
    assert not at.exception
    until(lambda: set(seeded.h.launcher.started) - before)
    (new,) = set(seeded.h.launcher.started) - before
    assert at.session_state["cm_run"] == new
    assert [t.value for t in at.title] == ["Live run"]
    seeded.h.launcher.finish(new)


def test_the_live_page_shows_a_running_run(seeded: Seeded, app: AppTest) -> None:
    app.session_state["cm_run"] = seeded.live
    at = _open(app, "live")
    assert at.selectbox(key="live_run").value == seeded.live
    assert any(m.label == "Status" and m.value == "RUNNING" for m in at.metric)
    assert at.button(key="live_stop")
    titles = [c["layout"]["title"]["text"] for c in _charts(at)]
    assert sorted(titles) == sorted(
        ["Endpoints per phase", "Outcomes", "MOS", "Jitter (ms)", "Loss (%)", "Bitrate (bit/s)"]
    )
    assert "No failure so far." in _texts(at)


def test_the_results_drill_down_to_an_endpoints_ladder(seeded: Seeded, app: AppTest) -> None:
    app.session_state["cm_run"] = seeded.good
    at = _open(app, "results")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "COMPLETED" and metrics["Success rate"] == "50.0 %"
    assert metrics["MOS (avg)"] == "4.30"
    kpis = at.dataframe[2].value
    assert list(kpis["kpi"])[:4] == ["SER", "SEER", "ISA", "SCR"]
    at.selectbox(key="res_endpoint").set_value(0).run()
    assert not at.exception
    assert "#### Endpoint 0: u0 (caller, callers)" in _texts(at)
    charts = {c["layout"]["title"]["text"]: c for c in _charts(at)}
    assert "mos: send and receive" in charts
    assert {d["name"] for d in charts["mos: send and receive"]["data"]} == {"receive", "send"}
    ladder = charts["SIP ladder"]
    labels = [a["text"] for a in ladder["layout"]["annotations"] if a["text"]]
    assert ["INVITE", "100 Trying", "180 Ringing", "200 OK", "ACK"] == [
        label for label in labels if not label.endswith("ms")
    ][4:9]
    assert ladder["layout"]["xaxis"]["ticktext"] == ["u0 (endpoint 0)", "127.0.0.1:5060"]
    assert "R budget (ITU-T G.107): why MOS dropped" in charts
    at.selectbox(key="res_endpoint").set_value(2).run()
    ladder = {c["layout"]["title"]["text"]: c for c in _charts(at)}["SIP ladder"]
    assert "486 Busy Here" in [a["text"] for a in ladder["layout"]["annotations"]]


def test_results_export_a_table(seeded: Seeded, app: AppTest) -> None:
    app.session_state["cm_run"] = seeded.good
    at = _open(app, "results")
    at.selectbox(key="res_export_table").set_value("sip_trace")
    at.button(key="res_export").click().run()
    assert not at.exception
    assert any("Download sip_trace.csv" in str(b.proto.label) for b in at.get("download_button"))


def test_two_runs_compare_side_by_side(seeded: Seeded, app: AppTest) -> None:
    at = _open(app, "compare")
    at.selectbox(key="cmp_a").set_value(seeded.good)
    at.selectbox(key="cmp_b").set_value(seeded.bad).run()
    assert not at.exception
    table = at.dataframe[0].value
    mos = table[(table["metric"] == "mos") & (table["direction"] == "receive")].iloc[0]
    assert (mos["a"], mos["b"]) == (pytest.approx(4.3), pytest.approx(3.6))
    assert mos["verdict"] == "🔴 worse"
    assert any(m.label == "MOS (B)" and m.value == "3.60" for m in at.metric)


def test_registrar_accounts_are_listed_and_added(seeded: Seeded, app: AppTest) -> None:
    at = _open(app, "registrars")
    assert list(at.dataframe[1].value["username"]) == ["100", "101"]
    at.text_input(key="acc_username").input("102")
    at.text_input(key="acc_password").input("secret")
    at.button(key="FormSubmitter:acc_add-Add account").click().run()
    assert not at.exception
    assert "102" in list(at.dataframe[1].value["username"])
    assert at.button(key="reg_test")  # testing a registration: see the next test


def test_the_registration_button_shows_the_answer_and_the_ladder(
    seeded: Seeded, app: AppTest
) -> None:
    loop = LoopThread(name="dashboard-registrar")
    running = RunningRegistrar(accounts=[Account("alice", "s3cret", "127.0.0.1")])
    loop.call(running.start(), timeout=10)
    host, port = running.address
    h = seeded.h
    made = h.ok("POST", f"/projects/{seeded.project}/registrars", h.owner,
                json={"name": "live", "domain": host, "port": port})  # fmt: skip
    registrar_id = made["registrar_id"]
    h.ok("POST", f"/registrars/{registrar_id}/accounts/import",
         {**h.owner, "content-type": "text/csv"},
         content=b"username,password\nalice,s3cret\nbob,wrong\n")  # fmt: skip
    try:
        at = _open(app, "registrars")
        at.selectbox(key="reg_pick").set_value(registrar_id).run()
        at.selectbox(key="reg_test_user").set_value("alice")
        at.button(key="reg_test").click().run()
        assert not at.exception and not at.error
        assert at.success[0].value.startswith("alice registered: 200 OK in ")
        lines = [line.split(" ms  ", 1)[1] for line in at.code[0].value.splitlines()]
        peer = f"{host}:{port}".ljust(22)
        assert lines[:4] == [
            f"→ {peer} REGISTER sip:{host} SIP/2.0",
            f"← {peer} SIP/2.0 401 Unauthorized",
            f"→ {peer} REGISTER sip:{host} SIP/2.0",
            f"← {peer} SIP/2.0 200 OK",
        ]
        at.selectbox(key="reg_test_user").set_value("bob")
        at.button(key="reg_test").click().run()
        assert at.error[0].value.startswith("bob did not register: 401 Unauthorized in ")
        assert at.code[0].value.splitlines()[-1].endswith("SIP/2.0 401 Unauthorized")
    finally:
        h.ok("DELETE", f"/registrars/{registrar_id}", h.owner)
        loop.close(running.close)


def test_the_stop_button_stops_the_run(seeded: Seeded, app: AppTest) -> None:
    run_id = seeded.h.ok("POST", f"/tests/{seeded.test}/runs", seeded.h.owner)["run_id"]
    until(lambda: run_id in seeded.h.launcher.started)
    app.session_state["cm_run"] = run_id
    at = _open(app, "live")
    at.button(key="live_stop").click().run()
    assert not at.exception
    assert run_id in seeded.h.launcher.stopped
