"""``EndpointShard``: the Ray actor that runs one shard of a test run.

The actor is a plain class (Ray Train's WorkerGroup style): ``EndpointShard`` holds a
:class:`callmeter.shard.Shard` running on its own event loop thread (uvloop by default,
``use_uvloop=False`` for asyncio's own loop, which ``benchmarks/run_scale.py --loop asyncio``
compares; the actor's methods stay plain blocking calls, so nothing depends on Ray's own
asyncio loop), and answers the driver's calls: :meth:`start` at the run's common epoch,
:meth:`collect` once a second (an Arrow :class:`~callmeter.store.batches.ShardBatch` for
the one writer), :meth:`stop`, :meth:`status`. ``remote_shard`` declares the Ray resources
where actors are spawned: the shard's custom resources (``region:<name>`` /
``worker:<name>``, sized in endpoints) and no CPU reservation, so shards pack by endpoint
capacity rather than by cores.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import ray

from callmeter.planner import ShardPlan
from callmeter.shard import NodeInfo, Shard
from callmeter.store.batches import ShardBatch, shard_batch
from callmeter.transport.loop import tune_gc_for_load
from callmeter.transport.thread import LoopThread

__all__ = ["EndpointShard", "remote_shard"]


class EndpointShard:
    """One shard of a run on this node. Construct, then :meth:`start`."""

    def __init__(
        self, run_id: str, plan: ShardPlan, seed: int = 0, use_uvloop: bool | None = None
    ) -> None:
        self.run_id = run_id
        self.plan = plan
        self.seed = seed
        self.node = _node_info()
        self.host = _endpoint_host()
        self.seq = 0
        self._loop = LoopThread(f"shard-{plan.shard_id}", use_uvloop=use_uvloop)
        self._shard: Shard | None = None
        self._error: str | None = None
        tune_gc_for_load()

    def ready(self) -> dict[str, Any]:
        """Where this shard runs (the driver waits for every shard before the epoch)."""
        return {"node_id": self.node.node_id, "host": self.node.host, "pid": self.node.pid}

    def start(self, epoch: float) -> None:
        """Run the plan with offsets counted from the wall-clock ``epoch``."""
        shard = Shard(self.plan, epoch=epoch, host=self.host, node=self.node, seed=self.seed)
        self._shard = shard
        future = self._loop.submit(shard.run())
        future.add_done_callback(self._finished)

    def _finished(self, future: Any) -> None:
        exc = future.exception()
        if exc is not None:
            self._error = repr(exc)

    def collect(self) -> ShardBatch:
        """Everything new since the last collect, as Arrow tables."""
        shard = self._shard
        if shard is None:
            return shard_batch(self.run_id, self.plan.shard_id, self.seq, None)
        rows = self._loop.call_soon(shard.collect, timeout=30)
        self.seq += 1
        return shard_batch(self.run_id, self.plan.shard_id, self.seq, rows)

    def stop(self) -> None:
        if self._shard is not None:
            self._loop.call_soon(self._shard.stop, timeout=30)

    def status(self) -> dict[str, Any]:
        """Whether the shard's run has ended, and the error that ended it, if any."""
        done = self._shard is not None and self._shard.done
        return {"done": done, "error": self._error}


def remote_shard(
    run_id: str, plan: ShardPlan, seed: int = 0, use_uvloop: bool | None = None
) -> Any:
    """Spawn an ``EndpointShard`` actor for ``plan`` with its placement resources."""
    actor_class = ray.remote(EndpointShard)
    options: dict[str, Any] = {
        "num_cpus": 0,
        "resources": plan.resources(),
        "max_restarts": 0,
        "name": f"callmeter-{run_id}-shard-{plan.shard_id}",
    }
    return actor_class.options(**options).remote(run_id, plan, seed, use_uvloop)


def _node_info() -> NodeInfo:
    node_id = "local"
    if ray.is_initialized():
        node_id = ray.get_runtime_context().get_node_id()
    return NodeInfo(node_id, socket.gethostname(), os.getpid())


def _endpoint_host() -> str:
    """The address endpoints bind on this node: the node's Ray address (127.0.0.1 locally)."""
    try:
        return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
    except Exception:
        return "127.0.0.1"
