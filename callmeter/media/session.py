"""One call's audio, both directions, as a sans-I/O ``MediaCore``: RTP out, RTP in, RTCP.

Theory of operation
-------------------
``MediaSession`` composes the media modules for one negotiated audio stream; the asyncio shell
(``callmeter.transport.media``) only moves its datagrams and calls it at ``next_due()``.

Sending. Packet ``i`` is due at ``start + i * ptime`` (computed, never accumulated, so the
pace does not drift); it carries payload ``i`` of the ``EncodedMedia`` loop and timestamp
``ts0 + i * samples_per_packet`` through one ``PacketHeaderTemplate``. The initial sequence
number and timestamp are random (RFC 3550 5.1). ``packets_due(now)`` sends every packet due by
``now`` and records each one's lateness ``now - due``: the generator's health, never blamed on
the network. A ticker more than ``BURST_MAX_PACKETS`` packets behind sends only the newest
``BURST_MAX_PACKETS``; the older ones are *skipped*: counted (``packets_send_skipped``), their
timestamps and payloads passed over so the audio stays in time, but no sequence number spent,
and the next packet sent carries the marker bit. To the receiver this is a new talkspurt after
a silence (RFC 3551 4.1), not network loss: the load generator does not blame the system under
test for its own overload (DESIGN.md).

RTCP. ``RtcpSession`` schedules compound reports (RFC 3550 6.3, A.7) and reads the peer's
report blocks about us (fraction lost, cumulative lost, jitter, RTT from LSR/DLSR). Its report
block about the peer is built from the live ``ReceiverStats``, so RTCP never closes a metric
interval. Reports go to ``remote_rtcp``; with rtcp-mux that is the RTP address.
Received datagrams are told apart by RFC 5761 section 4: a second byte of 192..223 (payload
type 64..95 with the marker bit) is RTCP, anything else RTP.

Impairment is the network between the peers, so it applies to RTP and RTCP alike (a fixed
delay each way shows up in the RTT), each direction with its own seeded ``Impairment``
(seeds ``2 * impairment_seed`` for send, ``2 * impairment_seed + 1`` for receive).

- Send side: every datagram goes through ``Impairment.apply`` and a ``DelayLine``; what is due
  leaves from ``packets_due``, whose ``next_due`` includes the line's head.
- Receive side: the same model, mirrored. An arriving datagram is impaired at its arrival
  time and held in a second ``DelayLine``; it is *processed* (statistics, jitter buffer, RTCP)
  when it comes due, with its release time as the arrival time. Due items are drained at the
  start of ``packets_due``, ``receive`` and ``snapshot`` (and ``next_due`` includes the head),
  so processing order is release order: reordering, interval boundaries and late discards
  behave as if the network itself had delayed the packet. Shifting the arrival time on
  arrival, the simpler-looking model, processes packets in the wrong order when the profile
  reorders and counts a delayed packet in the interval it was sent in.

``stop(now)`` returns the final compound packet with BYE (RFC 3550 6.6) straight away, not
through the send impairment: packets still held in either delay line are dropped with the
call. Afterwards ``next_due()`` is None and the session ignores what arrives.

Metrics. ``snapshot(now)`` returns the interval since the previous snapshot as
``{"receive": {...}, "send": {...}}`` keyed by catalog keys (``callmeter.metrics``), ``None``
where a value is unknown. Sent packets and bytes are what the endpoint sent, before the
emulated network of the send impairment (as the SR packet count, RFC 3550 6.4.1). RTCP
feedback keys follow the catalog's rule that feedback has the direction of the message
itself: the peer's view of our stream (``remote_fraction_lost``,
``remote_cumulative_lost_packets``, ``remote_jitter_ms``) is in ``receive``; its quality
reading (``loss_percent``, ``jitter_ms``, ``rtt_ms``, R and MOS) is in ``send``.
Receive quality rates the interval: ``Ppl`` is the jitter buffer's effective loss, ``BurstR``
the measured burst ratio, ``Ta`` = RTT/2 (when known) + jitter buffer delay + ptime (G.107 7.1;
codecs without G.113 Appendix I values get no R). The send side rates the peer's last report
with ``Ta`` = RTT/2 + our jitter buffer target (the peer's buffer is unknown) + ptime.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callmeter.media.impairment import DelayLine, Impairment, ImpairmentProfile
from callmeter.media.jitterbuffer import JitterBuffer, JitterBufferConfig, JitterBufferSnapshot
from callmeter.media.quality import CODECS as CODEC_IMPAIRMENTS
from callmeter.media.quality import RBudget, r_budget
from callmeter.media.rtcp import (
    RTCP_SR,
    Bye,
    ExtendedReport,
    ReceiverReport,
    RemoteReport,
    RtcpSession,
    SenderReport,
)
from callmeter.media.rtp import RTP_HEADER_LENGTH, PacketHeaderTemplate, parse_rtp, peek_header
from callmeter.media.rtpstats import ReceiverSnapshot, ReceiverStats
from callmeter.media.sdp import DIRECTIONS, Negotiated
from callmeter.metrics import RECEIVER_SNAPSHOT_FIELDS
from callmeter.sip.core import Address

if TYPE_CHECKING:  # source.py loads PyAV; the session only needs the type
    from callmeter.media.source import EncodedMedia

__all__ = ["BURST_MAX_PACKETS", "IPV4_UDP_HEADER_BYTES", "MediaSession", "MetricValues"]

BURST_MAX_PACKETS = 5  # a late ticker sends at most this many packets at once
IPV4_UDP_HEADER_BYTES = 28  # wire_bytes: IPv4 (20) plus UDP (8) headers per datagram
# RFC 5761 section 4: second octets 192..223 (RTP payload types 64..95 with M) are RTCP.
_RTCP_SECOND_MIN = 192
_RTCP_SECOND_MAX = 223
_RTP_VARIABLE_HEADER = 0x3F  # padding, extension and CSRC count bits: header is not 12 bytes
_SEQ_MASK = 0xFFFF
_TS_MASK = 0xFFFF_FFFF
_EPSILON_S = 1e-9  # due times are products of floats; absorb their rounding

MetricValues = dict[str, float | int | None]


@dataclass(slots=True)
class _SendInterval:
    """What we sent since the last snapshot."""

    packets: int = 0
    payload_bytes: int = 0
    wire_bytes: int = 0
    talkspurts: int = 0
    skipped: int = 0
    lateness_s: list[float] = field(default_factory=list)
    spacing_min_s: float = math.inf
    spacing_max_s: float = 0.0
    spacing_sum_s: float = 0.0
    spacing_count: int = 0
    sr: int = 0
    rr: int = 0
    bye: int = 0
    rtcp_bytes: int = 0


@dataclass(slots=True)
class _ReceiveInterval:
    """What arrived since the last snapshot, beyond ``ReceiverStats`` and the jitter buffer."""

    wire_bytes: int = 0
    talkspurts: int = 0
    rtp_malformed: int = 0
    dtmf_packets: int = 0  # RFC 4733 events: in the sequence space, kept out of the buffer
    rtcp_malformed: int = 0
    sr: int = 0
    rr: int = 0
    xr: int = 0
    bye: int = 0
    rtcp_bytes: int = 0


class MediaSession:
    """One call's audio (RTP and RTCP, both directions), sans-I/O; a ``MediaCore``.

    ``negotiated`` fixes the peer's addresses, payload type, ptime and our direction
    (sendonly, recvonly and inactive are respected; RTCP flows in every direction, RFC 3264
    5.1). ``media`` is the encoded loop to replay (``MediaLibrary.for_negotiated``); its clock
    rate and ptime must match. ``sending=False`` keeps a sending direction silent. ``rng``
    draws the initial sequence number and timestamp and randomises the RTCP interval;
    ``ntp_offset_s`` is NTP time minus ``now`` (see ``RtcpSession``).
    """

    def __init__(
        self,
        negotiated: Negotiated,
        media: EncodedMedia,
        *,
        now: float,
        ssrc: int,
        cname: str,
        rng: random.Random,
        ntp_offset_s: float,
        send_impairment: ImpairmentProfile | None = None,
        receive_impairment: ImpairmentProfile | None = None,
        impairment_seed: int = 0,
        jitter_buffer: JitterBufferConfig | None = None,
        sending: bool = True,
    ) -> None:
        if media.clock_rate != negotiated.clock_rate or media.ptime_ms != negotiated.ptime_ms:
            raise ValueError(
                f"media of {media.clock_rate} Hz / {media.ptime_ms} ms does not match the "
                f"negotiated {negotiated.clock_rate} Hz / {negotiated.ptime_ms} ms"
            )
        self.negotiated = negotiated
        self.media = media
        self.ssrc = ssrc
        self._event_pt = (
            -1 if negotiated.telephone_event_pt is None else negotiated.telephone_event_pt
        )
        may_send, self.receiving = DIRECTIONS[negotiated.direction]
        self.sending = sending and may_send
        self.ptime_ms = media.ptime_ms
        self._ptime_s = media.ptime_ms / 1000.0
        self._samples = media.samples_per_packet
        self._template = PacketHeaderTemplate(negotiated.payload_type, ssrc)
        self._start = now
        self._index = 0  # packets scheduled so far, sent or skipped
        self._seq = rng.randrange(1 << 16)  # RFC 3550 5.1: random initial values
        self._ts0 = rng.getrandbits(32)
        self._marker = True
        self._last_sent_at: float | None = None
        self._first_sent_at: float | None = None
        self.send_impairment = (
            Impairment(send_impairment, 2 * impairment_seed) if send_impairment else None
        )
        self.receive_impairment = (
            Impairment(receive_impairment, 2 * impairment_seed + 1) if receive_impairment else None
        )
        self._send_line: DelayLine[tuple[bytes, Address]] = DelayLine()
        self._receive_line: DelayLine[bytes] = DelayLine()
        # Only an impairment fills a delay line: without one the per-packet paths skip both.
        self._impaired = self.send_impairment is not None or self.receive_impairment is not None
        self.stats = ReceiverStats(negotiated.clock_rate)
        if self.receiving:
            self.stats.start(now)
        self.jitter_buffer = JitterBuffer(negotiated.clock_rate, jitter_buffer)
        self.rtcp = RtcpSession(
            ssrc, cname, negotiated.clock_rate, _session_bandwidth_bps(media), ntp_offset_s, now,
            rng,
        )  # fmt: skip
        self._codec = CODEC_IMPAIRMENTS.get(negotiated.codec.upper())
        self._stopped = False
        self._interval_start = now
        self._tx = _SendInterval()
        self._rx = _ReceiveInterval()
        # Running totals, for tests and traces (the metrics are per interval).
        self.packets_sent_total = 0
        self.packets_skipped_total = 0
        self.rtp_dropped_on_send_total = 0  # RTP packets the send impairment dropped
        self.malformed_total = 0  # RTP and RTCP datagrams that did not parse

    # -- MediaCore ------------------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self._stopped

    def next_due(self) -> float | None:
        """The earliest of the next packet, the next RTCP report and both delay lines' heads."""
        if self._stopped:
            return None
        due = self.rtcp.next_report_time()
        if self.sending:
            send_due = self._start + self._index * self._ptime_s
            if send_due < due:
                due = send_due
        if self._impaired:
            for head in (self._send_line.next_due(), self._receive_line.next_due()):
                if head is not None and head < due:
                    due = head
        return due

    def packets_due(self, now: float) -> list[tuple[bytes, Address]]:
        """Every datagram due by ``now``: RTP (at most ``BURST_MAX_PACKETS``), an RTCP report,
        and what the send delay line releases."""
        if self._stopped:
            return []
        if self._impaired:
            self._drain_receive(now)
        out: list[tuple[bytes, Address]] = []
        if self.sending:
            self._send_rtp(now, out)
        if now >= self.rtcp.next_report_time():
            data = self.rtcp.build_report(now, self.stats)
            self._count_rtcp_sent(data, bye=False)
            self._emit(data, self.negotiated.remote_rtcp, now, out, rtp=False)
        if self._impaired and self._send_line:
            out.extend(item for _, item in self._send_line.pop_due(now))
        return out

    def receive(self, data: bytes, addr: Address, now: float) -> None:
        """One datagram from the media socket; malformed ones are counted, never raised."""
        if self._stopped:
            return
        impairment = self.receive_impairment
        if impairment is None:  # nothing is held in the receive line
            self._process(data, now)
            return
        self._drain_receive(now)
        for release, packet in impairment.apply(data, now):
            if release <= now:  # the line holds only later releases: order is kept
                self._process(packet, release)
            else:
                self._receive_line.push(release, packet)

    def stop(self, now: float) -> list[tuple[bytes, Address]]:
        """The final compound RTCP packet with BYE (RFC 3550 6.6); the session ends."""
        if self._stopped:
            return []
        self._drain_receive(now)
        self._stopped = True
        self._send_line, self._receive_line = DelayLine(), DelayLine()  # lost with the call
        # No report block in the BYE compound: it leaves outside the delay line (the session
        # ends), so a report in it would give the peer an RTT without the network's delay.
        data = self.rtcp.bye(now)
        self._count_rtcp_sent(data, bye=True)
        return [(data, self.negotiated.remote_rtcp)]

    # -- sending --------------------------------------------------------------------------------
    def _send_rtp(self, now: float, out: list[tuple[bytes, Address]]) -> None:
        ptime_s = self._ptime_s
        due = self._start + self._index * ptime_s
        if now + _EPSILON_S < due:
            return
        count = int((now - due) / ptime_s + _EPSILON_S) + 1
        skip = count - BURST_MAX_PACKETS
        if skip > 0:
            # Too late to be worth sending: pass over their media time, keep the sequence.
            self._index += skip
            self._tx.skipped += skip
            self.packets_skipped_total += skip
            self._marker = True
            count = BURST_MAX_PACKETS
        for _ in range(count):
            self._send_one(self._start + self._index * ptime_s, now, out)

    def _send_one(self, due: float, now: float, out: list[tuple[bytes, Address]]) -> None:
        index, seq, marker = self._index, self._seq, self._marker
        timestamp = (self._ts0 + index * self._samples) & _TS_MASK
        payload = self.media.payload(index)
        packet = self._template.packet(seq, timestamp, payload, marker)
        self.rtcp.on_rtp_sent(seq, timestamp, len(payload), now)
        self._index, self._seq, self._marker = index + 1, (seq + 1) & _SEQ_MASK, False
        tx = self._tx
        tx.packets += 1
        tx.payload_bytes += len(payload)
        tx.wire_bytes += len(packet) + IPV4_UDP_HEADER_BYTES
        tx.talkspurts += marker
        tx.lateness_s.append(now - due if now > due else 0.0)  # due within _EPSILON_S
        last = self._last_sent_at
        if last is None:
            self._first_sent_at = now
        else:
            spacing = now - last
            tx.spacing_min_s = min(tx.spacing_min_s, spacing)
            tx.spacing_max_s = max(tx.spacing_max_s, spacing)
            tx.spacing_sum_s += spacing
            tx.spacing_count += 1
        self._last_sent_at = now
        self.packets_sent_total += 1
        self._emit(packet, self.negotiated.remote_rtp, now, out, rtp=True)

    def _emit(
        self, data: bytes, addr: Address, now: float, out: list[tuple[bytes, Address]], rtp: bool
    ) -> None:
        """Send now, or hand the datagram to the send impairment and its delay line."""
        impairment = self.send_impairment
        if impairment is None:
            out.append((data, addr))
            return
        entries = impairment.apply(data, now)
        if not entries and rtp:
            self.rtp_dropped_on_send_total += 1
        for release, packet in entries:
            self._send_line.push(release, (packet, addr))

    def _count_rtcp_sent(self, data: bytes, bye: bool) -> None:
        tx = self._tx
        tx.rtcp_bytes += len(data)
        if data[1] == RTCP_SR:  # the first packet of a compound is the SR or RR (6.1)
            tx.sr += 1
        else:
            tx.rr += 1
        tx.bye += bye

    # -- receiving ------------------------------------------------------------------------------
    def _drain_receive(self, now: float) -> None:
        if self._receive_line:
            for release, packet in self._receive_line.pop_due(now):
                self._process(packet, release)

    def _process(self, data: bytes, arrival: float) -> None:
        if len(data) >= 2 and _RTCP_SECOND_MIN <= data[1] <= _RTCP_SECOND_MAX:
            self._process_rtcp(data, arrival)
        else:
            self._process_rtp(data, arrival)

    def _process_rtp(self, data: bytes, arrival: float) -> None:
        try:
            _, seq, timestamp, ssrc, marker = peek_header(data)
            if data[0] & _RTP_VARIABLE_HEADER:  # CSRCs, extension or padding: parse it all
                size = len(parse_rtp(data).payload)
            else:
                size = len(data) - RTP_HEADER_LENGTH
        except (ValueError, struct.error):  # ParseError is a ValueError
            self._rx.rtp_malformed += 1
            self.malformed_total += 1
            return
        event = data[1] & 0x7F == self._event_pt  # RFC 4733 DTMF: counted, not timed
        self.stats.add(seq, timestamp, ssrc, size, arrival, marker, timed=not event)
        rx = self._rx
        if event:
            rx.dtmf_packets += 1
        else:
            self.jitter_buffer.add(seq, timestamp, arrival, marker)
        rx.wire_bytes += len(data) + IPV4_UDP_HEADER_BYTES
        rx.talkspurts += marker

    def _process_rtcp(self, data: bytes, arrival: float) -> None:
        rx = self._rx
        try:
            packets = self.rtcp.receive(data, arrival)
        except (ValueError, struct.error):
            rx.rtcp_malformed += 1
            self.malformed_total += 1
            return
        rx.rtcp_bytes += len(data)
        for packet in packets:
            if isinstance(packet, SenderReport):
                rx.sr += 1
            elif isinstance(packet, ReceiverReport):
                rx.rr += 1
            elif isinstance(packet, ExtendedReport):
                rx.xr += 1
            elif isinstance(packet, Bye):
                rx.bye += 1

    # -- metrics --------------------------------------------------------------------------------
    def snapshot(self, now: float) -> dict[str, MetricValues]:
        """Metric values since the previous snapshot, per direction, keyed by catalog keys."""
        if not self._stopped:
            self._drain_receive(now)
        interval_s = now - self._interval_start
        receive = self._receive_metrics(
            self.stats.snapshot(now), self.jitter_buffer.snapshot(now), interval_s
        )
        send = self._send_metrics(now, interval_s)
        self._interval_start = now
        self._tx = _SendInterval()
        self._rx = _ReceiveInterval()
        return {"receive": receive, "send": send}

    def _receive_metrics(
        self, rx: ReceiverSnapshot, jb: JitterBufferSnapshot, interval_s: float
    ) -> MetricValues:
        values: MetricValues = {
            key: getattr(rx, name) for name, key in RECEIVER_SNAPSHOT_FIELDS.items()
        }
        counts = self._rx
        values |= {
            "wire_bytes": counts.wire_bytes,
            "wire_bitrate_bps": _rate(counts.wire_bytes * 8, interval_s),
            "packet_rate_pps": _rate(rx.packets, interval_s),
            "loss_percent": _percent(rx.lost, rx.expected),
            "effective_loss_percent": self._effective_loss_percent(jb),
            "jb_delay_ms": jb.buffer_delay_ms,
            "jb_target_delay_ms": jb.target_delay_ms,
            "jb_delay_max_ms": jb.buffer_delay_max_ms,
            "packets_played": jb.played,
            "packets_late_discarded": jb.late,
            "jb_discard_percent": _percent(jb.late + jb.overruns, jb.expected),
            "jb_underrun_count": jb.underruns,
            "jb_overrun_count": jb.overruns,
            "talkspurt_count": counts.talkspurts,
            "packets_dtmf": counts.dtmf_packets,
            "packets_malformed": counts.rtp_malformed,
            "rtcp_malformed_count": counts.rtcp_malformed,
            "sr_count": counts.sr,
            "rr_count": counts.rr,
            "xr_count": counts.xr,
            "rtcp_bye_count": counts.bye,
            "rtcp_bytes": counts.rtcp_bytes,
        }
        remote = self.rtcp.remote
        values |= {
            "remote_fraction_lost": None if remote is None else remote.fraction_lost,
            "remote_cumulative_lost_packets": None if remote is None else remote.cumulative_lost,
            "remote_jitter_ms": None if remote is None else remote.jitter_ms,
        }
        budget: RBudget | None = None
        one_way_delay_ms: float | None = None
        if jb.expected > 0:
            buffer_ms = jb.target_delay_ms if jb.buffer_delay_ms is None else jb.buffer_delay_ms
            one_way_delay_ms = self._half_rtt_ms(remote) + buffer_ms + self.ptime_ms
            ppl = self._effective_loss_percent(jb) or 0.0
            budget = self._budget(ppl, rx.burst_ratio, one_way_delay_ms)
        values["one_way_delay_ms"] = one_way_delay_ms
        values |= _quality(budget)
        return values

    def _send_metrics(self, now: float, interval_s: float) -> MetricValues:
        tx = self._tx
        lateness_ms = sorted(late * 1000.0 for late in tx.lateness_s)
        first = self._first_sent_at
        values: MetricValues = {
            "packets": tx.packets,
            "payload_bytes": tx.payload_bytes,
            "wire_bytes": tx.wire_bytes,
            "bitrate_bps": _rate(tx.payload_bytes * 8, interval_s),
            "wire_bitrate_bps": _rate(tx.wire_bytes * 8, interval_s),
            "packet_rate_pps": _rate(tx.packets, interval_s),
            "spacing_min_ms": tx.spacing_min_s * 1000.0 if tx.spacing_count else None,
            "spacing_avg_ms": (
                tx.spacing_sum_s * 1000.0 / tx.spacing_count if tx.spacing_count else None
            ),
            "spacing_max_ms": tx.spacing_max_s * 1000.0 if tx.spacing_count else None,
            "time_to_first_media_ms": None if first is None else (first - self._start) * 1000.0,
            "talkspurt_count": tx.talkspurts,
            "send_lateness_p50_ms": _percentile(lateness_ms, 50.0),
            "send_lateness_p99_ms": _percentile(lateness_ms, 99.0),
            "send_lateness_max_ms": lateness_ms[-1] if lateness_ms else None,
            "packets_send_skipped": tx.skipped,
            "sr_count": tx.sr,
            "rr_count": tx.rr,
            "rtcp_bye_count": tx.bye,
            "rtcp_bytes": tx.rtcp_bytes,
        }
        remote = self.rtcp.remote
        budget: RBudget | None = None
        one_way_delay_ms: float | None = None
        if remote is not None:
            buffer_ms = self.jitter_buffer.config.target_delay_ms
            one_way_delay_ms = self._half_rtt_ms(remote) + buffer_ms + self.ptime_ms
            budget = self._budget(remote.loss_fraction * 100.0, 1.0, one_way_delay_ms)
        values |= {
            "jitter_ms": None if remote is None else remote.jitter_ms,
            "rtt_ms": None if remote is None else remote.rtt_ms,
            "loss_percent": None if remote is None else remote.loss_fraction * 100.0,
            "one_way_delay_ms": one_way_delay_ms,
        }
        values |= _quality(budget)
        return values

    @staticmethod
    def _half_rtt_ms(remote: RemoteReport | None) -> float:
        if remote is None or remote.rtt_ms is None:
            return 0.0
        return remote.rtt_ms / 2.0

    def _effective_loss_percent(self, jb: JitterBufferSnapshot) -> float | None:
        """Network + late loss of the interval's audio: DTMF event packets use sequence
        numbers but never reach the jitter buffer, so they are not loss."""
        dtmf = self._rx.dtmf_packets
        expected = jb.expected - dtmf
        if expected <= 0:
            return None
        return 100.0 * max(0, jb.effective_lost - dtmf) / expected

    def _budget(self, ppl: float, burst_r: float, ta_ms: float) -> RBudget | None:
        codec = self._codec
        if codec is None:
            return None
        return r_budget(ie=codec.ie, bpl=codec.bpl, ppl=ppl, burst_r=burst_r, ta_ms=ta_ms)


def _session_bandwidth_bps(media: EncodedMedia) -> float:
    """RTP session bandwidth for the RTCP share (RFC 3550 6.2): payload plus RTP/UDP/IP."""
    payload = sum(len(p) for p in media.payloads) / max(len(media.payloads), 1)
    packet_bytes = payload + RTP_HEADER_LENGTH + IPV4_UDP_HEADER_BYTES
    return packet_bytes * 8 * 1000.0 / media.ptime_ms


def _rate(amount: int, interval_s: float) -> float | None:
    return amount / interval_s if interval_s > 0 else None


def _percent(part: int, whole: int) -> float | None:
    """``part`` of ``whole`` in percent, never negative; None when nothing was expected."""
    return max(0.0, 100.0 * part / whole) if whole > 0 else None


def _percentile(ordered: list[float], percent: float) -> float | None:
    """Nearest-rank percentile of sorted values; None for none."""
    if not ordered:
        return None
    return ordered[max(math.ceil(percent / 100.0 * len(ordered)) - 1, 0)]


def _quality(budget: RBudget | None) -> MetricValues:
    if budget is None:
        return dict.fromkeys(
            ("r_factor", "mos", "r_ro", "r_simultaneous_is", "r_delay_id", "r_codec_ie",
             "r_loss_ie"),
        )  # fmt: skip
    return {
        "r_factor": budget.r,
        "mos": budget.mos,
        "r_ro": budget.ro,
        "r_simultaneous_is": budget.simultaneous_is,
        "r_delay_id": budget.delay_id,
        "r_codec_ie": budget.codec_ie,
        "r_loss_ie": budget.loss_ie,
    }
