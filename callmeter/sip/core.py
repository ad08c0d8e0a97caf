"""The one interface between a sans-I/O SIP core and the asyncio shell that carries it.

Theory of operation (the aioquic contract)
------------------------------------------

Every core object that talks over a socket (a user agent, the built-in registrar, a
multiplexer of many user agents sharing one socket) is a :class:`SansIOCore`. It never
touches a socket or a clock: the shell (``callmeter.transport``) hands it bytes and the
current time, and collects the bytes it wants sent.

After **every** entry into the core, whether

* ``receive_datagram(data, addr, now)``: one whole SIP message arrived, or
* ``handle_timer(now)``: the deadline from ``get_timer()`` was reached, or
* a command the application issued (``ua.register(now)``, ``ua.invite(..., now)``...),

the shell does two things, in this order:

1. drains ``datagrams_to_send()`` and transmits each ``(bytes, addr)`` pair;
2. re-arms its single timer from ``get_timer()`` (``None`` = no timer).

So a core only has to queue what it wants to send and keep ``get_timer()`` truthful; it
never schedules anything. One timer per core is enough: the core keeps its own agenda
(retransmissions, Timer B/F, registration refresh...) and reports only the earliest entry.

``now`` is always the shell loop's ``loop.time()``: monotonic seconds, not wall-clock
time. ``handle_timer(now)`` is never called with ``now`` earlier than the deadline it was
armed for, but may be called late (an overloaded loop) or for a deadline that the core
has since moved: a core must act on whatever is due at ``now`` and ignore the rest.

``receive_datagram`` must not raise for bad input: a malformed message from the system
under test is counted, traced and answered (400) by the core itself (DESIGN.md). The shell
still guards the call and counts an escaping exception as a bug, so one bad packet never
kills a loop carrying thousands of calls.

A core may also offer ``connection_failed(addr, now)``: the stream shell calls it when a
connection to ``addr`` cannot be opened, so the transactions waiting on it fail at once (RFC
3261 section 8.1.3.1 treats that as a 503) instead of at Timer B/F.

Addresses are ``(host, port)`` with ``host`` an IP literal; name resolution (RFC 3263)
happens before a core sees a destination. Over a stream transport, ``addr`` is the peer
of the connection the message came on: a reply sent to that same ``addr`` goes back on
that connection (RFC 3261 section 18.2.2).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Address", "SansIOCore"]

Address = tuple[str, int]
"""``(host, port)``; ``host`` is an IPv4 or IPv6 literal."""


@runtime_checkable
class SansIOCore(Protocol):
    """A SIP protocol object fed bytes and time, drained of bytes to send."""

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Take one whole SIP message: a UDP datagram, or one framed stream message."""
        ...

    def handle_timer(self, now: float) -> None:
        """Act on everything due at ``now`` (the deadline from :meth:`get_timer` passed)."""
        ...

    def get_timer(self) -> float | None:
        """The absolute loop time of the next timer, or ``None`` when nothing is pending."""
        ...

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """Drain the outgoing queue: each item is sent once, in order."""
        ...
