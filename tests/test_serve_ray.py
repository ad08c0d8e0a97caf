"""``callmeter serve`` with the real Ray launcher, as a user runs it: a child process on
127.0.0.1 with its own local Ray, a test triggered over the API, run for real (built-in
registrar, media both ways), results served and exported; then the server stopped (SIGTERM)
in the middle of a run and started again on the same database: the run's calls were hung
up, what was stored is kept, the interrupted run is FAILED with the reason, and no Ray
process of the server outlives it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from actors import LOCAL_ENV
from actors.cluster import _ray_processes_in_our_group
from callmeter.client import Client

pytestmark = [pytest.mark.slow]

EMAIL, PASSWORD = "owner@example.com", "correct horse battery"
DEFINITION = {
    "call_duration_s": 3,
    "groups": [
        {"name": "callers", "endpoints": 2, "target": {"group": "callees"}},
        {"name": "callees", "endpoints": 2},
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(db: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **LOCAL_ENV}
    env.pop("RAY_ADDRESS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "callmeter.cli", "serve", "--db", str(db), "--port", str(port),
         "--owner-email", EMAIL, "--owner-password", PASSWORD],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    started = time.time()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                with Client(url) as client:
                    client.request("GET", "/openapi.json")
                break
            except Exception:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # graceful: uvicorn stops, Ray shuts down
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        # the server shares our process group; its Ray must be gone once it has exited
        deadline = time.monotonic() + 5
        while (leftovers := _ray_processes_in_our_group(started)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for leftover in leftovers:
            leftover.kill()
        assert not leftovers, f"Ray processes outlived the server: {leftovers}"


def wait_for(client: Client, run_id: str, statuses: set[str], timeout_s: float = 120.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.run(run_id).status
        if status in statuses:
            return status
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(0.5)


def test_a_run_triggered_over_the_api_runs_on_ray_and_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "platform.duckdb"
    with serving(db) as url, Client(url) as client:
        client.login(EMAIL, PASSWORD)
        (organization,) = client.organizations()
        project = client.create_project(organization.organization_id, "Lab")
        test = client.create_test(project.project_id, "smoke", DEFINITION)
        run = client.run_test(test.test_id)
        assert wait_for(client, run.run_id, {"COMPLETED", "FAILED"}) == "COMPLETED"
        summary = client.summary(run.run_id)
        assert summary["outcomes"] == {"SUCCESS": 4}
        assert summary["mos_avg"] >= 4.0
        metrics = client.export_frame(run.run_id, "metrics")
        assert len(metrics) == 4 * 3 * 2  # endpoints x seconds x directions, exactly
        assert client.export(run.run_id, "per_endpoint").startswith(b"endpoint_id,")

        long_test = client.create_test(
            project.project_id, "long", {**DEFINITION, "call_duration_s": 60}
        )
        interrupted = client.run_test(long_test.test_id).run_id
        wait_for(client, interrupted, {"RUNNING"})
        deadline = time.monotonic() + 60
        while len(client.export_frame(interrupted, "metrics")) < 8:  # media flows and is stored
            assert time.monotonic() < deadline
            time.sleep(0.5)
    with serving(db) as url, Client(url) as client:
        client.login(EMAIL, PASSWORD)
        again = client.run(interrupted)
        assert again.status == "FAILED"
        assert "server shut down" in (again.reason or "")
        assert len(client.export_frame(interrupted, "metrics")) >= 8  # kept
        assert client.run(run.run_id).status == "COMPLETED"
        assert len(client.export_frame(run.run_id, "metrics")) == 24
