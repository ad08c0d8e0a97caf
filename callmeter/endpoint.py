"""An endpoint: one simulated phone on its own socket, for scripts, demos and interop tests.

:class:`Endpoint` binds a :class:`~callmeter.sip.useragent.UserAgent` to a UDP or TCP
transport and gives it an async face: commands stamped with the loop's time and flushed at
once, and ``wait_for`` to await an event with a deadline. Load runs with thousands of
endpoints per loop drive the user agents through ``on_activity`` callbacks instead (no task
per endpoint); this wrapper is for the few-endpoints case.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from callmeter.callmedia import CallMedia, MediaOptions
from callmeter.sip.events import CallEvent, Event
from callmeter.sip.useragent import OfferAnswer, UserAgent, UserAgentConfig
from callmeter.transport import TcpTransport, UdpTransport, open_tcp, open_udp

__all__ = ["Endpoint", "EventTimeout"]


class EventTimeout(TimeoutError):
    """The awaited event did not come in time; the message lists what came instead."""


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
    ) -> Endpoint:
        """``media`` puts real RTP on the endpoint's calls (SDP offer/answer included);
        without it calls carry whatever ``offer_answer`` provides (signaling only)."""
        call_media = await CallMedia.open(media, host, rng) if media is not None else None
        if call_media is not None:
            offer_answer = call_media.offer_answer
        ua = UserAgent(
            config, (host, port), transport=transport, offer_answer=offer_answer, rng=rng
        )
        endpoint = cls(ua)
        endpoint.media = call_media
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
            if self.media is not None:
                self.media.on_event(event)
            self.events.append(event)
            self._pending.append(event)
            self._changed.set()

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
        call_id = self._command(lambda now: self.ua.invite(target, now))
        assert isinstance(call_id, str)
        return call_id

    def hangup(self, call_id: str) -> None:
        self._command(lambda now: self.ua.hangup(call_id, now))

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
