"""Connecting to Ray: a private local cluster on loopback, or an existing one.

``connect()`` is what ``callmeter run`` and ``callmeter serve`` call. With an address (the
``--address`` flag or ``RAY_ADDRESS``, which ``ray job submit`` sets for its entrypoint) it
joins that cluster. Without one it starts a local Ray of its own: bound to and advertising
127.0.0.1 only, usage stats off, token auth off (nothing leaves loopback), its own temporary
directory, no dashboard. It never stops Ray processes it did not start: ``disconnect()`` is
``ray.shutdown()``, which stops only the local cluster this process started.

``worker_join_command`` builds the ``ray start`` line of ``callmeter worker join``: an
on-premise machine joins the cluster with the custom resources ``region:<REGION>`` and
``worker:<NAME>`` sized to its endpoint capacity (the same names ``callmeter.planner`` asks
for and ``cluster.yaml`` declares).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import psutil
import ray

from actors import LOCAL_ENV
from callmeter.planner import REGION_RESOURCE, WORKER_RESOURCE

__all__ = ["LOCAL_ENV", "LocalRay", "connect", "disconnect", "worker_join_command"]


@dataclass(slots=True)
class LocalRay:
    """How this process is connected: ``started`` is True when it owns a local cluster."""

    address: str | None
    started: bool
    temp_dir: str | None = None
    started_at: float = 0.0  # when this process started its local Ray


_state: LocalRay | None = None


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    resources: dict[str, float] | None = None,
) -> LocalRay:
    """Join ``address`` (or ``RAY_ADDRESS``), or start a private local Ray on 127.0.0.1."""
    global _state
    if ray.is_initialized():
        return _state or LocalRay(address=None, started=False)
    address = address or os.environ.get("RAY_ADDRESS") or None
    common: dict[str, Any] = {
        "logging_level": "WARNING",
        "log_to_driver": True,
        "configure_logging": True,
    }
    if address is not None:
        ray.init(address=address, **common)
        _state = LocalRay(address=address, started=False)
        return _state
    temp_dir = tempfile.mkdtemp(prefix="cm-ray-")
    started_at = time.time()
    ray.init(
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        _temp_dir=temp_dir,
        num_cpus=num_cpus,
        resources=resources,
        **common,
    )
    _state = LocalRay(address=None, started=True, temp_dir=temp_dir, started_at=started_at)
    return _state


def disconnect() -> None:
    """Leave Ray; a local cluster this process started stops with it (and its temp dir).

    Ray's shutdown stops the head's processes, but agents its raylet starts detached (the
    dashboard and runtime-env agents) can outlive it. They stay in this process's process
    group, so what is left there afterwards that Ray started is stopped by its pid."""
    global _state
    since = _state.started_at if _state is not None and _state.started else None
    if ray.is_initialized():
        ray.shutdown()
    if since is not None:
        _stop_leftovers(since)
    if _state is not None and _state.temp_dir is not None:
        shutil.rmtree(_state.temp_dir, ignore_errors=True)
    _state = None


def _stop_leftovers(since: float, settle_s: float = 0.3, limit_s: float = 10.0) -> None:
    """Kill the Ray processes left in our process group, started since ``since`` (so only
    those of our own cluster), until none shows up for ``settle_s``. Nothing new is started
    once ``ray.shutdown`` returned (the raylet that starts agents is gone): the settle only
    covers agents still exiting, and every run's command pays it."""
    deadline = time.monotonic() + limit_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < settle_s:
        found = _ray_processes_in_our_group(since)
        for process in found:
            with contextlib.suppress(psutil.Error):
                process.kill()
        if found:
            quiet_since = time.monotonic()
        time.sleep(0.1)


def _ray_processes_in_our_group(since: float) -> list[psutil.Process]:
    me = os.getpid()
    group = os.getpgid(me)
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline", "create_time"]):
        try:
            if process.pid == me or os.getpgid(process.pid) != group:
                continue
            if process.info["create_time"] < since - 1.0:
                continue
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            name = process.info["name"] or ""
            command = " ".join(process.info["cmdline"] or [])
        except (psutil.Error, OSError):
            continue
        if name in ("raylet", "gcs_server") or "ray::" in command or "/ray/" in command:
            found.append(process)
    return found


def worker_resources(region: str | None, name: str, capacity: int) -> dict[str, float]:
    """The custom resources an on-premise worker advertises: its capacity in endpoints."""
    resources = {WORKER_RESOURCE.format(name): float(capacity)}
    if region:
        resources[REGION_RESOURCE.format(region)] = float(capacity)
    return resources


def worker_join_command(
    address: str, region: str | None, name: str, capacity: int, *, node_ip: str | None = None
) -> list[str]:
    """The ``ray start`` command line that joins this machine as worker ``name``."""
    command = [
        "ray",
        "start",
        f"--address={address}",
        f"--resources={json.dumps(worker_resources(region, name, capacity))}",
        "--disable-usage-stats",
    ]
    if node_ip:
        command.append(f"--node-ip-address={node_ip}")
    return command
