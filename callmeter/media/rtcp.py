"""RTCP (RFC 3550 section 6) packets and a sans-I/O session for one RTP stream.

Theory of operation
-------------------
Packets: ``SenderReport`` (SR, 6.4.1), ``ReceiverReport`` (RR, 6.4.2) with ``ReportBlock``\\ s,
``SourceDescription`` (SDES, 6.5) with ``SdesChunk``\\ s, ``Bye`` (6.6), ``ExtendedReport``
(XR, RFC 3611) with the VoIP Metrics block (``VoipMetrics``, RFC 3611 4.7) and any other
packet or XR block kept raw (``RawPacket``, ``XrBlock``). ``parse_rtcp`` splits a compound
packet (6.1) and ``serialize_compound`` joins one; ``parse_rtcp(serialize_compound(ps)) == ps``.
Malformed bytes raise ``callmeter.sip.errors.ParseError`` naming the problem and the numbers.

Session: ``RtcpSession`` holds what RFC 3550 asks of one participant of a two-party stream.
The shell tells it what it sent (``on_rtp_sent``), hands it the latest receive statistics
(``build_report(now, reception)`` with a ``ReceiverSnapshot`` or anything with the same five
fields) and the RTCP datagrams it received (``receive``); it returns the bytes to send and keeps
the peer's view of our stream (``remote``: fraction lost, cumulative lost, jitter, RTT; and
``remote_voip``, the peer's last VoIP Metrics block about us). A ``VoipMetrics`` block passed
to ``build_report`` (``VoipMetrics.from_measures`` encodes one from measured values) is sent
as an XR packet after the SDES (RFC 3611 section 2: XR travels in the compound). When to
send is ``next_report_time()``, the RFC 3550 6.3.1 / A.7 interval: 5 s minimum (half for the
first report), the 5 % RTCP share of the session bandwidth split 25/75 between senders and
receivers, randomised by 0.5..1.5 with the rng passed in and divided by e - 3/2. Timer
reconsideration (6.3.6) and BYE reconsideration (6.3.7) change nothing for a two-member
session and are left out. Time is ``now`` (monotonic seconds); NTP timestamps are
``now + ntp_offset_s``, the offset fixed by the shell at construction.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from struct import Struct
from typing import Protocol

from callmeter.media.rtpstats import fraction_lost
from callmeter.sip.errors import ParseError

__all__ = [
    "COMPENSATION",
    "NTP_UNIX_OFFSET_S",
    "RTCP_BYE",
    "RTCP_MIN_TIME",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "RTCP_XR",
    "RX_CONFIG_JB_ADAPTIVE",
    "RX_CONFIG_JB_NON_ADAPTIVE",
    "RX_CONFIG_PLC_UNSPECIFIED",
    "SDES_CNAME",
    "XR_GMIN",
    "XR_UNAVAILABLE",
    "XR_VOIP_METRICS",
    "Bye",
    "ExtendedReport",
    "RawPacket",
    "ReceiverReport",
    "ReceptionSource",
    "RemoteReport",
    "ReportBlock",
    "Rng",
    "RtcpPacket",
    "RtcpSession",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "VoipMetrics",
    "XrBlock",
    "ntp_short",
    "ntp_short_of",
    "ntp_timestamp",
    "parse_rtcp",
    "serialize_compound",
]

# RFC 3550 section 12.1 packet types, RFC 3611 section 2 (XR).
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_XR = 207
RTCP_VERSION = 2
RTCP_HEADER_LENGTH = 4
REPORT_BLOCK_LENGTH = 24  # 6.4.1
SENDER_INFO_LENGTH = 20  # 6.4.1: NTP (8), RTP timestamp, packet count, octet count
COUNT_MAX = 31  # the 5-bit RC / SC field
# RFC 3550 section 6.5: SDES item types (12.2).
SDES_END = 0
SDES_CNAME = 1
# RFC 3611 section 4.7: VoIP Metrics Report Block type and its fixed block length (words - 1).
XR_VOIP_METRICS = 7
XR_VOIP_METRICS_LENGTH = 8
XR_UNAVAILABLE = 127  # 4.7: R factor, MOS and the levels say "unavailable" with 127
XR_GMIN = 16  # 4.7.2: the Gmin RFC 3611 recommends (and ``VoipMetrics`` defaults to)
# 4.7.6 receiver configuration byte: PLC (bits 7-6), jitter buffer adaptive (5-4), rate (3-0).
RX_CONFIG_PLC_UNSPECIFIED = 0
RX_CONFIG_JB_NON_ADAPTIVE = 2 << 4
RX_CONFIG_JB_ADAPTIVE = 3 << 4
# RFC 3550 section 6.2 / A.7 interval constants.
RTCP_MIN_TIME = 5.0
RTCP_BANDWIDTH_FRACTION = 0.05
RTCP_SENDER_BW_FRACTION = 0.25
RTCP_RCVR_BW_FRACTION = 1 - RTCP_SENDER_BW_FRACTION
COMPENSATION = math.e - 1.5  # A.7: compensates the timer reconsideration bias
IP_UDP_HEADER_BYTES = 28  # 6.2: avg_rtcp_size counts lower-layer headers (IPv4 + UDP)
# NTP seconds (since 1900) at the Unix epoch (RFC 3550 section 4 uses the NTP format).
NTP_UNIX_OFFSET_S = 2_208_988_800
LOST_MIN = -(1 << 23)  # cumulative number of packets lost is a signed 24-bit field
LOST_MAX = (1 << 23) - 1

_HEADER = Struct("!BBH")
_WORD = Struct("!I")
_BLOCK = Struct("!IB3sIIII")
_SENDER_INFO = Struct("!IQIII")  # SSRC of sender + sender info
_XR_BLOCK_HEADER = Struct("!BBH")
_VOIP = Struct("!BBHIBBBBHHHHbbBBBBBBBxHHH")


def _header(packet_type: int, count: int, body: bytes) -> bytes:
    """The 4-byte common header (6.4.1): V=2, P=0, count, type, length in words minus one."""
    if not 0 <= count <= COUNT_MAX:
        raise ValueError(f"RTCP: count {count} does not fit the 5-bit field")
    if len(body) % 4:
        raise ValueError(f"RTCP: body of {len(body)} bytes is not whole 32-bit words")
    return _HEADER.pack((RTCP_VERSION << 6) | count, packet_type, len(body) // 4) + body


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """A reception report block (RFC 3550 6.4.1) about the source ``ssrc``."""

    ssrc: int
    fraction_lost: int  # 1/256 units
    cumulative_lost: int  # signed 24 bits
    extended_highest_seq: int
    jitter: int  # timestamp units
    lsr: int  # middle 32 bits of the last SR's NTP timestamp
    dlsr: int  # delay since that SR, 1/65536 s

    def serialize(self) -> bytes:
        lost = max(LOST_MIN, min(LOST_MAX, self.cumulative_lost)) & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            self.fraction_lost,
            lost.to_bytes(3, "big"),
            self.extended_highest_seq,
            self.jitter,
            self.lsr,
            self.dlsr,
        )

    @classmethod
    def parse_from(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        cumulative = int.from_bytes(lost, "big", signed=True)
        return cls(ssrc, fraction, cumulative, highest, jitter, lsr, dlsr)


def _blocks(data: bytes, pos: int, count: int, kind: str) -> tuple[ReportBlock, ...]:
    need = pos + count * REPORT_BLOCK_LENGTH
    if need > len(data):
        raise ParseError(
            f"RTCP: {kind} with {count} report blocks needs {need} bytes of body, got {len(data)}"
        )
    return tuple(ReportBlock.parse_from(data, pos + i * REPORT_BLOCK_LENGTH) for i in range(count))


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR (RFC 3550 6.4.1): sender info plus report blocks; ``extension`` is profile-specific."""

    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def serialize(self) -> bytes:
        info = _SENDER_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        blocks = b"".join(block.serialize() for block in self.reports)
        return _header(RTCP_SR, len(self.reports), info + blocks + self.extension)

    @classmethod
    def parse(cls, body: bytes, count: int) -> SenderReport:
        if len(body) < 4 + SENDER_INFO_LENGTH:
            raise ParseError(f"RTCP: SR body of {len(body)} bytes is shorter than 24")
        ssrc, ntp, rtp, packets, octets = _SENDER_INFO.unpack_from(body)
        reports = _blocks(body, 24, count, "SR")
        extension = body[24 + count * REPORT_BLOCK_LENGTH :]
        return cls(ssrc, ntp, rtp, packets, octets, reports, extension)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR (RFC 3550 6.4.2): the reporter's SSRC and report blocks."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def serialize(self) -> bytes:
        blocks = b"".join(block.serialize() for block in self.reports)
        return _header(RTCP_RR, len(self.reports), _WORD.pack(self.ssrc) + blocks + self.extension)

    @classmethod
    def parse(cls, body: bytes, count: int) -> ReceiverReport:
        if len(body) < 4:
            raise ParseError(f"RTCP: RR body of {len(body)} bytes has no SSRC")
        reports = _blocks(body, 4, count, "RR")
        return cls(_WORD.unpack_from(body)[0], reports, body[4 + count * REPORT_BLOCK_LENGTH :])


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk (RFC 3550 6.5): an SSRC and its ``(type, value)`` items."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        """The CNAME item (6.5.1) as text, if present."""
        for item_type, value in self.items:
            if item_type == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None

    def serialize(self) -> bytes:
        """SSRC, items, then the null item and zero padding to a word boundary (6.5)."""
        parts = [_WORD.pack(self.ssrc)]
        for item_type, value in self.items:
            if len(value) > 255:
                raise ValueError(f"SDES item of {len(value)} bytes, at most 255")
            parts.append(bytes((item_type, len(value))) + value)
        chunk = b"".join(parts)
        return chunk + bytes(4 - len(chunk) % 4)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES (RFC 3550 6.5): one chunk per source."""

    chunks: tuple[SdesChunk, ...] = ()

    def serialize(self) -> bytes:
        body = b"".join(chunk.serialize() for chunk in self.chunks)
        return _header(RTCP_SDES, len(self.chunks), body)

    @classmethod
    def parse(cls, body: bytes, count: int) -> SourceDescription:
        chunks = []
        pos = 0
        for _ in range(count):
            chunk, pos = _parse_chunk(body, pos)
            chunks.append(chunk)
        return cls(tuple(chunks))


def _parse_chunk(body: bytes, pos: int) -> tuple[SdesChunk, int]:
    """One chunk from ``pos``: items up to the null item, then skip to the next word (6.5)."""
    if pos + 4 > len(body):
        raise ParseError(f"RTCP: SDES chunk at byte {pos} overruns the {len(body)}-byte body")
    ssrc = _WORD.unpack_from(body, pos)[0]
    pos += 4
    items: list[tuple[int, bytes]] = []
    while True:
        if pos >= len(body):
            raise ParseError(f"RTCP: SDES chunk for SSRC {ssrc:#010x} has no end item")
        item_type = body[pos]
        if item_type == SDES_END:
            return SdesChunk(ssrc, tuple(items)), (pos // 4 + 1) * 4
        if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
            raise ParseError(
                f"RTCP: SDES item type {item_type} at byte {pos} overruns the {len(body)}-byte body"
            )
        length = body[pos + 1]
        items.append((item_type, body[pos + 2 : pos + 2 + length]))
        pos += 2 + length


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE (RFC 3550 6.6): the sources leaving and an optional reason."""

    sources: tuple[int, ...]
    reason: bytes | None = None

    def serialize(self) -> bytes:
        body = b"".join(_WORD.pack(ssrc) for ssrc in self.sources)
        if self.reason is not None:
            if len(self.reason) > 255:
                raise ValueError(f"BYE reason of {len(self.reason)} bytes, at most 255")
            body += bytes((len(self.reason),)) + self.reason
            body += bytes(-len(body) % 4)
        return _header(RTCP_BYE, len(self.sources), body)

    @classmethod
    def parse(cls, body: bytes, count: int) -> Bye:
        end = 4 * count
        if end > len(body):
            raise ParseError(f"RTCP: BYE with {count} sources needs {end} bytes, got {len(body)}")
        sources = Struct(f"!{count}I").unpack_from(body)
        if end == len(body):
            return cls(sources)
        length = body[end]
        if end + 1 + length > len(body):
            raise ParseError(
                f"RTCP: BYE reason of {length} bytes overruns the {len(body)}-byte body"
            )
        return cls(sources, body[end + 1 : end + 1 + length])


@dataclass(frozen=True, slots=True)
class VoipMetrics:
    """RFC 3611 4.7 VoIP Metrics Report Block (BT=7), fields in their wire units.

    Rates and densities are fractions times 256, durations and delays ms, levels dBm / dB
    (signal and noise signed), R factors 0..100 (127 = unavailable), MOS times 10.
    """

    ssrc: int
    loss_rate: int = 0
    discard_rate: int = 0
    burst_density: int = 0
    gap_density: int = 0
    burst_duration: int = 0
    gap_duration: int = 0
    round_trip_delay: int = 0
    end_system_delay: int = 0
    signal_level: int = 127
    noise_level: int = 127
    rerl: int = 127
    gmin: int = 16
    r_factor: int = 127
    ext_r_factor: int = 127
    mos_lq: int = 127
    mos_cq: int = 127
    rx_config: int = 0
    jb_nominal: int = 0
    jb_maximum: int = 0
    jb_abs_max: int = 0

    def serialize(self) -> bytes:
        return _VOIP.pack(
            XR_VOIP_METRICS,
            0,
            XR_VOIP_METRICS_LENGTH,
            self.ssrc,
            self.loss_rate,
            self.discard_rate,
            self.burst_density,
            self.gap_density,
            self.burst_duration,
            self.gap_duration,
            self.round_trip_delay,
            self.end_system_delay,
            self.signal_level,
            self.noise_level,
            self.rerl,
            self.gmin,
            self.r_factor,
            self.ext_r_factor,
            self.mos_lq,
            self.mos_cq,
            self.rx_config,
            self.jb_nominal,
            self.jb_maximum,
            self.jb_abs_max,
        )

    @classmethod
    def from_measures(
        cls,
        ssrc: int,
        *,
        loss_fraction: float,
        discard_fraction: float,
        burst_density: float,
        gap_density: float,
        burst_duration_ms: float,
        gap_duration_ms: float,
        round_trip_delay_ms: float | None,
        end_system_delay_ms: float | None,
        r_factor: float | None,
        mos_lq: float | None,
        mos_cq: float | None,
        rx_config: int,
        jb_nominal_ms: float,
        jb_maximum_ms: float,
        jb_abs_max_ms: float,
    ) -> VoipMetrics:
        """The block about source ``ssrc`` from values in natural units (RFC 3611 4.7.1-4.7.7).

        Fractions of 1 become ``int(x * 256)`` capped at 255, milliseconds whole 16-bit values,
        ``r_factor`` (the narrowband 0..100 scale) a whole number, MOS values tenths in 10..50.
        None marks an unknown value: 127 ("unavailable") for R and MOS, 0 for the delays,
        which have no such code. Signal, noise and echo levels are always unavailable (we do
        not decode audio); Gmin is ``XR_GMIN``.
        """
        return cls(
            ssrc=ssrc,
            loss_rate=_fraction_256(loss_fraction),
            discard_rate=_fraction_256(discard_fraction),
            burst_density=_fraction_256(burst_density),
            gap_density=_fraction_256(gap_density),
            burst_duration=_ms16(burst_duration_ms),
            gap_duration=_ms16(gap_duration_ms),
            round_trip_delay=_ms16(round_trip_delay_ms),
            end_system_delay=_ms16(end_system_delay_ms),
            gmin=XR_GMIN,
            r_factor=XR_UNAVAILABLE if r_factor is None else min(max(round(r_factor), 0), 100),
            mos_lq=_mos10(mos_lq),
            mos_cq=_mos10(mos_cq),
            rx_config=rx_config,
            jb_nominal=_ms16(jb_nominal_ms),
            jb_maximum=_ms16(jb_maximum_ms),
            jb_abs_max=_ms16(jb_abs_max_ms),
        )

    @classmethod
    def parse(cls, block: bytes) -> VoipMetrics:
        length = _XR_BLOCK_HEADER.unpack_from(block)[2]
        if length != XR_VOIP_METRICS_LENGTH:
            raise ParseError(
                f"RTCP XR: VoIP Metrics block length {length} is not {XR_VOIP_METRICS_LENGTH}"
            )
        return cls(*_VOIP.unpack(block)[3:])


def _fraction_256(fraction: float) -> int:
    """4.7.1: a rate or density times 256, its integer part, limited to 255."""
    return min(max(int(fraction * 256), 0), 255)


def _ms16(ms: float | None) -> int:
    return 0 if ms is None else min(max(round(ms), 0), 0xFFFF)


def _mos10(mos: float | None) -> int:
    """4.7.5: MOS times 10, 10 (1.0) to 50 (5.0); 127 when unavailable."""
    return XR_UNAVAILABLE if mos is None else min(max(round(mos * 10), 10), 50)


@dataclass(frozen=True, slots=True)
class XrBlock:
    """An XR report block of a type we do not decode (RFC 3611 3), kept raw."""

    block_type: int
    type_specific: int
    data: bytes

    def serialize(self) -> bytes:
        header = _XR_BLOCK_HEADER.pack(self.block_type, self.type_specific, len(self.data) // 4)
        return header + self.data


@dataclass(frozen=True, slots=True)
class ExtendedReport:
    """XR (RFC 3611 2): the reporter's SSRC and report blocks."""

    ssrc: int
    blocks: tuple[VoipMetrics | XrBlock, ...] = ()

    def serialize(self) -> bytes:
        body = _WORD.pack(self.ssrc) + b"".join(block.serialize() for block in self.blocks)
        return _header(RTCP_XR, 0, body)

    @classmethod
    def parse(cls, body: bytes, count: int) -> ExtendedReport:
        if len(body) < 4:
            raise ParseError(f"RTCP: XR body of {len(body)} bytes has no SSRC")
        blocks: list[VoipMetrics | XrBlock] = []
        pos = 4
        while pos < len(body):
            if pos + 4 > len(body):
                raise ParseError(
                    f"RTCP XR: block header at byte {pos} overruns the {len(body)}-byte body"
                )
            block_type, specific, words = _XR_BLOCK_HEADER.unpack_from(body, pos)
            end = pos + 4 + 4 * words
            if end > len(body):
                raise ParseError(
                    f"RTCP XR: block type {block_type} of {words} words ends at byte {end}, "
                    f"the body has {len(body)}"
                )
            if block_type == XR_VOIP_METRICS:
                blocks.append(VoipMetrics.parse(body[pos:end]))
            else:
                blocks.append(XrBlock(block_type, specific, body[pos + 4 : end]))
            pos = end
        return cls(_WORD.unpack_from(body)[0], tuple(blocks))


@dataclass(frozen=True, slots=True)
class RawPacket:
    """An RTCP packet of a type we do not decode (APP, feedback ...), kept raw."""

    packet_type: int
    count: int
    body: bytes

    def serialize(self) -> bytes:
        return _header(self.packet_type, self.count, self.body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | ExtendedReport | RawPacket

_PARSERS: dict[int, Callable[[bytes, int], RtcpPacket]] = {
    RTCP_SR: SenderReport.parse,
    RTCP_RR: ReceiverReport.parse,
    RTCP_SDES: SourceDescription.parse,
    RTCP_BYE: Bye.parse,
    RTCP_XR: ExtendedReport.parse,
}


def parse_rtcp(data: bytes) -> tuple[RtcpPacket, ...]:
    """Split and decode a compound RTCP packet (RFC 3550 6.1); padding is dropped."""
    packets: list[RtcpPacket] = []
    pos = 0
    if not data:
        raise ParseError("RTCP: empty packet")
    while pos < len(data):
        if pos + RTCP_HEADER_LENGTH > len(data):
            raise ParseError(
                f"RTCP: {len(data) - pos} bytes at byte {pos} are shorter than the 4-byte header"
            )
        first, packet_type, words = _HEADER.unpack_from(data, pos)
        if first >> 6 != RTCP_VERSION:
            raise ParseError(f"RTCP: version {first >> 6} is not {RTCP_VERSION}")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise ParseError(
                f"RTCP: packet type {packet_type} of {4 + 4 * words} bytes at byte {pos} "
                f"overruns the {len(data)}-byte datagram"
            )
        body = data[pos + 4 : end]
        if first & 0x20:
            body = _strip_padding(body, packet_type)
        count = first & 0x1F
        parser = _PARSERS.get(packet_type)
        packets.append(parser(body, count) if parser else RawPacket(packet_type, count, body))
        pos = end
    return tuple(packets)


def _strip_padding(body: bytes, packet_type: int) -> bytes:
    """RFC 3550 6.4.1: the last padding octet counts the padding octets, itself included."""
    padding = body[-1] if body else 0
    if padding == 0 or padding > len(body):
        raise ParseError(
            f"RTCP: packet type {packet_type} padding of {padding} bytes "
            f"does not fit its {len(body)}-byte body"
        )
    if padding % 4:
        # 6.4.1: every packet's content is whole words, so padding comes in words too.
        raise ParseError(
            f"RTCP: packet type {packet_type} padding of {padding} bytes is not whole 32-bit words"
        )
    return body[:-padding]


def serialize_compound(packets: tuple[RtcpPacket, ...] | list[RtcpPacket]) -> bytes:
    """The packets of a compound RTCP packet, back to back (RFC 3550 6.1)."""
    return b"".join(packet.serialize() for packet in packets)


def ntp_timestamp(ntp_seconds: float) -> int:
    """64-bit NTP timestamp (RFC 3550 4): seconds since 1900 as 32.32 fixed point."""
    return int(ntp_seconds * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def ntp_short(ntp_seconds: float) -> int:
    """The middle 32 bits of the NTP timestamp, 16.16 fixed point (RFC 3550 4, 6.4.1 LSR)."""
    return (ntp_timestamp(ntp_seconds) >> 16) & 0xFFFF_FFFF


class ReceptionSource(Protocol):
    """What a report block needs from receive statistics (``ReceiverSnapshot`` has it all)."""

    @property
    def ssrc(self) -> int | None: ...
    @property
    def extended_highest_seq(self) -> int | None: ...
    @property
    def expected_total(self) -> int: ...
    @property
    def lost_total(self) -> int: ...
    @property
    def jitter(self) -> float: ...


class Rng(Protocol):
    """A source of uniform floats in [0, 1), e.g. ``random.Random(seed)``."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RemoteReport:
    """The peer's view of our stream: its last report block about our SSRC (6.4.1, 6.4.2)."""

    at: float  # when it arrived (monotonic s)
    reporter_ssrc: int
    fraction_lost: int  # 1/256 units, since the peer's previous report
    cumulative_lost: int
    extended_highest_seq: int
    jitter_ms: float
    rtt_ms: float | None  # None until the peer echoes one of our SRs (LSR 0)

    @property
    def loss_fraction(self) -> float:
        """``fraction_lost`` as a fraction of 1."""
        return self.fraction_lost / 256


@dataclass(slots=True)
class _PeerSr:
    """The last SR heard from the peer: its LSR value and arrival, for our DLSR (6.4.1)."""

    ssrc: int
    lsr: int
    at: float


@dataclass(slots=True)
class _Sending:
    """Sender state for the SR sender info (6.4.1)."""

    packet_count: int = 0
    octet_count: int = 0
    last_timestamp: int = 0
    last_at: float = 0.0
    since_report: bool = False


class RtcpSession:
    """RTCP for one RTP stream of a two-party call (RFC 3550 6), sans-I/O.

    ``session_bandwidth_bps`` is the RTP session bandwidth (6.2, e.g. 64000 for G.711 plus
    headers); 5 % of it is the RTCP share. ``ntp_offset_s`` is NTP time (seconds since 1900)
    minus the monotonic clock, fixed by the shell: ``time.time() + NTP_UNIX_OFFSET_S -
    time.monotonic()``. ``now`` at construction starts the session: the first report is due a
    randomised half interval later (6.2).
    """

    def __init__(
        self,
        ssrc: int,
        cname: str,
        clock_rate: int,
        session_bandwidth_bps: float,
        ntp_offset_s: float,
        now: float,
        rng: Rng | None = None,
    ) -> None:
        if clock_rate <= 0 or session_bandwidth_bps <= 0:
            raise ValueError("clock_rate and session_bandwidth_bps must be positive")
        self.ssrc = ssrc
        self.cname = cname
        self.clock_rate = clock_rate
        self.ntp_offset_s = ntp_offset_s
        self.rtcp_bandwidth = session_bandwidth_bps / 8 * RTCP_BANDWIDTH_FRACTION  # octets/s
        self.remote: RemoteReport | None = None
        self.remote_voip: VoipMetrics | None = None  # the peer's last block about our stream
        self.peer_ssrc: int | None = None
        self.peer_cname: str | None = None
        self.bye_received = False
        self._rng: Rng = rng if rng is not None else random.Random()
        self._sending = _Sending()
        self._peer_sr: _PeerSr | None = None
        self._peer_sender = False
        self._prior_expected = 0
        self._prior_lost = 0
        self._initial = True
        # A.7: avg_rtcp_size starts as the probable size of the first packet, an RR with
        # one report block and our SDES, plus IP/UDP headers.
        probe = ReceiverReport(ssrc, (ReportBlock(0, 0, 0, 0, 0, 0, 0),))
        self.avg_rtcp_size = float(len(probe.serialize() + self._sdes()) + IP_UDP_HEADER_BYTES)
        self._next_report = now + self._interval()

    def on_rtp_sent(self, seq: int, timestamp: int, size: int, now: float) -> None:
        """We sent RTP packet ``seq`` with ``size`` payload octets (6.4.1 counts payload)."""
        sending = self._sending
        sending.packet_count = (sending.packet_count + 1) & 0xFFFF_FFFF
        sending.octet_count = (sending.octet_count + size) & 0xFFFF_FFFF
        sending.last_timestamp = timestamp
        sending.last_at = now
        sending.since_report = True

    def next_report_time(self) -> float:
        """When the next report is due (monotonic s): the 6.3 / A.7 schedule."""
        return self._next_report

    def deterministic_interval(self) -> float:
        """Td of RFC 3550 6.3.1 / A.7 before randomisation, in seconds."""
        min_time = RTCP_MIN_TIME / 2 if self._initial else RTCP_MIN_TIME
        we_sent = self._sending.since_report
        senders = int(we_sent) + int(self._peer_sender)
        members = 1 + int(self.peer_ssrc is not None or self._peer_sender)
        n, bandwidth = members, self.rtcp_bandwidth
        if senders <= members * RTCP_SENDER_BW_FRACTION:
            if we_sent:
                n, bandwidth = senders, bandwidth * RTCP_SENDER_BW_FRACTION
            else:
                n, bandwidth = members - senders, bandwidth * RTCP_RCVR_BW_FRACTION
        return max(self.avg_rtcp_size * n / bandwidth, min_time)

    def _interval(self) -> float:
        """A.7 ``rtcp_interval``: Td randomised by 0.5..1.5, divided by e - 3/2."""
        return self.deterministic_interval() * (self._rng.random() + 0.5) / COMPENSATION

    def build_report(
        self,
        now: float,
        reception: ReceptionSource | None = None,
        voip: VoipMetrics | None = None,
    ) -> bytes:
        """A compound report (6.1): SR if we sent RTP since the last report, else RR, then
        SDES CNAME, then an XR with ``voip`` when given (RFC 3611 4.7). ``reception`` (the
        latest ``ReceiverSnapshot``) yields the report block about the peer. Schedules the
        next report."""
        packets: list[RtcpPacket] = [self._report(now, reception), self._sdes_packet()]
        if voip is not None:
            packets.append(ExtendedReport(self.ssrc, (voip,)))
        data = serialize_compound(packets)
        self._sent(now, len(data))
        return data

    def bye(self, now: float, reception: ReceptionSource | None = None) -> bytes:
        """A final compound packet (6.1, 6.6): the report, SDES CNAME and BYE for our SSRC."""
        packets = [self._report(now, reception), self._sdes_packet(), Bye((self.ssrc,))]
        data = serialize_compound(packets)
        self._sent(now, len(data))
        return data

    def receive(self, data: bytes, now: float) -> tuple[RtcpPacket, ...]:
        """Take one RTCP datagram from the peer; raises ``ParseError`` if it is malformed."""
        packets = parse_rtcp(data)
        self._update_avg(len(data))
        for packet in packets:
            if isinstance(packet, SenderReport):
                self._peer_sender = True
                self._peer_sr = _PeerSr(packet.ssrc, ntp_short_of(packet.ntp_timestamp), now)
            if isinstance(packet, SenderReport | ReceiverReport):
                self.peer_ssrc = packet.ssrc
                for block in packet.reports:
                    if block.ssrc == self.ssrc:
                        self.remote = self._remote_report(packet.ssrc, block, now)
            elif isinstance(packet, SourceDescription):
                for chunk in packet.chunks:
                    if chunk.ssrc != self.ssrc and chunk.cname is not None:
                        self.peer_cname = chunk.cname
            elif isinstance(packet, ExtendedReport):
                for xr_block in packet.blocks:
                    if isinstance(xr_block, VoipMetrics) and xr_block.ssrc == self.ssrc:
                        self.remote_voip = xr_block
            elif isinstance(packet, Bye) and self.ssrc not in packet.sources:
                self.bye_received = True
        return packets

    def _remote_report(self, reporter: int, block: ReportBlock, now: float) -> RemoteReport:
        """The peer's report block about us; RTT = A - LSR - DLSR in 16.16 units (6.4.1)."""
        rtt_ms: float | None = None
        if block.lsr:
            arrival = ntp_short(now + self.ntp_offset_s)
            rtt = (arrival - block.lsr - block.dlsr) & 0xFFFF_FFFF
            if rtt < 1 << 31:  # otherwise negative: the peer's DLSR is off
                rtt_ms = rtt * 1000 / 65536
        return RemoteReport(
            at=now,
            reporter_ssrc=reporter,
            fraction_lost=block.fraction_lost,
            cumulative_lost=block.cumulative_lost,
            extended_highest_seq=block.extended_highest_seq,
            jitter_ms=block.jitter * 1000 / self.clock_rate,
            rtt_ms=rtt_ms,
        )

    def _report(self, now: float, reception: ReceptionSource | None) -> RtcpPacket:
        blocks = self._report_blocks(now, reception)
        sending = self._sending
        if not sending.since_report:
            return ReceiverReport(self.ssrc, blocks)
        elapsed = round((now - sending.last_at) * self.clock_rate)
        return SenderReport(
            self.ssrc,
            ntp_timestamp(now + self.ntp_offset_s),
            (sending.last_timestamp + elapsed) & 0xFFFF_FFFF,
            sending.packet_count,
            sending.octet_count,
            blocks,
        )

    def _report_blocks(
        self, now: float, reception: ReceptionSource | None
    ) -> tuple[ReportBlock, ...]:
        """The block about the peer (6.4.1): fraction lost since our last report (A.3)."""
        if reception is None or reception.ssrc is None or reception.extended_highest_seq is None:
            return ()
        self._peer_sender = True  # we receive its RTP: it counts as a sender (6.3.3)
        expected = reception.expected_total - self._prior_expected
        lost = reception.lost_total - self._prior_lost
        self._prior_expected, self._prior_lost = reception.expected_total, reception.lost_total
        lsr = dlsr = 0
        peer_sr = self._peer_sr
        if peer_sr is not None and peer_sr.ssrc == reception.ssrc:
            lsr, dlsr = peer_sr.lsr, int((now - peer_sr.at) * 65536) & 0xFFFF_FFFF
        return (
            ReportBlock(
                reception.ssrc,
                fraction_lost(expected, lost),
                reception.lost_total,
                reception.extended_highest_seq & 0xFFFF_FFFF,
                int(reception.jitter),
                lsr,
                dlsr,
            ),
        )

    def _sdes(self) -> bytes:
        return self._sdes_packet().serialize()

    def _sdes_packet(self) -> SourceDescription:
        cname = self.cname.encode("utf-8")
        return SourceDescription((SdesChunk(self.ssrc, ((SDES_CNAME, cname),)),))

    def _sent(self, now: float, size: int) -> None:
        """After sending (6.3.3): update avg_rtcp_size, then schedule from ``now``."""
        self._update_avg(size)
        self._initial = False
        self._next_report = now + self._interval()
        self._sending.since_report = False

    def _update_avg(self, size: int) -> None:
        """6.3.3: avg_rtcp_size = 1/16 * packet_size + 15/16 * avg_rtcp_size."""
        self.avg_rtcp_size += (size + IP_UDP_HEADER_BYTES - self.avg_rtcp_size) / 16


def ntp_short_of(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp (the LSR field, 6.4.1)."""
    return (ntp >> 16) & 0xFFFF_FFFF
