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

RTCP XR. Unless ``rtcp_xr=False``, each report once the peer's RTP has arrived also carries
an RFC 3611 VoIP Metrics block about the peer's stream, every figure since the beginning of
reception (4.7): loss rate from the receive statistics (network loss), discard rate from the
jitter buffer (late and overrun), burst/gap density and duration from the loss pattern as the
listener gets it (lost or discarded, Gmin 16; ``_LossPattern``), round-trip delay from RTCP,
end system delay = jitter buffer nominal + ptime, R and MOS-CQ rated as the receive metrics
are but over the whole call, MOS-LQ the same without the delay terms (``Ta`` 0), and the
jitter buffer's nominal delay and capacity. A wideband R goes out as ``R / 1.29``, the
narrowband-scale value G.107.1 Annex A feeds the MOS curve, since the field is 0..100. The
peer's blocks about us give the receive ``xr_*`` values.

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
the measured burst ratio, ``Ta`` = RTT/2 (when known) + jitter buffer delay + ptime (G.107 7.1).
G.722 and Opus rate on the wideband scale of G.107.1 (``r_scale_max`` 129); codecs without
published G.113 values (Appendix I, or IV for wideband) get no R. The send side rates the
peer's last report with ``Ta`` = RTT/2 + our jitter buffer target (the peer's buffer is
unknown) + ptime.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass, field, replace
from itertools import groupby
from typing import TYPE_CHECKING

from callmeter.media.impairment import DelayLine, Impairment, ImpairmentProfile
from callmeter.media.jitterbuffer import JitterBuffer, JitterBufferConfig, JitterBufferSnapshot
from callmeter.media.quality import RBudget, codec_impairment, r_budget, r_budget_wideband
from callmeter.media.rtcp import (
    RTCP_SR,
    RX_CONFIG_JB_ADAPTIVE,
    RX_CONFIG_JB_NON_ADAPTIVE,
    RX_CONFIG_PLC_UNSPECIFIED,
    Bye,
    ExtendedReport,
    ReceiverReport,
    RemoteReport,
    RtcpSession,
    SenderReport,
    VoipMetrics,
)
from callmeter.media.rtp import RTP_HEADER_LENGTH, PacketHeaderTemplate, parse_rtp, peek_header
from callmeter.media.rtpstats import (
    GMIN,
    MAX_DROPOUT,
    MAX_MISORDER,
    BurstGap,
    ReceiverSnapshot,
    ReceiverStats,
)
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
# Slots of the XR loss pattern still open to a reordered packet: 64 packets (1.28 s at 20 ms)
# is beyond any jitter buffer delay, so a packet later than that was discarded anyway.
_XR_WINDOW = 64

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
    xr: int = 0
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
    ``ntp_offset_s`` is NTP time minus ``now`` (see ``RtcpSession``). ``rtcp_xr=False`` leaves
    the RFC 3611 VoIP Metrics report out of the RTCP compounds.
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
        rtcp_xr: bool = True,
    ) -> None:
        if media.clock_rate != negotiated.clock_rate or media.ptime_ms != negotiated.ptime_ms:
            raise ValueError(
                f"media of {media.clock_rate} Hz / {media.ptime_ms} ms does not match the "
                f"negotiated {negotiated.clock_rate} Hz / {negotiated.ptime_ms} ms"
            )
        self.negotiated = negotiated
        self.media = media
        # Read per packet: kept here, not looked up on objects of uncompiled modules each time.
        self._payloads: tuple[bytes, ...] = media.payloads
        self._remote_rtp: Address = negotiated.remote_rtp
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
        self._codec = codec_impairment(negotiated.codec, negotiated.fmtp)
        self.rtcp_xr = rtcp_xr
        self._loss_pattern = _LossPattern()
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
            voip = self._voip_metrics() if self.rtcp_xr else None
            data = self.rtcp.build_report(now, self.stats, voip)
            self._count_rtcp_sent(data, bye=False)
            self._tx.xr += voip is not None
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
        payloads = self._payloads
        payload = payloads[index % len(payloads)]  # the media loops (EncodedMedia.payload)
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
        self._emit(packet, self._remote_rtp, now, out, rtp=True)

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
            self._loss_pattern.add(seq, played=True)
        else:
            playout = self.jitter_buffer.add(seq, timestamp, arrival, marker)
            self._loss_pattern.add(seq, played=playout is not None)
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
        values |= _peer_voip_metrics(self.rtcp.remote_voip)
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
            "xr_count": tx.xr,
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
        rate = r_budget_wideband if codec.wideband else r_budget
        return rate(ie=codec.ie, bpl=codec.bpl, ppl=ppl, burst_r=burst_r, ta_ms=ta_ms)

    def _voip_metrics(self) -> VoipMetrics | None:
        """The RFC 3611 VoIP Metrics block about the peer's stream, since the beginning of
        reception (see the module docstring); None before its RTP has arrived."""
        stats, jb = self.stats, self.jitter_buffer
        if stats.ssrc is None or stats.extended_highest_seq is None:
            return None
        pattern = self._loss_pattern.burst_gap()
        remote = self.rtcp.remote
        rtt_ms = None if remote is None else remote.rtt_ms
        end_system_ms = jb.target_delay_ms + self.ptime_ms
        ppl, burst_r = 100.0 * pattern.lost_fraction, pattern.burst_ratio
        budget = self._budget(ppl, burst_r, self._half_rtt_ms(remote) + end_system_ms)
        listening = self._budget(ppl, burst_r, 0.0)
        capacity_ms = jb.config.capacity_ms
        adaptive = jb.config.mode == "adaptive"
        return VoipMetrics.from_measures(
            stats.ssrc,
            loss_fraction=stats.lost_total / stats.expected_total if stats.expected_total else 0.0,
            discard_fraction=(jb.late + jb.overruns) / jb.expected if jb.expected else 0.0,
            burst_density=pattern.burst.burst_density,
            gap_density=pattern.burst.gap_density,
            burst_duration_ms=pattern.burst.burst_packets * self.ptime_ms,
            gap_duration_ms=pattern.burst.gap_packets * self.ptime_ms,
            round_trip_delay_ms=rtt_ms,
            end_system_delay_ms=end_system_ms,
            r_factor=None if budget is None else budget.r * 100.0 / budget.scale_max,
            mos_lq=None if listening is None else listening.mos,
            mos_cq=None if budget is None else budget.mos,
            rx_config=RX_CONFIG_PLC_UNSPECIFIED
            | (RX_CONFIG_JB_ADAPTIVE if adaptive else RX_CONFIG_JB_NON_ADAPTIVE),
            jb_nominal_ms=jb.target_delay_ms,
            jb_maximum_ms=capacity_ms,  # 4.7.7: the earliest packet not discarded waits this
            jb_abs_max_ms=capacity_ms,  # long; the model's capacity is fixed, so also the most
        )


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
             "r_loss_ie", "r_scale_max"),
        )  # fmt: skip
    return {
        "r_factor": budget.r,
        "mos": budget.mos,
        "r_ro": budget.ro,
        "r_simultaneous_is": budget.simultaneous_is,
        "r_delay_id": budget.delay_id,
        "r_codec_ie": budget.codec_ie,
        "r_loss_ie": budget.loss_ie,
        "r_scale_max": budget.scale_max,
    }


def _peer_voip_metrics(block: VoipMetrics | None) -> MetricValues:
    """The receive ``xr_*`` values from the peer's last VoIP Metrics block about us."""
    if block is None:
        return dict.fromkeys(
            ("xr_burst_density", "xr_gap_density", "xr_burst_duration_ms", "xr_gap_duration_ms",
             "xr_round_trip_delay_ms", "xr_end_system_delay_ms"),
        )  # fmt: skip
    return {
        "xr_burst_density": block.burst_density / 256,
        "xr_gap_density": block.gap_density / 256,
        "xr_burst_duration_ms": block.burst_duration,
        "xr_gap_duration_ms": block.gap_duration,
        "xr_round_trip_delay_ms": block.round_trip_delay,
        "xr_end_system_delay_ms": block.end_system_delay,
    }


@dataclass(slots=True)
class _BurstGapCount:
    """RFC 3611 4.7.2 bursts and gaps of a loss pattern fed run by run, in sequence order, in
    constant space: the definitions of ``rtpstats.burst_gap`` (a burst holds no ``GMIN``
    consecutive received packets; a lone loss belongs to the gap)."""

    packets: int = 0
    lost: int = 0
    loss_runs: int = 0  # runs of consecutive losses, for the burst ratio
    since_loss: int = 0  # received packets since the last loss
    open_start: int = 0  # the losses that may still grow into a burst: first, last, count
    open_end: int = 0
    open_lost: int = 0
    bursts: int = 0
    burst_packets: int = 0
    burst_lost: int = 0
    first_burst_start: int = -1
    last_burst_end: int = -1  # one past its last packet

    def add(self, lost: bool, count: int) -> None:
        """``count`` packets in a row, all lost (or discarded) or all received."""
        position = self.packets
        self.packets = position + count
        if not lost:
            self.since_loss += count
            return
        self.lost += count
        self.loss_runs += position == 0 or self.since_loss > 0  # else it goes on a run
        if self.open_lost and self.since_loss < GMIN:
            self.open_end, self.open_lost = position + count - 1, self.open_lost + count
        else:
            self.close()
            self.open_start, self.open_end, self.open_lost = position, position + count - 1, count
        self.since_loss = 0

    def close(self) -> None:
        """End the open stretch: a burst if it holds two losses or more, else a gap loss."""
        if self.open_lost > 1:
            self.bursts += 1
            self.burst_packets += self.open_end - self.open_start + 1
            self.burst_lost += self.open_lost
            if self.first_burst_start < 0:
                self.first_burst_start = self.open_start
            self.last_burst_end = self.open_end + 1
        self.open_lost = 0

    def burst_gap(self) -> BurstGap:
        """``rtpstats.burst_gap`` of everything fed; call on a copy (it closes the stretch)."""
        self.close()
        total, bursts = self.packets, self.bursts
        gap_packets = total - self.burst_packets
        gaps = bursts + 1 if bursts else int(total > 0)
        gaps -= bursts > 0 and self.first_burst_start == 0
        gaps -= bursts > 0 and self.last_burst_end == total
        return BurstGap(
            burst_density=self.burst_lost / self.burst_packets if self.burst_packets else 0.0,
            gap_density=(self.lost - self.burst_lost) / gap_packets if gap_packets else 0.0,
            burst_packets=self.burst_packets / bursts if bursts else 0.0,
            gap_packets=gap_packets / gaps if gaps else 0.0,
        )


@dataclass(frozen=True, slots=True)
class _PatternSummary:
    burst: BurstGap
    lost_fraction: float  # lost or discarded, of the sequence numbers seen
    burst_ratio: float


class _LossPattern:
    """Per sequence number since the beginning of reception: played, or lost or discarded
    (RFC 3611 4.7.2), for the XR burst and gap metrics.

    Recent slots are bits of an int (bit i: sequence number ``highest - i`` was played) so a
    reordered packet the jitter buffer still plays turns its slot back. Slots more than
    ``_XR_WINDOW`` behind are final: once ``2 * _XR_WINDOW`` are held, the older half goes, run
    by run, into a ``_BurstGapCount``, so the per-packet path is a shift and an or. A step of
    ``MAX_DROPOUT`` or more ahead, or more than ``MAX_MISORDER`` back, is a new numbering
    (RFC 3550 A.1), not a loss."""

    __slots__ = ("_bits", "_count", "_highest", "_length")

    def __init__(self) -> None:
        self._count = _BurstGapCount()
        self._highest: int | None = None
        self._bits = 0
        self._length = 0  # slots held in ``_bits``

    def add(self, seq: int, played: bool) -> None:
        highest = self._highest
        delta = 0 if highest is None else ((seq - highest + 0x8000) & 0xFFFF) - 0x8000
        if 0 < delta < MAX_DROPOUT:  # in order, skipped numbers lost until they come
            self._highest = seq
            self._bits = (self._bits << delta) | played
            self._length += delta
            if self._length >= 2 * _XR_WINDOW:
                self._flush(self._count, self._length - _XR_WINDOW)
        elif highest is not None and -MAX_MISORDER <= delta <= 0:
            if played and -delta < self._length:
                self._bits |= 1 << -delta
        else:  # the first packet, or a new numbering
            self._flush(self._count, self._length)
            self._highest, self._bits, self._length = seq, int(played), 1

    def _flush(self, count: _BurstGapCount, slots: int) -> None:
        """Feed the ``slots`` oldest slots to ``count``, run by run, oldest first; only our
        own count lets go of them."""
        if slots <= 0:
            return
        keep = self._length - slots
        old = self._bits >> keep
        if old == (1 << slots) - 1:  # the common case: every one played
            count.add(False, slots)
        else:
            for bit, run in groupby(format(old, f"0{slots}b")):
                count.add(bit == "0", sum(1 for _ in run))
        if count is self._count:
            self._bits &= (1 << keep) - 1
            self._length = keep

    def burst_gap(self) -> _PatternSummary:
        """Bursts, gaps, loss and burst ratio so far, recent slots included as they stand."""
        count = replace(self._count)
        self._flush(count, self._length)
        lost, total = count.lost, count.packets
        # G.113 Appendix I burst ratio, as ``quality.burst_ratio_from_runs``: the mean loss
        # run over its random-loss expectation 1 / (1 - p); 1 without loss or reception.
        burst_r = 1.0 if lost in (0, total) else lost / count.loss_runs * (1.0 - lost / total)
        return _PatternSummary(count.burst_gap(), lost / total if total else 0.0, burst_r)
