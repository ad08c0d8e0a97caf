"""Call-rate load: one user agent on one socket placing short calls at a steady rate.

This is the SIPp ``-sn uac`` equivalent used by the benchmarks: calls are paced by one ticker
(no task per call), each answered call is hung up at once (or after ``call_duration_s``), and
the run reports attempts, successes and failures by status. It also measures its own
lateness (ticker lag) so an overloaded generator is never mistaken for a failing server.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from callmeter.sip.core import Address
from callmeter.sip.events import CallAnswered, CallCancelled, CallEnded, CallFailed
from callmeter.sip.uri import SipUri, parse_uri
from callmeter.sip.useragent import UserAgent, UserAgentConfig
from callmeter.transport import open_udp

__all__ = ["CallRateResult", "run_call_rate"]

TICK_S = 0.005
# The loop's timer resolution: libuv counts in whole milliseconds, so a shorter sleep returns
# at once. Sleeping until the next call's slot at 2,000 calls/s (0.5 ms) made the ticker spin
# (flush, sleep, repeat) dozens of times per call, on the CPU that the calls needed.
MIN_SLEEP_S = 0.001
MAX_BACKLOG_S = 0.1  # calls more than this late are skipped (and counted), never burst


@dataclass(slots=True)
class CallRateResult:
    rate_cps: float
    duration_s: float
    attempted: int = 0
    succeeded: int = 0
    failed: Counter[int] = field(default_factory=Counter)
    unfinished: int = 0
    skipped: int = 0  # scheduled calls not placed: the generator itself fell behind
    max_tick_lag_s: float = 0.0
    elapsed_s: float = 0.0

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values()) + self.unfinished

    @property
    def achieved_cps(self) -> float:
        return self.succeeded / self.elapsed_s if self.elapsed_s else 0.0


async def run_call_rate(
    target: Address,
    *,
    rate_cps: float,
    duration_s: float,
    call_duration_s: float = 0.0,
    user: str = "service",
    drain_timeout_s: float = 10.0,
) -> CallRateResult:
    """Call ``sip:user@target`` ``rate_cps`` times a second for ``duration_s``."""
    loop = asyncio.get_running_loop()
    host, port = target
    config = UserAgentConfig("load", host, target)
    agent = UserAgent(config, ("127.0.0.1", 0), trace_limit=0)
    result = CallRateResult(rate_cps, duration_s)
    total = int(rate_cps * duration_s)
    pending: set[str] = set()
    placing_done = [False]
    drained = asyncio.Event()

    def on_activity() -> None:
        now = loop.time()
        while (event := agent.next_event()) is not None:
            if isinstance(event, CallAnswered):
                if call_duration_s > 0:
                    loop.call_later(call_duration_s, hangup, event.call_id)
                else:
                    agent.hangup(event.call_id, now)
            elif isinstance(event, CallEnded):
                pending.discard(event.call_id)
                result.succeeded += 1
            elif isinstance(event, (CallFailed, CallCancelled)):
                pending.discard(event.call_id)
                result.failed[getattr(event, "status", 487)] += 1
        if not pending and placing_done[0]:
            drained.set()

    transport = await open_udp(agent, "127.0.0.1", 0, on_activity=on_activity)
    agent.local_addr = transport.local_address

    def hangup(call_id: str) -> None:
        agent.hangup(call_id, loop.time())
        transport.flush()

    uri = parse_uri(f"sip:{user}@{host}:{port}")  # parsed once, not once per INVITE
    assert isinstance(uri, SipUri)
    start = loop.time()
    max_backlog = max(1, int(rate_cps * MAX_BACKLOG_S))
    slots = 0  # scheduled calls consumed: placed or skipped
    while slots < total:
        now = loop.time()
        due = min(total, int((now - start) * rate_cps) + 1)
        if due - slots > max_backlog:
            # The generator stalled (its own lag, not the server's): placing the backlog at
            # once would turn a pause into a burst and a retransmission storm. Skip it and
            # say so in the result.
            result.skipped += due - slots - max_backlog
            slots = due - max_backlog
        for _ in range(due - slots):
            pending.add(agent.invite(uri, now))
        placed = due - slots
        result.attempted += placed
        slots = due
        placing_done[0] = slots >= total
        if placed:
            transport.flush()
        next_tick = start + slots / rate_cps
        await asyncio.sleep(min(TICK_S, max(MIN_SLEEP_S, next_tick - loop.time())))
        result.max_tick_lag_s = max(result.max_tick_lag_s, loop.time() - next_tick)
    if pending:
        try:
            await asyncio.wait_for(drained.wait(), drain_timeout_s)
        except TimeoutError:
            pass
    result.elapsed_s = loop.time() - start
    result.unfinished = len(pending)
    transport.close()
    return result
