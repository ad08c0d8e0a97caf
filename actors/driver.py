"""The driver of a test run: plan it, start its shards, stream their batches to the writer.

Theory of operation
-------------------
``run_test`` is the whole main job, minus the screen: ``callmeter run`` calls it with a
progress callback, ``callmeter serve`` calls it from its run queue.

1. **Registrars.** The built-in registrar (when a group uses it) runs in this process, on a
   loop thread, with as many ephemeral accounts as the test needs; external ones are taken
   as configured. Both are resolved into :class:`~callmeter.planner.RegistrarEndpoint`.
2. **Plan and capacity.** ``callmeter.planner.plan`` cuts the test into shards. Before any
   actor starts, every shard's custom resources (``region:*``, ``worker:*``) must exist in the
   cluster: otherwise the run fails at once with the region or worker that is missing (the
   platform's queue turns that into CANNOT_RUN_FOR_NOW).
3. **Start.** One ``EndpointShard`` actor per shard; the driver waits until all are up, then
   gives them one wall-clock epoch (a moment ahead), so the buildup spans shards as planned.
4. **Stream.** Once a second every live shard is asked for its batch; batches go to the one
   writer (:class:`~callmeter.store.writer.Store`) as they come, so whatever happens next,
   what was measured is stored. Progress (phases, live MOS, jitter, loss, failures) is
   computed from the same batches.
5. **End.** The run ends when every shard is done, when asked to stop (STOPPING: shards hang
   up, final seconds are measured and stored), or at a deadline well past the planned end.
   A shard that dies (its actor, its process or its node) is reported in the run's reason,
   its undecided endpoints get outcome OSERROR in the store and the run is FAILED; the other
   shards carry on to the end. The run summary (``analysis.run_summary``) includes the
   generator's own health, so a lagging shard is never mistaken for a slow system under test.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import ray

from actors.cluster import connect
from actors.shard import remote_shard
from analysis import run_summary
from callmeter.models import BUILTIN, SipAccount, Test
from callmeter.planner import (
    RegistrarEndpoint,
    RunPlan,
    ShardPlan,
    accounts_needed,
    external_registrars,
    plan,
)
from callmeter.registrar import RunningRegistrar
from callmeter.registrar.proxy import RegistrarConfig
from callmeter.store.batches import ShardBatch
from callmeter.store.writer import Store
from callmeter.transport.thread import LoopThread

__all__ = ["CapacityError", "Progress", "RunResult", "StopRequest", "run_test"]

logger = logging.getLogger(__name__)

COLLECT_EVERY_S: Final = 1.0
START_AHEAD_S: Final = 1.0  # the epoch is this far after every shard is up
SHARD_READY_S: Final = 120.0  # actors must be up within this (a cold node may pull packages)
END_GRACE_S: Final = 60.0  # past the planned end, a run is ended by the driver
STOP_GRACE_S: Final = 45.0  # after a stop request, shards get this long to hang up
CALL_TIMEOUT_S: Final = 30.0  # a single collect/status call to a shard


class StopRequest(threading.Event):
    """A stop request; with a ``reason`` the stopped run is FAILED with it (the server shut
    down), without one it is COMPLETED with what it measured (a user stopped it)."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    def fail(self, reason: str) -> None:
        self.reason = reason
        self.set()


class CapacityError(RuntimeError):
    """The cluster lacks a region or worker the test's placement asks for."""


@dataclass(slots=True)
class Progress:
    """What a progress display shows, once a second."""

    run_id: str
    status: str
    elapsed_s: float
    planned_s: float
    endpoints: int
    phases: dict[str, int]
    outcomes: dict[str, int]
    failures: int
    mos: float | None
    jitter_ms: float | None
    loss_percent: float | None
    rows_written: int
    shards: int
    shards_lost: int

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.planned_s - self.elapsed_s)


@dataclass(slots=True)
class RunResult:
    run_id: str
    status: str  # COMPLETED or FAILED
    reason: str | None
    summary: dict[str, Any]
    passed: bool  # completed and met the test's success threshold


@dataclass(slots=True)
class _ShardState:
    plan: ShardPlan
    actor: Any
    alive: bool = True
    done: bool = False


@dataclass(slots=True)
class _Tally:
    """Progress kept from the batches: last phase and outcome per endpoint, latest quality."""

    phase: dict[int, str] = field(default_factory=dict)
    outcome: dict[int, str] = field(default_factory=dict)
    mos: float | None = None
    jitter_ms: float | None = None
    loss_percent: float | None = None
    rows: int = 0

    def add(self, batch: ShardBatch) -> None:
        if batch.events is not None and batch.events.num_rows:
            for row in batch.events.select(["endpoint_id", "kind", "phase", "outcome"]).to_pylist():
                if row["kind"] == "phase":
                    self.phase[row["endpoint_id"]] = row["phase"]
                else:
                    self.outcome[row["endpoint_id"]] = row["outcome"]
        if batch.metrics is not None and batch.metrics.num_rows:
            received = batch.metrics.filter(pc.equal(batch.metrics["direction"], "receive"))
            self.mos = _mean(received, "mos") or self.mos
            self.jitter_ms = _mean(received, "jitter_ms") or self.jitter_ms
            self.loss_percent = _mean(received, "loss_percent") if received.num_rows else None

    def phases(self, endpoints: int) -> dict[str, int]:
        counts: dict[str, int] = {"INITIALIZING": endpoints - len(self.phase)}
        for phase in self.phase.values():
            counts[phase] = counts.get(phase, 0) + 1
        return {k: v for k, v in counts.items() if v}


def _mean(table: pa.Table, column: str) -> float | None:
    if column not in table.column_names or table.num_rows == 0:
        return None
    value = pc.mean(table[column]).as_py()
    return None if value is None else float(value)


def run_test(
    test: Test,
    store: Store,
    *,
    address: str | None = None,
    run_id: str | None = None,
    shard_capacity: int = 1000,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    seed: int = 0,
    registrar_host: str = "127.0.0.1",
    use_uvloop: bool | None = None,
) -> RunResult:
    """Run ``test`` on Ray (joining ``address`` or a private local Ray) and store everything
    in ``store`` under ``run_id`` (created here unless the store has it already)."""
    run_id = run_id or new_run_id()
    if not store.has_run(run_id):
        store.create_run(
            run_id, test.name, test.model_dump_json(), endpoints=_total(test),
            success_threshold=test.success.min_success_rate,
        )  # fmt: skip
    stop = stop or threading.Event()
    try:
        connect(address)
        with _registrars(test, registrar_host) as registrars:
            run_plan = plan(test, registrars, shard_capacity=shard_capacity)
            _check_capacity(run_plan)
            reason = _execute(run_id, run_plan, store, on_progress, stop, seed, use_uvloop)
    except Exception as exc:
        logger.exception("run %s failed", run_id)
        store.set_status(run_id, "FAILED", f"{type(exc).__name__}: {exc}")
        return _result(store, run_id, test)
    if isinstance(stop, StopRequest) and stop.reason:
        reason = "; ".join(r for r in (stop.reason, reason) if r)
    store.set_status(run_id, "FAILED" if reason else "COMPLETED", reason)
    return _result(store, run_id, test)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def _total(test: Test) -> int:
    return sum(group.endpoints for group in test.groups)


def _result(store: Store, run_id: str, test: Test) -> RunResult:
    summary = run_summary(store.connection, run_id)
    store.set_summary(run_id, summary)
    status = str(summary.get("status"))
    success = summary.get("success_rate")
    passed = status == "COMPLETED" and success is not None
    passed = passed and success is not None and float(success) >= test.success.min_success_rate
    if passed and test.success.min_mos is not None:
        mos = summary.get("mos_avg")
        passed = mos is not None and float(mos) >= test.success.min_mos
    return RunResult(run_id, status, summary.get("reason"), summary, passed)


@contextlib.contextmanager
def _registrars(test: Test, host: str) -> Iterator[dict[str, RegistrarEndpoint]]:
    """Resolve every registrar of the test; the built-in one runs while the block runs."""
    resolved = dict(external_registrars(test))
    builtin_needed = sum(
        n for name, n in accounts_needed(test).items() if test.registrars[name].builtin
    )
    if not builtin_needed:
        yield resolved
        return
    transport = test.registrars[BUILTIN].transport
    thread = LoopThread("builtin-registrar")
    running = RunningRegistrar(
        host, 0, transport=transport, accounts=builtin_needed,
        config=RegistrarConfig(domain=host, max_expires_s=7200),
    )  # fmt: skip
    try:
        thread.call(running.start(), timeout=30)
        address = running.address
        resolved[BUILTIN] = RegistrarEndpoint(
            BUILTIN, host, address[0], address[1], transport,
            tuple(SipAccount(username=a.username, password=a.password) for a in running.accounts),
        )  # fmt: skip
        yield resolved
    finally:
        thread.close(running.close)


def _check_capacity(run_plan: RunPlan) -> None:
    """Every custom resource the shards ask for must exist in the cluster, with room."""
    available: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    wanted: dict[str, float] = {}
    for shard in run_plan.shards:
        for name, amount in shard.resources().items():
            wanted[name] = wanted.get(name, 0.0) + amount
    for name, amount in sorted(wanted.items()):
        have = available.get(name, 0.0)
        if have < amount:
            kind, _, value = name.partition(":")
            known = sorted(k.partition(":")[2] for k in available if k.startswith(kind + ":"))
            raise CapacityError(
                f"{kind} {value!r} has capacity for {have:g} endpoints, the test places "
                f"{amount:g} there (known {kind}s: {', '.join(known) or 'none'})"
            )


def _execute(
    run_id: str,
    run_plan: RunPlan,
    store: Store,
    on_progress: Callable[[Progress], None] | None,
    stop: threading.Event,
    seed: int,
    use_uvloop: bool | None,
) -> str | None:
    """Run the shards to the end; the reason the run failed, or None."""
    shards = [_ShardState(p, remote_shard(run_id, p, seed, use_uvloop)) for p in run_plan.shards]
    tally = _Tally()
    problems: list[str] = []
    try:
        ray.get([s.actor.ready.remote() for s in shards], timeout=SHARD_READY_S)
        epoch = time.time() + START_AHEAD_S
        ray.get([s.actor.start.remote(epoch) for s in shards], timeout=CALL_TIMEOUT_S)
        store.set_status(run_id, "RUNNING")
        status, stop_deadline = "RUNNING", None
        deadline = epoch + run_plan.duration_s + END_GRACE_S
        while True:
            _collect(run_id, shards, store, tally, problems)
            if all(s.done or not s.alive for s in shards):
                break
            now = time.time()
            if status == "RUNNING" and (stop.is_set() or now > deadline):
                if now > deadline:
                    problems.append(f"ended by the driver {END_GRACE_S:g} s past the plan")
                status, stop_deadline = "STOPPING", now + STOP_GRACE_S
                store.set_status(run_id, "STOPPING")
                for state in shards:
                    if state.alive:
                        state.actor.stop.remote()
            if stop_deadline is not None and now > stop_deadline:
                problems.append("shards did not finish within the stop grace period")
                break
            if on_progress is not None:
                on_progress(_progress(run_id, status, epoch, run_plan, tally, shards))
            time.sleep(max(0.0, COLLECT_EVERY_S - (time.time() - now)))
        _collect(run_id, shards, store, tally, problems)  # the final rows
        if on_progress is not None:
            on_progress(_progress(run_id, status, epoch, run_plan, tally, shards))
    finally:
        for state in shards:
            with contextlib.suppress(Exception):
                ray.kill(state.actor)
    return "; ".join(problems) or None


def _collect(
    run_id: str, shards: list[_ShardState], store: Store, tally: _Tally, problems: list[str]
) -> None:
    live = [s for s in shards if s.alive]
    batches = [(s, s.actor.collect.remote(), s.actor.status.remote()) for s in live]
    for state, batch_ref, status_ref in batches:
        try:
            batch: ShardBatch = ray.get(batch_ref, timeout=CALL_TIMEOUT_S)
            status = ray.get(status_ref, timeout=CALL_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            _shard_lost(run_id, state, store, problems, exc)
            continue
        tally.rows += store.append(batch)
        tally.add(batch)
        state.done = bool(status["done"])
        if status.get("error"):
            problems.append(f"shard {state.plan.shard_id}: {status['error']}")


def _shard_lost(
    run_id: str, state: _ShardState, store: Store, problems: list[str], exc: Exception
) -> None:
    state.alive = False
    ids = [e.endpoint_id for e in state.plan.endpoints]
    cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = f"shard {state.plan.shard_id} died: {cause}"
    marked = store.mark_endpoints(run_id, ids, "OSERROR", reason)
    problems.append(f"{reason} ({marked} of its {len(ids)} endpoints marked OSERROR)")
    logger.error("run %s: %s", run_id, reason)


def _progress(
    run_id: str,
    status: str,
    epoch: float,
    run_plan: RunPlan,
    tally: _Tally,
    shards: list[_ShardState],
) -> Progress:
    outcomes: dict[str, int] = {}
    for outcome in tally.outcome.values():
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    good = {"SUCCESS", "COMPLETED_WITH_WARNINGS"}
    return Progress(
        run_id=run_id, status=status, elapsed_s=max(0.0, time.time() - epoch),
        planned_s=run_plan.duration_s, endpoints=len(run_plan.endpoints),
        phases=tally.phases(len(run_plan.endpoints)), outcomes=outcomes,
        failures=sum(n for o, n in outcomes.items() if o not in good),
        mos=tally.mos, jitter_ms=tally.jitter_ms, loss_percent=tally.loss_percent,
        rows_written=tally.rows, shards=len(shards),
        shards_lost=sum(1 for s in shards if not s.alive),
    )  # fmt: skip


def summary_json(result: RunResult) -> str:
    """The ``--json`` line of ``callmeter run``."""
    return json.dumps(result.summary, default=str, sort_keys=True)
