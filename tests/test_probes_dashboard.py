"""The Probes and Status pages pages of the Streamlit app against a real server (the platform
app over a store file, served by uvicorn on 127.0.0.1, probes run by a scripted executor):
they render the health, the history charts with thresholds, the delivery log and the status
page list; creating a probe, a webhook (its secret shown once) and a status page works."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from callmeter.probes.testing import ScriptedExecutor, measured
from callmeter.server.testing import Harness
from tests.test_client import free_port, until

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


class Served:
    def __init__(self, h: Harness, url: str) -> None:
        self.h, self.url = h, url
        self.token = h.owner["Authorization"].removeprefix("Bearer ")
        self.project = h.ok("POST", f"/organizations/{h.org}/projects", h.owner,
                            json={"name": "Voice"})["project_id"]  # fmt: skip
        self.probe = h.ok("POST", f"/projects/{self.project}/probes", h.owner,
                          json={"name": "pbx-eu", "interval_min": 5})["probe_id"]  # fmt: skip
        h.ok("POST", f"/probes/{self.probe}/webhooks", h.owner,
             json={"url": "http://127.0.0.1:9/hook"})  # fmt: skip
        executor: ScriptedExecutor = h.app.state.probes.executor
        executor.push(measured(mos=4.4, loss_percent=0.0, jitter_ms=2.0),
                      measured(mos=3.9, loss_percent=1.5, jitter_ms=3.0),
                      measured(mos=4.3, loss_percent=0.1, jitter_ms=2.5))  # fmt: skip
        for _ in range(3):
            h.app.state.probes.run_pending()
            h.clock.advance(300)
        h.app.state.probes.webhooks.deliver_due()  # refused: a closed port, logged
        h.ok("POST", f"/projects/{self.project}/status-pages", h.owner,
             json={"name": "Voice status", "slug": "voice",
                   "components": [{"probe_id": self.probe, "display_name": "Calls"}]})  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    h = Harness(tmp_path_factory.mktemp("probe-ui") / "ui.duckdb")
    h.app.state.probes.executor = ScriptedExecutor()
    port = free_port()
    config = uvicorn.Config(h.app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until(lambda: server.started)
    try:
        yield Served(h, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        h.app.state.probes.close(timeout_s=5)
        h.close()


class _NavigationOnly(PagesManager):
    """The app uses ``st.navigation``: tell AppTest up front (as tests/test_dashboard.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        PagesManager.uses_pages_directory = False
        super().__init__(*args, **kwargs)


def open_page(served: Served, monkeypatch: pytest.MonkeyPatch, page: str) -> AppTest:
    monkeypatch.setattr("streamlit.testing.v1.app_test.PagesManager", _NavigationOnly)
    monkeypatch.setenv("CALLMETER_URL", served.url)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["cm_token"] = served.token
    at.session_state["cm_email"] = served.h.OWNER_EMAIL
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def submit(at: AppTest, label: str) -> AppTest:
    [button] = [b for b in at.button if b.label == label]
    button.click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_the_probes_page_shows_health_history_and_deliveries(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(served, monkeypatch, "probes")
    assert [t.value for t in at.title] == ["Probes"]
    listing = at.dataframe[0].value
    assert list(listing["name"]) == ["pbx-eu"] and list(listing["health"]) == ["🟢 HEALTHY"]
    charts = [json.loads(e.proto.spec) for e in at.get("plotly_chart")]
    titles = [c["layout"]["title"]["text"] for c in charts]
    assert titles == ["MOS (MOS)", "Jitter (ms)", "Packet loss (%)"]
    loss = charts[2]
    assert loss["data"][0]["y"] == [0.0, 1.5, 0.1]
    assert sorted(s["y0"] for s in loss["layout"]["shapes"]) == [1.0, 5.0]  # the thresholds
    history = at.dataframe[1].value
    assert list(history["health"]) == ["🟢 HEALTHY", "🟡 DEGRADED", "🟢 HEALTHY"]
    assert history["breached"][1] == "MOS 3.9 MOS (warning), Packet loss 1.5 % (warning)"
    [deliveries] = [d.value for d in at.dataframe if "change" in d.value]
    assert list(deliveries["change"]) == ["DEGRADED → HEALTHY", "HEALTHY → DEGRADED",
                                          "UNKNOWN → HEALTHY"]  # fmt: skip
    assert set(deliveries["status"]) == {"PENDING"} and set(deliveries["codes"]) == {"—"}


def test_creating_a_probe_and_a_webhook(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(served, monkeypatch, "probes")
    at.selectbox(key="pr_pick").select("__new__").run()
    at.text_input(key="pr_new_name").input("pbx-us")
    at.selectbox(key="pr_new_interval").select(15)
    submit(at, "Create probe")
    created = served.h.ok("GET", f"/projects/{served.project}/probes", served.h.owner)
    assert [(p["name"], p["interval_min"]) for p in created] == [("pbx-eu", 5), ("pbx-us", 15)]
    assert at.session_state["pr_pick"] == created[1]["probe_id"]
    at.text_input(key="pr_hook_url").input("https://hooks.example.com/voice")
    submit(at, "Add webhook")
    [secret] = [c.value for c in at.code]
    assert secret.startswith("whsec_")
    hooks = served.h.ok("GET", f"/probes/{created[1]['probe_id']}/webhooks", served.h.owner)
    assert [h["url"] for h in hooks] == ["https://hooks.example.com/voice"]
    at.run()
    assert [c.value for c in at.code] == []  # shown once


def test_the_status_pages_page(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(served, monkeypatch, "status_pages")
    assert [t.value for t in at.title] == ["Status pages"]
    listing = at.dataframe[0].value
    assert list(listing["public page"]) == ["http://testserver/status/voice"]
    at.selectbox(key="sp_pick").select("__new__").run()
    at.text_input(key="sp_new_name").input("Team Voice")
    at.text_input(key="sp_new_slug").input("team-voice")
    submit(at, "Create status page")
    pages = served.h.ok("GET", f"/projects/{served.project}/status-pages", served.h.owner)
    assert [p["slug"] for p in pages] == ["voice", "team-voice"]
    assert pages[1]["components"] == []
    assert served.h.http.get("/status/team-voice").status_code == 200
