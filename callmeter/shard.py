"""A shard: one event loop running many endpoints of a test run, and what it reports.

Theory of operation
-------------------
The planner (``callmeter.planner``) cuts a run into :class:`~callmeter.planner.ShardPlan`\\ s.
A :class:`Shard` runs one of them on the event loop it is started in (uvloop in the Ray actor,
``actors.shard``): one coroutine per endpoint, each a short script over
:class:`~callmeter.endpoint.Endpoint`:

* every endpoint waits for its ``start_s`` (the run's buildup), opens its sockets and
  registers;
* a **caller** waits for its ``dial_s``, calls, holds the answered call for
  ``call_duration_s``, hangs up;
* a **callee** or **receiver** answers what comes (the user agent answers by itself) until its
  call ends, or until the run's end if nothing came (then its outcome is TIMEOUT);
* every endpoint unregisters and closes; its lifecycle (``callmeter.lifecycle``) keeps the
  phase and the set-once outcome.

Times are offsets from the run's start, which the driver gives as a wall-clock epoch so that
shards on different machines share one buildup; inside the shard everything runs on the
loop's monotonic clock and is converted to wall time only when reported.

:meth:`Shard.collect` drains everything new since the previous call into :class:`ShardRows`:
endpoint rows (placement first, outcome and call timing when the endpoint is done), endpoint
events (phase changes, outcomes), per-second metric rows (both directions), SIP trace entries
and one health row for the shard itself (event-loop lag from a probe timer, the media
ticker's send lateness, CPU). The Ray actor turns them into Arrow tables for the one writer.

:meth:`Shard.stop` ends the run early: callers that have not dialed do not dial, calls under
way are hung up (their last seconds are measured), everyone unregisters.

An OS error (no socket, no port) decides that endpoint's outcome, OSERROR, and the others
carry on; any other exception in an endpoint's script is a bug in the generator: it is logged
with its traceback and also reported as OSERROR, with the reason, never blamed on the system
under test.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from callmeter.callmedia import MediaOptions, ticker_for
from callmeter.endpoint import Endpoint, EventTimeout
from callmeter.lifecycle import Outcome, OutcomeSet, PhaseChanged
from callmeter.planner import EndpointPlan, ShardPlan
from callmeter.sip.events import (
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallFailed,
    IncomingCall,
    Registered,
    RegistrationFailed,
)
from callmeter.sip.useragent import UserAgentConfig
from callmeter.transport.mediaport import MediaPort

__all__ = ["NodeInfo", "Shard", "ShardRows"]

logger = logging.getLogger(__name__)

REGISTER_WAIT_S: Final = 40.0  # longer than Timer F (64 x T1): the user agent reports first
ANSWER_WAIT_S: Final = 40.0  # longer than Timer B
HANGUP_WAIT_S: Final = 40.0  # BYE's Timer F
UNREGISTER_WAIT_S: Final = 2.0  # unregistering is courtesy: do not hold the run for it
RUN_GRACE_S: Final = 5.0  # callees wait this long past the planned end for a late call
LAG_PROBE_S: Final = 0.1  # the loop-lag probe's period
TRACE_PER_ENDPOINT: Final = 256  # SIP messages kept between two collects, per endpoint


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Where a shard runs (stored with every endpoint)."""

    node_id: str
    host: str
    pid: int

    @classmethod
    def here(cls, node_id: str = "local") -> NodeInfo:
        return cls(node_id, socket.gethostname(), os.getpid())


@dataclass(slots=True)
class ShardRows:
    """What a shard reports in one collect, as plain rows (``callmeter.store.batches`` turns
    them into Arrow). Times are wall-clock epoch seconds."""

    shard_id: int
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)
    health: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._lists())

    def _lists(self) -> Iterator[list[dict[str, Any]]]:
        yield from (self.endpoints, self.events, self.metrics, self.trace, self.health)


class _LagProbe:
    """A timer that asks to wake every ``LAG_PROBE_S`` and records how late it woke."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.samples_ms: list[float] = []
        self._due = loop.time() + LAG_PROBE_S
        self._handle = loop.call_at(self._due, self._fire)

    def _fire(self) -> None:
        now = self.loop.time()
        self.samples_ms.append(max(0.0, (now - self._due) * 1000.0))
        self._due = max(self._due + LAG_PROBE_S, now)
        self._handle = self.loop.call_at(self._due, self._fire)

    def take(self) -> list[float]:
        samples, self.samples_ms = self.samples_ms, []
        return samples

    def close(self) -> None:
        self._handle.cancel()


class _Running:
    """One endpoint's script state, as the collector sees it."""

    __slots__ = ("closed", "endpoint", "metric_index", "plan", "reported")

    def __init__(self, plan: EndpointPlan) -> None:
        self.plan = plan
        self.endpoint: Endpoint | None = None
        self.metric_index = 0  # rows of endpoint.media.rows already collected
        self.closed = False  # the script finished; the final endpoint row is due
        self.reported = False  # the final endpoint row went out


class Shard:
    """Runs one :class:`ShardPlan` on the current event loop. Call :meth:`run` in the loop;
    :meth:`collect` and :meth:`stop` from the same loop."""

    def __init__(
        self,
        plan: ShardPlan,
        *,
        epoch: float,
        host: str = "127.0.0.1",
        node: NodeInfo | None = None,
        seed: int = 0,
    ) -> None:
        self.plan = plan
        self.epoch = epoch  # wall-clock time of the run's start (offsets count from it)
        self.host = host
        self.node = node or NodeInfo.here()
        self.rng = random.Random(seed * 1_000_003 + plan.shard_id)
        self.stopping = False
        self.done = False
        self._running = [_Running(p) for p in plan.endpoints]
        self._stop_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_epoch = 0.0  # loop time of the run's start
        self._probe: _LagProbe | None = None
        self._cpu = (time.process_time(), time.monotonic())
        self._placed = False
        self._unopened: dict[int, tuple[Outcome | None, str]] = {}  # never got an Endpoint
        self.media_port: MediaPort | None = None
        """The shard's shared media port, for endpoints planned on it (opened by run)."""
        self._end_s = max(
            ((p.dial_s if p.dial_s is not None else p.start_s) + p.call_duration_s)
            for p in plan.endpoints
        )

    # -- the run ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Run every endpoint's script to its end (or until :meth:`stop`)."""
        self._loop = loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if self.stopping:
            self._stop_event.set()
        self._loop_epoch = loop.time() - (time.time() - self.epoch)
        self._probe = _LagProbe(loop)
        shared = any(p.shared_media_port for p in self.plan.endpoints)
        if shared and MediaPort.supports(self.host):  # else every call gets a socket
            self.media_port = await MediaPort.open(self.host)
        try:
            await asyncio.gather(*(self._endpoint(r) for r in self._running))
        finally:
            self._probe.close()
            if self.media_port is not None:
                self.media_port.close()
            self.done = True

    def stop(self) -> None:
        """Stop early: no new calls; calls under way are hung up."""
        self.stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
        for running in self._running:
            endpoint = running.endpoint
            if endpoint is None or running.closed:
                continue
            for call_id in list(endpoint.ua.calls):
                try:
                    endpoint.hangup(call_id)
                except Exception:  # a call in a state that cannot hang up: it ends anyway
                    logger.debug("hangup on stop failed for %s", call_id, exc_info=True)

    def _loop_time(self, offset_s: float) -> float:
        return self._loop_epoch + offset_s

    def _wall(self, loop_time: float) -> float:
        return self.epoch + (loop_time - self._loop_epoch)

    async def _pause_until(self, offset_s: float) -> bool:
        """Sleep until ``offset_s`` into the run; False when the run is stopping."""
        assert self._loop is not None and self._stop_event is not None
        delay = self._loop_time(offset_s) - self._loop.time()
        if delay > 0:
            try:
                await asyncio.wait_for(self._stop_event.wait(), delay)
            except TimeoutError:
                pass
        return not self.stopping

    async def _endpoint(self, running: _Running) -> None:
        plan = running.plan
        if not await self._pause_until(plan.start_s):
            self._unopened[plan.endpoint_id] = (None, "the run stopped before it started")
            running.closed = True
            return
        try:
            endpoint = running.endpoint = await Endpoint.open(
                _config(plan), host=self.host, transport=plan.transport.upper(),
                rng=random.Random(self.rng.getrandbits(64)), media=_media(plan),
                trace_limit=TRACE_PER_ENDPOINT,
                media_port=self.media_port if plan.shared_media_port else None,
            )  # fmt: skip
            endpoint.lifecycle.role = "caller" if plan.role == "caller" else "callee"
            if await self._register(endpoint):
                if plan.role == "caller":
                    await self._place_call(endpoint, plan)
                else:
                    await self._take_call(endpoint)
                await self._unregister(endpoint)
        except OSError as exc:
            self._fail(running, f"OS error: {exc}")
        except Exception as exc:
            logger.exception("endpoint %s: generator error", plan.endpoint_id)
            self._fail(running, f"generator error: {exc!r}")
        finally:
            if running.endpoint is not None:
                await running.endpoint.close()
            running.closed = True

    def _fail(self, running: _Running, reason: str) -> None:
        assert self._loop is not None
        if running.endpoint is not None:
            running.endpoint.lifecycle.error(self._loop.time(), reason)
        else:
            self._unopened[running.plan.endpoint_id] = (Outcome.OSERROR, reason)

    async def _register(self, endpoint: Endpoint) -> bool:
        endpoint.register()
        try:
            outcome = await endpoint.wait_for(
                Registered, RegistrationFailed, within_s=REGISTER_WAIT_S
            )
        except EventTimeout as exc:
            now = asyncio.get_running_loop().time()
            endpoint.lifecycle.decide(OutcomeSet(now, Outcome.REGISTRATION_FAILED, str(exc)))
            return False
        return isinstance(outcome, Registered)

    async def _place_call(self, endpoint: Endpoint, plan: EndpointPlan) -> None:
        assert plan.callee_uri is not None
        if not await self._pause_until(plan.dial_s or 0.0):
            return
        call_id = endpoint.call(plan.callee_uri)
        try:
            answer = await endpoint.wait_for(
                CallAnswered, CallFailed, CallCancelled, call_id=call_id, within_s=ANSWER_WAIT_S
            )
        except EventTimeout:
            endpoint.hangup(call_id)  # CANCEL; the lifecycle records the outcome
            answer = None
        if isinstance(answer, CallAnswered):
            assert self._loop is not None
            await self._pause_until((self._loop.time() - self._loop_epoch) + plan.call_duration_s)
            if call_id in endpoint.ua.calls:
                endpoint.hangup(call_id)
        await self._call_end(endpoint, call_id)

    async def _take_call(self, endpoint: Endpoint) -> None:
        assert self._loop is not None and self._stop_event is not None
        deadline = self._loop_time(self._end_s + RUN_GRACE_S)
        try:
            incoming = await endpoint.wait_for(
                IncomingCall, within_s=max(0.0, deadline - self._loop.time())
            )
        except EventTimeout:
            now = self._loop.time()
            endpoint.lifecycle.decide(
                OutcomeSet(now, Outcome.TIMEOUT, "no call arrived during the run")
            )
            return
        assert isinstance(incoming, IncomingCall)
        await self._call_end(endpoint, incoming.call_id)

    async def _call_end(self, endpoint: Endpoint, call_id: str) -> None:
        try:
            await endpoint.wait_for(
                CallEnded, CallFailed, CallCancelled, call_id=call_id, within_s=self._end_wait()
            )
        except EventTimeout:
            if call_id in endpoint.ua.calls:
                endpoint.hangup(call_id)
                try:
                    await endpoint.wait_for(
                        CallEnded, CallFailed, CallCancelled, call_id=call_id,
                        within_s=HANGUP_WAIT_S,
                    )  # fmt: skip
                except EventTimeout:
                    pass  # closing decides TEARDOWN_ERROR

    def _end_wait(self) -> float:
        """How long a call may still last: to the planned end plus grace (at least a BYE's
        timeout, so a hang-up under way is not cut short)."""
        assert self._loop is not None
        remaining = self._loop_time(self._end_s + RUN_GRACE_S) - self._loop.time()
        return max(remaining, HANGUP_WAIT_S)

    async def _unregister(self, endpoint: Endpoint) -> None:
        endpoint.unregister()
        try:
            await endpoint.wait_for(Registered, RegistrationFailed, within_s=UNREGISTER_WAIT_S)
        except EventTimeout:
            pass

    # -- reporting --------------------------------------------------------------------------
    def collect(self) -> ShardRows:
        """Everything new since the previous collect (see the module docstring)."""
        rows = ShardRows(self.plan.shard_id)
        if not self._placed:
            rows.endpoints.extend(self._placement_row(r.plan) for r in self._running)
            self._placed = True
        for running in self._running:
            self._collect_endpoint(running, rows)
        rows.health.append(self._health_row())
        return rows

    def _placement_row(self, plan: EndpointPlan) -> dict[str, Any]:
        return {
            "endpoint_id": plan.endpoint_id, "group_name": plan.group,
            "username": plan.username, "role": plan.role, "callee": plan.callee_uri,
            "shard_id": self.plan.shard_id, "node_id": self.node.node_id,
            "host": self.node.host, "pid": self.node.pid, "phase": "INITIALIZING",
        }  # fmt: skip

    def _collect_endpoint(self, running: _Running, rows: ShardRows) -> None:
        endpoint_id = running.plan.endpoint_id
        endpoint = running.endpoint
        if endpoint is None:
            if running.closed and not running.reported:
                running.reported = True
                outcome, reason = self._unopened.get(endpoint_id, (None, "never started"))
                rows.endpoints.append({"endpoint_id": endpoint_id, "phase": "CLOSED",
                                       "outcome": None if outcome is None else outcome.value,
                                       "outcome_reason": reason})  # fmt: skip
            return
        lifecycle = endpoint.lifecycle
        while (record := lifecycle.next_record()) is not None:
            rows.events.append(_event_row(endpoint_id, record, self._wall(record.at)))
        if endpoint.media is not None:
            fresh = endpoint.media.rows[running.metric_index :]
            running.metric_index += len(fresh)
            for row in fresh:
                rows.metrics.append(self._metric_row(endpoint_id, row))
        trace = endpoint.ua.trace
        while trace:
            entry = trace.popleft()
            rows.trace.append({"endpoint_id": endpoint_id, "at": self._wall(entry.at),
                               "direction": entry.direction,
                               "peer": f"{entry.addr[0]}:{entry.addr[1]}",
                               "message": entry.data})  # fmt: skip
        if running.closed and not running.reported:
            running.reported = True
            rows.endpoints.append(self._final_row(running, endpoint))

    def _metric_row(self, endpoint_id: int, row: dict[str, Any]) -> dict[str, Any]:
        values = {k: v for k, v in row.items() if k not in ("call_id", "at", "t_s")}
        return {"endpoint_id": endpoint_id, "ts": self._wall(row["at"]),
                "t_s": row["at"] - self._loop_epoch, **values}  # fmt: skip

    def _final_row(self, running: _Running, endpoint: Endpoint) -> dict[str, Any]:
        lifecycle = endpoint.lifecycle
        outcome = lifecycle.outcome
        row: dict[str, Any] = {
            "endpoint_id": running.plan.endpoint_id,
            "phase": lifecycle.phase.value,
            "outcome": None if outcome is None else outcome.outcome.value,
            "outcome_reason": None if outcome is None else outcome.reason,
            "outcome_status": None if outcome is None else outcome.status,
        }
        followed = [r for r in endpoint.call_rows if r["call_id"] == lifecycle.call_id]
        if followed:
            row |= {k: v for k, v in followed[0].items() if k != "call_id"}
        return row

    def _health_row(self) -> dict[str, Any]:
        loop = self._loop
        now_wall = time.time()
        lag = sorted(self._probe.take()) if self._probe is not None else []
        cpu, wall = time.process_time(), time.monotonic()
        cpu_percent = 100.0 * (cpu - self._cpu[0]) / max(wall - self._cpu[1], 1e-9)
        self._cpu = (cpu, wall)
        row: dict[str, Any] = {
            "shard_id": self.plan.shard_id, "ts": now_wall,
            "endpoints_active": sum(
                1 for r in self._running if r.endpoint is not None and not r.closed
            ),
            "loop_lag_ms_max": lag[-1] if lag else 0.0,
            "loop_lag_ms_p99": lag[min(len(lag) - 1, int(0.99 * len(lag)))] if lag else 0.0,
            "send_lateness_ms_p99": 0.0, "send_lateness_ms_max": 0.0,
            "cpu_percent": cpu_percent, "node_id": self.node.node_id,
            "host": self.node.host, "pid": self.node.pid,
        }  # fmt: skip
        if loop is not None:
            health = ticker_for(loop).snapshot(loop.time())
            if health.ticks:
                row["send_lateness_ms_p99"] = health.send_late_p99_ms
                row["send_lateness_ms_max"] = health.send_late_max_ms
        return row


def _event_row(endpoint_id: int, record: PhaseChanged | OutcomeSet, at: float) -> dict[str, Any]:
    if isinstance(record, PhaseChanged):
        return {"endpoint_id": endpoint_id, "at": at, "kind": "phase",
                "phase": record.phase.value, "previous": record.previous.value}  # fmt: skip
    return {"endpoint_id": endpoint_id, "at": at, "kind": "outcome",
            "outcome": record.outcome.value, "reason": record.reason,
            "status": record.status}  # fmt: skip


def _config(plan: EndpointPlan) -> UserAgentConfig:
    return UserAgentConfig(
        plan.username, plan.domain, plan.proxy, password=plan.password, realm=plan.realm,
        expires=max(300, int(plan.call_duration_s * 2 + 60)), ring_time_s=plan.ring_time_s,
    )  # fmt: skip


def _media(plan: EndpointPlan) -> MediaOptions:
    return MediaOptions(
        codecs=tuple(plan.codecs), ptime_ms=plan.ptime_ms, source=plan.media_file,
        send_impairment=plan.send_impairment, receive_impairment=plan.receive_impairment,
        impairment_seed=plan.impairment_seed,
    )  # fmt: skip
