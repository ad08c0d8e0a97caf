"""A real browser against the real thing: ``callmeter serve`` (the platform, running calls on a
local Ray) and ``streamlit run dashboard/app.py``, both on 127.0.0.1, driven by Playwright in
Debian's headless Chromium (``apt-get install chromium``; Playwright downloads no browser).

Log in, build a test, save and run it, watch it finish on the live page, open the results and
an endpoint's SIP ladder. Each step leaves a screenshot (under the test's tmp dir, copied to
``tests/artifacts/``) and checks that the page shows what the screenshot should show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_client import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = ROOT / "tests" / "artifacts"
OWNER, PASSWORD = "owner@example.com", "browser test password"

if not CHROMIUM.exists():
    pytest.skip("no Debian chromium (apt-get install chromium)", allow_module_level=True)


def _wait_for(url: str, process: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{what} did not answer {url} within {timeout_s:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process this test started (SIGTERM: uvicorn and Ray shut down cleanly)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``callmeter serve`` and ``streamlit run``, each on a free loopback port."""
    api_port, ui_port = free_port(), free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    for name in ("CALLMETER_TOKEN", "CALLMETER_OWNER_EMAIL", "CALLMETER_OWNER_PASSWORD"):
        env.pop(name, None)
    serve = subprocess.Popen(
        [sys.executable, "-m", "callmeter.cli", "serve", "--db", str(tmp_path / "ui.duckdb"),
         "--host", "127.0.0.1", "--port", str(api_port), "--owner-email", OWNER,
         "--owner-password", PASSWORD],
        cwd=tmp_path, env=env, stdout=(logs / "serve.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    api_url = f"http://127.0.0.1:{api_port}"
    ui = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.address", "127.0.0.1", "--server.port", str(ui_port)],
        cwd=ROOT, env={**env, "CALLMETER_URL": api_url},
        stdout=(logs / "streamlit.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for(f"{api_url}/api/v1/openapi.json", serve, "callmeter serve", 180)
        ui_url = f"http://127.0.0.1:{ui_port}"
        _wait_for(f"{ui_url}/_stcore/health", ui, "streamlit", 60)
        yield api_url, ui_url
    finally:
        _stop(ui)
        _stop(serve)


class Shots:
    """Screenshots under the tmp dir, copied to tests/artifacts/."""

    def __init__(self, page: Any, folder: Path) -> None:
        self.page, self.folder = page, folder
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(self, name: str, *expected: str) -> str:
        """Screenshot the page; check its text shows each of ``expected``; return the text."""
        path = self.folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        shutil.copy(path, ARTIFACTS / path.name)
        text: str = self.page.locator("body").inner_text()
        for wanted in expected:
            assert wanted in text, f"{name}: {wanted!r} not on the page:\n{text[:3000]}"
        return text


def test_log_in_build_run_watch_and_open_the_ladder(
    servers: tuple[str, str], tmp_path: Path
) -> None:
    api_url, ui_url = servers
    with httpx.Client(base_url=f"{api_url}/api/v1") as http:  # a project to work in
        token = http.post("/auth/login", json={"email": OWNER, "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {token['data']['token']}"}
        (organization,) = http.get("/organizations", headers=headers).json()["data"]
        http.post(f"/organizations/{organization['organization_id']}/projects", headers=headers,
                  json={"name": "Browser"}).raise_for_status()  # fmt: skip
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            shots = Shots(page, tmp_path)
            _log_in(page, shots, ui_url)
            _build_and_run(page, shots)
            _watch_it_finish(page, shots)
            _results_and_ladder(page, shots)
        finally:
            browser.close()


def _log_in(page: Any, shots: Shots, ui_url: str) -> None:
    page.goto(ui_url)
    page.get_by_label("Email", exact=True).fill(OWNER)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    shots.take("01-login", "callmeter", "Log in")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Test builder", exact=True).first.wait_for()
    page.get_by_role("heading", name="Tests", exact=True).wait_for()


def _build_and_run(page: Any, shots: Shots) -> None:
    page.get_by_label("Test name").fill("browser-quickstart")
    duration = page.get_by_label("Call duration (s)")
    duration.fill("4")
    duration.press("Enter")
    page.wait_for_timeout(500)
    shots.take("02-builder", "Test builder", "Group 1", "Group 2", "Codecs", "Target")
    assert page.get_by_label("Name", exact=True).first.input_value() == "callers"
    page.get_by_role("button", name="Save and run").click()
    page.get_by_role("heading", name="Live run", exact=True).wait_for()


def _watch_it_finish(page: Any, shots: Shots) -> None:
    page.get_by_text("Endpoints per phase").first.wait_for()
    page.wait_for_timeout(1000)  # let the charts draw
    shots.take("03-live", "Live run", "browser-quickstart", "Status")
    # The fragment refreshes itself: no reload, just wait for the final status.
    page.get_by_text("The run is COMPLETED.").wait_for(timeout=240_000)
    shots.take("04-finished", "The run is COMPLETED.", "See the results", "Failures")


def _results_and_ladder(page: Any, shots: Shots) -> None:
    page.get_by_role("link", name="See the results").click()
    page.get_by_role("heading", name="Results", exact=True).wait_for()
    page.get_by_text("Success rate").first.wait_for()
    page.locator('[data-testid="stDataFrame"] canvas').first.wait_for()  # tables drawn
    page.wait_for_timeout(1500)
    shots.take("05-results", "Results", "Success rate", "100.0 %", "MOS (avg)", "Per group")
    ladder = page.get_by_text("SIP ladder", exact=True).first
    ladder.wait_for()
    ladder.scroll_into_view_if_needed()
    page.locator(".js-plotly-plot text", has_text="INVITE").first.wait_for()
    text = shots.take("06-ladder", "Endpoint 0", "SIP ladder")
    figure_text = " ".join(page.locator(".js-plotly-plot text").all_text_contents())
    for message in ("REGISTER", "INVITE", "200 OK", "ACK", "BYE"):
        assert message in figure_text, (message, figure_text[:2000])
    assert "send and receive" in text or "mos: send and receive" in figure_text
