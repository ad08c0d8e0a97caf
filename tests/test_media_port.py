"""Batched UDP I/O and the shared media port, over real loopback sockets.

``BatchSocket`` against plain sockets (what the kernel really delivered), the port's
demultiplexing against every rule of its docstring with fake cores, and real
``MediaSession`` calls through two ports (declared SSRCs, both ways, no loss).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time

import pytest

from callmeter.media.sdp import Negotiated, make_answer, make_offer, negotiated
from callmeter.media.session import MediaSession
from callmeter.media.source import MediaLibrary
from callmeter.sip.core import Address
from callmeter.transport.batch import MAX_DATAGRAM, BatchSocket, available
from callmeter.transport.media import MediaTicker
from callmeter.transport.mediaport import MediaChannel, MediaPort
from tests.aio import until
from tests.conftest import Runner
from tests.test_media_transport import PacedCore, SinkCore, rtcp_bye, rtp_packet

LOOPBACK = "127.0.0.1"

pytestmark = pytest.mark.skipif(not available(), reason="needs Linux sendmmsg/recvmmsg")


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    return sock


def _drain(batch: BatchSocket, expected: int) -> list[tuple[bytes, Address]]:
    datagrams: list[bytes] = []
    sources: list[Address] = []
    deadline = time.monotonic() + 5.0
    while len(datagrams) < expected and time.monotonic() < deadline:
        batch.receive_into(datagrams, sources)
    return list(zip(datagrams, sources, strict=True))


def _send(batch: BatchSocket, packets: list[tuple[bytes, Address]]) -> int:
    return batch.send([data for data, _ in packets], [addr for _, addr in packets])


# -- BatchSocket ---------------------------------------------------------------------------


def test_a_batch_larger_than_capacity_arrives_whole_and_in_order() -> None:
    sender, receiver = BatchSocket(_udp(), capacity=64), BatchSocket(_udp(), capacity=64)
    to = receiver.local_address
    packets = [(struct.pack("!I", i) + bytes(168), to) for i in range(300)]
    assert _send(sender, packets) == 300
    got = _drain(receiver, 300)
    assert [struct.unpack_from("!I", data)[0] for data, _ in got] == list(range(300))
    assert {source for _, source in got} == {sender.local_address}
    assert all(len(data) == 172 for data, _ in got)
    assert sender.stats.packets_sent == 300 and sender.stats.bytes_sent == 300 * 172
    assert sender.stats.send_calls == 5  # 64 per call
    assert receiver.stats.packets_received == 300 and receiver.stats.bytes_received == 300 * 172
    assert receiver.receive_into([], []) == 0  # nothing more: no error, no block
    sender.close()
    receiver.close()


def test_bad_datagrams_are_counted_and_the_rest_still_go() -> None:
    sender, receiver = BatchSocket(_udp()), BatchSocket(_udp())
    to = receiver.local_address
    packets = [
        (b"first", to),
        (bytes(MAX_DATAGRAM + 1), to),  # too long for a slot
        (b"bad host", ("not-an-address", to[1])),
        (b"bad port", (LOOPBACK, 0)),
        (b"last", to),
    ]
    assert _send(sender, packets) == 2
    assert sender.stats.send_errors == 3
    assert [data for data, _ in _drain(receiver, 2)] == [b"first", b"last"]
    sender.close()
    receiver.close()


def test_a_datagram_too_long_to_receive_is_counted_not_delivered_cut() -> None:
    receiver = BatchSocket(_udp())
    plain = _udp()
    plain.sendto(bytes(MAX_DATAGRAM + 100), receiver.local_address)
    plain.sendto(b"fits", receiver.local_address)
    got = _drain(receiver, 1)
    assert [data for data, _ in got] == [b"fits"]
    assert got[0][1] == plain.getsockname()
    assert receiver.stats.truncated == 1
    plain.close()
    receiver.close()


def test_sending_on_a_closed_batch_socket_counts_instead_of_raising() -> None:
    sender = BatchSocket(_udp())
    sender.close()
    assert sender.send([b"x"], [(LOOPBACK, 9)]) == 0
    assert sender.stats.send_errors == 1
    assert sender.receive_into([], []) == 0


def test_batch_socket_refuses_what_it_cannot_carry() -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ValueError, match="IPv4 UDP"):
        BatchSocket(tcp)
    tcp.close()
    udp = _udp()
    with pytest.raises(ValueError, match="capacity must be at least 1, got 0"):
        BatchSocket(udp, capacity=0)
    udp.close()


# -- MediaPort demultiplexing ----------------------------------------------------------------


def test_the_port_routes_by_source_and_ssrc(run_on: Runner) -> None:
    async def scenario() -> None:
        port = await MediaPort.open(LOOPBACK)
        peer1, peer2, stranger = _udp(), _udp(), _udp()
        a1, a2 = peer1.getsockname(), peer2.getsockname()
        declared, undeclared = port.channel(), port.channel()
        core1, core2 = SinkCore(), SinkCore()
        undeclared.attach(core1)
        declared.attach(core2)
        undeclared.expect(a1, a1, None)
        declared.expect(a2, a2, 0x22)
        here = port.local_address
        peer1.sendto(rtp_packet(0x11, 0), here)  # latches 0x11 to the undeclared call
        peer2.sendto(rtp_packet(0x22, 0), here)  # declared
        peer1.sendto(rtcp_bye(0x11), here)  # RTCP: its sender SSRC routes it
        peer1.sendto(rtp_packet(0x44, 1), here)  # the only call from peer1: an SSRC switch
        peer2.sendto(rtp_packet(0x33, 1), here)  # peer2 declared 0x22: another call, refused
        stranger.sendto(rtp_packet(0x11, 2), here)  # right SSRC, wrong source
        peer1.sendto(b"\x80\x00\x00", here)  # too short to carry an SSRC
        await until(lambda: len(core1.received) + len(core2.received) == 4, "4 routed")
        await until(lambda: port.stats.unmatched + port.stats.malformed == 3, "3 refused")
        assert [d for d, _, _ in core1.received] == [
            rtp_packet(0x11, 0), rtcp_bye(0x11), rtp_packet(0x44, 1)
        ]  # fmt: skip
        assert [d for d, _, _ in core2.received] == [rtp_packet(0x22, 0)]
        assert (port.stats.unmatched, port.stats.malformed) == (2, 1)
        assert undeclared.stats.packets_received == 3
        undeclared.release()  # the call ended: its peer is a stranger now
        peer1.sendto(rtp_packet(0x11, 3), here)
        await until(lambda: port.stats.unmatched == 3, "after release")
        assert len(core1.received) == 3
        port.close()
        for sock in (peer1, peer2, stranger):
            sock.close()

    run_on(scenario())


def test_calls_waiting_on_one_source_take_new_ssrcs_in_call_order(run_on: Runner) -> None:
    """A media server sending every call from one address, without a=ssrc."""

    async def scenario() -> None:
        port = await MediaPort.open(LOOPBACK)
        server = _udp()
        source = server.getsockname()
        channels = [port.channel() for _ in range(2)]
        cores = [SinkCore(), SinkCore()]
        for channel, core in zip(channels, cores, strict=True):
            channel.attach(core)
            channel.expect(source, source, None)
        here = port.local_address
        for ssrc in (0xA, 0xB, 0xA, 0xC):  # 0xC: both calls latched, two expect it: refused
            server.sendto(rtp_packet(ssrc, 0), here)
        await until(lambda: port.stats.unmatched == 1, "the third SSRC refused")
        await until(lambda: len(cores[0].received) == 2 and len(cores[1].received) == 1, "3")
        assert {d[8:12] for d, _, _ in cores[0].received} == {struct.pack("!I", 0xA)}
        assert cores[1].received[0][0] == rtp_packet(0xB, 0)
        port.close()
        server.close()

    run_on(scenario())


def test_rtcp_without_mux_leaves_from_port_plus_one(run_on: Runner) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        port = await MediaPort.open(LOOPBACK)
        assert port.rtcp.local_address[1] == port.local_address[1] + 1
        rtp_peer, rtcp_peer = _udp(), _udp()
        for sock in (rtp_peer, rtcp_peer):
            sock.setblocking(False)
        channel = port.channel()
        core = PacedCore(rtp_peer.getsockname(), loop.time(), ssrc=7, count=2)
        channel.expect(rtp_peer.getsockname(), rtcp_peer.getsockname(), None)
        ticker = MediaTicker()
        ticker.add(core, channel)
        got_rtp: list[tuple[bytes, Address]] = []
        await until(lambda: _recv_into(rtp_peer, got_rtp) >= 2, "2 RTP packets")
        core.peer = rtcp_peer.getsockname()  # the BYE goes to the peer's RTCP address
        ticker.remove(core)
        got_rtcp: list[tuple[bytes, Address]] = []
        await until(lambda: _recv_into(rtcp_peer, got_rtcp) >= 1, "the BYE")
        assert {source for _, source in got_rtp} == {port.local_address}
        assert got_rtcp == [(rtcp_bye(7), port.rtcp.local_address)]
        assert channel.stats.packets_sent == 3
        ticker.close()
        port.close()
        rtp_peer.close()
        rtcp_peer.close()

    run_on(scenario())


def _recv_into(sock: socket.socket, into: list[tuple[bytes, Address]]) -> int:
    try:
        while True:
            data, source = sock.recvfrom(4096)
            into.append((data, source))
    except BlockingIOError:
        return len(into)


# -- real sessions through two ports -----------------------------------------------------------


def _pair(
    a_port: int, b_port: int, a_ssrc: int, b_ssrc: int, i: int
) -> tuple[Negotiated, Negotiated]:
    offer = make_offer(LOOPBACK, a_port, ["PCMA"], rtcp_mux=True, session_id=i, ssrc=(a_ssrc, "a"))
    answer = make_answer(
        offer, LOOPBACK, b_port, ["PCMA"], rtcp_mux=True, session_id=i, ssrc=(b_ssrc, "b")
    )
    assert not isinstance(answer, int) and hasattr(answer, "media")
    ours = negotiated(offer, answer, role="offerer")  # type: ignore[arg-type]
    theirs = negotiated(offer, answer, role="answerer")  # type: ignore[arg-type]
    assert isinstance(ours, Negotiated) and isinstance(theirs, Negotiated)
    return ours, theirs


def test_calls_between_two_ports_lose_nothing_both_ways(run_on: Runner) -> None:
    calls = 20

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        rng = random.Random(5)
        a, b = await MediaPort.open(LOOPBACK), await MediaPort.open(LOOPBACK)
        ticker = MediaTicker()
        media = None
        sessions: list[tuple[MediaSession, MediaSession]] = []
        channels: list[MediaChannel] = []
        for i in range(calls):
            a_ssrc, b_ssrc = a.new_ssrc(rng), b.new_ssrc(rng)
            ours, theirs = _pair(a.local_address[1], b.local_address[1], a_ssrc, b_ssrc, i)
            assert (ours.remote_ssrc, theirs.remote_ssrc) == (b_ssrc, a_ssrc)
            media = media or MediaLibrary().for_negotiated(ours)
            now = loop.time()
            pair = []
            for port, neg, ssrc in ((a, ours, a_ssrc), (b, theirs, b_ssrc)):
                session = MediaSession(
                    neg, media, now=now, ssrc=ssrc, cname=f"{i}", rng=rng, ntp_offset_s=0.0
                )
                channel = port.channel()
                channel.expect(neg.remote_rtp, neg.remote_rtcp, neg.remote_ssrc)
                ticker.add(session, channel)
                channels.append(channel)
                pair.append(session)
            sessions.append((pair[0], pair[1]))
        await asyncio.sleep(1.5)
        for x, y in sessions:
            ticker.remove(x)
            ticker.remove(y)
        await asyncio.sleep(0.2)
        for x, y in sessions:
            for sender, receiver in ((x, y), (y, x)):
                assert sender.packets_sent_total > 50
                # the receiver stopped first may miss the one packet then in flight
                assert sender.packets_sent_total - receiver.stats.received in (0, 1)
                assert receiver.stats.lost_total == 0 and receiver.stats.duplicates == 0
        assert a.stats.unmatched == b.stats.unmatched == 0  # BYEs still routed: none late
        assert a.send_errors == b.send_errors == 0
        ticker.close()
        a.close()
        b.close()

    run_on(scenario())
