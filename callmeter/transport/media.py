"""RTP/RTCP over UDP: one socket per call's media, one shared ticker per event loop.

Theory of operation. A :class:`~callmeter.media.core.MediaCore` is one call's media, sans-I/O.
This shell gives it

* a :class:`MediaSocket`: one UDP socket carrying RTP and RTCP together (rtcp-mux, RFC 5761),
  or, for peers that do not multiplex, a companion socket on port + 1 (RFC 3550 section 11)
  that outgoing RTCP is routed to. Every datagram received goes to
  ``core.receive(data, addr, loop.time())``; send failures are counted, never raised;
* a slot in the loop's one :class:`MediaTicker`, which paces every session on the loop.

The ticker keeps a heap of ``(due, seq, session)`` built from ``core.next_due()`` and exactly
one ``loop.call_at`` timer, armed for the earliest due time and replaced only when that time
moves earlier (a timer left early just wakes once and re-arms). When it fires, every session
due by now is popped as one batch, asked for ``packets_due(now)``, its packets sent on its
own socket, and pushed back at its new ``next_due()``. No task per stream, no timer per
stream: the work per 20 ms is one heap pop and push per stream, and the loop's own timer
granularity (1 ms) batches streams whose phases are close.

The ticker also measures the generator's own health, so a load test never blames the system
under test for its overload (DESIGN.md): send lateness (``now - due`` per session served),
event-loop lag (how late the loop ran the ticker's timer), sessions served per firing,
packets per second and the share of time spent inside the ticker, over a window that
:meth:`MediaTicker.snapshot` reports and resets (call it once a second).

Times are the loop's monotonic seconds. uvloop's clock has a resolution of 1 ms, so lateness
figures on uvloop are whole milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from callmeter.media.core import MediaCore
from callmeter.sip.core import Address

__all__ = [
    "ERROR_BACKOFF_S",
    "LatenessHistogram",
    "MediaPath",
    "MediaSocket",
    "MediaSocketStats",
    "MediaTicker",
    "TickerHealth",
    "TickerStats",
    "bind_pair",
    "is_rtcp",
    "open_media",
    "open_media_socket",
]

logger = logging.getLogger(__name__)

ERROR_BACKOFF_S = 0.02
"""After a core raised, it is asked again no sooner than this (one G.711 packet time): a
broken session must not spin the loop, and its error is logged once, counted always."""

_PORT_PAIR_ATTEMPTS = 64


def is_rtcp(data: bytes) -> bool:
    """True for an RTCP packet: packet type 192..223 in the second byte (RFC 5761 section 4)."""
    return len(data) > 1 and 192 <= data[1] <= 223


# Sockets


@dataclass(slots=True)
class MediaSocketStats:
    """Counters of one call's media socket(s); never raise, a load generator reports them."""

    packets_received: int = 0
    bytes_received: int = 0
    packets_sent: int = 0
    """Packets handed to the OS (asyncio may still report a failure of one as a send error)."""
    bytes_sent: int = 0
    send_errors: int = 0
    """Sends refused by the OS or attempted on a closed socket (counted, dropped)."""
    handler_errors: int = 0
    """Exceptions escaping ``core.receive``: bugs, logged with a traceback."""
    unattached: int = 0
    """Datagrams that arrived before a core was attached (dropped)."""


class MediaPath(Protocol):
    """Where the ticker sends a core's packets and how it hears of receives: a
    :class:`MediaSocket` of the call's own, or a channel of the loop's shared
    ``callmeter.transport.mediaport.MediaPort``."""

    ticker: MediaTicker | None

    def attach(self, core: MediaCore) -> None: ...
    def set_ticker(self, ticker: MediaTicker | None) -> None: ...
    def send(self, data: bytes, addr: Address) -> None: ...


def _bind(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``(host, port)``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """RTP on an even port and RTCP on port + 1 (RFC 3550 section 11); ``port`` 0: pick one."""
    if port:
        rtp = _bind(host, port)
        try:
            return rtp, _bind(host, port + 1)
        except BaseException:
            rtp.close()
            raise
    for _ in range(_PORT_PAIR_ATTEMPTS):
        rtp = _bind(host, 0)
        chosen = int(rtp.getsockname()[1])
        if chosen % 2 == 0:
            try:
                return rtp, _bind(host, chosen + 1)
            except OSError:
                pass  # port + 1 taken: try another ephemeral port
        rtp.close()
    raise OSError(f"no free even/odd UDP port pair on {host} after {_PORT_PAIR_ATTEMPTS} tries")


class MediaSocket(asyncio.DatagramProtocol):
    """The asyncio protocol of one media socket: receive into the core, send for the ticker.

    ``rtcp`` is the companion socket on port + 1 for peers without rtcp-mux; when present,
    :meth:`send` routes RTCP packets through it and both sockets deliver to the same core.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, stats: MediaSocketStats | None = None
    ) -> None:
        self.core: MediaCore | None = None
        self.stats = stats if stats is not None else MediaSocketStats()
        self.local_address: Address = ("", 0)
        self.rtcp: MediaSocket | None = None
        self.ticker: MediaTicker | None = None
        """Set by :meth:`MediaTicker.add`: told after each receive, in case ``next_due`` moved."""
        self._loop = loop
        self._transport: asyncio.DatagramTransport | None = None
        self._sendto: Callable[[bytes, Address], None] | None = None
        """The transport's bound ``sendto`` while open (saves lookups on the hot path)."""
        self._lost: asyncio.Future[None] = loop.create_future()

    def attach(self, core: MediaCore) -> None:
        """Deliver every datagram received from now on (on both sockets) to ``core``."""
        self.core = core
        if self.rtcp is not None:
            self.rtcp.attach(core)

    def set_ticker(self, ticker: MediaTicker | None) -> None:
        self.ticker = ticker
        if self.rtcp is not None:
            self.rtcp.ticker = ticker

    def send(self, data: bytes, addr: Address) -> None:
        """Send one packet; RTCP through the port + 1 socket when there is one. Never raises."""
        if self.rtcp is not None and is_rtcp(data):
            self.rtcp.send(data, addr)
            return
        sendto = self._sendto
        if sendto is None:
            self.stats.send_errors += 1
            return
        try:
            sendto(data, addr)
        except (OSError, ValueError, TypeError):  # e.g. a malformed address from the core
            self.stats.send_errors += 1
            return
        self.stats.packets_sent += 1
        self.stats.bytes_sent += len(data)

    def close(self) -> None:
        """Close the socket(s); later sends are dropped and counted as send errors."""
        self._sendto = None
        if self._transport is not None:
            self._transport.close()
        if self.rtcp is not None:
            self.rtcp.close()

    async def wait_closed(self) -> None:
        """Wait until the socket(s) are closed (after :meth:`close`)."""
        await asyncio.shield(self._lost)
        if self.rtcp is not None:
            await self.rtcp.wait_closed()

    # asyncio.DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._sendto = self._transport.sendto
        name = transport.get_extra_info("sockname")
        self.local_address = (str(name[0]), int(name[1]))

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        stats = self.stats
        stats.packets_received += 1
        stats.bytes_received += len(data)
        core = self.core
        if core is None:
            stats.unattached += 1
            return
        try:
            # IPv4 addresses arrive as (host, port) already; IPv6 ones carry two more fields.
            peer = cast(Address, addr) if len(addr) == 2 else (str(addr[0]), int(addr[1]))
            core.receive(data, peer, self._loop.time())
        except Exception:
            stats.handler_errors += 1
            logger.exception("receive raised in %r; datagram dropped", core)
        if self.ticker is not None:
            self.ticker.wake(core)

    def error_received(self, exc: Exception) -> None:
        # asyncio and uvloop route sendto() failures (and OS-reported ICMP errors) here.
        self.stats.send_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._sendto = None
        if not self._lost.done():
            self._lost.set_result(None)


async def _wrap(
    sock: socket.socket, stats: MediaSocketStats | None, core: MediaCore | None
) -> MediaSocket:
    loop = asyncio.get_running_loop()
    protocol = MediaSocket(loop, stats)
    try:
        await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    except BaseException:
        sock.close()
        raise
    if core is not None:
        protocol.attach(core)
    return protocol


async def open_media_socket(
    host: str = "127.0.0.1", port: int = 0, *, core: MediaCore | None = None
) -> MediaSocket:
    """One media socket (RTP and RTCP multiplexed) bound to ``(host, port)``; 0: ephemeral."""
    return await _wrap(_bind(host, port), None, core)


async def open_media(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    rtcp_port: bool = False,
    core: MediaCore | None = None,
) -> MediaSocket:
    """A call's media socket; with ``rtcp_port`` also one on port + 1 (``.rtcp``) for RTCP.

    With ``rtcp_port`` and ``port`` 0 an even port whose successor is free is picked (RFC 3550
    section 11). Both sockets share one :class:`MediaSocketStats` and deliver to one core.
    """
    if not rtcp_port:
        return await open_media_socket(host, port, core=core)
    rtp_sock, rtcp_sock = bind_pair(host, port)
    try:
        rtp = await _wrap(rtp_sock, None, None)
    except BaseException:
        rtcp_sock.close()
        raise
    try:
        rtp.rtcp = await _wrap(rtcp_sock, rtp.stats, None)
    except BaseException:
        rtp.close()
        raise
    if core is not None:
        rtp.attach(core)
    return rtp


# The ticker's health figures


class LatenessHistogram:
    """Delays in 0.1 ms buckets up to ``limit_ms``, plus the exact maximum; O(1) per sample."""

    __slots__ = ("_buckets", "_per_ms", "count", "max_s")

    def __init__(self, limit_ms: float = 500.0, per_ms: int = 10) -> None:
        self._per_ms = per_ms
        self._buckets = [0] * (int(limit_ms * per_ms) + 1)
        self.count = 0
        self.max_s = 0.0

    def add(self, delay_s: float) -> None:
        """Record one delay in seconds; negative (early) counts as 0, beyond the limit as it."""
        self.count += 1
        if delay_s > self.max_s:
            self.max_s = delay_s
        index = int(delay_s * 1000.0 * self._per_ms)
        top = len(self._buckets) - 1
        self._buckets[index if 0 <= index < top else (0 if index < 0 else top)] += 1

    def percentile_ms(self, q: float) -> float:
        """The ``q`` quantile (0..1) in ms (bucket upper edge, capped at the max); 0 if empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, int(q * self.count + 0.999999))
        seen = 0
        top = len(self._buckets) - 1
        for index, n in enumerate(self._buckets):
            seen += n
            if seen >= rank:
                return self.max_ms if index == top else min((index + 1) / self._per_ms, self.max_ms)
        return self.max_ms

    @property
    def max_ms(self) -> float:
        return self.max_s * 1000.0

    def reset(self) -> None:
        self._buckets = [0] * len(self._buckets)
        self.count = 0
        self.max_s = 0.0


@dataclass(slots=True)
class TickerStats:
    """Cumulative counters of one ticker (never reset)."""

    timers_armed: int = 0
    """``loop.call_at`` calls: one per firing in steady state, never one per stream."""
    timers_fired: int = 0
    sessions_served: int = 0
    packets_sent: int = 0
    handler_errors: int = 0
    """Exceptions escaping a core's ``next_due``, ``packets_due`` or ``stop``."""


@dataclass(frozen=True, slots=True)
class TickerHealth:
    """The generator's health over one window (normally one second); 0.0 where no sample."""

    interval_s: float
    sessions: int
    ticks: int
    sessions_per_tick_mean: float
    sessions_per_tick_max: int
    packets_sent: int
    packets_per_s: float
    send_late_p50_ms: float
    send_late_p99_ms: float
    send_late_max_ms: float
    loop_lag_p50_ms: float
    loop_lag_p99_ms: float
    loop_lag_max_ms: float
    busy_fraction: float
    """Share of the interval spent inside the ticker's firings (its own CPU, roughly)."""
    handler_errors: int


# The ticker


class _Session:
    __slots__ = ("active", "core", "due", "errors", "next_due", "packets_due", "seq", "socket")

    def __init__(self, core: MediaCore, sock: MediaPath) -> None:
        self.core = core
        # Bound once: a call through the MediaCore protocol looks the method up by name each
        # time, and these run for every packet.
        self.next_due = core.next_due
        self.packets_due = core.packets_due
        self.socket = sock
        self.due: float | None = None
        self.seq = -1
        """The seq of this session's one valid heap item; older items are stale, skipped."""
        self.errors = 0
        self.active = True
        """False once removed: a session removed while its batch is served is not pushed back."""


class _Window:
    """What :meth:`MediaTicker.snapshot` reports and resets."""

    __slots__ = ("busy_s", "errors", "lag", "late", "packets", "served", "served_max", "since")

    def __init__(self, since: float) -> None:
        self.late = LatenessHistogram()
        self.lag = LatenessHistogram()
        self.reset(since)

    def reset(self, since: float) -> None:
        self.since = since
        self.late.reset()
        self.lag.reset()
        self.busy_s = 0.0
        self.packets = 0
        self.served = 0
        self.served_max = 0
        self.errors = 0


class MediaTicker:
    """Paces every media session of one event loop with one heap and one timer (see top).

    Create one per loop. ``batch_window_s`` > 0 also serves sessions due that much after now
    in the same firing (sent early by at most that much); the default serves only those due.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None = None, *, batch_window_s: float = 0.0
    ) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self.batch_window_s = batch_window_s
        self.stats = TickerStats()
        self._sessions: dict[int, _Session] = {}
        self._heap: list[tuple[float, int, _Session]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self._window = _Window(self._loop.time())

    @property
    def pending_timers(self) -> int:
        """Timer handles this ticker has armed and not yet fired: 0 or 1, whatever the load."""
        return 0 if self._timer is None else 1

    @property
    def timer_deadline(self) -> float | None:
        """The loop time the one timer fires at, or ``None``."""
        return self._timer_at

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, core: MediaCore, sock: MediaPath) -> None:
        """Pace ``core``, sending on ``sock`` (which then delivers what it receives to it)."""
        if self._closed:
            raise RuntimeError("MediaTicker is closed")
        if id(core) in self._sessions:
            raise ValueError(f"{core!r} is already on this ticker")
        session = _Session(core, sock)
        self._sessions[id(core)] = session
        sock.attach(core)
        sock.set_ticker(self)
        self._schedule(session, self._loop.time())
        self._arm()

    def remove(self, core: MediaCore) -> None:
        """Stop pacing ``core``: send what ``core.stop(now)`` returns (RTCP BYE) and forget it."""
        session = self._sessions.pop(id(core), None)
        if session is None:
            return
        session.active = False
        session.seq = -1  # its heap item is stale now; the timer may wake once for nothing
        if session.socket.ticker is self:
            session.socket.set_ticker(None)
        try:
            packets = core.stop(self._loop.time())
        except Exception:
            self._bug(session, "stop")
            return
        for data, addr in packets:
            session.socket.send(data, addr)
        self.stats.packets_sent += len(packets)
        self._window.packets += len(packets)

    def wake(self, core: MediaCore) -> None:
        """Re-read ``core.next_due()`` after a command or a receive, in case it moved earlier."""
        session = self._sessions.get(id(core))
        if session is None:
            return
        try:
            due = session.next_due()
        except Exception:
            self._bug(session, "next_due")
            return
        if due is not None and (session.due is None or due < session.due):
            self._push(session, due)
            self._arm()

    def snapshot(self, now: float, *, reset: bool = True) -> TickerHealth:
        """Health since the last reset (or creation); ``reset`` starts a new window at ``now``."""
        w = self._window
        interval = max(now - w.since, 1e-9)
        ticks = w.lag.count
        health = TickerHealth(
            interval_s=interval,
            sessions=len(self._sessions),
            ticks=ticks,
            sessions_per_tick_mean=w.served / ticks if ticks else 0.0,
            sessions_per_tick_max=w.served_max,
            packets_sent=w.packets,
            packets_per_s=w.packets / interval,
            send_late_p50_ms=w.late.percentile_ms(0.5),
            send_late_p99_ms=w.late.percentile_ms(0.99),
            send_late_max_ms=w.late.max_ms,
            loop_lag_p50_ms=w.lag.percentile_ms(0.5),
            loop_lag_p99_ms=w.lag.percentile_ms(0.99),
            loop_lag_max_ms=w.lag.max_ms,
            busy_fraction=min(1.0, w.busy_s / interval),
            handler_errors=w.errors,
        )
        if reset:
            w.reset(now)
        return health

    def close(self) -> None:
        """Cancel the timer and forget every session (without ``stop``: use :meth:`remove`)."""
        self._closed = True
        self._cancel_timer()
        for session in self._sessions.values():
            session.active = False
            session.seq = -1
            if session.socket.ticker is self:
                session.socket.set_ticker(None)
        self._sessions.clear()
        self._heap.clear()

    # internals

    def _push(self, session: _Session, due: float) -> None:
        if not session.active:
            session.seq = -1
            return
        session.due = due
        session.seq = next(self._seq)
        heapq.heappush(self._heap, (due, session.seq, session))

    def _schedule(self, session: _Session, now: float, not_before: float | None = None) -> None:
        """Push ``session`` at its ``next_due()`` (no sooner than ``not_before`` if given)."""
        try:
            due = session.next_due()
        except Exception:
            self._bug(session, "next_due")
            due = now + ERROR_BACKOFF_S
        if due is None:
            session.due = None
            session.seq = -1
            return
        if not_before is not None and due < not_before:
            due = not_before
        self._push(session, due)

    def _arm(self) -> None:
        """Keep one timer at the earliest due time; replace it only if that moved earlier."""
        heap = self._heap
        while heap and heap[0][2].seq != heap[0][1]:
            heapq.heappop(heap)  # stale: removed or rescheduled
        if self._closed or not heap:
            return
        earliest = heap[0][0]
        if self._timer_at is not None and self._timer_at <= earliest:
            return  # at worst it wakes early once and re-arms
        self._cancel_timer()
        self._timer = self._loop.call_at(earliest, self._fire)
        self._timer_at = earliest
        self.stats.timers_armed += 1

    def _fire(self) -> None:
        started = time.perf_counter()
        armed_at = self._timer_at if self._timer_at is not None else self._loop.time()
        self._timer = None
        self._timer_at = None
        self.stats.timers_fired += 1
        clock = self._loop.time()
        window = self._window
        window.lag.add(clock - armed_at)
        # asyncio may run a timer a clock tick early (uvloop's clock is in whole ms): a
        # session due at the armed time must see itself as due.
        now = max(clock, armed_at)
        batch = self._pop_due(now + self.batch_window_s)
        for session, due in batch:
            window.late.add(now - due)
            self._serve(session, now)
        window.served += len(batch)
        window.served_max = max(window.served_max, len(batch))
        self.stats.sessions_served += len(batch)
        self._arm()
        window.busy_s += time.perf_counter() - started

    def _pop_due(self, limit: float) -> list[tuple[_Session, float]]:
        """Every live session due by ``limit``, each once (a core whose due does not advance
        is served again at the next firing, never in a loop within this one)."""
        heap = self._heap
        batch: list[tuple[_Session, float]] = []
        while heap and heap[0][0] <= limit:
            due, seq, session = heapq.heappop(heap)
            if session.seq == seq:
                session.seq = -1
                batch.append((session, due))
        return batch

    def _serve(self, session: _Session, now: float) -> None:
        """One session's packets due at ``now``, sent on its socket; then push it back."""
        try:
            packets = session.packets_due(now)
        except Exception:
            self._bug(session, "packets_due")
            self._schedule(session, now, now + ERROR_BACKOFF_S)
            return
        send = session.socket.send
        for data, addr in packets:
            send(data, addr)
        self.stats.packets_sent += len(packets)
        self._window.packets += len(packets)
        self._schedule(session, now)
        if session.due is not None and session.due <= now:
            # The core did not advance: no sooner than the next firing, never a busy loop.
            session.seq = -1
            self._push(session, now)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _bug(self, session: _Session, where: str) -> None:
        self.stats.handler_errors += 1
        self._window.errors += 1
        session.errors += 1
        if session.errors == 1:  # once per session: a broken core must not flood the log
            logger.exception("%s raised in %r; the ticker keeps running", where, session.core)
