"""The public status page: three days of probe history made by the scheduler (a driven clock,
a scripted executor), served by the app on a real socket and rendered in headless Chromium.
It shows the banner, each component's state, 90 day bars, the exact SLA uptime and the
incident timeline, and nothing that is not public. The screenshot is kept as a test artefact
(``tests/artifacts/status_page.png``).

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright for Python; the test is
skipped when either is missing.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from callmeter.probes.executor import Measurement, ProbeJob
from callmeter.probes.models import Health
from callmeter.probes.status_page import Incident, day_bars, incidents, uptime_percent
from callmeter.probes.testing import failed, measured
from callmeter.server.testing import FakeClock, Harness
from tests.test_client import free_port, until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
START = datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0

HEALTHY = measured(mos=4.4, loss_percent=0.0, jitter_ms=1.0)
DEGRADED = measured(mos=3.9, loss_percent=0.4, jitter_ms=1.0)
UNHEALTHY = measured(mos=2.9, loss_percent=9.0, jitter_ms=1.0)


class ByProbe:
    """An executor that asks ``script(probe_name, hour)`` what each call measured."""

    def __init__(self, clock: FakeClock, script: Callable[[str, int], Measurement]) -> None:
        self.clock = clock
        self.script = script

    def execute(self, job: ProbeJob) -> Measurement:
        return self.script(job.probe_name, round((self.clock.now - START) / HOUR))


def eu(hour: int) -> Measurement:
    if 20 <= hour < 24:
        return DEGRADED
    if 40 <= hour < 43:
        return UNHEALTHY
    if hour == 50:
        return failed()  # UNKNOWN: neither up nor down
    return HEALTHY


def us(hour: int) -> Measurement:
    return DEGRADED if hour >= 70 else HEALTHY


@dataclass
class Site:
    h: Harness
    url: str
    secrets: dict[str, str]  # what must never show: label -> text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    import uvicorn

    clock = FakeClock(START)
    h = Harness(tmp_path_factory.mktemp("status") / "status.duckdb", clock=clock)
    scripts = {"sbc-eu-internal": eu, "sbc-us-internal": us}
    h.app.state.probes.executor = ByProbe(
        clock, lambda name, hour: scripts.get(name, lambda _: HEALTHY)(hour)
    )
    o = h.owner
    pid = h.ok("POST", f"/organizations/{h.org}/projects", o,
               json={"name": "Secret Project Zeta", "description": "internal only"})  # fmt: skip
    pid = pid["project_id"]
    rid = h.ok("POST", f"/projects/{pid}/registrars", o,
               json={"name": "corp", "domain": "sbc.corp.internal"})["registrar_id"]  # fmt: skip
    for user in ("alice-4711", "bob-4712"):
        h.ok("POST", f"/registrars/{rid}/accounts", o,
             json={"username": user, "password": "hunter2-pw"})  # fmt: skip
    probes = {}
    for name in ("sbc-eu-internal", "sbc-us-internal"):
        probes[name] = h.ok("POST", f"/projects/{pid}/probes", o,
                            json={"name": name, "interval_min": 60})["probe_id"]  # fmt: skip
    lab = {"name": "hidden-lab", "interval_min": 60, "registrar": "corp", "account": "alice-4711",
           "target": {"kind": "uri", "uri": "sip:echo@sbc.corp.internal"}}  # fmt: skip
    hidden = h.ok("POST", f"/projects/{pid}/probes", o, json=lab)
    hook = h.ok("POST", f"/probes/{probes['sbc-eu-internal']}/webhooks", o,
                json={"url": "https://alerts.corp.example/hook-xyz"})  # fmt: skip
    page = h.ok("POST", f"/projects/{pid}/status-pages", o, json={
        "name": "Acme Voice", "slug": "acme-voice",
        "description": "Live health of Acme's voice service.",
        "components": [
            {"probe_id": probes["sbc-eu-internal"], "display_name": "Voice calls (EU)"},
            {"probe_id": probes["sbc-us-internal"], "display_name": "Voice calls (US)"},
        ],
    })  # fmt: skip
    for _ in range(72):  # three days of hourly executions
        h.app.state.probes.run_pending()
        clock.advance(HOUR)
    h.app.state.probes.webhooks.close()  # nothing is sent anywhere
    port = free_port()
    config = uvicorn.Config(h.app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until(lambda: server.started)
    secrets = {
        "project name": "Secret Project Zeta", "project description": "internal only",
        "organization name": "Default", "project id": pid, "page id": page["status_page_id"],
        "registrar": "sbc.corp.internal", "account": "alice-4711", "password": "hunter2-pw",
        "webhook": "alerts.corp.example", "secret": hook["secret"], "owner": h.OWNER_EMAIL,
        "hidden probe": "hidden-lab", "hidden probe id": hidden["probe_id"],
        "internal name": "-internal", "API": "/api/", "execution ids": "exe_",
        "probe ids": "prb_", "run ids": "run_", "SIP": "sip:", "metric": "MOS",
        "loss": "loss", "threshold": "threshold",
    }  # fmt: skip
    try:
        yield Site(h, f"http://127.0.0.1:{port}/status/acme-voice", secrets)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        h.app.state.probes.close(timeout_s=5)
        h.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
    with playwright.sync_playwright() as p:
        found = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                  headless=True)  # fmt: skip
        try:
            yield found
        finally:
            found.close()


def test_the_page_in_chromium(site: Site, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text))
    response = page.goto(site.url)
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]

    shot = tmp_path / "status_page.png"
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "status_page.png")
    assert shot.stat().st_size > 10_000

    assert page.title() == "Acme Voice status"
    assert page.locator("h1").inner_text() == "Acme Voice"
    assert page.locator(".banner").inner_text() == "Degraded performance"
    names = page.locator(".component .name").all_inner_texts()
    assert names == ["Voice calls (EU)", "Voice calls (US)"]
    assert page.locator(".component .state").all_inner_texts() == [
        "Operational", "Degraded performance",
    ]  # fmt: skip
    # EU: 72 checks, 3 UNHEALTHY, 1 UNKNOWN (no say) -> 68 / 71 up = 95.77 %
    assert page.locator(".uptime").all_inner_texts() == ["95.77 % uptime", "100.00 % uptime"]
    eu_bars = page.locator(".component").nth(0).locator(".bar")
    assert eu_bars.count() == 90
    by_day = {
        bar.get_attribute("data-day"): (bar.get_attribute("data-state"), bar.get_attribute("title"))
        for bar in eu_bars.all()
    }
    assert by_day["2027-01-15"] == ("healthy", "2027-01-15: 100.00 % uptime, operational")
    assert by_day["2027-01-16"] == ("degraded", "2027-01-16: 100.00 % uptime, degraded performance")
    assert by_day["2027-01-17"] == ("unhealthy", "2027-01-17: 86.95 % uptime, major outage")
    assert by_day["2027-01-14"] == ("none", "2027-01-14: no data")
    assert sum(1 for state, _ in by_day.values() if state == "none") == 86

    timeline = page.locator(".incident").all_inner_texts()
    assert [" ".join(t.split()) for t in timeline] == [
        "Degraded performance · Voice calls (US) ongoing since 2027-01-18 06:00 UTC (2 h)",
        "Major outage · Voice calls (EU) 2027-01-17 00:00 UTC to 2027-01-17 03:00 UTC (3 h)",
        "Degraded performance · Voice calls (EU) 2027-01-16 04:00 UTC to 2027-01-16 08:00 UTC "
        "(4 h)",
    ]

    html = page.content()
    for label, text in site.secrets.items():
        assert text not in html, f"the page shows the {label}"
    assert page.locator("script, a, form, img, iframe, link").count() == 0
    assert requests == [site.url]  # nothing else is fetched
    assert problems == []


def test_unknown_pages_and_no_login(site: Site) -> None:
    http = site.h.http
    missing = http.get("/status/no-such-page")
    assert missing.status_code == 404 and "No such status page" in missing.text
    assert "acme" not in missing.text.lower()
    public = http.get("/status/acme-voice")  # no Authorization header at all
    assert public.status_code == 200
    assert public.headers["x-frame-options"] == "DENY"
    assert "/status/{slug}" not in site.h.http.get("/api/v1/openapi.json").text


def test_uptime_days_and_incidents_exactly() -> None:
    H, D, U, K = Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY, Health.UNKNOWN
    assert uptime_percent([H, D, U, K]) == 66.66  # floored, UNKNOWN has no say
    assert uptime_percent([H] * 9999 + [U]) == 99.99
    assert uptime_percent([H] * 99999 + [U]) == 99.99  # never rounds up to 100
    assert uptime_percent([K, K]) is None and uptime_percent([]) is None
    samples = [(0.0, H), (10.0, D), (20.0, K), (30.0, U), (40.0, H), (50.0, K), (60.0, D)]
    assert incidents("x", samples) == [
        Incident("x", U, 10.0, 40.0),  # UNKNOWN inside neither ends nor starts it
        Incident("x", D, 60.0, None),
    ]
    bars = day_bars([(START, H), (START + HOUR, U), (START + 30 * HOUR, K)], START + 48 * HOUR, 4)
    assert [(b.day.isoformat(), b.worst, b.uptime, b.checks) for b in bars] == [
        ("2027-01-14", None, None, 0),
        ("2027-01-15", U, 50.0, 2),
        ("2027-01-16", K, None, 1),
        ("2027-01-17", None, None, 0),
    ]
