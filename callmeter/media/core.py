"""The one interface between a sans-I/O media session and the asyncio shell that carries it.

A :class:`MediaCore` is one call's media (RTP and RTCP, both directions). The shell
(``callmeter.transport.media``) owns its socket(s) and one shared ticker per event loop:

* ``next_due()`` tells when the session next has something to send (the next 20 ms packet,
  an RTCP report, a delayed packet leaving the impairment delay line), or None;
* at or after that time the ticker calls ``packets_due(now)`` and sends every
  ``(bytes, addr)`` it returns; ``late_s = now - due`` is the ticker's own send lateness,
  recorded by the shell (the generator's health, never blamed on the network);
* every datagram received on the session's socket goes to ``receive(data, addr, now)``;
* once a second the application calls ``snapshot(now)`` for the per-second metric rows;
* ``stop(now)`` returns the last packets (RTCP BYE) and ends the session.

``now`` is the loop's monotonic time in seconds, as for ``callmeter.sip.core``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from callmeter.sip.core import Address

__all__ = ["MediaCore"]


@runtime_checkable
class MediaCore(Protocol):
    """One call's media, fed datagrams and time, asked for packets when due."""

    def next_due(self) -> float | None: ...

    def packets_due(self, now: float) -> list[tuple[bytes, Address]]: ...

    def receive(self, data: bytes, addr: Address, now: float) -> None: ...

    def stop(self, now: float) -> list[tuple[bytes, Address]]: ...
