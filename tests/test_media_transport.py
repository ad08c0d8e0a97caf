"""The media shell over real loopback sockets, on both the asyncio and the uvloop loop.

The cores are small fakes of the ``MediaCore`` contract (one 172-byte G.711-sized packet every
20 ms); the sockets and the one shared ticker are what is under test. Tests poll with a
deadline; none sleeps to wait for something to happen.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from callmeter.media.core import MediaCore
from callmeter.sip.core import Address
from callmeter.transport.media import (
    LatenessHistogram,
    MediaSocket,
    MediaTicker,
    is_rtcp,
    open_media,
    open_media_socket,
)
from tests.aio import until
from tests.conftest import Runner

LOOPBACK = "127.0.0.1"
DEADLINE_S = 10.0
PTIME_S = 0.02
PAYLOAD = bytes(160)  # 20 ms of G.711


def rtp_packet(ssrc: int, seq: int) -> bytes:
    """A 172-byte RTP packet (RFC 3550 section 5.1): PCMU, ``seq``, 160 samples per packet."""
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, ssrc) + PAYLOAD


def rtcp_bye(ssrc: int) -> bytes:
    """An RTCP BYE (RFC 3550 section 6.6) for one SSRC."""
    return struct.pack("!BBHI", 0x81, 203, 1, ssrc)


class PacedCore:
    """Emits one packet every 20 ms from ``start`` to ``peer`` (``count`` of them, or forever);
    records the lateness of each send, every datagram received, and a BYE on ``stop``."""

    def __init__(self, peer: Address, start: float, *, ssrc: int = 1, count: int = 0) -> None:
        self.peer = peer
        self.ssrc = ssrc
        self.count = count
        self.next_at = start
        self.seq = 0
        self.late_s: list[float] = []
        self.received: list[tuple[bytes, Address, float]] = []
        self.stopped_at: float | None = None

    def next_due(self) -> float | None:
        if self.stopped_at is not None or (self.count and self.seq >= self.count):
            return None
        return self.next_at

    def packets_due(self, now: float) -> list[tuple[bytes, Address]]:
        out = []
        while self.next_due() is not None and self.next_at <= now:
            out.append((rtp_packet(self.ssrc, self.seq), self.peer))
            self.late_s.append(now - self.next_at)
            self.seq += 1
            self.next_at += PTIME_S
        return out

    def receive(self, data: bytes, addr: Address, now: float) -> None:
        self.received.append((data, addr, now))

    def stop(self, now: float) -> list[tuple[bytes, Address]]:
        self.stopped_at = now
        return [(rtcp_bye(self.ssrc), self.peer)]


class SinkCore(PacedCore):
    """Sends nothing; records what arrives."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 9), 0.0)

    def next_due(self) -> float | None:
        return None


class BrokenCore(PacedCore):
    """A core with a bug: ``packets_due`` always raises."""

    def packets_due(self, now: float) -> list[tuple[bytes, Address]]:
        raise RuntimeError("a bug in the media core")


async def _close(*sockets: MediaSocket) -> None:
    for sock in sockets:
        sock.close()
        await sock.wait_closed()


def _sequence(received: list[tuple[bytes, Address, float]], ssrc: int) -> list[int]:
    return [
        struct.unpack_from("!H", data, 2)[0]
        for data, _, _ in received
        if not is_rtcp(data) and struct.unpack_from("!I", data, 8)[0] == ssrc
    ]


def test_fakes_are_media_cores() -> None:
    assert isinstance(PacedCore(("127.0.0.1", 1), 0.0), MediaCore)
    assert isinstance(SinkCore(), MediaCore)
    assert len(rtp_packet(1, 0)) == 172
    assert is_rtcp(rtcp_bye(1)) and not is_rtcp(rtp_packet(1, 0))


def test_histogram_percentiles() -> None:
    histogram = LatenessHistogram()
    assert (histogram.percentile_ms(0.5), histogram.max_ms) == (0.0, 0.0)
    for ms in range(1, 101):  # 1..100 ms
        histogram.add(ms / 1000 - 0.00001)
    histogram.add(-0.001)  # early counts as 0
    assert histogram.count == 101
    assert histogram.percentile_ms(0.5) == pytest.approx(50.0)
    assert histogram.percentile_ms(0.99) == pytest.approx(99.0)
    assert histogram.max_ms == pytest.approx(99.99)
    histogram.add(3.0)  # beyond the last bucket: still counted, max exact
    assert histogram.percentile_ms(1.0) == pytest.approx(3000.0)
    histogram.reset()
    assert (histogram.count, histogram.percentile_ms(0.99)) == (0, 0.0)


def test_paced_stream_arrives_complete_and_in_order(run_on: Runner) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sink = SinkCore()
        peer = await open_media_socket(core=sink)
        sender = await open_media_socket()
        assert sender.local_address[0] == LOOPBACK and sender.local_address[1] > 0
        ticker = MediaTicker()
        core = PacedCore(peer.local_address, loop.time(), ssrc=7, count=25)
        ticker.add(core, sender)
        await until(lambda: len(sink.received) == 25, "25 packets at the peer")
        assert _sequence(sink.received, 7) == list(range(25))
        assert {len(data) for data, _, _ in sink.received} == {172}
        assert {addr for _, addr, _ in sink.received} == {sender.local_address}
        assert sender.stats.packets_sent == 25 and sender.stats.bytes_sent == 25 * 172
        assert peer.stats.packets_received == 25 and sender.stats.send_errors == 0
        assert ticker.pending_timers == 0  # the core has nothing more: no timer armed
        ticker.close()
        await _close(peer, sender)

    run_on(scenario())


def test_receive_path_delivers_datagrams_with_loop_time(run_on: Runner) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        media = await open_media_socket()
        core = SinkCore()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind((LOOPBACK, 0))
            raw.sendto(b"early", media.local_address)
            await until(lambda: media.stats.unattached == 1, "the unattached datagram")
            media.attach(core)
            before = loop.time()
            raw.sendto(rtp_packet(3, 0), media.local_address)
            await until(lambda: core.received, "the datagram in the core")
            data, addr, now = core.received[0]
            assert (data, addr) == (rtp_packet(3, 0), raw.getsockname())
            assert before <= now <= loop.time()
        assert media.stats.packets_received == 2
        await _close(media)

    run_on(scenario())


def test_two_hundred_sessions_share_one_timer(run_on: Runner) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sink = SinkCore()
        peer = await open_media_socket(core=sink)
        # 10,000 packets a second into one socket: the default buffer (~200 kB) overflows
        # when the loop stalls a moment (a loaded CI machine), and a lost packet fails the test
        assert peer._transport is not None
        raw = peer._transport.get_extra_info("socket")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        ticker = MediaTicker()
        start = loop.time() + 0.05
        cores, sockets = [], []
        for i in range(200):  # phases spread over one 20 ms packet time
            core = PacedCore(peer.local_address, start + i * 0.0001, ssrc=i + 1, count=30)
            sock = await open_media_socket()
            ticker.add(core, sock)
            cores.append(core)
            sockets.append(sock)
        timers_seen: set[int] = set()

        def done() -> bool:
            timers_seen.add(ticker.pending_timers)
            return len(sink.received) == 200 * 30

        await until(done, "30 packets from each of 200 sessions")
        assert timers_seen <= {0, 1}  # one timer handle for all 200, never one per stream
        # (how many sessions each firing serves depends on the machine's load: a benchmark
        # figure, see benchmarks/media_ticker.py, not something a test can pin down)
        assert ticker.stats.sessions_served >= 200 * 30
        for core in cores:
            assert _sequence(sink.received, core.ssrc) == list(range(30))
            # lateness is recorded for every packet (its size is a benchmark figure, not a test's)
            assert len(core.late_s) >= 30 and min(core.late_s) >= 0.0
        ticker.close()
        await _close(peer, *sockets)

    run_on(scenario())


def test_remove_stops_the_session_and_sends_its_last_packets(run_on: Runner) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sink = SinkCore()
        peer = await open_media_socket(core=sink)
        sender = await open_media_socket()
        ticker = MediaTicker()
        core = PacedCore(peer.local_address, loop.time(), ssrc=5)
        ticker.add(core, sender)
        await until(lambda: len(sink.received) >= 3, "a few packets")
        ticker.remove(core)
        assert core.stopped_at is not None and len(ticker) == 0
        sent = core.seq
        await until(lambda: any(is_rtcp(d) for d, _, _ in sink.received), "the BYE")
        assert sink.received[-1][0] == rtcp_bye(5)
        assert _sequence(sink.received, 5) == list(range(sent))
        assert sender.ticker is None
        ticker.remove(core)  # twice: nothing happens
        assert core.seq == sent and ticker.stats.handler_errors == 0
        ticker.close()
        await _close(peer, sender)

    run_on(scenario())


def test_rtcp_port_pair_routes_rtcp_through_port_plus_one(run_on: Runner) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sink = SinkCore()
        peer = await open_media_socket(core=sink)
        media = await open_media(LOOPBACK, rtcp_port=True)
        assert media.rtcp is not None
        port = media.local_address[1]
        assert port % 2 == 0 and media.rtcp.local_address == (LOOPBACK, port + 1)
        ticker = MediaTicker()
        core = PacedCore(peer.local_address, loop.time(), ssrc=9, count=2)
        ticker.add(core, media)
        await until(lambda: len(sink.received) == 2, "two RTP packets")
        ticker.remove(core)
        await until(lambda: len(sink.received) == 3, "the BYE")
        assert [addr[1] for _, addr, _ in sink.received] == [port, port, port + 1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(rtcp_bye(1), media.rtcp.local_address)  # arrives on the RTCP socket
            await until(lambda: core.received, "RTCP delivered to the core")
        assert media.stats.packets_received == 1  # one stats object for the pair
        ticker.close()
        await _close(peer, media)

    run_on(scenario())


def test_snapshot_reports_lateness_and_rates_then_resets(run_on: Runner) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sink = SinkCore()
        peer = await open_media_socket(core=sink)
        sockets = [await open_media_socket() for _ in range(10)]
        ticker = MediaTicker()
        begin = loop.time()
        for i, sock in enumerate(sockets):
            ticker.add(PacedCore(peer.local_address, begin + i * 0.002, ssrc=i, count=10), sock)
        await until(lambda: len(sink.received) == 100, "100 packets")
        health = ticker.snapshot(loop.time())
        assert health.sessions == 10 and health.packets_sent == 100
        assert health.ticks >= 10 and 1 <= health.sessions_per_tick_max <= 10
        assert 0.0 <= health.send_late_p50_ms <= health.send_late_p99_ms <= health.send_late_max_ms
        assert 0.0 <= health.loop_lag_p50_ms <= health.loop_lag_p99_ms <= health.loop_lag_max_ms
        assert health.packets_per_s == pytest.approx(100 / health.interval_s)
        assert 0.0 < health.busy_fraction < 1.0 and health.handler_errors == 0
        empty = ticker.snapshot(loop.time())
        assert (empty.ticks, empty.packets_sent, empty.send_late_max_ms) == (0, 0, 0.0)
        ticker.close()
        await _close(peer, *sockets)

    run_on(scenario())


def test_a_raising_core_is_counted_and_the_others_keep_going(run_on: Runner) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sink = SinkCore()
        peer = await open_media_socket(core=sink)
        good_socket, bad_socket = await open_media_socket(), await open_media_socket()
        ticker = MediaTicker()
        begin = loop.time()
        ticker.add(BrokenCore(peer.local_address, begin, ssrc=66), bad_socket)
        ticker.add(PacedCore(peer.local_address, begin, ssrc=1, count=20), good_socket)
        await until(lambda: len(sink.received) == 20, "20 packets from the good core")
        assert _sequence(sink.received, 1) == list(range(20))
        errors = ticker.stats.handler_errors
        elapsed = loop.time() - begin
        assert 1 <= errors <= elapsed / 0.02 + 2  # retried at most once a packet time
        assert ticker.snapshot(loop.time()).handler_errors == errors
        ticker.close()
        await _close(peer, good_socket, bad_socket)

    run_on(scenario())


def test_wake_picks_up_a_session_that_was_idle(run_on: Runner) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sink = SinkCore()
        peer = await open_media_socket(core=sink)
        sender = await open_media_socket()
        ticker = MediaTicker()
        core = PacedCore(peer.local_address, loop.time(), count=3)
        core.stopped_at = 0.0  # idle: next_due() is None
        ticker.add(core, sender)
        assert ticker.pending_timers == 0
        core.stopped_at, core.next_at = None, loop.time()  # a command resumed it
        ticker.wake(core)
        await until(lambda: len(sink.received) == 3, "three packets after the wake")
        ticker.close()
        await _close(peer, sender)

    run_on(scenario())


def test_sends_never_raise(run_on: Runner) -> None:
    async def scenario() -> None:
        sender = await open_media_socket()
        sender.send(b"x", ("not an address", -1))
        sender.close()
        await sender.wait_closed()
        sender.send(b"y", ("127.0.0.1", 9))
        # asyncio reports the bad address through error_received after the handover,
        # uvloop raises from sendto: either way one error each, and nothing raised here.
        assert sender.stats.send_errors == 2

    run_on(scenario())


def test_a_session_removed_while_served_is_not_paced_again(run_on: Runner) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sink = SinkCore()
        peer = await open_media_socket(core=sink)
        sender = await open_media_socket()
        ticker = MediaTicker()

        class HangsUp(PacedCore):
            def packets_due(self, now: float) -> list[tuple[bytes, Address]]:
                packets = super().packets_due(now)
                if self.seq >= 3:
                    ticker.remove(self)  # e.g. the application ends the call from a callback
                return packets

        core = HangsUp(peer.local_address, loop.time(), ssrc=4)
        ticker.add(core, sender)
        await until(lambda: len(sink.received) == 4, "three packets and the BYE")
        await until(lambda: ticker.pending_timers == 0, "the ticker idle")
        assert core.seq == 3 and len(ticker) == 0 and ticker.stats.handler_errors == 0
        ticker.close()
        await _close(peer, sender)

    run_on(scenario())
