"""A receive jitter buffer MODEL, sans-I/O: when each packet would be played, and what is lost.

Theory of operation
-------------------
callmeter measures received audio, it does not play it. This module computes what a
receiver's jitter buffer would do with the packets that arrived, so late packets count as
lost the way a real phone loses them: ``add(seq, timestamp, arrival_s)`` per packet returns
its playout time (or None when it is discarded) and ``snapshot(now)`` reports per interval.

Playout schedule. A packet's *relative transit* is ``n = arrival_s - timestamp / clock_rate``
(RFC 3550 section 6.4.1 ``S`` and ``R`` in seconds; the constant sender/receiver clock offset
cancels in every difference). The buffer plays timestamp ``ts`` at
``ts / clock_rate + offset_s``, so a packet is played after ``offset_s - n`` seconds in the
buffer; it is **late**, and discarded, when ``n > offset_s`` (it arrives after its playout
time); it **overruns** the buffer, and is discarded, when ``offset_s - n > capacity_ms``.

- ``fixed``: ``offset_s = n + target_delay_ms`` of the first packet of each talkspurt (the
  first packet and every packet with the marker bit, RFC 3551 section 4.1). A packet is late
  exactly when it is more than ``target_delay_ms`` later than that packet's schedule.
- ``adaptive`` (after Ramjee et al., "Adaptive playout mechanisms for packetized audio
  applications in wide-area networks", INFOCOM 1994, algorithm 1): ``d`` smooths ``n`` and
  ``v`` smooths ``|n - d|`` with fast attack (gain 1/16, RFC 3550 section 6.4.1) and slow decay
  (``decay_gain``), so ``v`` tracks the peak deviation rather than the mean one and the
  default ``jitter_factor`` is 2 where Ramjee's mean estimator uses 4; the target is
  ``clamp(jitter_factor * v, min_delay_ms, max_delay_ms)`` and the wanted offset
  ``d + target``. At a talkspurt start the offset jumps to it (silence absorbs the change);
  inside a talkspurt it slews by at most ``slew_ms_per_packet`` per packet, what time-scale
  modification of the audio would do.

Counting (cumulative, per interval by difference): ``expected`` from the extended highest
sequence number (RFC 3550 Appendix A.3), ``received`` unique packets (duplicates are counted
apart through a bitmask of recent sequence numbers), ``played`` those in time. A packet that
arrives out of order but before its playout time is played: reordering inside the buffer is
not a loss. ``network_lost = expected - received``, ``effective_lost = network_lost + late +
overruns = expected - played``, the loss a listener hears (the buffer's share is the
"discard rate" of RFC 3611 section 4.7.1: late or early arrival). An **underrun** is one event
of the buffer running dry: the slot after the highest packet played so far came due before the
next packet arrived. Packets count in the interval they arrive in, not the one they would be
played in (at most ``max_delay_ms`` later): the model keeps no queue.
``add`` is a handful of float operations and is meant to run per packet for thousands of
streams; ``snapshot`` does the arithmetic once per interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ATTACK_GAIN",
    "MEAN_GAIN",
    "SEEN_WINDOW",
    "JitterBuffer",
    "JitterBufferConfig",
    "JitterBufferMode",
    "JitterBufferSnapshot",
]

JitterBufferMode = Literal["fixed", "adaptive"]

_SEQ_MOD = 1 << 16  # RFC 3550 section 5.1: 16-bit sequence numbers
_SEQ_HALF = 1 << 15
_SEQ_MASK = _SEQ_MOD - 1
_TS_MASK = (1 << 32) - 1  # 32-bit timestamps
_TS_HALF = 1 << 31
SEEN_WINDOW = 256  # packets remembered for duplicate detection: 5 s at 20 ms, so an older
# copy is far behind its playout time and discarded as late anyway
_SEEN_MASK = (1 << SEEN_WINDOW) - 1
ATTACK_GAIN = 1.0 / 16.0  # RFC 3550 section 6.4.1 jitter estimator gain
MEAN_GAIN = 1.0 / 64.0  # smoothing of the transit mean ``d``


@dataclass(frozen=True, slots=True)
class JitterBufferConfig:
    """Buffer parameters. ``target_delay_ms`` is the fixed target, or the adaptive start."""

    mode: JitterBufferMode = "adaptive"
    target_delay_ms: float = 60.0
    min_delay_ms: float = 20.0
    max_delay_ms: float = 300.0
    capacity_ms: float = 1000.0
    jitter_factor: float = 2.0  # v tracks the peak deviation, so 2 v spans the spread
    decay_gain: float = 1.0 / 512.0
    slew_ms_per_packet: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in ("fixed", "adaptive"):
            raise ValueError(f"mode must be 'fixed' or 'adaptive', got {self.mode!r}")
        if not 0.0 <= self.min_delay_ms <= self.max_delay_ms <= self.capacity_ms:
            raise ValueError("need 0 <= min_delay_ms <= max_delay_ms <= capacity_ms")
        if not self.min_delay_ms <= self.target_delay_ms <= self.max_delay_ms:
            raise ValueError("target_delay_ms must lie within min_delay_ms..max_delay_ms")
        if self.jitter_factor <= 0.0 or not 0.0 < self.decay_gain <= 1.0:
            raise ValueError("jitter_factor must be > 0 and decay_gain within (0, 1]")
        if self.slew_ms_per_packet < 0.0:
            raise ValueError("slew_ms_per_packet must be >= 0")


@dataclass(frozen=True, slots=True)
class JitterBufferSnapshot:
    """One interval of the jitter buffer model plus cumulative ``*_total`` values.

    Loss percentages are of ``expected`` (0 when nothing was expected) and never negative;
    counts follow RFC 3550 A.3 and may be negative in an interval where a packet counted lost
    in an earlier one arrives late. ``buffer_delay_*`` are over packets played this interval;
    ``jitter_estimate_ms`` is the model's deviation ``v``, not the RFC 3550 A.8 jitter."""

    now: float
    interval_s: float
    mode: JitterBufferMode
    target_delay_ms: float
    jitter_estimate_ms: float
    buffer_delay_ms: float | None
    buffer_delay_max_ms: float | None
    expected: int
    received: int
    played: int
    late: int
    overruns: int
    underruns: int
    duplicates: int
    network_lost: int
    effective_lost: int
    network_loss_pct: float
    late_loss_pct: float
    effective_loss_pct: float
    expected_total: int
    played_total: int
    late_total: int
    effective_lost_total: int
    effective_loss_pct_total: float


def _pct(part: int, whole: int) -> float:
    return max(0.0, 100.0 * part / whole) if whole > 0 else 0.0


class JitterBuffer:
    """The playout model of one received RTP stream (see the module docstring).

    ``clock_rate`` is the RTP clock in Hz. Feed ``add(seq, timestamp, arrival_s, marker)``
    per packet (arrival in seconds of the shell's monotonic clock) and call
    ``snapshot(now)`` once per interval."""

    __slots__ = (
        "_adaptive",
        "_base_ext",
        "_capacity_s",
        "_decay_gain",
        "_delay_max_s",
        "_delay_sum_s",
        "_ext_max",
        "_interval_start",
        "_jitter_factor",
        "_max_s",
        "_mean_s",
        "_min_s",
        "_offset_s",
        "_played_ext",
        "_played_playout_s",
        "_prior",
        "_seen",
        "_slew_s",
        "_tick_s",
        "_ts_first",
        "_ts_max",
        "_var_s",
        "clock_rate",
        "config",
        "duplicates",
        "late",
        "overruns",
        "played",
        "received",
        "underruns",
    )

    def __init__(self, clock_rate: int, config: JitterBufferConfig | None = None) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be positive, got {clock_rate}")
        self.clock_rate = clock_rate
        self.config = config = config or JitterBufferConfig()
        # Per-packet arithmetic reads plain floats in seconds, not the config in ms.
        self._tick_s = 1.0 / clock_rate
        self._adaptive = config.mode == "adaptive"
        self._capacity_s = config.capacity_ms / 1000.0
        self._min_s = config.min_delay_ms / 1000.0
        self._max_s = config.max_delay_ms / 1000.0
        self._slew_s = config.slew_ms_per_packet / 1000.0
        self._jitter_factor = config.jitter_factor
        self._decay_gain = config.decay_gain
        self.received = self.played = self.late = self.overruns = 0
        self.underruns = self.duplicates = 0
        self._ext_max: int | None = None  # extended highest sequence number
        self._base_ext = self._ts_first = self._ts_max = self._seen = 0
        self._played_ext: int | None = None  # highest sequence number played so far
        self._played_playout_s = 0.0
        self._offset_s = self._mean_s = 0.0
        self._var_s = self.config.target_delay_ms / 1000.0 / self.config.jitter_factor
        self._delay_sum_s = self._delay_max_s = 0.0
        self._interval_start: float | None = None
        self._prior = (0, 0, 0, 0, 0, 0, 0, 0)

    @property
    def expected(self) -> int:
        """Cumulative packets expected (RFC 3550 A.3): extended highest minus base plus one."""
        return 0 if self._ext_max is None else self._ext_max - self._base_ext + 1

    @property
    def target_delay_ms(self) -> float:
        """The current target: fixed, or ``clamp(jitter_factor * v, min, max)``."""
        if self._adaptive:
            return self._target_s() * 1000.0
        return self.config.target_delay_ms

    def add(self, seq: int, timestamp: int, arrival_s: float, marker: bool = False) -> float | None:
        """Account one packet; its playout time in seconds, or None when it is discarded
        (late, overrunning the buffer, or a duplicate)."""
        ext_max = self._ext_max
        if ext_max is None:
            return self._first(seq, timestamp, arrival_s)
        # Timestamps relative to the first packet's, so seconds stay small and precise.
        ts_max = self._ts_max
        ts = ts_max + ((timestamp - self._ts_first - ts_max + _TS_HALF) & _TS_MASK) - _TS_HALF
        delta = ((seq - ext_max + _SEQ_HALF) & _SEQ_MASK) - _SEQ_HALF
        if delta > 0:
            self._ext_max = ext_max + delta
            self._ts_max = ts
            self._seen = ((self._seen << delta) | 1) & _SEEN_MASK
        elif self._duplicate(-delta, ext_max + delta):
            self.duplicates += 1
            return None
        self.received += 1
        transit_s = arrival_s - ts * self._tick_s
        # Ramjee algorithm 1 with fast attack and slow decay of the deviation ``v``.
        mean_s = self._mean_s = self._mean_s + (transit_s - self._mean_s) * MEAN_GAIN
        deviation_s = abs(transit_s - mean_s)
        var_s = self._var_s
        gain = ATTACK_GAIN if deviation_s > var_s else self._decay_gain
        self._var_s = var_s + (deviation_s - var_s) * gain
        if marker:
            self._offset_s = self._talkspurt_offset(transit_s)
        elif self._adaptive:  # slew toward d + target, branches rather than min/max calls
            change_s = mean_s + self._target_s() - self._offset_s
            slew_s = self._slew_s
            self._offset_s += slew_s if change_s > slew_s else max(change_s, -slew_s)
        return self._schedule(ext_max + delta, ts, transit_s, arrival_s)

    def _first(self, seq: int, timestamp: int, arrival_s: float) -> float | None:
        self._ext_max = self._base_ext = seq
        self._ts_first, self._ts_max, self._seen = timestamp, 0, 1
        if self._interval_start is None:
            self._interval_start = arrival_s
        self.received += 1
        self._mean_s = arrival_s
        self._offset_s = self._talkspurt_offset(arrival_s)
        return self._schedule(seq, 0, arrival_s, arrival_s)

    def _duplicate(self, age: int, ext: int) -> bool:
        """Whether ``ext``, ``age`` packets behind the highest, was seen; marks it seen."""
        bit = 1 << age
        if age < SEEN_WINDOW and self._seen & bit:
            return True
        self._seen |= bit & _SEEN_MASK
        self._base_ext = min(self._base_ext, ext)  # older than the first packet seen
        return False

    def _target_s(self) -> float:
        target_s = self._jitter_factor * self._var_s
        if target_s < self._min_s:
            return self._min_s
        return target_s if target_s < self._max_s else self._max_s

    def _talkspurt_offset(self, transit_s: float) -> float:
        if self._adaptive:
            return self._mean_s + self._target_s()
        return transit_s + self.config.target_delay_ms / 1000.0

    def _schedule(self, ext: int, ts: int, transit_s: float, arrival_s: float) -> float | None:
        """Discard a late or overrunning packet, else count it played (and a buffer that ran
        dry before it); its playout time."""
        buffered_s = self._offset_s - transit_s
        if buffered_s < 0.0:
            self.late += 1
            return None
        if buffered_s > self._capacity_s:
            self.overruns += 1
            return None
        playout_s = ts * self._tick_s + self._offset_s
        self.played += 1
        self._delay_sum_s += buffered_s
        if buffered_s > self._delay_max_s:
            self._delay_max_s = buffered_s
        last = self._played_ext
        if last is not None and ext <= last:
            return playout_s  # reordered, filled in before its playout time
        if last is not None and ext > last + 1:
            slot_s = (playout_s - self._played_playout_s) / (ext - last)
            if arrival_s > self._played_playout_s + slot_s:
                self.underruns += 1  # the next slot came due with nothing buffered
        self._played_ext, self._played_playout_s = ext, playout_s
        return playout_s

    def snapshot(self, now: float) -> JitterBufferSnapshot:
        """Close the interval at ``now``: interval values since the last snapshot, and totals."""
        totals = (self.expected, self.received, self.played, self.late, self.overruns,
                  self.underruns, self.duplicates, self.expected - self.played)  # fmt: skip
        expected, received, played, late, overruns, underruns, duplicates, effective = (
            t - p for t, p in zip(totals, self._prior, strict=True)
        )
        begin = now if self._interval_start is None else self._interval_start
        buffer_delay_ms = self._delay_sum_s * 1000.0 / played if played > 0 else None
        snap = JitterBufferSnapshot(
            now=now,
            interval_s=max(now - begin, 0.0),
            mode=self.config.mode,
            target_delay_ms=self.target_delay_ms,
            jitter_estimate_ms=self._var_s * 1000.0,
            buffer_delay_ms=buffer_delay_ms,
            buffer_delay_max_ms=self._delay_max_s * 1000.0 if played > 0 else None,
            expected=expected,
            received=received,
            played=played,
            late=late,
            overruns=overruns,
            underruns=underruns,
            duplicates=duplicates,
            network_lost=expected - received,
            effective_lost=effective,
            network_loss_pct=_pct(expected - received, expected),
            late_loss_pct=_pct(late, expected),
            effective_loss_pct=_pct(effective, expected),
            expected_total=totals[0],
            played_total=totals[2],
            late_total=totals[3],
            effective_lost_total=totals[7],
            effective_loss_pct_total=_pct(totals[7], totals[0]),
        )
        self._prior = totals
        self._interval_start = now
        self._delay_sum_s = self._delay_max_s = 0.0
        return snap
