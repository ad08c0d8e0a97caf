"""Shared-socket mode: several user agents behind one address, routed without scans."""

from __future__ import annotations

import random

from callmeter.sip.core import Address
from callmeter.sip.events import CallAnswered, CallEnded, IncomingCall
from callmeter.sip.shared import SharedSocket
from callmeter.sip.useragent import UserAgent, UserAgentConfig
from tests.netsim import Network

S: Address = ("127.0.0.1", 5070)
P: Address = ("127.0.0.1", 5080)


def trunk(net: Network, users: int) -> tuple[SharedSocket, list[UserAgent]]:
    shared = SharedSocket(S)
    agents = []
    for index in range(users):
        config = UserAgentConfig(f"user{index}", "127.0.0.1", P, ring_time_s=0.5)
        agent = UserAgent(config, rng=random.Random(index))
        shared.add(agent)
        agents.append(agent)
    net.attach(shared, S)
    return shared, agents


def drain(agent: UserAgent) -> list[str]:
    out = []
    while (event := agent.next_event()) is not None:
        out.append(type(event).__name__)
    return out


def test_calls_between_agents_on_one_socket_and_a_phone() -> None:
    # Every second datagram to the phone is lost once: retransmissions run on the shared heap.
    seen: set[bytes] = set()

    def drop_first_copy(data: bytes, src: Address, dst: Address) -> bool:
        if data in seen:
            return False
        seen.add(data)
        return len(seen) % 2 == 0

    net = Network(drop=drop_first_copy)
    shared, agents = trunk(net, 3)
    phone = UserAgent(UserAgentConfig("phone", "127.0.0.1", S), P, rng=random.Random(9))
    net.attach(phone, P)
    calls = [agent.invite("sip:phone@127.0.0.1:5080", 0.0) for agent in agents]
    inbound = phone.invite("sip:user1@127.0.0.1:5070", 0.0)
    net.run_until(5.0)
    for call_id, agent in zip(calls, agents, strict=True):
        agent.hangup(call_id, net.now)
    phone.hangup(inbound, net.now)
    net.run_until(10.0)
    assert drain(agents[0]) == ["CallAnswered", "CallEnded"]
    assert drain(agents[1]) == ["IncomingCall", "CallAnswered", "CallAnswered", "CallEnded",
                                "CallEnded"]  # fmt: skip
    assert {type(e) for e in _all(phone)} == {IncomingCall, CallAnswered, CallEnded}
    assert set(shared.ready()) == set(agents)
    assert shared.counters["stray_responses"] == 0


def _all(agent: UserAgent) -> list[object]:
    out = []
    while (event := agent.next_event()) is not None:
        out.append(event)
    return out


def test_unknown_user_and_dialog_are_answered_by_the_socket() -> None:
    net = Network()
    _, agents = trunk(net, 1)
    phone = UserAgent(UserAgentConfig("phone", "127.0.0.1", S), P)
    net.attach(phone, P)
    phone.invite("sip:nobody@127.0.0.1:5070", 0.0)
    net.run_until(1.0)
    failed = _all(phone)[-1]
    assert getattr(failed, "status", None) == 404
    assert drain(agents[0]) == []


def test_malformed_datagram_is_counted_by_the_socket() -> None:
    net = Network()
    shared, agents = trunk(net, 2)
    shared.receive_datagram(b"INVITE nonsense\r\n\r\n", P, 0.0)
    assert shared.counters["malformed"] == 1
    assert all(a.counters["malformed"] == 0 for a in agents)
