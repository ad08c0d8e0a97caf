"""Our user agents against a real Kamailio registrar/proxy with digest auth, UDP and TCP:
register (401), call each other through it (407 on the INVITE, Record-Route), BYE from the
callee through the route set, unregister; a wrong password is reported, not looped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from callmeter.endpoint import Endpoint
from callmeter.sip.events import (
    CallAnswered,
    CallEnded,
    IncomingCall,
    Registered,
    RegistrationFailed,
    Unregistered,
)
from callmeter.sip.message import parse_message
from callmeter.sip.useragent import UserAgentConfig
from callmeter.transport import run
from tests.peers import Kamailio

pytestmark = [pytest.mark.interop]

ACCOUNTS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


@pytest.fixture(scope="module")
def kamailio() -> Iterator[Kamailio]:
    with Kamailio.start(ACCOUNTS) as server:
        yield server


def config(kamailio: Kamailio, user: str, password: str | None = None) -> UserAgentConfig:
    # The domain carries Kamailio's port so it sees our From as local and challenges INVITEs.
    return UserAgentConfig(
        user,
        f"127.0.0.1:{kamailio.port}",
        ("127.0.0.1", kamailio.port),
        password=password if password is not None else ACCOUNTS[user],
        expires=300,
    )


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_register_call_through_kamailio_and_hang_up_from_the_callee(
    kamailio: Kamailio, transport: str
) -> None:
    async def scenario() -> None:
        alice = await Endpoint.open(config(kamailio, "alice"), transport=transport)
        bob = await Endpoint.open(config(kamailio, "bob"), transport=transport)
        try:
            for endpoint in (alice, bob):
                endpoint.register()
                registered = await endpoint.wait_for(Registered, RegistrationFailed)
                assert isinstance(registered, Registered), registered
                assert 0 < registered.expires <= 300
            contacts = await asyncio.to_thread(kamailio.contacts, "bob")
            port = bob.ua.local_addr[1]
            assert any(f"@127.0.0.1:{port}" in c for c in contacts), contacts

            call_id = alice.call(f"sip:bob@127.0.0.1:{kamailio.port}")
            assert isinstance(await bob.wait_for(IncomingCall), IncomingCall)
            answered = await alice.wait_for(CallAnswered, call_id=call_id)
            await bob.wait_for(CallAnswered, call_id=call_id)
            assert isinstance(answered, CallAnswered)

            invites = [
                parse_message(e.data)
                for e in alice.ua.trace
                if e.direction == "out" and e.data.startswith(b"INVITE")
            ]
            assert [m.headers.get("Proxy-Authorization") is None for m in invites] == [
                True,
                False,
            ]  # challenged with 407, answered once
            received = [
                parse_message(e.data)
                for e in bob.ua.trace
                if e.direction == "in" and e.data.startswith(b"INVITE")
            ]
            assert received[0].record_routes, "Kamailio record-routes the INVITE"

            bob.hangup(call_id)  # BYE from the callee, through the route set
            ended_b = await bob.wait_for(CallEnded, call_id=call_id)
            ended_a = await alice.wait_for(CallEnded, call_id=call_id)
            assert isinstance(ended_b, CallEnded) and ended_b.status == 200
            assert isinstance(ended_a, CallEnded) and ended_a.by == "remote"

            for endpoint in (alice, bob):
                endpoint.unregister()
                assert isinstance(await endpoint.wait_for(Unregistered), Unregistered)
            assert await asyncio.to_thread(kamailio.contacts, "bob") == []
            for endpoint in (alice, bob):
                assert endpoint.ua.counters["malformed"] == 0
        finally:
            await alice.close()
            await bob.close()

    run(scenario())


def test_wrong_password_is_reported(kamailio: Kamailio) -> None:
    async def scenario() -> None:
        carol = await Endpoint.open(config(kamailio, "carol", password="wrong"))
        try:
            carol.register()
            failed = await carol.wait_for(Registered, RegistrationFailed)
            assert isinstance(failed, RegistrationFailed) and failed.status == 401
            registers = [e for e in carol.ua.trace if e.data.startswith(b"REGISTER")]
            assert len(registers) == 2  # the first and one answer to the challenge
        finally:
            await carol.close()

    run(scenario())
