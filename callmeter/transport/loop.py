"""The event loop, and the one binding of a sans-I/O core to it.

``new_event_loop()`` / ``run()`` pick uvloop when it is importable (it carries several times
the datagrams per second of the default loop) and fall back to asyncio's default loop.

:class:`CoreDriver` is the part every socket shell shares (UDP, TCP): it feeds received
messages to a :class:`~callmeter.sip.core.SansIOCore`, lets the application drain the
core's events (``on_activity``), transmits what the core queued and keeps exactly one
``loop.call_at`` timer per core, replaced only when ``get_timer()`` moves earlier (or goes).
No task per retransmission, no task per packet.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from callmeter.sip.core import Address, SansIOCore

__all__ = [
    "CoreDriver",
    "TransportStats",
    "loop_implementation",
    "new_event_loop",
    "run",
    "tune_gc_for_load",
    "uvloop_available",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def uvloop_available() -> bool:
    """True when uvloop can be imported (not on Windows, or not installed)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def new_event_loop(*, use_uvloop: bool | None = None) -> asyncio.AbstractEventLoop:
    """A new loop: uvloop when available (or when ``use_uvloop``), else asyncio's default."""
    if use_uvloop is False or (use_uvloop is None and not uvloop_available()):
        return asyncio.new_event_loop()
    import uvloop

    return uvloop.new_event_loop()


def run(coro: Coroutine[Any, Any, _T], *, use_uvloop: bool | None = None) -> _T:
    """``asyncio.run`` on a loop from :func:`new_event_loop`."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(use_uvloop=use_uvloop)) as runner:
        return runner.run(coro)


def tune_gc_for_load(threshold0: int = 50_000) -> None:
    """Garbage-collector settings for a process that generates load.

    A load generator allocates a stream of short-lived, mostly acyclic objects (parsed
    messages, events). CPython's default generation-0 threshold (700 allocations) then runs a
    collection every few hundred allocations, and the older generations walk every live call
    and transaction. Freezing what exists at start-up (it is never garbage) and raising the
    threshold keeps collections rare and short: measured here, our UAC went from 4,000 to
    5,000 clean calls/s against SIPp's UAS, without the multi-millisecond pauses that set off
    retransmission storms. Cycles are still collected, just less often. Call it once, at the
    start of a load process (not in a library import)."""
    gc.freeze()
    gc.set_threshold(threshold0, 20, 10)


def loop_implementation(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``"uvloop"`` or ``"asyncio"``: which loop runs ``loop`` (default: the running one)."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


@dataclass(slots=True)
class TransportStats:
    """Counters of one transport; a load generator reports these, never raises on them."""

    messages_received: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    send_errors: int = 0
    """Sends the OS refused or reported failed (EMSGSIZE, ICMP errors where reported), and
    bytes dropped because the transport was closed or a connection could not be opened."""
    handler_errors: int = 0
    """Exceptions escaping the core or ``on_activity``: bugs, logged with a traceback."""
    timers_armed: int = 0
    timers_fired: int = 0
    framing_errors: int = 0
    connect_errors: int = 0
    connections_opened: int = 0
    connections_accepted: int = 0
    pings_answered: int = 0


Sender = Callable[[bytes, Address], None]


class CoreDriver:
    """Drives one core on one loop: deliver, let the application react, flush, re-arm.

    Order after every receive or timer: the core takes the input, ``on_activity()`` drains
    its events (and may issue commands), then one flush transmits everything queued and
    re-arms the timer. Datagrams that arrive in one loop iteration are all given to the core
    first and reacted to once (``call_soon``): under load that halves the work per message.
    ``handle_timer(now)`` always gets ``now >= `` the armed deadline: asyncio may run a
    timer up to one clock tick early, and a core must see it as due.
    """

    __slots__ = (
        "_closed",
        "_core",
        "_loop",
        "_on_activity",
        "_react_pending",
        "_send",
        "_timer",
        "_timer_at",
        "stats",
    )

    def __init__(
        self,
        core: SansIOCore,
        loop: asyncio.AbstractEventLoop,
        send: Sender,
        on_activity: Callable[[], None] | None,
        stats: TransportStats,
    ) -> None:
        self._core = core
        self._loop = loop
        self._send = send
        self._on_activity = on_activity
        self.stats = stats
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self._react_pending = False

    @property
    def timer_deadline(self) -> float | None:
        """The loop time the one armed timer fires at, or ``None``."""
        return self._timer_at

    def deliver(self, messages: Iterable[bytes], addr: Address) -> None:
        """Feed whole messages from ``addr`` to the core, then react and flush once."""
        if self._closed:
            return
        now = self._loop.time()
        for data in messages:
            self.stats.messages_received += 1
            self.stats.bytes_received += len(data)
            try:
                self._core.receive_datagram(data, addr, now)
            except Exception:
                self._bug("receive_datagram")
        if not self._react_pending:
            # React once per loop iteration, not once per datagram: under load the loop
            # hands over a burst of datagrams, and one flush and one timer re-arm serve
            # them all (call_soon runs before the loop polls for I/O again).
            self._react_pending = True
            self._loop.call_soon(self._react_soon)

    def _react_soon(self) -> None:
        if self._react_pending:
            self._react_pending = False
            self._react()

    def react_now(self) -> None:
        """Run a reaction the last ``deliver`` deferred, now (e.g. before closing)."""
        self._react_soon()

    def flush(self) -> None:
        """Transmit everything the core queued, then re-arm the timer if it moved."""
        try:
            outgoing = self._core.datagrams_to_send()
        except Exception:
            self._bug("datagrams_to_send")
            outgoing = []
        for data, addr in outgoing:
            if self._closed:
                self.stats.send_errors += 1
                continue
            self.stats.messages_sent += 1
            self.stats.bytes_sent += len(data)
            self._send(data, addr)
        self._arm()

    def connection_failed(self, addr: Address) -> None:
        """Tell the core (when it listens: ``connection_failed(addr, now)``) that ``addr``
        cannot be reached, so its transactions fail now rather than at Timer B/F."""
        hook = getattr(self._core, "connection_failed", None)
        if hook is None:
            return
        try:
            hook(addr, self._loop.time())
        except Exception:
            self._bug("connection_failed")
        self._react()

    def close(self) -> None:
        self._closed = True
        self._cancel_timer()

    def _react(self) -> None:
        if self._on_activity is not None:
            try:
                self._on_activity()
            except Exception:
                self._bug("on_activity")
        self.flush()

    def _arm(self) -> None:
        if self._closed:
            return
        try:
            deadline = self._core.get_timer()
        except Exception:
            self._bug("get_timer")
            deadline = None
        if deadline == self._timer_at:
            return
        if deadline is not None and self._timer_at is not None and deadline > self._timer_at:
            # Moved later (under load: the earliest retransmission timer was cancelled by a
            # response, as it is for nearly every message). Keep the armed timer: it fires
            # early, the core finds nothing due (the contract allows that) and the timer is
            # re-armed then. One early wake-up instead of a new timer per flush.
            return
        self._cancel_timer()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._fire, deadline)
            self._timer_at = deadline
            self.stats.timers_armed += 1

    def _fire(self, deadline: float) -> None:
        self._timer = None
        self._timer_at = None
        self.stats.timers_fired += 1
        try:
            self._core.handle_timer(max(self._loop.time(), deadline))
        except Exception:
            self._bug("handle_timer")
        self._react()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _bug(self, where: str) -> None:
        self.stats.handler_errors += 1
        logger.exception("%s raised in %r; input dropped, loop kept running", where, self._core)
