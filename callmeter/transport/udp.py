"""SIP over UDP: one datagram socket driving one sans-I/O core (RFC 3261 section 18).

Each datagram is one message, handed to the core whole. Send failures are counted on
``stats`` and never raised: a load generator keeps running when a peer is down. Note that
Linux reports ICMP port unreachable only on connected UDP sockets, so a datagram to a closed
port on this (unconnected) socket is usually lost silently; the core's transaction timers
(Timer B/F, RFC 3261 section 17.1) are what notice a dead peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any, cast

from callmeter.sip.core import Address, SansIOCore
from callmeter.transport.loop import CoreDriver, TransportStats

__all__ = ["SOCKET_BUFFER_BYTES", "UdpTransport", "open_udp"]

SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
"""SO_RCVBUF / SO_SNDBUF asked for: load tests send in bursts. The OS may cap it
(Linux: net.core.rmem_max / wmem_max); ``UdpTransport.socket_buffers`` says what we got."""


def _address(raw: Any) -> Address:
    """``(host, port)`` from a sockaddr (IPv6 ones carry flowinfo and scope id too)."""
    return (str(raw[0]), int(raw[1]))


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):  # best effort: a smaller buffer still works
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class UdpTransport(asyncio.DatagramProtocol):
    """The asyncio protocol of one UDP socket; see :class:`~.loop.CoreDriver` for the loop."""

    def __init__(
        self,
        core: SansIOCore,
        loop: asyncio.AbstractEventLoop,
        *,
        on_activity: Callable[[], None] | None = None,
    ) -> None:
        self.core = core
        self.stats = TransportStats()
        self.local_address: Address = ("", 0)
        self.socket_buffers = (0, 0)
        """(SO_RCVBUF, SO_SNDBUF) as granted by the OS (Linux reports twice the request)."""
        self._driver = CoreDriver(core, loop, self._send, on_activity, self.stats)
        self._transport: asyncio.DatagramTransport | None = None
        self._lost: asyncio.Future[None] = loop.create_future()

    @property
    def timer_deadline(self) -> float | None:
        """The loop time of the one armed timer, or ``None``."""
        return self._driver.timer_deadline

    def flush(self) -> None:
        """Send what the core queued and re-arm its timer; call after every command."""
        self._driver.flush()

    def close(self) -> None:
        """Stop the timer and close the socket; later sends are dropped and counted."""
        self._driver.close()
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        """Wait until the socket is closed (after :meth:`close`)."""
        await asyncio.shield(self._lost)

    # asyncio.DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        self.local_address = _address(sock.getsockname())
        self.socket_buffers = (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        )

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._driver.deliver((data,), _address(addr))

    def error_received(self, exc: Exception) -> None:
        # asyncio and uvloop route sendto() failures (and OS-reported ICMP errors) here.
        self.stats.send_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._driver.close()
        if not self._lost.done():
            self._lost.set_result(None)

    def _send(self, data: bytes, addr: Address) -> None:
        if self._transport is None or self._transport.is_closing():
            self.stats.send_errors += 1
            return
        try:
            self._transport.sendto(data, addr)
        except (OSError, ValueError, TypeError):  # e.g. a malformed address from the core
            self.stats.send_errors += 1


async def open_udp(
    core: SansIOCore,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    on_activity: Callable[[], None] | None = None,
) -> UdpTransport:
    """Bind ``(host, port)`` (port 0: ephemeral) and drive ``core`` from it.

    ``on_activity`` runs after every receive and timer, before the flush, so the application
    drains the core's events there and any command it issues goes out in the same flush.
    Anything the core queued before opening is sent now and its timer armed.
    """
    loop = asyncio.get_running_loop()
    protocol = UdpTransport(core, loop, on_activity=on_activity)
    await loop.create_datagram_endpoint(lambda: protocol, sock=_bound_socket(host, port))
    protocol.flush()
    return protocol
