"""``callmeter demo``: the built-in registrar plus a few endpoints calling each other.

Everything runs in this process on 127.0.0.1: the registrar provisions ephemeral accounts,
every endpoint registers with digest auth on its own socket, the first half calls the second
half through the registrar's proxy, holds the call, hangs up and unregisters. The result is a
table of what happened to each call, with the timings a telecom engineer looks at first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from callmeter.callmedia import MediaOptions, MetricRow
from callmeter.endpoint import Endpoint, EventTimeout
from callmeter.registrar import RunningRegistrar
from callmeter.sip.events import (
    CallAnswered,
    CallEnded,
    CallFailed,
    CallTiming,
    Registered,
    RegistrationFailed,
)
from callmeter.sip.useragent import UserAgentConfig

__all__ = ["CallReport", "DemoReport", "MediaQuality", "run_demo"]


@dataclass(frozen=True, slots=True)
class CallReport:
    caller: str
    callee: str
    result: str  # "answered", or what went wrong
    status: int | None
    timing: CallTiming | None
    quality: MediaQuality | None = None  # what the callee received


@dataclass(frozen=True, slots=True)
class MediaQuality:
    """Averages over a call's per-second rows, receive direction."""

    packets: int
    lost: int
    jitter_ms: float
    mos: float

    @classmethod
    def of(cls, rows: list[MetricRow]) -> MediaQuality | None:
        received = [r for r in rows if r["direction"] == "receive"]
        mos = [r["mos"] for r in received if r.get("mos") is not None]
        if not received or not mos:
            return None
        return cls(
            packets=sum(r.get("packets") or 0 for r in received),
            lost=sum(r.get("packets_lost") or 0 for r in received),
            jitter_ms=sum(r.get("jitter_ms") or 0.0 for r in received) / len(received),
            mos=sum(mos) / len(mos),
        )


@dataclass(frozen=True, slots=True)
class DemoReport:
    registrar: str
    registrations_ok: int
    registrations_failed: int
    calls: list[CallReport]

    @property
    def ok(self) -> bool:
        return self.registrations_failed == 0 and all(c.result == "answered" for c in self.calls)


async def _call(
    caller: Endpoint, callee: Endpoint, domain: str, hold_s: float, timeout_s: float
) -> CallReport:
    names = caller.ua.config.username, callee.ua.config.username
    call_id = caller.call(f"sip:{names[1]}@{domain}")
    try:
        outcome = await caller.wait_for(
            CallAnswered, CallFailed, call_id=call_id, within_s=timeout_s
        )
    except EventTimeout:
        caller.hangup(call_id)
        return CallReport(*names, "no answer", None, None)
    if isinstance(outcome, CallFailed):
        return CallReport(*names, outcome.reason, outcome.status, outcome.timing)
    await asyncio.sleep(hold_s)  # the call is up: hold it for its duration
    caller.hangup(call_id)
    ended = await caller.wait_for(CallEnded, call_id=call_id, within_s=timeout_s)
    assert isinstance(ended, CallEnded)
    result = "answered" if ended.status < 300 else f"BYE answered {ended.status}"
    await callee.wait_for(CallEnded, call_id=call_id, within_s=timeout_s)
    quality = MediaQuality.of(callee.media.rows_of(call_id)) if callee.media else None
    return CallReport(*names, result, ended.status, ended.timing, quality)


async def run_demo(
    pairs: int = 3,
    hold_s: float = 2.0,
    ring_time_s: float = 0.3,
    transport: str = "UDP",
    media: MediaOptions | None = None,
) -> DemoReport:
    """Register ``2 * pairs`` endpoints at a built-in registrar and make ``pairs`` calls
    (with RTP both ways when ``media`` is given)."""
    async with RunningRegistrar(accounts=2 * pairs, transport=transport.lower()) as registrar:
        domain = registrar.config.domain
        endpoints = [
            await Endpoint.open(
                UserAgentConfig(
                    account.username,
                    domain,
                    registrar.address,
                    password=account.password,
                    ring_time_s=ring_time_s,
                    expires=300,
                ),
                transport=transport,
                media=media,
            )
            for account in registrar.accounts
        ]
        try:
            for endpoint in endpoints:
                endpoint.register()
            outcomes = [await e.wait_for(Registered, RegistrationFailed) for e in endpoints]
            ok = sum(isinstance(o, Registered) for o in outcomes)
            callers, callees = endpoints[:pairs], endpoints[pairs:]
            calls = await asyncio.gather(
                *(_call(a, b, domain, hold_s, 10.0) for a, b in zip(callers, callees, strict=True))
            )
            for endpoint in endpoints:
                endpoint.unregister()
            host, port = registrar.address
            return DemoReport(f"{transport.lower()}:{host}:{port}", ok, len(outcomes) - ok, calls)
        finally:
            for endpoint in endpoints:
                await endpoint.close()
