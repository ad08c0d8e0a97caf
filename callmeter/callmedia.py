"""Call media for an endpoint: SDP offer/answer, one media socket, a session per call.

:class:`CallMedia` is what an endpoint needs to put real RTP on its calls: it offers and answers
SDP (``callmeter.media.sdp.SdpOfferAnswer``) for the port of the media socket it owns (or of
its channel of the loop's shared ``MediaPort``: then each call's SDP declares its SSRC, the
channel is told the peer's address and SSRC when the call starts and forgets them when it
ends), starts a
:class:`~callmeter.media.session.MediaSession` when a call is answered, paces it on the loop's
one :class:`~callmeter.transport.media.MediaTicker`, stops it when the call ends, and keeps the
per-second metric rows of every call (one row per second and direction, keyed by the metric
catalog). One call with media at a time per endpoint, like a phone with one line.

Rows and the call's last moment
    Each row carries ``second`` (1-based within the call's media), ``t_s`` (seconds since the
    media started), ``interval_s`` and ``at`` (the loop time it closes) besides the catalog
    values. The newest row of a running call is held back for one second: when the call
    stops less than :data:`FOLD_TAIL_S` after it, the tail is folded into it (counters
    summed, gauges kept) instead of becoming a near-empty row of its own. So a 10 s call has
    exactly 10 rows per direction and nothing measured is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from callmeter import metrics
from callmeter.media.impairment import ImpairmentProfile
from callmeter.media.jitterbuffer import JitterBufferConfig
from callmeter.media.sdp import SdpOfferAnswer
from callmeter.media.session import MediaSession
from callmeter.sip.events import CallAnswered, CallCancelled, CallEnded, CallFailed, Event
from callmeter.transport.media import MediaSocket, MediaTicker, open_media
from callmeter.transport.mediaport import MediaChannel, MediaPort

__all__ = ["FOLD_TAIL_S", "CallMedia", "MediaListener", "MediaOptions", "MetricRow", "ticker_for"]

MetricRow = dict[str, Any]
FOLD_TAIL_S: Final = 0.5  # a call's last interval shorter than this joins the second before
_COUNTERS: Final[frozenset[str]] = frozenset(
    m.key for m in metrics.catalog() if m.kind == "counter"
)
_TICKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MediaTicker] = (
    weakref.WeakKeyDictionary()
)


def ticker_for(loop: asyncio.AbstractEventLoop) -> MediaTicker:
    """The one media ticker of ``loop`` (created on first use)."""
    ticker = _TICKERS.get(loop)
    if ticker is None:
        ticker = _TICKERS[loop] = MediaTicker(loop)
    return ticker


@dataclass(frozen=True, slots=True)
class MediaOptions:
    """How an endpoint's calls carry media. ``source`` is a media file (None: the built-in
    speech-like signal); impairments are seeded so a run replays exactly."""

    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    ptime_ms: int = 20
    source: str | None = None
    send_impairment: ImpairmentProfile | None = None
    receive_impairment: ImpairmentProfile | None = None
    impairment_seed: int = 0
    jitter_buffer: JitterBufferConfig | None = None


class MediaListener(Protocol):
    """Told the media facts of each call as they happen (an endpoint's lifecycle)."""

    def media_started(self, call_id: str, now: float) -> None: ...
    def first_media(self, call_id: str, now: float) -> None:
        """The first RTP packet of the call arrived at ``now``."""
        ...

    def media_failed(self, call_id: str, now: float, reason: str) -> None: ...


@dataclass(slots=True)
class _Running:
    session: MediaSession
    started: float
    last_at: float = 0.0  # when the latest row closed
    seconds: int = 0  # rows per direction so far
    held: list[MetricRow] = field(default_factory=list)  # the newest rows, not yet in .rows


class CallMedia:
    """The media side of one endpoint. Create with :meth:`open`; feed it the endpoint's events
    with :meth:`on_event`."""

    def __init__(
        self, options: MediaOptions, socket: MediaSocket | MediaChannel, rng: random.Random
    ) -> None:
        self.options = options
        self.socket = socket
        self.rng = rng
        self.loop = asyncio.get_running_loop()
        self.ticker = ticker_for(self.loop)
        host, port = socket.local_address
        self.channel = socket if isinstance(socket, MediaChannel) else None
        """The socket when it is a channel of the shared port (SSRCs declared, peers told)."""
        shared = None if self.channel is None else self.channel.port
        self.offer_answer = SdpOfferAnswer(
            host, lambda: port, list(options.codecs), ptime_ms=options.ptime_ms, rtcp_mux=True,
            rng=rng, ssrc_allocator=None if shared is None else lambda: shared.new_ssrc(rng),
        )  # fmt: skip
        self.rows: list[MetricRow] = []  # every per-second row of every call, in order
        self.failures: dict[str, str] = {}  # call id -> why it had no media
        self.first_media_at: dict[str, float] = {}  # call id -> first RTP packet's arrival
        self.listener: MediaListener | None = None
        self._running: dict[str, _Running] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tick_due = 0.0  # the per-second grid: a late tick does not shift the next one

    @classmethod
    async def open(
        cls,
        options: MediaOptions,
        host: str = "127.0.0.1",
        rng: random.Random | None = None,
        port: MediaPort | None = None,
    ) -> CallMedia:
        """With ``port`` the calls use a channel of that shared port, else a socket of their
        own on ``host``."""
        socket = port.channel() if port is not None else await open_media(host, 0, rtcp_port=True)
        await asyncio.to_thread(_prepare, options)  # decode and encode now, not mid-call
        return cls(options, socket, rng or random.Random())

    def on_event(self, event: Event) -> None:
        if isinstance(event, CallAnswered):
            self._start(event.call_id)
        elif isinstance(event, (CallEnded, CallFailed, CallCancelled)):
            self._stop(event.call_id)
            ssrc = self.offer_answer.local_ssrc(event.call_id)
            if ssrc is not None and self.channel is not None:
                self.channel.port.free_ssrc(ssrc)

    def session(self, call_id: str) -> MediaSession | None:
        running = self._running.get(call_id)
        return None if running is None else running.session

    def rows_of(self, call_id: str) -> list[MetricRow]:
        return [row for row in self.rows if row["call_id"] == call_id]

    def _start(self, call_id: str) -> None:
        negotiated = self.offer_answer.negotiated(call_id)
        if negotiated is None:
            self.failures[call_id] = "no negotiated media"
            if self.listener is not None:
                self.listener.media_failed(call_id, self.loop.time(), "no negotiated media")
            return
        media = _library().for_negotiated(negotiated, self.options.source)
        now = self.loop.time()
        ssrc = self.offer_answer.local_ssrc(call_id)
        if ssrc is None:
            ssrc = self.rng.getrandbits(32)
        session = MediaSession(
            negotiated, media, now=now, ssrc=ssrc,
            cname=f"{call_id}@callmeter", rng=self.rng, ntp_offset_s=time.time() - now,
            send_impairment=self.options.send_impairment,
            receive_impairment=self.options.receive_impairment,
            impairment_seed=self.options.impairment_seed,
            jitter_buffer=self.options.jitter_buffer,
        )  # fmt: skip
        self._running[call_id] = _Running(session, now, last_at=now)
        if self.channel is not None:
            self.channel.expect(
                negotiated.remote_rtp, negotiated.remote_rtcp, negotiated.remote_ssrc
            )
        self.ticker.add(session, self.socket)
        if self._timer is None:
            self._tick_due = now + 1.0
            self._timer = self.loop.call_at(self._tick_due, self._every_second)
        if self.listener is not None:
            self.listener.media_started(call_id, now)

    def _stop(self, call_id: str) -> None:
        running = self._running.pop(call_id, None)
        if running is None:
            return
        self._record(call_id, running, self.loop.time(), final=True)
        self.ticker.remove(running.session)
        if self.channel is not None:
            self.channel.release()

    def _every_second(self) -> None:
        """One row per call and direction; the next tick stays on the one-second grid, so a
        loaded loop that fires late does not make calls lose seconds."""
        now = self.loop.time()
        for call_id, running in self._running.items():
            self._record(call_id, running, now)
        if not self._running:
            self._timer = None
            return
        self._tick_due += 1.0
        while self._tick_due <= now:  # more than a second late: the next row spans the gap
            self._tick_due += 1.0
        self._timer = self.loop.call_at(self._tick_due, self._every_second)

    def _record(self, call_id: str, running: _Running, now: float, final: bool = False) -> None:
        interval_s = now - running.last_at
        fresh: list[MetricRow] = []
        for direction, values in running.session.snapshot(now).items():
            t_s = round(now - running.started, 3)
            row = {"call_id": call_id, "t_s": t_s, "direction": direction}
            fresh.append(row | {"interval_s": interval_s, "at": now, **values})
            first_ms = values.get("time_to_first_media_ms")
            if direction == "receive" and first_ms is not None:
                self._first_media(call_id, running.started + first_ms / 1000.0)
        running.last_at = now
        if final and running.held and interval_s < FOLD_TAIL_S:
            for held, tail in zip(running.held, fresh, strict=True):
                _fold(held, tail)
            fresh = []
        self.rows.extend(running.held)
        running.held = []
        if fresh and (interval_s > 0 or not final):
            running.seconds += 1
            for row in fresh:
                row["second"] = running.seconds
            if final:
                self.rows.extend(fresh)
            else:
                running.held = fresh

    def _first_media(self, call_id: str, at: float) -> None:
        """Learnt from the receive snapshot: exact (the stream's start plus its time to first
        packet), though up to a second late; the lifecycle only needs it by the call's end."""
        if call_id in self.first_media_at:
            return
        self.first_media_at[call_id] = at
        if self.listener is not None:
            self.listener.first_media(call_id, at)

    def close(self) -> None:
        for call_id in list(self._running):
            self._stop(call_id)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.socket.close()


def _fold(row: MetricRow, tail: MetricRow) -> None:
    """Fold a call's short last interval into its last row: counters add up, gauges stay."""
    for key, value in tail.items():
        if key in _COUNTERS and value is not None:
            row[key] = (row.get(key) or 0) + value
        elif row.get(key) is None:
            row[key] = value
    row["interval_s"] += tail["interval_s"]
    row["t_s"], row["at"] = tail["t_s"], tail["at"]


@functools.cache
def _library() -> Any:
    """One media library per process: every sender replays what it encoded once. Imported
    here, not at the top: it loads PyAV, which signaling-only runs never need."""
    from callmeter.media.source import MediaLibrary

    return MediaLibrary()


def _prepare(options: MediaOptions) -> None:
    """Encode the source for every offered codec (runs in a thread before any call)."""
    library = _library()
    for codec in options.codecs:
        library.get(codec, options.ptime_ms, options.source)
