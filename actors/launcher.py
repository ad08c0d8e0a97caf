"""The Ray side of ``callmeter serve``: a run launcher and the workers list.

:class:`RayLauncher` implements the run queue's ``RunLauncher`` (``callmeter.server.queue``):
``start`` runs ``actors.driver.run_test`` on a thread of its own (the server process is the
Ray driver and the one writer), ``stop`` asks a run to stop (STOPPING: calls hung up, last
seconds stored), ``active`` lists the runs still going with their endpoint counts.

:class:`RayWorkers` implements ``WorkerSource`` from ``ray.nodes()``: a node that advertises
``worker:<name>`` is that worker, its ``region:<name>`` resource its region; a node with
neither (a plain local Ray) is a worker named after its address, in region ``local``, with
``DEFAULT_CAPACITY_PER_CPU`` endpoints per CPU. Capacity and allocation are in endpoints,
the unit the shards reserve.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Final

import ray

from actors.cluster import connect, disconnect
from actors.driver import StopRequest, run_test
from callmeter.models import Test
from callmeter.server.workers import WorkerInfo, WorkerStatus
from callmeter.store.writer import Store

__all__ = ["DEFAULT_CAPACITY_PER_CPU", "RayLauncher", "RayWorkers", "ray_platform"]

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY_PER_CPU: Final = 500  # endpoints a core carries with G.711 media (benchmarks)
LOCAL_REGION: Final = "local"
SHUTDOWN_REASON: Final = (
    "the server shut down during the run; calls were hung up and what they measured is kept"
)


class RayLauncher:
    """Runs the queue's runs on Ray, one driver thread per run."""

    def __init__(self, store: Store, address: str | None = None, shard_capacity: int = 1000):
        self.store = store
        self.address = address
        self.shard_capacity = shard_capacity
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[threading.Thread, StopRequest, int]] = {}

    def start(self, run_id: str, test: Test) -> None:
        connect(self.address)  # raises when the cluster is unreachable: the run is refused
        stop = StopRequest()
        thread = threading.Thread(
            target=self._run, args=(run_id, test, stop), name=f"run-{run_id}", daemon=True
        )
        with self._lock:
            self._runs[run_id] = (thread, stop, test.total_endpoints)
        thread.start()

    def _run(self, run_id: str, test: Test, stop: StopRequest) -> None:
        try:
            result = run_test(
                test, self.store, run_id=run_id, stop=stop, shard_capacity=self.shard_capacity
            )
            logger.info("run %s ended %s", run_id, result.status)
        except Exception:
            logger.exception("run %s: the driver failed", run_id)
        finally:
            with self._lock:
                self._runs.pop(run_id, None)

    def stop(self, run_id: str) -> None:
        with self._lock:
            entry = self._runs.get(run_id)
        if entry is not None:
            entry[1].set()

    def active(self) -> dict[str, int]:
        with self._lock:
            return {run_id: endpoints for run_id, (_, _, endpoints) in self._runs.items()}

    def close(self, timeout_s: float = 60.0) -> None:
        """Stop every run (their measurements are stored), then leave Ray."""
        with self._lock:
            runs = list(self._runs.values())
        for _, stop, _ in runs:
            stop.fail(SHUTDOWN_REASON)
        deadline = time.monotonic() + timeout_s
        for thread, _, _ in runs:
            thread.join(max(0.0, deadline - time.monotonic()))
        disconnect()


class RayWorkers:
    """The cluster's nodes as workers (see the module docstring)."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def workers(self) -> list[WorkerInfo]:
        if not ray.is_initialized():
            connect(self.address)
        available = _available_per_node()
        now = time.time()
        return [_worker(node, available.get(node["NodeID"], {}), now) for node in ray.nodes()]  # type: ignore[no-untyped-call]


def _available_per_node() -> dict[str, dict[str, float]]:
    try:
        from ray._private.state import available_resources_per_node

        result: dict[str, dict[str, float]] = available_resources_per_node()  # type: ignore[no-untyped-call]
        return result
    except Exception:  # a private API: without it, allocation shows as 0
        return {}


def _worker(node: dict[str, Any], available: dict[str, float], now: float) -> WorkerInfo:
    resources: dict[str, float] = node.get("Resources", {})
    name = next((k.partition(":")[2] for k in resources if k.startswith("worker:")), None)
    region = next((k.partition(":")[2] for k in resources if k.startswith("region:")), None)
    key = f"worker:{name}" if name else (f"region:{region}" if region else None)
    if key is not None:
        capacity = int(resources.get(key, 0))
        allocated = capacity - int(available.get(key, capacity))
    else:
        capacity = int(resources.get("CPU", 1) * DEFAULT_CAPACITY_PER_CPU)
        allocated = 0
    return WorkerInfo(
        name=name or str(node.get("NodeManagerAddress") or node["NodeID"][:12]),
        region=region or LOCAL_REGION,
        capacity=capacity,
        allocated=max(0, allocated),
        status=WorkerStatus.ONLINE if node.get("Alive") else WorkerStatus.OFFLINE,
        last_heartbeat=now if node.get("Alive") else None,
    )


def ray_platform(address: str | None, store: Store) -> tuple[RayLauncher, RayWorkers]:
    """The launcher factory of ``callmeter serve``: joins (or starts) Ray now, on the main
    thread, so Ray's own signal handling is in place and start-up problems show at once."""
    connect(address)
    return RayLauncher(store, address), RayWorkers(address)
