"""The shared media port: one UDP port for the RTP and RTCP of every call on an event loop.

Why. A socket per call costs a system call per datagram each way, and on this kind of machine
the kernel's per-call entry is as dear as the UDP stack (``callmeter.transport.batch``). With
one socket for all calls of a loop, what the :class:`~callmeter.transport.media.MediaTicker`
sends in one firing leaves in one ``sendmmsg`` (flushed once per loop iteration), and what has
arrived is read ``capacity`` datagrams per ``recvmmsg``. Every call advertises the same
address in its SDP; RTCP goes on the same port (rtcp-mux, RFC 5761) or, for a peer that
refuses mux, on port + 1, which this port also owns.

Telling calls apart (demultiplexing). A datagram belongs to the call whose peer sent it, known
by its source address and the sender SSRC it carries (RTP header bytes 8..12; RTCP 4..8, the
packet type read as RFC 5761 section 4 does). Each call's :class:`MediaChannel` is told what to
expect with :meth:`MediaChannel.expect`: the peer's RTP and RTCP addresses from its SDP and,
when the SDP declared it (``a=ssrc``, RFC 5576, as our own endpoints do), the peer's SSRC.

* ``(source, ssrc)`` known: that call (declared, or latched earlier).
* Unknown SSRC from a source that calls without a declared SSRC wait on: the first of them
  takes it (symmetric RTP: the peer sends from the address it advertised, RFC 4961). A
  source only one call expects gives that call a new SSRC too (the peer's stream restarted:
  the receive statistics count the switch), unless its peer declared its SSRC: then another
  SSRC from the same source is another call (our own endpoints share one port and start
  sending before the caller has read the answer), never this one.
* Anything else is counted (``unmatched``), never guessed: a peer that sends from another
  address than its SDP says and declares no SSRC needs a socket per call
  (:func:`callmeter.transport.media.open_media`).

Sending and receiving never raise; failures are counted in :class:`MediaPortStats` and in the
channel's :class:`~callmeter.transport.media.MediaSocketStats`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from callmeter.media.core import MediaCore
from callmeter.sip.core import Address
from callmeter.transport.batch import DEFAULT_CAPACITY, BatchSocket, available
from callmeter.transport.media import MediaSocketStats, MediaTicker, bind_pair, is_rtcp

__all__ = ["MediaChannel", "MediaPort", "MediaPortStats"]

logger = logging.getLogger(__name__)

_READS_PER_WAKEUP: Final = 8
"""``recvmmsg`` calls per readable event at most, so one busy port cannot starve the loop."""


@dataclass(slots=True)
class MediaPortStats:
    """What the port could not hand to a call."""

    unmatched: int = 0
    """Datagrams no call expects (unknown source and SSRC, or a call that has ended)."""
    malformed: int = 0
    """Datagrams too short to carry an SSRC."""
    handler_errors: int = 0
    """A call's ``receive`` raised (logged once per channel, the datagram dropped)."""


class MediaChannel:
    """One call's view of the shared port: what :class:`MediaTicker` and ``CallMedia`` use
    in place of a :class:`~callmeter.transport.media.MediaSocket`."""

    def __init__(self, port: MediaPort) -> None:
        self.port = port
        self.core: MediaCore | None = None
        self.ticker: MediaTicker | None = None
        self.stats = MediaSocketStats()
        self.rtcp: None = None  # RTCP without mux goes through the port's port + 1
        self.local_address = port.local_address
        self._rtcp_to: Address | None = None
        """The peer's RTCP address when it is not the RTP one (no rtcp-mux)."""
        self._keys: list[tuple[Address, int]] = []
        self._sources: list[Address] = []
        self._declared = False
        """The peer declared its SSRC: no other SSRC is ever taken for it."""
        self._errors = 0
        self._receive: Callable[[bytes, Address, float], None] | None = None

    # what the ticker uses

    def attach(self, core: MediaCore) -> None:
        self.core = core
        self._receive = core.receive  # bound once: it runs for every datagram

    def set_ticker(self, ticker: MediaTicker | None) -> None:
        self.ticker = ticker

    def send(self, data: bytes, addr: Address) -> None:
        """Queue one datagram; the port sends everything queued once per loop iteration."""
        stats = self.stats
        stats.packets_sent += 1
        stats.bytes_sent += len(data)
        if self._rtcp_to is not None and addr == self._rtcp_to and is_rtcp(data):
            self.port.queue_rtcp(data, addr)
        else:
            self.port.queue(data, addr)

    # the call's peer

    def expect(self, rtp: Address, rtcp: Address, ssrc: int | None) -> None:
        """Deliver what the peer sends from ``rtp`` / ``rtcp`` to this channel's core; with
        ``ssrc`` (declared in the peer's SDP) by its SSRC, else the first SSRC it sends."""
        self.release()
        self._rtcp_to = rtcp if rtcp != rtp else None
        self._sources = [rtp] if rtcp == rtp else [rtp, rtcp]
        self._declared = ssrc is not None
        self.port._expect(self, ssrc)

    def release(self) -> None:
        """Forget the peer (the call ended): later datagrams from it are ``unmatched``."""
        self.port._forget(self)
        self._keys = []
        self._sources = []
        self._rtcp_to = None

    def close(self) -> None:
        self.release()
        self.core = None
        self._receive = None

    def _deliver(self, data: bytes, addr: Address, now: float) -> None:
        stats = self.stats
        stats.packets_received += 1
        stats.bytes_received += len(data)
        core, receive = self.core, self._receive
        if core is None or receive is None:
            stats.unattached += 1
            return
        try:
            receive(data, addr, now)
        except Exception:
            stats.handler_errors += 1
            self.port.stats.handler_errors += 1
            self._errors += 1
            if self._errors == 1:
                logger.exception("receive raised in %r; datagram dropped", core)
        if self.ticker is not None:
            self.ticker.wake(core)


class MediaPort:
    """The loop's shared media port (see top). Create with :meth:`open`, one per loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, rtp: BatchSocket, rtcp: BatchSocket
    ) -> None:
        self.loop = loop
        self.rtp = rtp
        self.rtcp = rtcp
        self.local_address = rtp.local_address
        self.stats = MediaPortStats()
        self._routes: dict[Address, dict[int, MediaChannel]] = {}
        """source -> SSRC -> channel: declared or latched."""
        # Insertion-ordered dicts used as sets: a call's end removes it in O(1), though every
        # call between our own endpoints expects the same source (the peer shard's port).
        self._expecting: dict[Address, dict[MediaChannel, None]] = {}
        """source -> every channel whose peer sends from it."""
        self._waiting: dict[Address, dict[MediaChannel, None]] = {}
        """source -> channels with no SSRC from it yet, in the order their calls started."""
        self._ssrcs: set[int] = set()
        self._out: list[bytes] = []
        self._out_to: list[Address] = []
        self._out_rtcp: list[bytes] = []
        self._out_rtcp_to: list[Address] = []
        self._flush_scheduled = False
        self._closed = False
        for sock in (rtp, rtcp):
            loop.add_reader(sock.fileno(), self._readable, sock)

    @classmethod
    async def open(
        cls, host: str = "127.0.0.1", port: int = 0, *, capacity: int = DEFAULT_CAPACITY
    ) -> MediaPort:
        """Bind ``host:port`` and ``port + 1`` (an even free pair when ``port`` is 0)."""
        rtp_sock, rtcp_sock = bind_pair(host, port)
        for sock in (rtp_sock, rtcp_sock):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        loop = asyncio.get_running_loop()
        return cls(loop, BatchSocket(rtp_sock, capacity), BatchSocket(rtcp_sock, capacity))

    @staticmethod
    def supports(host: str) -> bool:
        """Whether a shared port can serve ``host``: an IPv4 address on a platform with
        ``sendmmsg``/``recvmmsg``. Elsewhere calls keep a socket each."""
        return available() and ":" not in host

    def channel(self) -> MediaChannel:
        return MediaChannel(self)

    @property
    def send_errors(self) -> int:
        """Datagrams the kernel refused on either socket."""
        return self.rtp.stats.send_errors + self.rtcp.stats.send_errors

    def new_ssrc(self, rng: random.Random) -> int:
        """An SSRC no live call on this port sends with (RFC 3550 8.1 asks for uniqueness)."""
        while True:
            ssrc = rng.getrandbits(32)
            if ssrc not in self._ssrcs:
                self._ssrcs.add(ssrc)
                return ssrc

    def free_ssrc(self, ssrc: int) -> None:
        self._ssrcs.discard(ssrc)

    def close(self) -> None:
        if self._closed:
            return
        self._flush()
        self._closed = True
        for sock in (self.rtp, self.rtcp):
            self.loop.remove_reader(sock.fileno())
            sock.close()
        self._routes.clear()
        self._expecting.clear()
        self._waiting.clear()

    # sending

    def queue(self, data: bytes, addr: Address) -> None:
        """Send ``data`` from the RTP port with the next flush (once per loop iteration)."""
        self._out.append(data)
        self._out_to.append(addr)
        if not self._flush_scheduled:
            self._schedule_flush()

    def queue_rtcp(self, data: bytes, addr: Address) -> None:
        """The same from port + 1: RTCP to a peer that does not multiplex."""
        self._out_rtcp.append(data)
        self._out_rtcp_to.append(addr)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, to, self._out, self._out_to = self._out, self._out_to, [], []
        rtcp, rtcp_to, self._out_rtcp, self._out_rtcp_to = (
            self._out_rtcp, self._out_rtcp_to, [], []
        )  # fmt: skip
        if self._closed:
            return
        if out:
            self.rtp.send(out, to)
        if rtcp:
            self.rtcp.send(rtcp, rtcp_to)

    # receiving

    def _readable(self, sock: BatchSocket) -> None:
        now = self.loop.time()
        for _ in range(_READS_PER_WAKEUP):
            datagrams: list[bytes] = []
            sources: list[Address] = []
            read = sock.receive_into(datagrams, sources)
            for data, addr in zip(datagrams, sources, strict=True):
                channel = self._route(data, addr)
                if channel is not None:
                    channel._deliver(data, addr, now)
            if read < sock.capacity:
                return

    def _route(self, data: bytes, addr: Address) -> MediaChannel | None:
        if len(data) < 8:
            self.stats.malformed += 1
            return None
        if is_rtcp(data):  # the sender's SSRC follows the header word
            ssrc = int.from_bytes(data[4:8], "big")
        elif len(data) >= 12:
            ssrc = int.from_bytes(data[8:12], "big")
        else:
            self.stats.malformed += 1
            return None
        routes = self._routes.get(addr)
        if routes is not None:
            channel = routes.get(ssrc)
            if channel is not None:
                return channel
        return self._latch(addr, ssrc)

    def _latch(self, addr: Address, ssrc: int) -> MediaChannel | None:
        """A source and SSRC seen for the first time: the call that waits for it, if any."""
        waiting = self._waiting.get(addr)
        if waiting:
            channel = next(iter(waiting))
            for source in channel._sources:
                _discard(self._waiting, source, channel)
        else:
            expecting = self._expecting.get(addr)
            if expecting is None or len(expecting) != 1:
                self.stats.unmatched += 1
                return None
            channel = next(iter(expecting))  # the one call this peer talks to changed SSRC
            if channel._declared:
                self.stats.unmatched += 1
                return None
        for source in channel._sources:
            self._add_route(channel, source, ssrc)
        return channel

    def _expect(self, channel: MediaChannel, ssrc: int | None) -> None:
        for source in channel._sources:
            self._expecting.setdefault(source, {})[channel] = None
            if ssrc is None:
                self._waiting.setdefault(source, {})[channel] = None
            else:
                self._add_route(channel, source, ssrc)

    def _add_route(self, channel: MediaChannel, source: Address, ssrc: int) -> None:
        self._routes.setdefault(source, {})[ssrc] = channel
        channel._keys.append((source, ssrc))

    def _forget(self, channel: MediaChannel) -> None:
        for source, ssrc in channel._keys:
            routes = self._routes.get(source)
            if routes is not None and routes.get(ssrc) is channel:
                del routes[ssrc]
                if not routes:
                    del self._routes[source]
        for source in channel._sources:
            _discard(self._waiting, source, channel)
            _discard(self._expecting, source, channel)


def _discard(
    table: dict[Address, dict[MediaChannel, None]], source: Address, channel: MediaChannel
) -> None:
    """Take ``channel`` out of ``table[source]``, and the source out when none is left."""
    channels = table.get(source)
    if channels is not None:
        channels.pop(channel, None)
        if not channels:
            del table[source]
