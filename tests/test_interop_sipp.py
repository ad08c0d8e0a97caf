"""Our user agents against real SIPp on loopback: our UAC to `sipp -sn uas`, `sipp -sn uac`
to our UAS, over UDP and TCP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callmeter.endpoint import Endpoint
from callmeter.sip.events import CallAnswered, CallEnded, CallFailed, IncomingCall
from callmeter.sip.shared import SharedSocket
from callmeter.sip.useragent import UserAgent, UserAgentConfig
from callmeter.transport import open_udp, run
from tests.aio import poll, sipp_exit
from tests.peers import Sipp, free_port, wait_until

pytestmark = [pytest.mark.interop]


def bound(port: int, transport: str) -> bool:
    """Whether something on this machine has ``port`` bound (LISTEN for TCP), from /proc."""
    table = Path(f"/proc/net/{transport}").read_text().splitlines()[1:]
    wanted = f":{port:04X}"
    listen = "0A"
    for line in table:
        fields = line.split()
        if fields[1].endswith(wanted) and (transport == "udp" or fields[3] == listen):
            return True
    return False


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_our_uac_calls_sipp_uas(transport: str) -> None:
    with Sipp.uas(transport=transport) as sipp:  # type: ignore[arg-type]
        wait_until(lambda: bound(sipp.port, transport), 10, what="sipp listening")

        async def scenario() -> None:
            config = UserAgentConfig("alice", "127.0.0.1", ("127.0.0.1", sipp.port))
            caller = await Endpoint.open(config, transport=transport.upper())
            try:
                for _ in range(3):
                    call_id = caller.call(f"sip:service@127.0.0.1:{sipp.port}")
                    answered = await caller.wait_for(CallAnswered, call_id=call_id)
                    assert isinstance(answered, CallAnswered)
                    assert answered.timing.ringing is not None  # SIPp's uas sends 180
                    caller.hangup(call_id)
                    ended = await caller.wait_for(CallEnded, call_id=call_id)
                    assert isinstance(ended, CallEnded) and ended.status == 200
                assert caller.ua.counters["malformed"] == 0
                # SIPp's uas counts a call only 4 s after its BYE, and drops calls whose TCP
                # connection closed before that: keep ours open until it has counted.
                await poll(lambda: sipp.counter("SuccessfulCall") == 3, 15, "sipp counted 3 calls")
            finally:
                await caller.close()

        run(scenario())
        assert sipp.counter("FailedCall") == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_uac_calls_our_uas(transport: str) -> None:
    async def scenario() -> None:
        config = UserAgentConfig("service", "127.0.0.1", ("127.0.0.1", 9))
        callee = await Endpoint.open(config, transport=transport.upper())
        host, port = callee.ua.local_addr
        try:
            sipp = Sipp.uac(f"{host}:{port}", calls=5, rate=20, transport=transport)  # type: ignore[arg-type]
            with sipp:
                code = await sipp_exit(sipp)
                assert code == 0, sipp.log()
                assert sipp.counter("SuccessfulCall") == 5
            incoming = [e for e in callee.events if isinstance(e, IncomingCall)]
            ended = [e for e in callee.events if isinstance(e, CallEnded)]
            assert len(incoming) == 5 and len(ended) == 5
            assert all(e.by == "remote" for e in ended)
            assert callee.ua.counters["malformed"] == 0
        finally:
            await callee.close()

    run(scenario())


def test_tcp_connection_refused_fails_the_call_at_once() -> None:
    async def scenario() -> None:
        refused = free_port("tcp")  # nothing listens there
        config = UserAgentConfig("alice", "127.0.0.1", ("127.0.0.1", refused))
        caller = await Endpoint.open(config, transport="TCP")
        try:
            call_id = caller.call(f"sip:bob@127.0.0.1:{refused}")
            failed = await caller.wait_for(CallFailed, call_id=call_id, within_s=5)
            assert isinstance(failed, CallFailed) and failed.status == 503
        finally:
            await caller.close()

    run(scenario())


def test_agents_sharing_one_socket_call_sipp_and_answer_it() -> None:
    with Sipp.uas() as uas:
        wait_until(lambda: bound(uas.port, "udp"), 10, what="sipp listening")

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            shared = SharedSocket()
            agents = [
                UserAgent(UserAgentConfig(f"trunk{i}", "127.0.0.1", ("127.0.0.1", uas.port)))
                for i in range(3)
            ]
            for agent in agents:
                shared.add(agent)
            events: list[tuple[str, object]] = []

            def on_activity() -> None:
                for agent in shared.ready():
                    while (event := agent.next_event()) is not None:
                        if isinstance(agent, UserAgent):
                            events.append((agent.config.username, event))
                            if isinstance(event, CallAnswered) and event.call_id in calls:
                                agent.hangup(event.call_id, loop.time())

            transport = await open_udp(shared, on_activity=on_activity)
            shared.bind(transport.local_address)
            host, port = transport.local_address
            try:
                calls = {a.invite(f"sip:service@127.0.0.1:{uas.port}", loop.time()) for a in agents}
                transport.flush()
                await poll(
                    lambda: calls <= {e.call_id for _, e in events if isinstance(e, CallEnded)},
                    10,
                    "our three calls ended",
                )
                with Sipp.uac(f"{host}:{port}", calls=4, rate=20, service="trunk1") as uac:
                    assert await sipp_exit(uac) == 0, uac.log()
                incoming = [u for u, e in events if isinstance(e, IncomingCall)]
                assert incoming == ["trunk1"] * 4
                assert shared.counters["malformed"] == 0
            finally:
                transport.close()

        run(scenario())
