"""An endpoint: one simulated phone on its own socket, for scripts, demos and interop tests.

:class:`Endpoint` binds a :class:`~callmeter.sip.useragent.UserAgent` to a UDP or TCP
transport and gives it an async face: commands stamped with the loop's time and flushed at
once, and ``wait_for`` to await an event with a deadline. Load runs with thousands of
endpoints per loop drive the user agents through ``on_activity`` callbacks instead (no task
per endpoint); this wrapper is for the few-endpoints case.

Every endpoint keeps its :class:`~callmeter.lifecycle.EndpointLifecycle` (phase and outcome,
``endpoint.lifecycle.records``), fed its events, commands and media facts, and one call timing
row per finished call (``endpoint.call_rows``, keyed by the metric catalog plus ``call_id``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from callmeter.callmedia import CallMedia, MediaOptions
from callmeter.lifecycle import EndpointLifecycle, call_outcome, call_timing_row
from callmeter.sip.events import (
    CallCancelled,
    CallEnded,
    CallEvent,
    CallFailed,
    CallRinging,
    Event,
)
from callmeter.sip.useragent import OfferAnswer, UserAgent, UserAgentConfig
from callmeter.transport import TcpTransport, UdpTransport, open_tcp, open_udp
from callmeter.transport.mediaport import MediaPort

__all__ = ["Endpoint", "EventTimeout"]


class EventTimeout(TimeoutError):
    """The awaited event did not come in time; the message lists what came instead."""


class _MediaFacts:
    """CallMedia's listener: the media facts of the call the lifecycle follows."""

    def __init__(self, lifecycle: EndpointLifecycle) -> None:
        self.lifecycle = lifecycle

    def media_started(self, call_id: str, now: float) -> None:
        if call_id == self.lifecycle.call_id:
            self.lifecycle.media_started(now)

    def first_media(self, call_id: str, now: float) -> None:
        if call_id == self.lifecycle.call_id:
            self.lifecycle.first_media(now)

    def media_failed(self, call_id: str, now: float, reason: str) -> None:
        if call_id == self.lifecycle.call_id:
            self.lifecycle.negotiation_failed(now, reason)


class Endpoint:
    """A user agent and the socket it owns. Create with :meth:`open`."""

    def __init__(self, ua: UserAgent) -> None:
        self.ua = ua
        self.events: list[Event] = []  # every event so far, in order
        self._pending: list[Event] = []
        self._changed = asyncio.Event()
        self._transport: UdpTransport | TcpTransport | None = None
        self._loop = asyncio.get_running_loop()
        self.media: CallMedia | None = None
        self.lifecycle = EndpointLifecycle(media=False)  # the role comes with the first call
        self.call_rows: list[dict[str, Any]] = []  # one call timing row per finished call
        self._ringing_status: dict[str, int] = {}  # call id -> first 18x received

    @classmethod
    async def open(
        cls,
        config: UserAgentConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        transport: str = "UDP",
        offer_answer: OfferAnswer | None = None,
        rng: random.Random | None = None,
        media: MediaOptions | None = None,
        trace_limit: int = 64,
        media_port: MediaPort | None = None,
    ) -> Endpoint:
        """``media`` puts real RTP on the endpoint's calls (SDP offer/answer included);
        without it calls carry whatever ``offer_answer`` provides (signaling only). With
        ``media_port`` that media goes through the loop's shared port, else a socket of its own.
        ``trace_limit`` bounds the SIP trace kept in ``ua.trace`` (messages, newest last)."""
        call_media = (
            await CallMedia.open(media, host, rng, media_port) if media is not None else None
        )
        if call_media is not None:
            offer_answer = call_media.offer_answer
        ua = UserAgent(
            config, (host, port), transport=transport, offer_answer=offer_answer, rng=rng,
            trace_limit=trace_limit,
        )  # fmt: skip
        endpoint = cls(ua)
        endpoint.media = call_media
        if call_media is not None:
            endpoint.lifecycle.media = True
            call_media.listener = _MediaFacts(endpoint.lifecycle)
        opener = open_udp if transport.upper() == "UDP" else open_tcp
        endpoint._transport = await opener(ua, host, port, on_activity=endpoint._drain)
        ua.local_addr = endpoint._transport.local_address
        return endpoint

    @property
    def transport(self) -> UdpTransport | TcpTransport:
        assert self._transport is not None
        return self._transport

    def _now(self) -> float:
        return self._loop.time()

    def _drain(self) -> None:
        while (event := self.ua.next_event()) is not None:
            end = event if isinstance(event, (CallEnded, CallFailed, CallCancelled)) else None
            if end is None:  # the answer reaches the lifecycle before media starts
                self.lifecycle.on_event(event)
            if self.media is not None:
                self.media.on_event(event)
            if end is not None:
                self.lifecycle.on_event(end)  # after media stopped: it knows what arrived
                self._call_finished(end)
            elif isinstance(event, CallRinging):
                self._ringing_status.setdefault(event.call_id, event.status)
            self.events.append(event)
            self._pending.append(event)
            self._changed.set()

    def _call_finished(self, event: CallEnded | CallFailed | CallCancelled) -> None:
        call_id = event.call_id
        first_media_at = None if self.media is None else self.media.first_media_at.get(call_id)
        lifecycle = self.lifecycle
        if lifecycle.call_id == call_id and lifecycle.outcome is not None:
            outcome = lifecycle.outcome  # the followed call: a media or timeout fact may rule
        else:
            outcome = call_outcome(
                event, media_received=first_media_at is not None, media_expected=lifecycle.media
            )
        final_status = 200 if isinstance(event, CallEnded) else outcome.status
        row = call_timing_row(
            event.timing, first_media_at=first_media_at, final_status=final_status,
            result=outcome.outcome, ringing_status=self._ringing_status.pop(call_id, 180),
        )  # fmt: skip
        self.call_rows.append({"call_id": call_id, **row})

    def _command(self, action: Callable[[float], object]) -> object:
        result = action(self._now())
        self._drain()
        self.transport.flush()
        return result

    # -- commands ---------------------------------------------------------------------------
    def register(self, expires: int | None = None) -> None:
        self._command(lambda now: self.ua.register(now, expires))

    def unregister(self) -> None:
        self._command(self.ua.unregister)

    def call(self, target: str) -> str:
        call_id = self._command(lambda now: self._invite(target, now))
        assert isinstance(call_id, str)
        return call_id

    def _invite(self, target: str, now: float) -> str:
        call_id = self.ua.invite(target, now)
        self.lifecycle.invite_sent(now, call_id)
        return call_id

    def hangup(self, call_id: str) -> None:
        self._command(lambda now: self._hangup(call_id, now))

    def _hangup(self, call_id: str, now: float) -> None:
        if call_id == self.lifecycle.call_id and call_id in self.ua.calls:
            self.lifecycle.hangup(now)
        self.ua.hangup(call_id, now)

    # -- waiting ----------------------------------------------------------------------------
    async def wait_for(
        self, *kinds: type[Event], within_s: float = 10.0, call_id: str | None = None
    ) -> Event:
        """The first not-yet-consumed event of one of ``kinds`` (for ``call_id`` if given);
        events of other kinds stay pending. Raises :class:`EventTimeout` after ``within_s``."""
        deadline = self._now() + within_s
        while True:
            for index, event in enumerate(self._pending):
                if isinstance(event, kinds) and (
                    call_id is None or (isinstance(event, CallEvent) and event.call_id == call_id)
                ):
                    del self._pending[index]
                    return event
            remaining = deadline - self._now()
            if remaining <= 0:
                names = ", ".join(k.__name__ for k in kinds)
                seen = ", ".join(type(e).__name__ for e in self._pending) or "nothing"
                who = self.ua.config.username
                raise EventTimeout(f"{who}: no {names} within {within_s} s; saw {seen}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self.media is not None:
            self.media.close()
        if self._transport is not None:
            self._transport.close()
            await self._transport.wait_closed()
        self.lifecycle.closed(self._now())
