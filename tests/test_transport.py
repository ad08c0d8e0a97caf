"""The asyncio shell over real loopback sockets, on both the asyncio and the uvloop loop.

The cores here are tiny recording fakes: the shell is what is under test. Tests poll with a
deadline; none sleeps to wait for something to happen.
"""

from __future__ import annotations

import asyncio
import socket

from callmeter.sip.core import Address, SansIOCore
from callmeter.transport import (
    TcpTransport,
    UdpTransport,
    loop_implementation,
    new_event_loop,
    open_tcp,
    open_udp,
    run,
    uvloop_available,
)
from tests.aio import until
from tests.conftest import Runner

LOOPBACK = "127.0.0.1"
DEADLINE_S = 5.0


def _frame(body: bytes, start: bytes = b"SIP/2.0 200 OK") -> bytes:
    return start + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body


class RecordingCore:
    """Records every input; echoes each message framed as a 200 when ``echo``; one timer."""

    def __init__(self, *, echo: bool = False, timer_after_s: float | None = None) -> None:
        self.echo = echo
        self.timer_after_s = timer_after_s
        self.received: list[tuple[bytes, Address, float]] = []
        self.fired: list[float] = []
        self.deadline: float | None = None
        self.outgoing: list[tuple[bytes, Address]] = []

    def send(self, data: bytes, addr: Address) -> None:
        self.outgoing.append((data, addr))

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.received.append((data, addr, now))
        if data == b"boom":
            raise RuntimeError("a bug in the core")
        if self.echo:
            self.send(_frame(data), addr)
        if self.timer_after_s is not None and self.deadline is None:
            self.deadline = now + self.timer_after_s

    def handle_timer(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline:
            self.fired.append(now)
            self.deadline = None

    def get_timer(self) -> float | None:
        return self.deadline

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        outgoing, self.outgoing = self.outgoing, []
        return outgoing


def test_loop_selection() -> None:
    async def which() -> str:
        return loop_implementation()

    assert run(which(), use_uvloop=False) == "asyncio"
    if uvloop_available():
        assert run(which()) == "uvloop"
        loop = new_event_loop()
        assert loop_implementation(loop) == "uvloop"
        loop.close()


def test_recording_core_is_a_sans_io_core() -> None:
    assert isinstance(RecordingCore(), SansIOCore)


# UDP


def test_udp_round_trip(run_on: Runner) -> None:
    async def scenario() -> None:
        server_core, client_core = RecordingCore(echo=True), RecordingCore()
        server = await open_udp(server_core)
        client = await open_udp(client_core)
        assert server.local_address[0] == LOOPBACK and server.local_address[1] > 0
        assert server.socket_buffers[0] > 0
        client_core.send(b"OPTIONS", server.local_address)
        client.flush()
        await until(lambda: client_core.received, "the echo")
        data, addr, now = client_core.received[0]
        assert data == _frame(b"OPTIONS") and addr == server.local_address
        assert server_core.received[0][:2] == (b"OPTIONS", client.local_address)
        assert now <= asyncio.get_running_loop().time()
        assert (server.stats.messages_received, server.stats.messages_sent) == (1, 1)
        assert client.stats.bytes_received == len(_frame(b"OPTIONS"))
        for transport in (server, client):
            transport.close()
            await transport.wait_closed()

    run_on(scenario())


def test_udp_timer_fires_once_at_its_deadline_and_is_not_duplicated(run_on: Runner) -> None:
    async def scenario() -> None:
        core = RecordingCore(timer_after_s=0.05)
        server = await open_udp(core)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind((LOOPBACK, 0))
            for i in range(5):  # every datagram keeps the deadline the first one set
                sender.sendto(b"ping %d" % i, server.local_address)
            await until(lambda: len(core.received) == 5, "five datagrams")
        deadline = core.received[0][2] + 0.05
        assert server.timer_deadline == deadline
        assert server.stats.timers_armed == 1
        await until(lambda: core.fired, "the timer")
        assert core.fired[0] >= deadline
        assert (server.stats.timers_armed, server.stats.timers_fired) == (1, 1)
        assert server.timer_deadline is None
        server.close()
        await server.wait_closed()

    run_on(scenario())


def test_udp_timer_is_replaced_when_it_moves_earlier_kept_when_later(run_on: Runner) -> None:
    async def scenario() -> None:
        core = RecordingCore()
        server = await open_udp(core)
        start = asyncio.get_running_loop().time()
        core.deadline = start + 0.02
        server.flush()  # a command changed the core's timer: the app flushes
        server.flush()  # nothing moved: nothing re-armed
        assert (server.timer_deadline, server.stats.timers_armed) == (start + 0.02, 1)
        core.deadline = start + 0.01  # moved earlier: replaced
        server.flush()
        assert (server.timer_deadline, server.stats.timers_armed) == (start + 0.01, 2)
        core.deadline = start + 0.06  # moved later: the armed timer is kept and fires early,
        server.flush()  # the core finds nothing due, and the timer is re-armed then
        assert (server.timer_deadline, server.stats.timers_armed) == (start + 0.01, 2)
        await until(lambda: core.fired, "the moved timer")
        assert core.fired[0] >= start + 0.06
        assert (server.stats.timers_armed, server.stats.timers_fired) == (3, 2)
        server.close()
        await server.wait_closed()

    run_on(scenario())


def test_udp_on_activity_runs_before_the_flush(run_on: Runner) -> None:
    async def scenario() -> None:
        core = RecordingCore(timer_after_s=0.01)
        seen: list[tuple[int, int]] = []

        def on_activity() -> None:  # the application drains events and answers at once
            seen.append((len(core.received), len(core.fired)))
            if core.received and len(seen) == 1:
                core.send(b"answer", core.received[0][1])

        server = await open_udp(core, on_activity=on_activity)
        client_core = RecordingCore()
        client = await open_udp(client_core)
        client_core.send(b"INVITE", server.local_address)
        client.flush()
        await until(lambda: core.fired and client_core.received, "timer and answer")
        assert seen == [(1, 0), (1, 1)]
        assert client_core.received[0][0] == b"answer"
        for transport in (server, client):
            transport.close()
            await transport.wait_closed()

    run_on(scenario())


def test_udp_send_failures_are_counted_not_raised(run_on: Runner) -> None:
    async def scenario() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            closed_port = probe.getsockname()
        echo_core, core = RecordingCore(echo=True), RecordingCore()
        echo = await open_udp(echo_core)
        client = await open_udp(core)
        core.send(b"to nobody", closed_port)  # Linux: lost silently on unconnected sockets
        core.send(b"x" * 70_000, echo.local_address)  # EMSGSIZE
        core.send(b"bad address", ("not an ip", -1))
        client.flush()
        await until(lambda: client.stats.send_errors >= 2, "send errors")
        core.send(b"still alive", echo.local_address)
        client.flush()
        await until(lambda: core.received, "the echo after the failures")
        assert core.received[0][0] == _frame(b"still alive")
        client.close()
        await client.wait_closed()
        errors = client.stats.send_errors
        core.send(b"after close", echo.local_address)
        client.flush()
        assert client.stats.send_errors == errors + 1
        echo.close()
        await echo.wait_closed()

    run_on(scenario())


def test_a_core_that_raises_does_not_stop_the_transport(run_on: Runner) -> None:
    async def scenario() -> None:
        core, client_core = RecordingCore(echo=True), RecordingCore()
        server = await open_udp(core)
        client = await open_udp(client_core)
        client_core.send(b"boom", server.local_address)
        client_core.send(b"fine", server.local_address)
        client.flush()
        await until(lambda: client_core.received, "the echo after the bug")
        assert client_core.received[0][0] == _frame(b"fine")
        assert server.stats.handler_errors == 1
        for transport in (server, client):
            transport.close()
            await transport.wait_closed()

    run_on(scenario())


# TCP


async def _close_all(*transports: TcpTransport | UdpTransport) -> None:
    for transport in transports:
        transport.close()
        await transport.wait_closed()


def test_tcp_frames_across_writes_and_answers_on_the_same_connection(run_on: Runner) -> None:
    async def scenario() -> None:
        core = RecordingCore(echo=True)
        server = await open_tcp(core)
        reader, writer = await asyncio.open_connection(*server.local_address)
        request = _frame(b"v=0\r\n", b"INVITE sip:bob@127.0.0.1 SIP/2.0")
        for piece in (request[:10], request[10:40], request[40:] + b"\r\n\r\n" + request[:5]):
            writer.write(piece)
            await writer.drain()
        writer.write(request[5:] + request)  # the rest of one and a whole second one
        await until(lambda: len(core.received) == 3, "three framed messages")
        client_address = writer.get_extra_info("sockname")[:2]
        assert [(data, addr) for data, addr, _ in core.received] == [(request, client_address)] * 3
        answer = _frame(request)
        expected_size = len(b"\r\n") + 3 * len(answer)  # one pong, three answers
        got = await asyncio.wait_for(reader.readexactly(expected_size), DEADLINE_S)
        assert got.count(answer) == 3 and got.replace(answer, b"") == b"\r\n"
        assert server.stats.pings_answered == 1
        assert server.connection_addresses == [client_address]
        writer.close()
        await writer.wait_closed()
        await until(lambda: not server.connection_addresses, "the connection to go")
        await _close_all(server)

    run_on(scenario())


def test_tcp_bad_framing_closes_only_that_connection(run_on: Runner) -> None:
    async def scenario() -> None:
        core = RecordingCore(echo=True)  # the fake "answers" the raw bad bytes, like a 400
        server = await open_tcp(core)
        good_reader, good_writer = await asyncio.open_connection(*server.local_address)
        bad_reader, bad_writer = await asyncio.open_connection(*server.local_address)
        await until(lambda: len(server.connection_addresses) == 2, "two connections")
        bad = b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nContent-Length: -999\r\n\r\n"
        ok = _frame(b"", b"OPTIONS sip:127.0.0.1 SIP/2.0")
        bad_writer.write(ok + bad)
        answer = await asyncio.wait_for(bad_reader.read(), DEADLINE_S)  # until EOF
        assert answer == _frame(ok) + _frame(bad)  # both delivered, answered, then closed
        bad_address = bad_writer.get_extra_info("sockname")[:2]
        assert [(data, addr) for data, addr, _ in core.received] == [
            (ok, bad_address),
            (bad, bad_address),
        ]
        assert server.stats.framing_errors == 1
        good_writer.write(ok)
        reply = await asyncio.wait_for(good_reader.readexactly(len(_frame(ok))), DEADLINE_S)
        assert reply == _frame(ok)
        assert server.connection_addresses == [good_writer.get_extra_info("sockname")[:2]]
        for writer in (good_writer, bad_writer):
            writer.close()
            await writer.wait_closed()
        await _close_all(server)

    run_on(scenario())


def test_tcp_connects_on_demand_and_replies_reuse_the_connection(run_on: Runner) -> None:
    async def scenario() -> None:
        server_core, client_core = RecordingCore(echo=True), RecordingCore()
        server = await open_tcp(server_core)
        client = await open_tcp(client_core)
        request = _frame(b"", b"REGISTER sip:127.0.0.1 SIP/2.0")
        client_core.send(request, server.local_address)  # queued while connecting
        client_core.send(request, server.local_address)
        client.flush()
        await until(lambda: len(client_core.received) == 2, "two answers")
        assert {addr for _, addr, _ in client_core.received} == {server.local_address}
        assert client.connection_addresses == [server.local_address]
        (peer,) = server.connection_addresses
        assert peer != client.local_address  # an ephemeral source port, not the listener
        assert (client.stats.connections_opened, server.stats.connections_accepted) == (1, 1)
        assert server.stats.connections_opened == 0  # the answers reused the connection
        client_core.send(b"\r\n\r\n", server.local_address)  # an RFC 5626 ping from a core
        client.flush()
        await until(lambda: server.stats.pings_answered == 1, "the pong")
        await _close_all(client, server)
        assert not client.connection_addresses

    run_on(scenario())


def test_tcp_connect_failure_is_counted_and_the_bytes_dropped(run_on: Runner) -> None:
    async def scenario() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((LOOPBACK, 0))
            closed_port = probe.getsockname()
        echo_core, core = RecordingCore(echo=True), RecordingCore()
        echo = await open_tcp(echo_core)
        client = await open_tcp(core)
        core.send(b"one", closed_port)
        core.send(b"two", closed_port)
        client.flush()
        await until(lambda: client.stats.connect_errors == 1, "the refused connect")
        assert client.stats.send_errors == 2
        assert client.connection_addresses == []
        request = _frame(b"", b"OPTIONS sip:127.0.0.1 SIP/2.0")
        core.send(request, echo.local_address)
        client.flush()
        await until(lambda: core.received, "an answer after the failure")
        await _close_all(client, echo)

    run_on(scenario())


def test_tcp_close_cancels_pending_connects(run_on: Runner) -> None:
    async def scenario() -> None:
        core = RecordingCore(timer_after_s=60.0)
        transport = await open_tcp(core, connect_timeout_s=30.0)
        core.send(b"x", ("127.0.0.1", 9))  # refused or pending: either way closes cleanly
        core.deadline = asyncio.get_running_loop().time() + 60.0
        transport.flush()
        assert transport.timer_deadline is not None
        await _close_all(transport)
        assert transport.timer_deadline is None
        assert transport.connection_addresses == []

    run_on(scenario())


def test_tune_gc_for_load_raises_the_threshold_and_freezes_startup_objects() -> None:
    import gc

    from callmeter.transport import tune_gc_for_load

    before = gc.get_threshold()
    try:
        tune_gc_for_load(12_345)
        assert gc.get_threshold() == (12_345, 20, 10)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
