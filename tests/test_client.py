"""The Python client and the platform commands against a real server on 127.0.0.1: typed
resources, DataFrame results, errors, the CI gate (``tests run --wait --fail-under``), login
with saved credentials, and ``serve`` itself in a child process."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from rich.console import Console

from callmeter.client import ApiError, Client, Threshold, check_thresholds
from callmeter.models import Test
from callmeter.server.commands import add_platform_commands
from callmeter.server.testing import FakeLauncher, Harness
from tests.test_server_results import DEFINITION, store_results

PASSWORD = Harness.PASSWORD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def until(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class CompletingLauncher(FakeLauncher):
    """Runs finish by themselves a moment after they start, with results stored."""

    def __init__(self) -> None:
        super().__init__()
        self.harness: Harness | None = None
        self.mos = 4.2

    def start(self, run_id: str, test: Test) -> None:
        super().start(run_id, test)
        threading.Timer(0.2, self._complete, [run_id]).start()

    def _complete(self, run_id: str) -> None:
        assert self.harness is not None
        store_results(self.harness, run_id, self.mos)  # also calls finish()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Harness, str]]:
    """The app on a real socket, with the queue thread running."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("CALLMETER_URL", "CALLMETER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    launcher = CompletingLauncher()
    h = Harness(tmp_path / "served.duckdb", launcher=launcher)
    launcher.harness = h
    h.platform.queue._poll_interval_s = 0.05  # the harness app starts no queue thread
    h.platform.queue.start()
    h.clock.now = time.time()
    port = free_port()
    config = uvicorn.Config(h.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    until(lambda: uv.started)
    project = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "CI"})
    h.ok("POST", f"/projects/{project['project_id']}/tests", h.owner,
         json={"name": "smoke", "definition": DEFINITION})  # fmt: skip
    try:
        yield h, f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        h.close()


def cli(*argv: str, stdin: str = "") -> tuple[int, str]:
    import argparse

    parser = argparse.ArgumentParser(prog="callmeter")
    add_platform_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    console = Console(file=out, width=200)
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code: int = args.handler(args, console)
    finally:
        sys.stdin = old
    return code, out.getvalue()


def test_client_end_to_end(server: tuple[Harness, str]) -> None:
    h, url = server
    with Client(url) as client:
        client.login(h.OWNER_EMAIL, PASSWORD)
        assert client.me().email == h.OWNER_EMAIL
        (organization,) = client.organizations()
        project = client.create_project(organization.organization_id, "Client")
        registrar = client.create_registrar(project.project_id, "pbx", "pbx.test")
        imported = client.import_accounts(registrar.registrar_id, "username,password\n1,a\n2,b\n")
        assert (imported.imported, imported.replaced) == (2, 0)
        assert [a.username for a in client.accounts(registrar.registrar_id)] == ["1", "2"]
        test = client.create_test(project.project_id, "smoke", DEFINITION)
        with pytest.raises(LookupError, match="2 tests are named 'smoke'"):
            client.find_test("smoke")
        assert client.find_test("smoke", project.slug).test_id == test.test_id
        run = client.run_test(test.test_id)
        done = client.wait(run.run_id, timeout_s=20, poll_s=0.1)
        assert done.status == "COMPLETED"
        assert [r.run_id for r in client.runs(project.project_id)] == [run.run_id]
        overview = client.overview(run.run_id)
        assert overview.loc[0, "mos_avg"] == pytest.approx(4.2)
        series = client.timeseries(run.run_id, ["mos", "jitter_ms"], by="run")
        assert list(series["jitter_ms"]) == [2.0, 3.0, 4.0]
        metrics = client.export_frame(run.run_id, "metrics")
        assert len(metrics) == 6
        assert client.export(run.run_id, "per_endpoint").startswith(b"endpoint_id,")
        key = client.create_api_key(organization.organization_id, "ci")
    with Client(url, key.key) as ci:
        assert ci.run(run.run_id).status == "COMPLETED"
        with pytest.raises(ApiError) as raised:
            ci.run("run_missing")
        assert (raised.value.status, raised.value.code) == (404, "not_found")


def test_many_pages_are_fetched(server: tuple[Harness, str]) -> None:
    h, url = server
    with Client(url) as client:
        client.login(h.OWNER_EMAIL, PASSWORD)
        for i in range(3):
            client.create_project(h.org, f"P{i}")
        import callmeter.client as module

        old, module.PAGE = module.PAGE, 2
        try:
            assert len(client.projects(h.org)) == 4
        finally:
            module.PAGE = old


def test_the_ci_gate_passes_and_fails(server: tuple[Harness, str]) -> None:
    h, url = server
    code, out = cli("login", "--server", url, "--email", h.OWNER_EMAIL, "--password-stdin",
                    stdin=PASSWORD + "\n")  # fmt: skip
    assert code == 0, out
    assert "logged in" in out
    code, out = cli("tests", "run", "smoke", "--wait", "--poll", "0.1", "--fail-under", "mos=4.0")
    assert code == 0, out
    run_id = re.search(r"run (run_\w+)", out)
    assert run_id is not None and "COMPLETED" in out
    code, out = cli("tests", "run", "smoke", "--poll", "0.1", "--fail-under", "mos=4.5",
                    "--fail-over", "jitter=2.5")  # fmt: skip
    assert code == 1
    assert "missed mos: 4.2 is under 4.5" in out
    assert "missed jitter: 3 is over 2.5" in out
    code, out = cli("runs", "show", run_id.group(1))
    assert code == 0 and "mos_avg" in out and "4.2" in out
    code, out = cli("tests", "run", "nope")
    assert code == 2 and "no test named 'nope'" in out


def test_a_failed_run_fails_the_gate(server: tuple[Harness, str]) -> None:
    h, url = server
    h.launcher.refuse = "no cluster"
    client = Client(url)
    client.login(h.OWNER_EMAIL, PASSWORD)
    client.save_credentials()
    code, out = cli("tests", "run", "smoke", "--wait", "--poll", "0.1")
    assert code == 1
    assert "the launcher refused the run: no cluster" in out


def test_thresholds() -> None:
    summary = {"mos_avg": 3.9, "success_rate": 1.0, "jitter_ms_avg": 12.0, "status": "COMPLETED"}
    ok = [Threshold.parse("success=0.99"), Threshold.parse("jitter=20", "over")]
    assert check_thresholds(summary, ok) == []
    assert check_thresholds(summary, [Threshold.parse("mos=4.0")]) == ["mos: 3.9 is under 4"]
    assert check_thresholds({"mos_avg": None}, [Threshold.parse("mos=4")]) == [
        "mos: no value in this run (numeric keys: )"
    ]
    with pytest.raises(ValueError, match="expected KEY=NUMBER"):
        Threshold.parse("mos>4")


def test_serve_binds_loopback_and_prints_how_to_log_in(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CALLMETER_OWNER_EMAIL": "boss@example.com"}
    env.pop("CALLMETER_OWNER_PASSWORD", None)
    code = (
        "import sys; from callmeter.server import serve; "
        f"serve({str(tmp_path / 'db.duckdb')!r}, port={port})"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        match = re.search(r"created the Owner account boss@example.com with password (\S+)", line)
        assert match, line
        client = Client(f"http://127.0.0.1:{port}")
        until(lambda: _answers(client))
        client.login("boss@example.com", match.group(1))
        assert [o.name for o in client.organizations()] == ["Default"]
        if shutil.which("ss"):
            listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
            assert f"127.0.0.1:{port}" in listening
            assert f"0.0.0.0:{port}" not in listening
    finally:
        child.terminate()
        child.wait(timeout=20)


def _answers(client: Client) -> bool:
    try:
        client.request("GET", "/openapi.json")
    except Exception:
        return False
    return True


def test_concurrent_requests_share_the_one_database(server: tuple[Harness, str]) -> None:
    """FastAPI runs sync handlers in a thread pool: writes and reads from many threads at once
    (with the queue thread running) are serialized, none is lost, none fails."""
    h, url = server
    token = h.owner["Authorization"].removeprefix("Bearer ")
    project = h.ok("GET", f"/organizations/{h.org}/projects", h.owner)[0]["project_id"]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            with Client(url, token) as client:
                for i in range(10):
                    client.create_test(project, f"c{n}-{i}", DEFINITION)
                    client.tests(project)
                    client.run_test(client.find_test(f"c{n}-{i}", project).test_id)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(h.ok("GET", f"/projects/{project}/tests", h.owner)) == 61
    runs = f"/projects/{project}/runs?limit=1000"
    until(lambda: all(r["status"] == "COMPLETED" for r in h.ok("GET", runs, h.owner)))


def test_an_unreachable_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLMETER_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CALLMETER_TOKEN", "cmk_x")
    code, out = cli("runs", "show", "run_x")
    assert code == 2 and "cannot reach the server" in out
