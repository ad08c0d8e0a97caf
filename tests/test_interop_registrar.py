"""Real peers against our built-in registrar: SIPp registers with digest auth and calls
through it to a SIPp UAS; baresip registers and auto-answers a call from our user agent;
garbage thrown at the live registrar is answered while calls go on."""

from __future__ import annotations

import asyncio
import socket

import pytest

from callmeter.endpoint import Endpoint
from callmeter.registrar import RunningRegistrar
from callmeter.sip.events import CallAnswered, CallEnded, CallFailed, Registered
from callmeter.sip.useragent import Body, UserAgentConfig
from callmeter.transport import run
from tests.aio import poll, sipp_exit
from tests.peers import Baresip, Sipp

pytestmark = [pytest.mark.interop]


def test_sipp_registers_and_calls_through_our_registrar() -> None:
    async def scenario() -> None:
        async with RunningRegistrar(accounts=2) as registrar:
            host, port = registrar.address
            caller, callee = registrar.accounts
            uas_port = 0
            with Sipp.register(
                f"{host}:{port}", user=callee.username, password=callee.password
            ) as reg:
                uas_port = reg.port
                assert await sipp_exit(reg) == 0, reg.log()
            with Sipp.uas(record_route=True, port=uas_port) as uas:
                with Sipp.call_with_auth(
                    f"{host}:{port}",
                    caller=caller.username,
                    password=caller.password,
                    callee=callee.username,
                    calls=5,
                    rate=20,
                ) as uac:
                    assert await sipp_exit(uac) == 0, uac.log()
                    assert uac.counter("SuccessfulCall") == 5
                await poll(lambda: uas.counter("SuccessfulCall") == 5, 15, "uas counted calls")
            assert registrar.malformed == 0

    run(scenario())


class PcmuOffer:
    """A fixed PCMU offer/answer so baresip has SDP to negotiate (media: next issue)."""

    SDP = (
        b"v=0\r\no=callmeter 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
        b"t=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )

    def create_offer(self, call_id: str) -> Body | None:
        return "application/sdp", self.SDP

    def create_answer(self, call_id: str, offer: Body | None) -> Body | int | None:
        return "application/sdp", self.SDP

    def answer_received(self, call_id: str, answer: Body | None) -> int | None:
        return None if answer is not None and b"m=audio" in answer[1] else 488

    def call_ended(self, call_id: str) -> None:
        pass


def test_baresip_registers_and_answers_our_call_through_the_registrar() -> None:
    async def scenario() -> None:
        async with RunningRegistrar(accounts=2) as registrar:
            host, port = registrar.address
            ours, theirs = registrar.accounts
            baresip = await asyncio.to_thread(
                Baresip.start, theirs.username, theirs.password, f"{host}:{port}"
            )
            with baresip:
                await poll(
                    lambda: registrar.registrar.location.lookup(
                        f"sip:{theirs.username}@{registrar.config.domain}", 0.0
                    ),
                    10,
                    "baresip registered",
                )
                config = UserAgentConfig(
                    ours.username, registrar.config.domain, (host, port), password=ours.password
                )
                caller = await Endpoint.open(config, offer_answer=PcmuOffer())
                try:
                    caller.register()
                    assert isinstance(await caller.wait_for(Registered), Registered)
                    call_id = caller.call(f"sip:{theirs.username}@{registrar.config.domain}")
                    answered = await caller.wait_for(CallAnswered, CallFailed, call_id=call_id)
                    assert isinstance(answered, CallAnswered), answered
                    caller.hangup(call_id)
                    ended = await caller.wait_for(CallEnded, call_id=call_id)
                    assert isinstance(ended, CallEnded) and ended.status == 200
                finally:
                    await caller.close()

    run(scenario())


GARBAGE = [
    b"\x00\x01\x02 not sip at all",
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKg\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: g1\r\nCSeq: 99999999999 INVITE"
    b"\r\nContent-Length: 0\r\n\r\n",
    b"SIP/2.0 200 OK\r\nVia: garbage\r\n\r\n",
    b"REGISTER sip:127.0.0.1 SIP/2.0\r\n" + b"X-Long: " + b"a" * 3000 + b"\r\n\r\n",
]


def test_garbage_to_the_registrar_is_counted_and_calls_go_on() -> None:
    async def scenario() -> None:
        async with RunningRegistrar(accounts=2) as registrar:
            host, port = registrar.address
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", 0))
            probe.setblocking(False)
            try:
                for datagram in GARBAGE:
                    probe.sendto(datagram, (host, port))
                await poll(lambda: registrar.malformed == len(GARBAGE), 5, "garbage counted")
                answer = await asyncio.get_running_loop().sock_recv(probe, 65535)
                assert answer.startswith(b"SIP/2.0 400 CSeq: sequence number 99999999999")
            finally:
                probe.close()
            endpoints = [
                await Endpoint.open(
                    UserAgentConfig(
                        a.username, registrar.config.domain, (host, port), password=a.password
                    )
                )
                for a in registrar.accounts
            ]
            try:
                for endpoint in endpoints:
                    endpoint.register()
                    await endpoint.wait_for(Registered)
                callee = endpoints[1].ua.config.username
                call_id = endpoints[0].call(f"sip:{callee}@{registrar.config.domain}")
                assert isinstance(
                    await endpoints[0].wait_for(CallAnswered, call_id=call_id), CallAnswered
                )
            finally:
                for endpoint in endpoints:
                    await endpoint.close()

    run(scenario())
