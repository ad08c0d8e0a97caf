"""SIP over TCP: one listening socket plus on-demand connections, one core (RFC 3261 18).

Connections are keyed by the peer address the core sees: an accepted connection by its
remote ``(host, port)``, an outgoing one by the address the core sent to. The core never
names a connection: a message received from ``addr`` and answered to that same ``addr``
goes back on the connection it came on (section 18.2.2); a send to an address with no
connection opens one (the bytes wait while it connects; if it fails they are dropped and
counted, and the core's transaction timers notice).

Each connection frames its bytes with a :class:`~callmeter.sip.framing.StreamFramer` and
answers RFC 5626 CRLFCRLF pings with a CRLF pong. A stream that loses its framing is handed
to the core as one raw message (so the core counts, traces and may answer it with a 400,
which is still written) and then that connection alone is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from callmeter.sip.core import Address, SansIOCore
from callmeter.sip.framing import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    FramingError,
    StreamFramer,
)
from callmeter.transport.loop import CoreDriver, TransportStats

__all__ = ["DEFAULT_CONNECT_TIMEOUT_S", "TcpTransport", "open_tcp"]

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 10.0
_LISTEN_BACKLOG = 1024  # load tests open many connections at once


def _address(raw: Any) -> Address:
    return (str(raw[0]), int(raw[1]))


class _Connection(asyncio.Protocol):
    """One TCP connection: its framer, and the bytes queued while it connects."""

    def __init__(self, owner: TcpTransport, peer: Address | None) -> None:
        self.owner = owner
        self.outgoing = peer is not None
        self.peer: Address = peer or ("", 0)  # accepted: known once connected
        self.framer = owner._new_framer()
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.lost: asyncio.Future[None] = owner.loop.create_future()

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        elif self.transport.is_closing():
            self.owner.stats.send_errors += 1
        else:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # writes what is buffered (e.g. a 400) first

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if not self.outgoing:
            self.peer = _address(transport.get_extra_info("peername"))
            self.owner._accepted(self)
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.owner._received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pending.clear()
        self.owner._forget(self)
        if not self.lost.done():
            self.lost.set_result(None)


class TcpTransport:
    """A SIP TCP endpoint driving one core; built by :func:`open_tcp`."""

    def __init__(
        self,
        core: SansIOCore,
        loop: asyncio.AbstractEventLoop,
        *,
        on_activity: Callable[[], None] | None = None,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.core = core
        self.loop = loop
        self.stats = TransportStats()
        self.local_address: Address = ("", 0)
        self._driver = CoreDriver(core, loop, self._send, on_activity, self.stats)
        self._limits = (max_header_bytes, max_body_bytes)
        self._connect_timeout_s = connect_timeout_s
        self._server: asyncio.Server | None = None
        self._connections: dict[Address, _Connection] = {}  # by the address the core uses
        self._live: set[_Connection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def timer_deadline(self) -> float | None:
        """The loop time of the one armed timer, or ``None``."""
        return self._driver.timer_deadline

    @property
    def connection_addresses(self) -> list[Address]:
        """Peers with an open (or opening) connection that replies to them would use."""
        return list(self._connections)

    async def listen(self, host: str, port: int) -> None:
        self._server = await self.loop.create_server(
            lambda: _Connection(self, None), host, port, backlog=_LISTEN_BACKLOG
        )
        self.local_address = _address(self._server.sockets[0].getsockname())

    def flush(self) -> None:
        """Send what the core queued and re-arm its timer; call after every command."""
        self._driver.flush()

    def close(self) -> None:
        """Stop listening, cancel pending connects, close every connection."""
        self._closed = True
        self._driver.close()
        if self._server is not None:
            self._server.close()
        for task in self._connecting:
            task.cancel()
        for connection in list(self._live):
            connection.close()

    async def wait_closed(self) -> None:
        """Wait until every connection is closed (after :meth:`close`)."""
        while self._connecting or self._live:
            pending = [*self._connecting, *(c.lost for c in self._live)]
            await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()

    def _new_framer(self) -> StreamFramer:
        header, body = self._limits
        return StreamFramer(max_header_bytes=header, max_body_bytes=body)

    def _accepted(self, connection: _Connection) -> None:
        self.stats.connections_accepted += 1
        self._live.add(connection)
        if self._closed:  # accepted while closing: refuse it
            connection.close()
        else:
            self._connections[connection.peer] = connection

    def _forget(self, connection: _Connection) -> None:
        self._live.discard(connection)
        self._unroute(connection)

    def _unroute(self, connection: _Connection) -> None:
        if self._connections.get(connection.peer) is connection:
            del self._connections[connection.peer]

    def _received(self, connection: _Connection, data: bytes) -> None:
        try:
            messages = connection.framer.feed(data)
        except FramingError as exc:
            self.stats.framing_errors += 1
            logger.debug("closing connection from %s: %s", connection.peer, exc)
            self._driver.deliver([*exc.messages, exc.offending], connection.peer)
            self._driver.react_now()  # the answer (a 400) goes out before the close
            self._unroute(connection)  # later sends to this peer must not use it
            connection.close()
            return
        pongs = connection.framer.take_pongs()
        if pongs:
            self.stats.pings_answered += len(pongs) // 2
            connection.write(pongs)
        if messages:
            self._driver.deliver(messages, connection.peer)

    def _send(self, data: bytes, addr: Address) -> None:
        connection = self._connections.get(addr)
        if connection is None:
            connection = self._connect(addr)
        connection.write(data)

    def _connect(self, addr: Address) -> _Connection:
        connection = _Connection(self, addr)
        self._connections[addr] = connection
        self._live.add(connection)
        task = self.loop.create_task(self._open(connection))
        self._connecting.add(task)
        task.add_done_callback(lambda done: self._opened(connection, done))
        return connection

    async def _open(self, connection: _Connection) -> None:
        host, port = connection.peer
        async with asyncio.timeout(self._connect_timeout_s):
            await self.loop.create_connection(lambda: connection, host, port)

    def _opened(self, connection: _Connection, task: asyncio.Task[None]) -> None:
        """Count the outcome; a failed or cancelled connect drops the queued bytes."""
        self._connecting.discard(task)
        error = None if task.cancelled() else task.exception()
        if not task.cancelled() and error is None:
            self.stats.connections_opened += 1
            return
        self.stats.send_errors += len(connection.pending)  # dropped, never sent
        if error is not None:  # refused, unreachable, TimeoutError (all OSError), or a bug
            self.stats.connect_errors += 1
            logger.debug("cannot connect to %s: %r", connection.peer, error)
        connection.connection_lost(error if isinstance(error, Exception) else None)
        if error is not None:
            self._driver.connection_failed(connection.peer)


async def open_tcp(
    core: SansIOCore,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    on_activity: Callable[[], None] | None = None,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> TcpTransport:
    """Listen on ``(host, port)`` (port 0: ephemeral) and drive ``core``; see ``open_udp``."""
    transport = TcpTransport(
        core,
        asyncio.get_running_loop(),
        on_activity=on_activity,
        max_header_bytes=max_header_bytes,
        max_body_bytes=max_body_bytes,
        connect_timeout_s=connect_timeout_s,
    )
    await transport.listen(host, port)
    transport.flush()
    return transport
