"""MediaSession (callmeter.media.session): two sessions wired back to back on a fake clock.

A small loop plays the shared ticker: it asks both sessions for ``next_due()``, calls the
earliest one's ``packets_due`` at exactly that time and hands every datagram to the other
session at the same instant (the network is the sessions' own seeded impairment)."""

from __future__ import annotations

import random
from typing import TypedDict, Unpack

import pytest

from callmeter import metrics
from callmeter.media.core import MediaCore
from callmeter.media.impairment import ImpairmentProfile
from callmeter.media.quality import (
    burst_ratio_from_runs,
    mos_from_r_wideband,
    r_budget,
    r_budget_wideband,
)
from callmeter.media.rtcp import RX_CONFIG_JB_ADAPTIVE, Bye, ExtendedReport, VoipMetrics, parse_rtcp
from callmeter.media.rtp import peek_header
from callmeter.media.rtpstats import burst_gap
from callmeter.media.sdp import Direction, Negotiated
from callmeter.media.session import BURST_MAX_PACKETS, MediaSession, MetricValues, _LossPattern
from callmeter.media.source import EncodedMedia, MediaLibrary
from callmeter.sip.core import Address

A_ADDR: Address = ("127.0.0.1", 40000)
B_ADDR: Address = ("127.0.0.1", 40002)
NTP_OFFSET_S = 3_900_000_000.0  # NTP seconds at monotonic 0: any fixed value will do
PCMU_20MS = EncodedMedia(
    source="test:ramp",
    codec="PCMU",
    payload_type=0,
    clock_rate=8000,
    samples_per_packet=160,
    ptime_ms=20,
    payloads=tuple(bytes((i,)) * 160 for i in range(50)),
    audio_levels_dbov=(30,) * 50,
)


class SessionOptions(TypedDict, total=False):
    send_impairment: ImpairmentProfile
    receive_impairment: ImpairmentProfile
    impairment_seed: int
    rtcp_xr: bool


class Options(SessionOptions, total=False):
    direction: Direction


def num(value: float | int | None) -> float:
    """A metric value the test expects to be known."""
    assert value is not None
    return value


def make_session(
    remote: Address,
    seed: int,
    *,
    direction: Direction = "sendrecv",
    **options: Unpack[SessionOptions],
) -> MediaSession:
    negotiated = Negotiated(
        codec="PCMU", payload_type=0, clock_rate=8000, channels=1, ptime_ms=20,
        local_rtp_port=0, remote_rtp=remote, remote_rtcp=(remote[0], remote[1] + 1),
        rtcp_mux=False, telephone_event_pt=None, direction=direction,
    )  # fmt: skip
    return MediaSession(
        negotiated, PCMU_20MS, now=0.0, ssrc=0x1000_0000 + seed, cname=f"ep{seed}@127.0.0.1",
        rng=random.Random(seed), ntp_offset_s=NTP_OFFSET_S, **options,
    )  # fmt: skip


def pair(
    a_options: Options | None = None, b_options: Options | None = None
) -> tuple[MediaSession, MediaSession]:
    a = make_session(B_ADDR, 1, **(a_options or {}))
    b = make_session(A_ADDR, 2, **(b_options or {}))
    return a, b


def run(a: MediaSession, b: MediaSession, until: float, start: float = 0.0) -> None:
    """Tick both sessions at their due times up to ``until`` (exclusive), delivering at once."""
    for _ in range(1_000_000):
        dues = [(due, i) for i, s in enumerate((a, b)) if (due := s.next_due()) is not None]
        if not dues:
            return
        now, index = min(dues)
        if now >= until:
            return
        sender, receiver, source = (a, b, A_ADDR) if index == 0 else (b, a, B_ADDR)
        for data, _addr in sender.packets_due(max(now, start)):
            receiver.receive(data, source, max(now, start))
    raise AssertionError("the sessions never got past their due times")


def call(
    seconds: float,
    a_options: Options | None = None,
    b_options: Options | None = None,
) -> tuple[MediaSession, MediaSession, dict[str, MetricValues], dict[str, MetricValues]]:
    """A call of ``seconds``: both sessions, then one snapshot each over the whole call."""
    a, b = pair(a_options, b_options)
    run(a, b, seconds)
    return a, b, a.snapshot(seconds), b.snapshot(seconds)


def test_a_session_is_a_media_core() -> None:
    assert isinstance(make_session(B_ADDR, 1), MediaCore)


def test_clean_pcmu_call_is_perfect_both_ways() -> None:
    a, b, snap_a, snap_b = call(5.0)
    for snap in (snap_a, snap_b):
        receive, send = snap["receive"], snap["send"]
        assert send["packets"] == 250
        assert send["payload_bytes"] == 250 * 160
        assert send["bitrate_bps"] == pytest.approx(64_000)
        assert receive["packets"] == 250
        assert receive["packets_expected"] == 250
        assert receive["packets_lost"] == 0
        assert receive["loss_percent"] == 0.0
        assert receive["effective_loss_percent"] == 0.0
        assert receive["jitter_ms"] == pytest.approx(0.0, abs=1e-6)
        assert receive["mos"] == pytest.approx(4.4, abs=0.05)
        assert receive["r_loss_ie"] == 0.0
        assert receive["r_scale_max"] == 100.0  # narrowband: G.107
        assert send["packets_send_skipped"] == 0
        assert send["send_lateness_max_ms"] == 0.0
        assert send["talkspurt_count"] == 1
    assert a.packets_sent_total == b.packets_sent_total == 250


def test_rtp_header_fields_advance_and_the_first_packet_has_the_marker() -> None:
    session = make_session(B_ADDR, 1)
    packets = [data for t in range(5) for data, _ in session.packets_due(t * 0.02)]
    headers = [peek_header(data) for data in packets]
    assert [h[4] for h in headers] == [True, False, False, False, False]
    assert {h[0] for h in headers} == {0}
    assert [(h[1] - headers[0][1]) % 65536 for h in headers] == [0, 1, 2, 3, 4]
    assert [(h[2] - headers[0][2]) % 2**32 for h in headers] == [0, 160, 320, 480, 640]
    assert [data[12:] for data in packets] == list(PCMU_20MS.payloads[:5])


def test_per_second_snapshots_split_the_call() -> None:
    a, b = pair()
    rows = []
    for second in range(1, 4):
        run(a, b, second)
        rows.append(b.snapshot(second))
    assert [row["receive"]["packets"] for row in rows] == [50, 50, 50]
    assert [row["send"]["packets"] for row in rows] == [50, 50, 50]
    assert [row["receive"]["time_to_first_media_ms"] for row in rows] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("seed", [3, 7])
def test_send_side_loss_is_what_the_receiver_counts(seed: int) -> None:
    loss: Options = {
        "send_impairment": ImpairmentProfile(loss_percent=5.0),
        "impairment_seed": seed,
    }
    a, b, _, snap_b = call(5.0, a_options=loss)
    dropped = a.rtp_dropped_on_send_total
    # RFC 3550 A.3 cannot count a loss before the first or after the last packet received.
    assert b.stats.expected_total == 250, "pick a seed that keeps the first and last packets"
    assert snap_b["receive"]["packets_lost"] == dropped == b.stats.lost_total
    assert 2.0 < snap_b["receive"]["loss_percent"] < 9.0  # type: ignore[operator]
    assert snap_b["receive"]["loss_percent"] == pytest.approx(dropped / 250 * 100)
    assert snap_b["receive"]["effective_loss_percent"] == pytest.approx(dropped / 250 * 100)


def test_r_and_mos_fall_as_loss_rises() -> None:
    ratings = []
    for loss_percent in (0.0, 2.0, 5.0, 10.0):
        profile = ImpairmentProfile(loss_percent=loss_percent)
        _, _, _, snap_b = call(5.0, a_options={"send_impairment": profile, "impairment_seed": 3})
        receive = snap_b["receive"]
        ratings.append(
            (num(receive["r_factor"]), num(receive["mos"]), num(receive["loss_percent"]))
        )
    r_values = [r for r, _, _ in ratings]
    mos_values = [mos for _, mos, _ in ratings]
    losses = [loss for _, _, loss in ratings]
    assert losses == sorted(losses) and losses[0] == 0.0
    assert r_values == sorted(r_values, reverse=True) and len(set(r_values)) == 4
    assert mos_values == sorted(mos_values, reverse=True) and len(set(mos_values)) == 4


def test_fixed_delay_each_way_gives_the_rtt_from_rtcp() -> None:
    delay: Options = {"send_impairment": ImpairmentProfile(delay_ms=40.0)}
    a, b, snap_a, snap_b = call(20.0, a_options=delay, b_options=delay)
    for session, snap in ((a, snap_a), (b, snap_b)):
        assert session.rtcp.remote is not None
        assert snap["send"]["rtt_ms"] == pytest.approx(80.0, abs=0.1)
        assert snap["send"]["loss_percent"] == 0.0
        # Ta = RTT/2 + jitter buffer + ptime
        one_way = snap["receive"]["one_way_delay_ms"]
        assert 40.0 + 20.0 + 20.0 <= one_way <= 40.0 + 300.0 + 20.0  # type: ignore[operator]
        assert snap["receive"]["jitter_ms"] == pytest.approx(0.0, abs=1e-6)
        assert snap["receive"]["sr_count"] > 0  # type: ignore[operator]
        assert snap["send"]["sr_count"] > 0  # type: ignore[operator]


def test_receive_side_delay_gives_the_same_rtt() -> None:
    delay: Options = {"receive_impairment": ImpairmentProfile(delay_ms=40.0)}
    _, _, snap_a, snap_b = call(20.0, a_options=delay, b_options=delay)
    assert snap_a["send"]["rtt_ms"] == pytest.approx(80.0, abs=0.1)
    assert snap_b["send"]["rtt_ms"] == pytest.approx(80.0, abs=0.1)
    assert snap_b["receive"]["packets_lost"] == 0


def test_jitter_grows_with_the_delay_variation() -> None:
    jitters = []
    for jitter_ms in (0.0, 5.0, 20.0):
        profile = ImpairmentProfile(delay_ms=50.0, jitter_ms=jitter_ms)
        _, _, _, snap_b = call(5.0, a_options={"send_impairment": profile})
        jitters.append(snap_b["receive"]["jitter_ms"])
    assert jitters[0] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < jitters[1] < jitters[2]  # type: ignore[operator]


def test_reordered_late_packets_are_discarded_by_the_jitter_buffer() -> None:
    profile = ImpairmentProfile(delay_ms=100.0, jitter_ms=80.0, reorder=True)
    a, b = pair(b_options={"receive_impairment": profile})
    run(a, b, 5.0)
    assert b.next_due() is not None
    receive = b.snapshot(5.5)["receive"]  # after everything in flight has come due
    assert receive["packets_out_of_order"] > 0  # type: ignore[operator]
    assert receive["packets"] == 250  # none lost, so every discard is the buffer's
    assert receive["packets_late_discarded"] > 0  # type: ignore[operator]
    assert receive["effective_loss_percent"] > 0.0  # type: ignore[operator]
    assert receive["mos"] < 4.3  # type: ignore[operator]


def test_a_late_ticker_catches_up_with_at_most_a_burst_and_skips_the_rest() -> None:
    a = make_session(B_ADDR, 1)
    first = a.packets_due(0.0)
    assert len(first) == 1
    assert a.next_due() == pytest.approx(0.02)
    late = a.packets_due(0.12)  # 100 ms late: packets due at 0.02 .. 0.12
    rtp = [peek_header(data) for data, _ in late]
    assert len(rtp) == BURST_MAX_PACKETS
    seq0, ts0 = peek_header(first[0][0])[1:3]
    assert [(h[1] - seq0) % 65536 for h in rtp] == [1, 2, 3, 4, 5]  # no sequence gap
    assert [(h[2] - ts0) % 2**32 for h in rtp] == [320, 480, 640, 800, 960]  # 160 skipped
    assert [h[4] for h in rtp] == [True, False, False, False, False]  # a new talkspurt
    assert a.next_due() == pytest.approx(0.14)
    send = a.snapshot(0.2)["send"]
    assert send["packets"] == 6
    assert send["packets_send_skipped"] == 1
    assert send["send_lateness_max_ms"] == pytest.approx(80.0)
    assert send["send_lateness_p50_ms"] == pytest.approx(20.0)
    assert send["send_lateness_p99_ms"] == pytest.approx(80.0)
    assert send["spacing_min_ms"] == 0.0
    assert a.packets_skipped_total == 1


def test_a_stalled_ticker_sends_one_burst_and_the_receiver_sees_no_loss() -> None:
    a, b = pair()
    run(a, b, 1.0)
    for data, _ in a.packets_due(11.0):  # a 10 s stall of the sender's loop
        b.receive(data, A_ADDR, 11.0)
    run(a, b, 12.0, start=11.0)
    send, receive = a.snapshot(12.0)["send"], b.snapshot(12.0)["receive"]
    assert send["packets_send_skipped"] == 500 - BURST_MAX_PACKETS + 1
    assert receive["packets_lost"] == 0
    assert receive["timestamp_jump_count"] == 0
    assert receive["talkspurt_count"] == 2


def test_recvonly_sends_no_rtp_but_still_rtcp() -> None:
    a, b, snap_a, snap_b = call(10.0, a_options={"direction": "recvonly"})
    assert snap_a["send"]["packets"] == 0
    assert snap_a["send"]["send_lateness_max_ms"] is None
    assert snap_a["send"]["rr_count"] > 0  # type: ignore[operator]
    assert snap_a["send"]["sr_count"] == 0
    assert snap_b["receive"]["packets"] == 0
    assert snap_b["receive"]["rr_count"] == snap_a["send"]["rr_count"]
    assert snap_b["receive"]["mos"] is None
    assert snap_a["receive"]["packets"] == 500
    assert snap_b["send"]["loss_percent"] == 0.0  # A reports B's stream in its RRs
    assert b.rtcp.remote is not None and b.rtcp.remote.reporter_ssrc == a.ssrc


@pytest.mark.parametrize("direction", ["inactive", "sendonly"])
def test_other_directions_are_respected(direction: Direction) -> None:
    a, _, snap_a, snap_b = call(10.0, a_options={"direction": direction})
    sent = 500 if direction == "sendonly" else 0
    assert snap_a["send"]["packets"] == snap_b["receive"]["packets"] == sent
    assert snap_a["send"]["rr_count"] + snap_a["send"]["sr_count"] > 0  # type: ignore[operator]
    assert not a.receiving
    assert snap_a["receive"]["time_to_first_media_ms"] is None  # no media expected


def test_malformed_datagrams_are_counted_not_raised() -> None:
    b = make_session(A_ADDR, 2)
    for data in (b"", b"\x80", b"\x40" * 20, bytes((0x80, 0x00, 0x00))):
        b.receive(data, A_ADDR, 0.01)  # too short, version 1, short header
    b.receive(bytes((0x80, 200, 0x00, 50)), A_ADDR, 0.01)  # an SR overrunning the datagram
    b.receive(bytes((0x80, 201, 0x00, 0x00)), A_ADDR, 0.01)  # an RR without its SSRC
    receive = b.snapshot(1.0)["receive"]
    assert receive["packets_malformed"] == 4
    assert receive["rtcp_malformed_count"] == 2
    assert receive["packets"] == 0
    assert b.malformed_total == 6


def test_stop_sends_bye_and_ends_the_session() -> None:
    a, b = pair()
    run(a, b, 2.0)
    final = a.stop(2.0)
    assert len(final) == 1
    data, addr = final[0]
    assert addr == ("127.0.0.1", 40003)  # remote_rtcp
    assert any(isinstance(p, Bye) and p.sources == (a.ssrc,) for p in parse_rtcp(data))
    b.receive(data, A_ADDR, 2.0)
    assert b.rtcp.bye_received
    assert a.next_due() is None
    assert a.packets_due(3.0) == []
    assert a.stop(3.0) == []
    assert a.snapshot(2.0)["send"]["rtcp_bye_count"] == 1
    assert b.snapshot(2.0)["receive"]["rtcp_bye_count"] == 1


def test_snapshot_keys_are_catalog_keys_of_their_direction() -> None:
    profile = ImpairmentProfile(loss_percent=5.0, delay_ms=30.0, jitter_ms=10.0)
    _, _, snap_a, snap_b = call(12.0, a_options={"send_impairment": profile})
    for snap in (snap_a, snap_b):
        assert set(snap) == {"receive", "send"}
        for direction in ("receive", "send"):  # the catalog's Direction literals
            catalog = set(metrics.keys(direction))
            assert set(snap[direction]) <= catalog, set(snap[direction]) - catalog
            for key, value in snap[direction].items():
                assert value is None or isinstance(value, int | float), key
    assert set(metrics.RECEIVER_SNAPSHOT_FIELDS.values()) <= set(snap_b["receive"])
    assert {"send_lateness_p50_ms", "send_lateness_p99_ms", "send_lateness_max_ms",
            "packets_send_skipped"} <= set(snap_a["send"])  # fmt: skip


def test_media_must_match_the_negotiation() -> None:
    negotiated = Negotiated(
        codec="PCMU", payload_type=0, clock_rate=8000, channels=1, ptime_ms=30,
        local_rtp_port=0, remote_rtp=B_ADDR, remote_rtcp=B_ADDR, rtcp_mux=True,
        telephone_event_pt=None, direction="sendrecv",
    )  # fmt: skip
    with pytest.raises(ValueError, match="does not match the negotiated 8000 Hz / 30 ms"):
        MediaSession(negotiated, PCMU_20MS, now=0.0, ssrc=1, cname="x", rng=random.Random(1),
                     ntp_offset_s=0.0)  # fmt: skip


def test_rtp_goes_to_remote_rtp_and_rtcp_to_remote_rtcp() -> None:
    a = make_session(B_ADDR, 1)
    sent = [item for step in range(500) for item in a.packets_due(step * 0.02)]
    rtcp = {addr for data, addr in sent if 192 <= data[1] <= 223}
    rtp = {addr for data, addr in sent if not 192 <= data[1] <= 223}
    assert rtp == {B_ADDR}
    assert rtcp == {("127.0.0.1", 40003)}


def test_a_session_told_not_to_send_sends_only_rtcp() -> None:
    negotiated = Negotiated(
        codec="PCMU", payload_type=0, clock_rate=8000, channels=1, ptime_ms=20,
        local_rtp_port=0, remote_rtp=B_ADDR, remote_rtcp=B_ADDR, rtcp_mux=True,
        telephone_event_pt=None, direction="sendrecv",
    )  # fmt: skip
    a = MediaSession(negotiated, PCMU_20MS, now=0.0, ssrc=1, cname="a", rng=random.Random(1),
                     ntp_offset_s=NTP_OFFSET_S, sending=False)  # fmt: skip
    sent = []
    while (due := a.next_due()) is not None and due < 10.0:
        sent.extend(a.packets_due(due))
    assert sent and all(192 <= data[1] <= 223 and addr == B_ADDR for data, addr in sent)
    assert a.snapshot(10.0)["send"]["packets"] == 0


def test_a_call_with_media_encoded_by_the_library() -> None:
    media = MediaLibrary().get("PCMA", 20)
    negotiated = [
        Negotiated(
            codec="PCMA", payload_type=8, clock_rate=8000, channels=1, ptime_ms=20,
            local_rtp_port=0, remote_rtp=remote, remote_rtcp=remote, rtcp_mux=True,
            telephone_event_pt=101, direction="sendrecv",
        )
        for remote in (B_ADDR, A_ADDR)
    ]  # fmt: skip
    a, b = (
        MediaSession(n, media, now=0.0, ssrc=ssrc, cname=f"{ssrc}@test", rng=random.Random(ssrc),
                     ntp_offset_s=NTP_OFFSET_S)
        for n, ssrc in zip(negotiated, (11, 22), strict=True)
    )  # fmt: skip
    run(a, b, 3.0)
    receive = b.snapshot(3.0)["receive"]
    assert receive["packets"] == 150
    assert receive["payload_bytes"] == 150 * 160
    assert receive["mos"] == pytest.approx(4.4, abs=0.05)


def library_pair(codec: str, fmtp: str | None = None) -> tuple[MediaSession, MediaSession]:
    media = MediaLibrary().get(codec, 20)
    negotiated = [
        Negotiated(
            codec=media.codec, payload_type=media.payload_type, clock_rate=media.clock_rate,
            channels=1, ptime_ms=20, local_rtp_port=0, remote_rtp=remote, remote_rtcp=remote,
            rtcp_mux=True, telephone_event_pt=None, direction="sendrecv", fmtp=fmtp,
        )
        for remote in (B_ADDR, A_ADDR)
    ]  # fmt: skip
    a, b = (
        MediaSession(n, media, now=0.0, ssrc=ssrc, cname=f"{ssrc}@test", rng=random.Random(ssrc),
                     ntp_offset_s=NTP_OFFSET_S)
        for n, ssrc in zip(negotiated, (11, 22), strict=True)
    )  # fmt: skip
    return a, b


@pytest.mark.parametrize("codec", ["G722", "opus"])
def test_wideband_calls_report_mos_on_the_g107_1_scale(codec: str) -> None:
    a, b = library_pair(codec)
    run(a, b, 10.0)
    receive, send = b.snapshot(10.0)["receive"], a.snapshot(10.0)["send"]
    assert receive["packets"] == 500 and receive["effective_loss_percent"] == 0.0
    assert (receive["r_scale_max"], receive["r_ro"], receive["r_codec_ie"]) == (129.0, 129.0, 13.0)
    expected = r_budget_wideband(ie=13.0, bpl=9.5, ta_ms=num(receive["one_way_delay_ms"]))
    assert receive["r_factor"] == pytest.approx(expected.r)
    assert receive["mos"] == pytest.approx(mos_from_r_wideband(expected.r))
    # R 129 - 13 (Ie,wb) - 0.15 (listener echo) - the talker echo of the buffer's delay.
    assert receive["mos"] == pytest.approx(4.3, abs=0.02)
    assert send["r_scale_max"] == 129.0 and send["mos"] == pytest.approx(4.3, abs=0.04)


def test_opus_limited_below_16_khz_gets_no_mos() -> None:
    a, b = library_pair("opus", fmtp="maxplaybackrate=8000;useinbandfec=1")
    run(a, b, 3.0)
    receive = b.snapshot(3.0)["receive"]
    assert receive["packets"] == 150
    assert receive["mos"] is None and receive["r_scale_max"] is None


def test_reports_carry_an_xr_of_our_reception_that_the_peer_reads() -> None:
    # B's stream to A loses 5 %; A's VoIP Metrics blocks report on it. Stop right after A's
    # third report, so A's statistics, never snapshot before, cover exactly what it reported.
    loss: Options = {"send_impairment": ImpairmentProfile(loss_percent=5.0), "impairment_seed": 3}
    a, b = pair(b_options=loss)
    blocks: list[VoipMetrics] = []
    now = 0.0
    while len(blocks) < 3:
        now, index = min((num(s.next_due()), i) for i, s in enumerate((a, b)))
        sender, receiver, source = (a, b, A_ADDR) if index == 0 else (b, a, B_ADDR)
        for data, _addr in sender.packets_due(now):
            if sender is a and 192 <= data[1] <= 223:
                xr = [p for p in parse_rtcp(data) if isinstance(p, ExtendedReport)]
                assert len(xr) == 1 and xr[0].ssrc == a.ssrc
                (block,) = xr[0].blocks
                assert isinstance(block, VoipMetrics) and block.ssrc == b.ssrc
                blocks.append(block)
            receiver.receive(data, source, now)
    assert b.rtcp.remote_voip == blocks[-1]  # parsed back on the peer's side as sent
    block, stats = blocks[-1], a.stats.snapshot(now)
    assert (
        stats.lost_total > 5 and block.loss_rate == stats.lost_total * 256 // stats.expected_total
    )
    assert block.discard_rate == 0  # no delay variation: the buffer discards nothing
    bursts = burst_gap(stats.loss_runs)  # every run since the first packet
    assert block.burst_density == int(bursts.burst_density * 256)
    assert block.gap_density == int(bursts.gap_density * 256)
    assert block.burst_duration == round(bursts.burst_packets * 20)
    assert block.gap_duration == round(bursts.gap_packets * 20)
    remote = a.rtcp.remote
    assert remote is not None and remote.rtt_ms is not None
    assert block.round_trip_delay == round(remote.rtt_ms)
    target_ms = a.jitter_buffer.target_delay_ms
    assert (block.jb_nominal, block.end_system_delay) == (round(target_ms), round(target_ms + 20))
    assert (block.jb_maximum, block.jb_abs_max, block.rx_config) == (1000, 1000, 0x30)
    assert block.rx_config == RX_CONFIG_JB_ADAPTIVE and block.gmin == 16
    ppl = 100.0 * stats.lost_total / stats.expected_total
    burst_r = burst_ratio_from_runs(stats.loss_runs)
    cq = r_budget(
        ie=0.0, bpl=25.1, ppl=ppl, burst_r=burst_r, ta_ms=remote.rtt_ms / 2 + target_ms + 20
    )
    lq = r_budget(ie=0.0, bpl=25.1, ppl=ppl, burst_r=burst_r, ta_ms=0.0)
    assert (block.r_factor, block.mos_cq, block.mos_lq) == (
        round(cq.r),
        round(cq.mos * 10),
        round(lq.mos * 10),
    )
    assert (block.signal_level, block.noise_level, block.rerl, block.ext_r_factor) == (127,) * 4
    # The peer counts every XR we send, and shows what it says about its stream.
    sent, received = a.snapshot(now)["send"], b.snapshot(now)["receive"]
    assert sent["xr_count"] == received["xr_count"] == len(blocks) == 3
    assert received["xr_burst_density"] == block.burst_density / 256
    assert received["xr_gap_duration_ms"] == block.gap_duration
    assert received["xr_round_trip_delay_ms"] == block.round_trip_delay
    assert received["xr_end_system_delay_ms"] == block.end_system_delay


def test_xr_can_be_turned_off() -> None:
    _, b, snap_a, snap_b = call(12.0, a_options={"rtcp_xr": False})
    assert snap_a["send"]["xr_count"] == snap_b["receive"]["xr_count"] == 0
    assert snap_b["receive"]["sr_count"] > 0  # type: ignore[operator]
    assert snap_b["receive"]["xr_burst_density"] is None and b.rtcp.remote_voip is None
    assert snap_b["send"]["xr_count"] == snap_a["receive"]["xr_count"] > 0  # type: ignore[operator]


def test_a_session_that_receives_nothing_sends_no_xr() -> None:
    _, _, snap_a, snap_b = call(
        12.0, a_options={"direction": "sendonly"}, b_options={"direction": "recvonly"}
    )
    assert snap_a["receive"]["packets"] == 0 and snap_a["send"]["xr_count"] == 0
    assert snap_a["send"]["sr_count"] > 0  # type: ignore[operator]
    assert snap_b["send"]["xr_count"] == snap_a["receive"]["xr_count"]
    assert snap_b["send"]["xr_count"] > 0  # type: ignore[operator]


def test_xr_loss_pattern_undoes_in_time_reordering_and_counts_discards() -> None:
    pattern = _LossPattern()
    order = [i for i in range(200) if i not in (10, 11, 12, 50, 70, 120)]
    order.insert(order.index(52) + 1, 50)  # reordered, still played
    order.insert(order.index(75) + 1, 70)  # reordered, discarded as late
    for i in order:
        pattern.add((65500 + i) & 0xFFFF, played=i != 70)  # across the sequence wrap
    runs = [10, 3, 57, 1, 49, 1, 79]  # lost or discarded: 10-12, 70, 120
    summary = pattern.burst_gap()
    assert summary.burst == burst_gap(runs)
    assert summary.lost_fraction == 5 / 200
    assert summary.burst_ratio == pytest.approx(burst_ratio_from_runs(runs))
    assert pattern.burst_gap() == summary  # reading it changes nothing


@pytest.mark.parametrize("seed", range(5))
def test_xr_loss_pattern_matches_rtpstats_burst_gap_over_a_long_call(seed: int) -> None:
    rng = random.Random(seed)
    lost = [False] * 3000
    for _ in range(40):  # single losses and bursts, one of them longer than the window
        start, length = rng.randrange(3000), rng.choice((1, 1, 2, 3, 8, 150))
        lost[start : start + length] = [True] * len(lost[start : start + length])
    lost[0] = lost[-1] = False  # A.3 counts nothing before the first or after the last packet
    pattern = _LossPattern()
    for i, gone in enumerate(lost):
        if not gone:
            pattern.add((40_000 + i) & 0xFFFF, played=True)
    runs = [0]
    for gone in lost:
        if (len(runs) % 2 == 0) != gone:
            runs.append(0)
        runs[-1] += 1
    summary = pattern.burst_gap()
    expected = burst_gap(runs)
    assert summary.burst.burst_density == pytest.approx(expected.burst_density)
    assert summary.burst.gap_density == pytest.approx(expected.gap_density)
    assert summary.burst.burst_packets == pytest.approx(expected.burst_packets)
    assert summary.burst.gap_packets == pytest.approx(expected.gap_packets)
    assert summary.burst_ratio == pytest.approx(burst_ratio_from_runs(runs))
    assert summary.lost_fraction == sum(lost) / len(lost)
