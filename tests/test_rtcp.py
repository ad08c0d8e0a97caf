"""RTCP packets and RtcpSession (callmeter.media.rtcp): round trips, exact errors, a cross-check
with aiortc's RTCP serializer and parser in both directions, and a two-session exchange on a
fake clock (report intervals, SR/RR choice, RTT, the peer's loss and jitter)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from aiortc.rtp import (
    RtcpByePacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
)
from aiortc.rtp import RtcpPacket as AiortcRtcpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from callmeter.media.rtcp import (
    COMPENSATION,
    RTCP_MIN_TIME,
    RX_CONFIG_JB_ADAPTIVE,
    SDES_CNAME,
    Bye,
    ExtendedReport,
    RawPacket,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpSession,
    SdesChunk,
    SenderReport,
    SourceDescription,
    VoipMetrics,
    XrBlock,
    ntp_short,
    ntp_timestamp,
    parse_rtcp,
    serialize_compound,
)
from callmeter.media.rtpstats import ReceiverStats
from callmeter.sip.errors import ParseError

BLOCK = ReportBlock(
    ssrc=0x11223344,
    fraction_lost=25,
    cumulative_lost=-3,
    extended_highest_seq=0x0001_0005,
    jitter=77,
    lsr=0xABCD1234,
    dlsr=65536 * 2,
)
SR = SenderReport(0xDEE0EE8F, 0xE7A1_2345_8000_0000, 160_000, 1000, 160_000, (BLOCK,))
RR = ReceiverReport(0x55667788, (BLOCK, BLOCK))
SDES = SourceDescription(
    (SdesChunk(0xDEE0EE8F, ((SDES_CNAME, b"alice@127.0.0.1"),)), SdesChunk(9, ()))
)
BYE = Bye((0xDEE0EE8F, 5), b"call ended")
VOIP = VoipMetrics(
    ssrc=0x55667788,
    loss_rate=12,
    discard_rate=3,
    burst_density=200,
    gap_density=4,
    burst_duration=120,
    gap_duration=5000,
    round_trip_delay=80,
    end_system_delay=40,
    signal_level=-20,
    noise_level=-70,
    rerl=30,
    gmin=16,
    r_factor=90,
    ext_r_factor=127,
    mos_lq=42,
    mos_cq=41,
    rx_config=0x50,
    jb_nominal=40,
    jb_maximum=80,
    jb_abs_max=200,
)
XR = ExtendedReport(0xDEE0EE8F, (VOIP, XrBlock(4, 0, b"\x00\x01\x02\x03\x04\x05\x06\x07")))


@pytest.mark.parametrize("packet", [SR, RR, SDES, BYE, XR, Bye(()), ReceiverReport(1)])
def test_packet_round_trips(packet: RtcpPacket) -> None:
    data = packet.serialize()
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == (packet,)


def test_compound_round_trips_and_fields_sit_where_rfc_3550_puts_them() -> None:
    data = serialize_compound([SR, SDES, BYE])
    assert parse_rtcp(data) == (SR, SDES, BYE)
    assert data[:4] == b"\x81\xc8\x00\x0c"  # V=2 RC=1, PT=200, 13 words
    assert data[28:32] == b"\x11\x22\x33\x44"  # first report block's SSRC
    assert data[32:36] == b"\x19\xff\xff\xfd"  # fraction 25, cumulative lost -3 (24 bits)


def test_voip_metrics_block_layout() -> None:
    block = VOIP.serialize()
    assert len(block) == 36 and block[:4] == b"\x07\x00\x00\x08"  # BT=7, length 8 (RFC 3611)
    assert block[20] == (-20) & 0xFF and block[21] == (-70) & 0xFF  # signed dBm levels
    assert ExtendedReport(1, (VOIP,)).serialize()[:4] == b"\x80\xcf\x00\x0a"


# Measured values in natural units and the bytes RFC 3611 4.7 puts them in, by hand.
MEASURED = VoipMetrics.from_measures(
    0x01020304,
    loss_fraction=0.05,  # int(12.8) = 12
    discard_fraction=0.01,  # int(2.56) = 2
    burst_density=0.5,  # 128
    gap_density=0.02,  # int(5.12) = 5
    burst_duration_ms=60.4,  # 60
    gap_duration_ms=1234.6,  # 1235
    round_trip_delay_ms=80.2,  # 80
    end_system_delay_ms=None,  # unknown: 0
    r_factor=93.2,  # 93
    mos_lq=4.41,  # 44
    mos_cq=None,  # unavailable: 127
    rx_config=RX_CONFIG_JB_ADAPTIVE,  # PLC unspecified (00), JBA adaptive (11), rate 0
    jb_nominal_ms=60.0,
    jb_maximum_ms=1000.0,
    jb_abs_max_ms=70_000.0,  # beyond 16 bits: 65535
)
MEASURED_BYTES = bytes.fromhex(
    "07000008"  # BT 7, reserved, length 8
    "01020304"  # SSRC of source
    "0c028005"  # loss rate, discard rate, burst density, gap density
    "003c04d3"  # burst duration 60, gap duration 1235
    "00500000"  # round trip delay 80, end system delay 0
    "7f7f7f10"  # signal, noise, RERL unavailable; Gmin 16
    "5d7f2c7f"  # R 93, ext R unavailable, MOS-LQ 4.4, MOS-CQ unavailable
    "3000003c"  # RX config, reserved, JB nominal 60
    "03e8ffff"  # JB maximum 1000, JB abs max 65535
)


def test_voip_metrics_from_measures_in_rfc_3611_units() -> None:
    assert MEASURED.serialize() == MEASURED_BYTES
    packet = ExtendedReport(0xDEE0EE8F, (MEASURED,))
    data = packet.serialize()  # header, SSRC and the 36-byte block: 11 words, length 10
    assert data[:8] == b"\x80\xcf\x00\x0a\xde\xe0\xee\x8f" and data[8:] == MEASURED_BYTES
    assert parse_rtcp(data) == (packet,)


def test_voip_metrics_from_measures_clamps_to_the_fields() -> None:
    block = VoipMetrics.from_measures(
        1, loss_fraction=1.0, discard_fraction=-0.1, burst_density=1.0, gap_density=0.0,
        burst_duration_ms=1e9, gap_duration_ms=-5.0, round_trip_delay_ms=None,
        end_system_delay_ms=65535.4, r_factor=129.0, mos_lq=0.98, mos_cq=4.5, rx_config=0,
        jb_nominal_ms=0.0, jb_maximum_ms=0.0, jb_abs_max_ms=0.0,
    )  # fmt: skip
    assert (block.loss_rate, block.discard_rate, block.burst_density) == (255, 0, 255)
    assert (block.burst_duration, block.gap_duration, block.end_system_delay) == (65535, 0, 65535)
    assert (block.r_factor, block.mos_lq, block.mos_cq) == (100, 10, 45)
    assert VoipMetrics.parse(block.serialize()) == block


def test_a_peer_without_xr_skips_ours() -> None:
    # RFC 3611 section 2: XR is optional; aiortc, which has none, must still read the rest.
    data = serialize_compound([RR, ExtendedReport(RR.ssrc, (MEASURED,))])
    (rr,) = AiortcRtcpPacket.parse(data)
    assert isinstance(rr, RtcpRrPacket) and rr.ssrc == RR.ssrc


def test_unknown_packet_types_are_kept_raw_and_padding_dropped() -> None:
    app = b"\x81\xcc\x00\x02" + b"\x00\x00\x00\x01" + b"name"
    padded = b"\xa1\xcb\x00\x02" + b"\x00\x00\x00\x07" + b"\x00\x00\x00\x04"  # BYE, P
    assert parse_rtcp(app + padded) == (RawPacket(204, 1, b"\x00\x00\x00\x01name"), Bye((7,)))


TWINS = [
    (b"", "RTCP: empty packet"),
    (SR.serialize()[:3], "RTCP: 3 bytes at byte 0 are shorter than the 4-byte header"),
    (b"\x41" + SR.serialize()[1:], "RTCP: version 1 is not 2"),
    (
        SR.serialize()[:-4],
        "RTCP: packet type 200 of 52 bytes at byte 0 overruns the 48-byte datagram",
    ),
    (
        b"\x82" + SR.serialize()[1:],
        "RTCP: SR with 2 report blocks needs 72 bytes of body, got 48",
    ),
    (
        b"\x81\xc9\x00\x01\x00\x00\x00\x01",
        "RTCP: RR with 1 report blocks needs 28 bytes of body, got 4",
    ),
    (b"\x80\xc8\x00\x01\x00\x00\x00\x01", "RTCP: SR body of 4 bytes is shorter than 24"),
    (b"\x80\xc9\x00\x00", "RTCP: RR body of 0 bytes has no SSRC"),
    (b"\x82\xcb\x00\x01\x00\x00\x00\x01", "RTCP: BYE with 2 sources needs 8 bytes, got 4"),
    (
        b"\x81\xcb\x00\x02\x00\x00\x00\x01\x09ab\x00",
        "RTCP: BYE reason of 9 bytes overruns the 8-byte body",
    ),
    (
        b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x09ab",
        "RTCP: SDES item type 1 at byte 4 overruns the 8-byte body",
    ),
    (
        b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x02ab",
        "RTCP: SDES chunk for SSRC 0x00000001 has no end item",
    ),
    (
        b"\x82\xca\x00\x02\x00\x00\x00\x01\x01\x01a\x00",
        "RTCP: SDES chunk at byte 8 overruns the 8-byte body",
    ),
    (
        b"\xa1\xcb\x00\x02\x00\x00\x00\x01\x00\x00\x00\x02",
        "RTCP: packet type 203 padding of 2 bytes is not whole 32-bit words",
    ),
    (
        b"\xa0\xcb\x00\x01\x00\x00\x00\x09",
        "RTCP: packet type 203 padding of 9 bytes does not fit its 4-byte body",
    ),
    (
        b"\x80\xcf\x00\x02\x00\x00\x00\x01\x07\x00\x00\x08",
        "RTCP XR: block type 7 of 8 words ends at byte 40, the body has 8",
    ),
    (
        b"\x80\xcf\x00\x03\x00\x00\x00\x01\x07\x00\x00\x01\x00\x00\x00\x00",
        "RTCP XR: VoIP Metrics block length 1 is not 8",
    ),
]


@pytest.mark.parametrize(("data", "error"), TWINS, ids=[t[1] for t in TWINS])
def test_broken_packets_raise_the_exact_error(data: bytes, error: str) -> None:
    with pytest.raises(ParseError) as raised:
        parse_rtcp(data)
    assert str(raised.value) == error


def test_serialize_refuses_a_body_of_partial_words() -> None:
    with pytest.raises(ValueError, match="body of 6 bytes is not whole 32-bit words"):
        ReceiverReport(1, (), b"ab").serialize()


def aiortc_block(block: ReportBlock) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(
        ssrc=block.ssrc,
        fraction_lost=block.fraction_lost,
        packets_lost=block.cumulative_lost,
        highest_sequence=block.extended_highest_seq,
        jitter=block.jitter,
        lsr=block.lsr,
        dlsr=block.dlsr,
    )


def test_aiortc_compound_parses_with_ours() -> None:
    theirs: list[RtcpSrPacket | RtcpRrPacket | RtcpSdesPacket | RtcpByePacket] = [
        RtcpSrPacket(
            ssrc=SR.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=SR.ntp_timestamp,
                rtp_timestamp=SR.rtp_timestamp,
                packet_count=SR.packet_count,
                octet_count=SR.octet_count,
            ),
            reports=[aiortc_block(BLOCK)],
        ),
        RtcpRrPacket(ssrc=RR.ssrc, reports=[aiortc_block(BLOCK), aiortc_block(BLOCK)]),
        RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=SR.ssrc, items=[(1, b"alice@127.0.0.1")])]),
        RtcpByePacket(sources=[SR.ssrc, 5]),
    ]
    data = b"".join(bytes(packet) for packet in theirs)
    sdes = SourceDescription((SdesChunk(SR.ssrc, ((SDES_CNAME, b"alice@127.0.0.1"),)),))
    assert parse_rtcp(data) == (SR, RR, sdes, Bye((SR.ssrc, 5)))


def test_our_compound_parses_with_aiortc() -> None:
    sdes = SourceDescription((SdesChunk(SR.ssrc, ((SDES_CNAME, b"alice@127.0.0.1"),)),))
    sr, rr, their_sdes, bye = AiortcRtcpPacket.parse(
        serialize_compound([SR, RR, sdes, Bye((SR.ssrc, 5))])
    )
    assert isinstance(sr, RtcpSrPacket) and isinstance(rr, RtcpRrPacket)
    assert isinstance(their_sdes, RtcpSdesPacket) and isinstance(bye, RtcpByePacket)
    assert sr.ssrc == SR.ssrc and sr.sender_info.ntp_timestamp == SR.ntp_timestamp
    assert (sr.sender_info.packet_count, sr.sender_info.octet_count) == (1000, 160_000)
    assert sr.reports == [aiortc_block(BLOCK)] and rr.reports == [aiortc_block(BLOCK)] * 2
    assert their_sdes.chunks[0].items == [(1, b"alice@127.0.0.1")]
    assert bye.sources == [SR.ssrc, 5]


def test_ntp_conversions() -> None:
    assert ntp_timestamp(1.5) == 0x0000_0001_8000_0000
    assert ntp_short(0x1234 + 0.25) == 0x1234_4000


@given(st.binary(max_size=120))
def test_random_bytes_give_packets_or_a_parse_error(data: bytes) -> None:
    check_parse(data)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 40),
)
def test_mutated_compounds_give_packets_or_a_parse_error(
    edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(serialize_compound([SR, SDES, XR, BYE]))
    for position, value in edits:
        data[position % len(data)] = value
    check_parse(bytes(data[: len(data) - cut]))


def check_parse(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except ParseError:
        return
    assert parse_rtcp(serialize_compound(packets)) == packets


# RtcpSession on a fake clock

CLOCK_RATE = 8000
BANDWIDTH_BPS = 64_000  # 5 % = 400 octets/s: the 5 s minimum governs a two-party call


@dataclass(frozen=True)
class Reception:
    ssrc: int | None
    extended_highest_seq: int | None
    expected_total: int
    lost_total: int
    jitter: float


def session(ssrc: int, now: float, ntp_offset_s: float, seed: int = 1) -> RtcpSession:
    return RtcpSession(
        ssrc=ssrc,
        cname=f"{ssrc}@127.0.0.1",
        clock_rate=CLOCK_RATE,
        session_bandwidth_bps=BANDWIDTH_BPS,
        ntp_offset_s=ntp_offset_s,
        now=now,
        rng=random.Random(seed),
    )


def test_report_intervals_stay_within_rfc_3550_bounds() -> None:
    now = 100.0
    alice = session(1, now, 3.9e9)
    first = alice.next_report_time() - now
    assert RTCP_MIN_TIME / 2 * 0.5 / COMPENSATION <= first <= RTCP_MIN_TIME / 2 * 1.5 / COMPENSATION
    intervals = []
    for _ in range(200):
        now = alice.next_report_time()
        alice.build_report(now)
        intervals.append(alice.next_report_time() - now)
    low, high = RTCP_MIN_TIME * 0.5 / COMPENSATION, RTCP_MIN_TIME * 1.5 / COMPENSATION
    assert all(low <= interval <= high for interval in intervals)
    assert max(intervals) - min(intervals) > 2  # randomised, not fixed
    assert 3.5 < sum(intervals) / len(intervals) < 4.7  # mean Td / (e - 3/2) = 4.10 s


def test_interval_grows_when_the_bandwidth_is_small() -> None:
    slow = RtcpSession(1, "a", CLOCK_RATE, 800, 0.0, now=0.0, rng=random.Random(3))
    # 5 % of 100 octets/s is 5 octets/s; one member of ~100 bytes: Td about 20 s.
    assert slow.deterministic_interval() > 4 * RTCP_MIN_TIME / 2


def test_sr_when_we_sent_rtp_since_the_last_report_else_rr() -> None:
    alice = session(1, 0.0, 0.0)
    assert isinstance(parse_rtcp(alice.build_report(1.0))[0], ReceiverReport)
    for seq in range(50):
        alice.on_rtp_sent(seq, 1000 + 160 * seq, 160, now=1.0 + 0.02 * seq)
    sr, sdes = parse_rtcp(alice.build_report(2.5, None))
    assert isinstance(sr, SenderReport) and isinstance(sdes, SourceDescription)
    assert (sr.packet_count, sr.octet_count) == (50, 8000)
    # RTP timestamp extrapolated to the report time: last 1000 + 160*49 at 1.98 s, +0.52 s.
    assert sr.rtp_timestamp == 1000 + 160 * 49 + round(0.52 * CLOCK_RATE)
    assert sdes.chunks[0].cname == "1@127.0.0.1"
    assert isinstance(parse_rtcp(alice.build_report(8.0))[0], ReceiverReport)


def test_rtt_from_a_crafted_report_block() -> None:
    offset = 3_900_000_000.0
    alice = session(1, 0.0, offset)
    alice.on_rtp_sent(1, 160, 160, now=9.0)
    sr = parse_rtcp(alice.build_report(10.0))[0]
    assert isinstance(sr, SenderReport)
    lsr = (sr.ntp_timestamp >> 16) & 0xFFFF_FFFF
    # The peer got the SR 40 ms later, held it 1.25 s, its RR arrives 40 ms after that.
    block = ReportBlock(1, 64, 7, 1234, 240, lsr, int(1.25 * 65536))
    alice.receive(ReceiverReport(2, (block,)).serialize(), now=10.0 + 0.04 + 1.25 + 0.04)
    remote = alice.remote
    assert remote is not None and remote.rtt_ms is not None
    assert remote.rtt_ms == pytest.approx(80.0, abs=0.05)
    assert (remote.fraction_lost, remote.cumulative_lost, remote.extended_highest_seq) == (
        64,
        7,
        1234,
    )
    assert remote.loss_fraction == 0.25 and remote.jitter_ms == 30.0  # 240 / 8 kHz


def test_two_sessions_exchange_reports_with_40_ms_each_way() -> None:
    delay = 0.040
    alice, bob = session(0xA, 0.0, 3.9e9, seed=1), session(0xB, 0.0, 3.7e9 + 0.123, seed=2)
    bob_stats = ReceiverStats(CLOCK_RATE)
    for seq in range(250):  # alice sends 5 s of PCMA, every 10th packet lost
        sent = seq * 0.02
        alice.on_rtp_sent(seq, seq * 160, 160, now=sent)
        if seq % 10 != 3:
            bob_stats.add(seq, seq * 160, 0xA, 160, arrival=sent + delay)
    alice_report = alice.build_report(5.0)
    bob.receive(alice_report, now=5.0 + delay)
    reception = bob_stats.snapshot(5.2)
    bob_report = bob.build_report(5.3, reception)
    assert isinstance(parse_rtcp(bob_report)[0], ReceiverReport)
    alice.receive(bob_report, now=5.3 + delay)
    remote = alice.remote
    assert remote is not None and remote.rtt_ms == pytest.approx(80.0, abs=0.05)
    assert remote.cumulative_lost == 25 and remote.fraction_lost == 25 * 256 // 250
    assert remote.extended_highest_seq == 249 and remote.jitter_ms == pytest.approx(0, abs=0.2)
    assert bob.peer_cname == f"{0xA}@127.0.0.1" and bob.peer_ssrc == 0xA


def test_fraction_lost_is_since_the_previous_report() -> None:
    bob = session(2, 0.0, 0.0)
    first = parse_rtcp(bob.build_report(5.0, Reception(7, 99, 100, 10, 16.0)))[0]
    second = parse_rtcp(bob.build_report(10.0, Reception(7, 199, 200, 10, 16.0)))[0]
    assert isinstance(first, ReceiverReport) and isinstance(second, ReceiverReport)
    assert first.reports[0].fraction_lost == 25 and second.reports[0].fraction_lost == 0
    assert second.reports[0].cumulative_lost == 10 and second.reports[0].lsr == 0


def test_bye_is_last_and_a_peer_bye_is_recorded() -> None:
    alice, bob = session(1, 0.0, 0.0), session(2, 0.0, 0.0)
    packets = parse_rtcp(alice.bye(3.0))
    assert isinstance(packets[0], ReceiverReport) and packets[-1] == Bye((1,))
    bob.receive(alice.bye(3.0), now=3.1)
    assert bob.bye_received and not alice.bye_received


def test_a_voip_block_goes_out_as_xr_after_the_sdes() -> None:
    bob = session(2, 0.0, 0.0)
    block = VoipMetrics(7, loss_rate=25)
    report, sdes, xr = parse_rtcp(bob.build_report(5.0, Reception(7, 99, 100, 10, 16.0), block))
    assert isinstance(report, ReceiverReport) and isinstance(sdes, SourceDescription)
    assert xr == ExtendedReport(2, (block,))
    assert len(parse_rtcp(bob.build_report(10.0, Reception(7, 199, 200, 10, 16.0)))) == 2


def test_the_peer_voip_block_about_us_is_kept() -> None:
    alice, bob = session(1, 0.0, 0.0), session(2, 0.0, 0.0)
    assert alice.remote_voip is None
    about_alice, about_other = VoipMetrics(1, burst_density=64), VoipMetrics(9, gap_density=3)
    alice.receive(bob.build_report(5.0, None, about_other), now=5.0)
    assert alice.remote_voip is None
    alice.receive(bob.build_report(10.0, None, about_alice), now=10.0)
    assert alice.remote_voip == about_alice


def test_a_report_echoing_no_sr_has_no_rtt() -> None:
    alice = session(1, 0.0, 0.0)
    alice.receive(ReceiverReport(2, (ReportBlock(1, 0, 0, 5, 0, 0, 0),)).serialize(), now=1.0)
    assert alice.remote is not None and alice.remote.rtt_ms is None
