"""RTP receiver statistics (RFC 3550 Appendix A), sans-I/O: fed per packet, read per interval.

Theory of operation
-------------------
``ReceiverStats.add`` runs for every RTP packet of every stream, so it is plain attribute
arithmetic: the sequence-number validation of RFC 3550 A.1 (``MIN_SEQUENTIAL`` probation,
``MAX_DROPOUT`` / ``MAX_MISORDER``, restart after two sequential packets of a large jump), the
interarrival jitter estimator of A.8, duplicate and reorder detection through a small ring of
recently seen extended sequence numbers, and the loss pattern as run lengths.
``snapshot(now)`` does the rest once per interval: the A.3 expected / lost / fraction-lost
arithmetic on cumulative counters (interval values are differences against the previous
snapshot), bitrate and spacing, and the RFC 3611 4.7.2 burst/gap metrics from the run lengths.

Counting follows RFC 3550 so the numbers agree with an RTCP receiver report and with
tshark's RTP stream analysis: ``received`` includes duplicates and late packets, so ``lost``
may be negative when duplicates outnumber losses. Two deliberate refinements: the packets
that pass the ``MIN_SEQUENTIAL`` probation (and the two packets that confirm a restart) are
counted once the source is validated, where A.1 would drop all but the last; and a new SSRC or a
restart does not erase the cumulative counts, it closes one span and opens the next. Jitter is
estimated over every packet of the current source (probation included) except the lone packet
of an unconfirmed jump; a new SSRC starts the estimator over, a restart re-anchors its transit.

The loss pattern is recorded as the highest sequence number advances (skipped numbers are lost
for now) and a late packet turns its slot back to received, as long as it belongs to the
current interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from callmeter.media.quality import burst_ratio_from_runs

__all__ = [
    "GMIN",
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MIN_SEQUENTIAL",
    "RTP_SEQ_MOD",
    "BurstGap",
    "ReceiverSnapshot",
    "ReceiverStats",
    "burst_gap",
    "fraction_lost",
]

# RFC 3550 Appendix A.1 constants.
RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2
# RFC 3611 section 4.7.2: a burst ends at GMIN or more consecutive received packets.
GMIN = 16
# A timestamp step off by more than this many packet durations from what the sequence step
# implies is a timestamp jump (unless the marker bit announces a new talkspurt, RFC 3551 4.1).
TIMESTAMP_JUMP_PACKETS = 10
# Recently seen extended sequence numbers kept for duplicate detection; > MAX_MISORDER.
SEEN_WINDOW = 1024
_SEEN_MASK = SEEN_WINDOW - 1
_TS_MASK = (1 << 32) - 1  # RTP timestamps are 32-bit; differences wrap
_TS_HALF = 1 << 31
_SEQ_MASK = RTP_SEQ_MOD - 1

_COUNTERS = (
    "packets",
    "payload_bytes",
    "expected",
    "received",
    "duplicates",
    "out_of_order",
    "seq_gaps",
    "seq_jumps",
    "seq_resets",
    "ssrc_switches",
    "timestamp_jumps",
)


@dataclass(frozen=True, slots=True)
class ReceiverSnapshot:
    """One interval of receive statistics plus cumulative ``*_total`` values.

    ``expected``, ``lost`` and ``fraction_lost`` (1/256 units, the RTCP RR field) follow
    RFC 3550 A.3; ``jitter`` is the A.8 estimate at ``now`` in timestamp units. Densities are
    fractions (RFC 3611 sends them times 256); durations are means over the interval.
    """

    now: float
    interval_s: float
    ssrc: int | None
    extended_highest_seq: int | None
    packets: int
    packets_total: int
    payload_bytes: int
    payload_bytes_total: int
    expected: int
    expected_total: int
    lost: int
    lost_total: int
    fraction_lost: int
    fraction_lost_total: int
    jitter: float
    jitter_ms: float
    duplicates: int
    duplicates_total: int
    out_of_order: int
    out_of_order_total: int
    seq_gaps: int
    seq_gaps_total: int
    seq_jumps: int
    seq_jumps_total: int
    seq_resets: int
    seq_resets_total: int
    ssrc_switches: int
    ssrc_switches_total: int
    timestamp_jumps: int
    timestamp_jumps_total: int
    spacing_min_ms: float | None
    spacing_avg_ms: float | None
    spacing_max_ms: float | None
    bitrate_bps: float
    time_to_first_packet_ms: float | None
    loss_runs: tuple[int, ...]
    burst_ratio: float
    burst_density: float
    gap_density: float
    burst_duration_ms: float
    gap_duration_ms: float


def fraction_lost(expected: int, lost: int) -> int:
    """RFC 3550 A.3: ``lost << 8 / expected``, 0 when nothing was expected or lost <= 0.

    Capped at 255, the largest value of the 8-bit RR field (A.3 would give 256 for 100 %).
    """
    if expected <= 0 or lost <= 0:
        return 0
    return min((lost << 8) // expected, 255)


@dataclass(frozen=True, slots=True)
class BurstGap:
    """RFC 3611 4.7.2 burst/gap summary of one loss pattern."""

    burst_density: float
    gap_density: float
    burst_packets: float  # mean burst length in packets
    gap_packets: float  # mean gap length in packets


def burst_gap(loss_runs: list[int] | tuple[int, ...], gmin: int = GMIN) -> BurstGap:
    """Bursts and gaps of run lengths ``[received, lost, received, ...]`` (RFC 3611 4.7.2).

    A burst is the longest stretch that starts and ends with a loss and holds no ``gmin``
    consecutive received packets; as in the Markov model of RFC 3611 Appendix A.2, a stretch
    with a single loss is an isolated loss and belongs to the gap.
    """
    total = sum(loss_runs)
    lost_total = sum(loss_runs[1::2])
    bursts: list[tuple[int, int, int]] = []  # (start position, packets, losses)
    position, candidate, received_before = 0, None, 0
    for index, run in enumerate(loss_runs):
        if index % 2 == 0:
            received_before = run
        elif run > 0:
            if candidate is not None and received_before < gmin:
                start, packets, losses = candidate
                candidate = (start, packets + received_before + run, losses + run)
            else:
                if candidate is not None and candidate[2] > 1:
                    bursts.append(candidate)
                candidate = (position, run, run)
        position += run
    if candidate is not None and candidate[2] > 1:
        bursts.append(candidate)
    burst_packets = sum(b[1] for b in bursts)
    burst_losses = sum(b[2] for b in bursts)
    gap_total = total - burst_packets
    gaps = len(bursts) + 1 if bursts else int(total > 0)
    if bursts and bursts[0][0] == 0:
        gaps -= 1
    if bursts and bursts[-1][0] + bursts[-1][1] == total:
        gaps -= 1
    return BurstGap(
        burst_density=burst_losses / burst_packets if burst_packets else 0.0,
        gap_density=(lost_total - burst_losses) / gap_total if gap_total else 0.0,
        burst_packets=burst_packets / len(bursts) if bursts else 0.0,
        gap_packets=gap_total / gaps if gaps else 0.0,
    )


class ReceiverStats:
    """Receive statistics of one RTP stream direction (RFC 3550 A.1, A.3, A.8; RFC 3611 4.7.2).

    ``clock_rate`` is the RTP clock in Hz (8000 for PCMU). Call ``start(now)`` when the stream
    is expected (it anchors the time to first packet), ``add(...)`` per received packet with
    its arrival time in seconds, and ``snapshot(now)`` once per interval.
    """

    __slots__ = (
        "_bad_seq",
        "_base_ext",
        "_expected_before",
        "_ext_max",
        "_first_arrival",
        "_interval_start",
        "_jit_arrival",
        "_jit_ts",
        "_jitter",
        "_last_arrival",
        "_max_seq",
        "_max_ts",
        "_prior",
        "_probation",
        "_runs",
        "_seen",
        "_spacing_count",
        "_spacing_max",
        "_spacing_min",
        "_spacing_sum",
        "_ssrc",
        "_start",
        "_ts_step",
        "clock_rate",
        "duplicates",
        "out_of_order",
        "packets",
        "payload_bytes",
        "received",
        "seq_gaps",
        "seq_jumps",
        "seq_resets",
        "ssrc_switches",
        "timestamp_jumps",
    )

    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be positive, got {clock_rate}")
        self.clock_rate = clock_rate
        self.packets = self.payload_bytes = self.received = self.duplicates = 0
        self.out_of_order = self.seq_gaps = self.seq_jumps = self.seq_resets = 0
        self.ssrc_switches = self.timestamp_jumps = 0
        self._ssrc: int | None = None
        self._probation = MIN_SEQUENTIAL
        self._max_seq = self._ext_max = self._base_ext = self._expected_before = 0
        self._bad_seq = RTP_SEQ_MOD + 1
        self._seen = [-1] * SEEN_WINDOW
        self._max_ts = self._ts_step = self._jit_ts = 0
        self._jitter = 0.0
        self._jit_arrival: float | None = None
        self._start: float | None = None
        self._first_arrival: float | None = None
        self._last_arrival: float | None = None
        self._interval_start: float | None = None
        self._runs = [0]
        self._prior = (0,) * len(_COUNTERS)
        self._spacing_min = math.inf  # seconds between arrivals, per interval
        self._spacing_max = 0.0
        self._spacing_sum = 0.0
        self._spacing_count = 0

    @property
    def expected(self) -> int:
        """Cumulative packets expected (A.3): extended highest minus base plus one, per span."""
        if self._probation:
            return self._expected_before
        return self._expected_before + self._ext_max - self._base_ext + 1

    @property
    def jitter_ms(self) -> float:
        """The A.8 interarrival jitter estimate in milliseconds."""
        return self._jitter * 1000.0 / self.clock_rate

    # The ``ReceptionSource`` view (callmeter.media.rtcp): an RTCP report block can be built
    # from the live statistics without closing the metric interval with ``snapshot``.
    @property
    def ssrc(self) -> int | None:
        """The SSRC of the current source, None before the first packet."""
        return self._ssrc

    @property
    def extended_highest_seq(self) -> int | None:
        """The extended highest sequence number (A.1), None while on probation."""
        return None if self._ssrc is None or self._probation else self._ext_max

    @property
    def expected_total(self) -> int:
        """Cumulative packets expected, as ``ReceiverSnapshot.expected_total``."""
        return self.expected

    @property
    def lost_total(self) -> int:
        """Cumulative packets lost (A.3), as ``ReceiverSnapshot.lost_total``."""
        return self.expected - self.received

    @property
    def jitter(self) -> float:
        """The A.8 interarrival jitter estimate in timestamp units."""
        return self._jitter

    def start(self, now: float) -> None:
        """The stream is expected from ``now`` on: anchors time to first packet and bitrate."""
        self._start = now
        if self._interval_start is None:
            self._interval_start = now

    def add(
        self,
        seq: int,
        timestamp: int,
        ssrc: int,
        size: int,
        arrival: float,
        marker: bool = False,
        timed: bool = True,
    ) -> None:
        """Account one received packet: RTP header fields, payload ``size``, ``arrival`` in s.

        ``timed=False`` (an RFC 4733 telephone-event packet: its timestamp is the event's
        start, repeated) counts the packet in the sequence space but leaves it out of the
        jitter estimate, which compares media timestamps with arrival times."""
        self.packets += 1
        self.payload_bytes += size
        last = self._last_arrival
        if last is None:
            self._first_arrival = arrival
        else:
            spacing = arrival - last
            if spacing < self._spacing_min:
                self._spacing_min = spacing
            if spacing > self._spacing_max:
                self._spacing_max = spacing
            self._spacing_sum += spacing
            self._spacing_count += 1
        self._last_arrival = arrival
        if ssrc != self._ssrc:
            self._switch_source(ssrc, seq)
        if self._probation:
            self._probe(seq, timestamp)
        else:
            udelta = (seq - self._max_seq) & _SEQ_MASK
            if 0 < udelta < MAX_DROPOUT:
                self._advance(seq, timestamp, udelta, marker)
            elif udelta == 0 or udelta > RTP_SEQ_MOD - MAX_MISORDER:
                self._late(udelta)
            elif not self._jump(seq, timestamp):
                return
        if not timed:
            return
        # A.8: D(i-1, i) from arrival and timestamp differences, wrap-safe in 32 bits.
        if self._jit_arrival is not None:
            ts_delta = ((timestamp - self._jit_ts + _TS_HALF) & _TS_MASK) - _TS_HALF
            d = (arrival - self._jit_arrival) * self.clock_rate - ts_delta
            self._jitter += (abs(d) - self._jitter) / 16.0
        self._jit_arrival = arrival
        self._jit_ts = timestamp

    def snapshot(self, now: float) -> ReceiverSnapshot:
        """Close the interval at ``now``: interval values since the last snapshot, and totals."""
        totals = self._totals()
        interval = dict(
            zip(_COUNTERS, (t - p for t, p in zip(totals, self._prior, strict=True)), strict=True)
        )
        total = dict(zip(_COUNTERS, totals, strict=True))
        begin = self._interval_start
        if begin is None:
            begin = now if self._first_arrival is None else self._first_arrival
        interval_s = max(now - begin, 0.0)
        runs = tuple(self._runs)
        spacing_count = self._spacing_count
        packet_ms = self._ts_step * 1000.0 / self.clock_rate
        if not packet_ms and spacing_count:
            packet_ms = self._spacing_sum * 1000.0 / spacing_count
        bursts = burst_gap(runs)
        lost = interval["expected"] - interval["received"]
        lost_total = total["expected"] - total["received"]
        first = self._first_arrival
        snapshot = ReceiverSnapshot(
            now=now,
            interval_s=interval_s,
            ssrc=self._ssrc,
            extended_highest_seq=None if self._ssrc is None or self._probation else self._ext_max,
            packets=interval["packets"],
            packets_total=total["packets"],
            payload_bytes=interval["payload_bytes"],
            payload_bytes_total=total["payload_bytes"],
            expected=interval["expected"],
            expected_total=total["expected"],
            lost=lost,
            lost_total=lost_total,
            fraction_lost=fraction_lost(interval["expected"], lost),
            fraction_lost_total=fraction_lost(total["expected"], lost_total),
            jitter=self._jitter,
            jitter_ms=self.jitter_ms,
            duplicates=interval["duplicates"],
            duplicates_total=total["duplicates"],
            out_of_order=interval["out_of_order"],
            out_of_order_total=total["out_of_order"],
            seq_gaps=interval["seq_gaps"],
            seq_gaps_total=total["seq_gaps"],
            seq_jumps=interval["seq_jumps"],
            seq_jumps_total=total["seq_jumps"],
            seq_resets=interval["seq_resets"],
            seq_resets_total=total["seq_resets"],
            ssrc_switches=interval["ssrc_switches"],
            ssrc_switches_total=total["ssrc_switches"],
            timestamp_jumps=interval["timestamp_jumps"],
            timestamp_jumps_total=total["timestamp_jumps"],
            spacing_min_ms=self._spacing_min * 1000.0 if spacing_count else None,
            spacing_avg_ms=self._spacing_sum * 1000.0 / spacing_count if spacing_count else None,
            spacing_max_ms=self._spacing_max * 1000.0 if spacing_count else None,
            bitrate_bps=interval["payload_bytes"] * 8 / interval_s if interval_s > 0 else 0.0,
            time_to_first_packet_ms=(
                None if first is None or self._start is None else (first - self._start) * 1000.0
            ),
            loss_runs=runs,
            burst_ratio=burst_ratio_from_runs(runs),
            burst_density=bursts.burst_density,
            gap_density=bursts.gap_density,
            burst_duration_ms=bursts.burst_packets * packet_ms,
            gap_duration_ms=bursts.gap_packets * packet_ms,
        )
        self._prior = totals
        self._interval_start = now
        self._runs = [0]
        self._reset_spacing()
        return snapshot

    def _advance(self, seq: int, timestamp: int, udelta: int, marker: bool) -> None:
        """In-order packet (A.1, ``udelta < MAX_DROPOUT``): skipped numbers are lost for now."""
        runs = self._runs
        if udelta > 1:
            self.seq_gaps += 1
            if len(runs) & 1:
                runs.append(udelta - 1)
            else:
                runs[-1] += udelta - 1
        if len(runs) & 1:
            runs[-1] += 1
        else:
            runs.append(1)
        self._ext_max += udelta
        self._max_seq = seq
        self.received += 1
        self._seen[self._ext_max & _SEEN_MASK] = self._ext_max
        ts_delta = ((timestamp - self._max_ts + _TS_HALF) & _TS_MASK) - _TS_HALF
        step = self._ts_step
        if step and not marker and abs(ts_delta - udelta * step) > TIMESTAMP_JUMP_PACKETS * step:
            self.timestamp_jumps += 1
        elif udelta == 1 and ts_delta > 0 and not marker:
            self._ts_step = ts_delta
        self._max_ts = timestamp

    def _late(self, udelta: int) -> None:
        """Duplicate or reordered packet (A.1 counts it as received either way)."""
        ext = self._ext_max - ((RTP_SEQ_MOD - udelta) & _SEQ_MASK)
        self.received += 1
        slot = ext & _SEEN_MASK
        if self._seen[slot] == ext:
            self.duplicates += 1
            return
        self._seen[slot] = ext
        self.out_of_order += 1
        self._fill_lost(self._ext_max - ext)

    def _jump(self, seq: int, timestamp: int) -> bool:
        """A jump of ``MAX_DROPOUT`` or more (A.1): two sequential packets restart the count."""
        if seq != self._bad_seq:
            self.seq_jumps += 1
            self._bad_seq = (seq + 1) & _SEQ_MASK
            return False
        self.seq_resets += 1
        self._expected_before = self.expected
        self._open_span(seq, timestamp, 2)
        self._jit_arrival = None  # the transit time of the old numbering says nothing now
        return True

    def _probe(self, seq: int, timestamp: int) -> None:
        """``MIN_SEQUENTIAL`` probation of a new source (A.1): sequential packets validate it."""
        if seq == (self._max_seq + 1) & _SEQ_MASK:
            self._probation -= 1
            self._max_seq = seq
            if self._probation == 0:
                self._open_span(seq, timestamp, MIN_SEQUENTIAL)
        else:
            self._probation = MIN_SEQUENTIAL - 1
            self._max_seq = seq

    def _switch_source(self, ssrc: int, seq: int) -> None:
        """A new SSRC: close the old span and put the new source on probation (A.1)."""
        if self._ssrc is not None:
            self.ssrc_switches += 1
        self._expected_before = self.expected
        self._ssrc = ssrc
        self._probation = MIN_SEQUENTIAL
        self._max_seq = (seq - 1) & _SEQ_MASK
        self._jitter = 0.0
        self._jit_arrival = None
        self._ts_step = 0

    def _open_span(self, seq: int, timestamp: int, packets: int) -> None:
        """A.1 ``init_seq``, crediting the ``packets`` sequential packets that led here."""
        self._base_ext = seq - (packets - 1)
        self._ext_max = self._max_seq = seq
        self._bad_seq = RTP_SEQ_MOD + 1
        self._max_ts = timestamp
        self.received += packets
        self._seen = [-1] * SEEN_WINDOW
        for ext in range(self._base_ext, seq + 1):
            self._seen[ext & _SEEN_MASK] = ext
        if len(self._runs) & 1:
            self._runs[-1] += packets
        else:
            self._runs.append(packets)

    def _fill_lost(self, distance: int) -> None:
        """A late packet ``distance`` places behind the highest: mark it received in the runs.

        Rare (reordering only), so it walks the interval's runs back from the newest packet;
        a packet from before this interval's runs is left alone.
        """
        runs = self._runs
        index, end = len(runs) - 1, 0  # end: distance of the newest packet of runs[index]
        while index >= 0 and distance >= end + runs[index]:
            end += runs[index]
            index -= 1
        if index < 1 or index % 2 == 0:
            return
        after = distance - end  # lost packets newer than this one in the same run
        before = runs[index] - after - 1
        if before and after:
            runs[index : index + 1] = [before, 1, after]
        elif before:
            runs[index] = before
            if index + 1 < len(runs):
                runs[index + 1] += 1
            else:
                runs.append(1)
        elif after:
            runs[index - 1] += 1
            runs[index] = after
        else:
            runs[index - 1] += 1 + (runs[index + 1] if index + 1 < len(runs) else 0)
            del runs[index : index + 2]

    def _reset_spacing(self) -> None:
        self._spacing_min = math.inf
        self._spacing_max = 0.0
        self._spacing_sum = 0.0
        self._spacing_count = 0

    def _totals(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in _COUNTERS)
