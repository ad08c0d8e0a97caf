"""User agent behaviour over an in-memory network with a fake clock (no sockets, no sleep)."""

from __future__ import annotations

import random

import pytest

from callmeter.sip import auth
from callmeter.sip.core import Address
from callmeter.sip.dialog import Dialog
from callmeter.sip.errors import LocalProtocolError
from callmeter.sip.events import (
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallFailed,
    CallRinging,
    Event,
    IncomingCall,
    MalformedMessageReceived,
    Registered,
    RegistrationFailed,
    TransactionTimedOut,
    Unregistered,
)
from callmeter.sip.layer import TransactionLayer
from callmeter.sip.message import Request, parse_message
from callmeter.sip.timers import TimerConfig
from callmeter.sip.transaction import ServerTransaction
from callmeter.sip.uri import parse_uri
from callmeter.sip.useragent import CallState, UserAgent, UserAgentConfig
from tests.netsim import Network

A: Address = ("127.0.0.1", 5001)
B: Address = ("127.0.0.1", 5002)
R: Address = ("127.0.0.1", 5060)


def events(ua: UserAgent) -> list[Event]:
    out = []
    while (event := ua.next_event()) is not None:
        out.append(event)
    return out


def kinds(ua: UserAgent) -> list[str]:
    return [type(e).__name__ for e in events(ua)]


def pair(
    net: Network, *, ring_time_s: float = 0.0, answer_status: int = 200
) -> tuple[UserAgent, UserAgent]:
    alice = UserAgent(UserAgentConfig("alice", "127.0.0.1", B), A, rng=random.Random(1))
    bob = UserAgent(
        UserAgentConfig(
            "bob", "127.0.0.1", A, ring_time_s=ring_time_s, answer_status=answer_status
        ),
        B,
        rng=random.Random(2),
    )
    net.attach(alice, A)
    net.attach(bob, B)
    return alice, bob


def first_lines(net: Network) -> list[str]:
    return [data.split(b"\r\n", 1)[0].decode() for _, _, _, data in net.log]


def test_call_with_ringing_then_local_hangup() -> None:
    net = Network()
    alice, bob = pair(net, ring_time_s=1.0)
    call_id = alice.invite("sip:bob@127.0.0.1:5002", net.now)
    net.run_until(2.0)
    alice.hangup(call_id, net.now)
    net.run_until(3.0)
    a_events, b_events = events(alice), events(bob)
    assert [type(e) for e in a_events] == [CallRinging, CallAnswered, CallEnded]
    assert [type(e) for e in b_events] == [IncomingCall, CallAnswered, CallEnded]
    ended = a_events[-1]
    assert isinstance(ended, CallEnded) and ended.by == "local" and ended.status == 200
    timing = ended.timing
    assert timing.invite == 0.0 and timing.trying == pytest.approx(0.002)
    assert timing.setup_time_s == pytest.approx(1.002)
    assert timing.post_dial_delay_s == pytest.approx(0.002)
    assert timing.bye == 2.0 and timing.duration_s == pytest.approx(1.0)
    remote_end = b_events[-1]
    assert isinstance(remote_end, CallEnded) and remote_end.by == "remote"
    assert first_lines(net) == [
        "INVITE sip:bob@127.0.0.1:5002 SIP/2.0",
        "SIP/2.0 100 Trying",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 200 OK",
        "ACK sip:bob@127.0.0.1:5002 SIP/2.0",
        "BYE sip:bob@127.0.0.1:5002 SIP/2.0",
        "SIP/2.0 200 OK",
    ]
    assert alice.calls == {} and bob.calls == {}


def test_dialog_requests_use_tags_and_increasing_cseq() -> None:
    net = Network()
    alice, bob = pair(net)
    call_id = alice.invite("sip:bob@127.0.0.1:5002", 0.0)
    net.run_until(1.0)
    bob.hangup(call_id, net.now)  # BYE from the callee side
    net.run_until(2.0)
    invite, ok, bye = (parse_message(net.sent(p)[0]) for p in ("INVITE", "SIP/2.0 200", "BYE"))
    assert isinstance(bye, Request)
    assert bye.from_.tag == ok.to.tag and bye.to.tag == invite.from_.tag
    assert bye.cseq.seq == 1 and bye.call_id == call_id  # bob's first request in the dialog
    assert isinstance(invite, Request) and bye.uri == invite.contacts[0].uri
    a_end = events(alice)[-1]
    assert isinstance(a_end, CallEnded) and a_end.by == "remote"


def test_lost_invite_is_retransmitted_on_timer_a() -> None:
    dropped: list[bytes] = []

    def drop_first_invite(data: bytes, src: Address, dst: Address) -> bool:
        if data.startswith(b"INVITE") and not dropped:
            dropped.append(data)
            return True
        return False

    net = Network(drop=drop_first_invite)
    alice, _bob = pair(net)
    alice.invite("sip:bob@127.0.0.1:5002", 0.0)
    net.run_until(2.0)
    invite_times = [t for t, _, _, d in net.log if d.startswith(b"INVITE")]
    assert invite_times == [0.0, 0.5]  # T1
    assert kinds(alice) == ["CallAnswered"]


def test_lost_200_is_retransmitted_until_the_ack() -> None:
    lost: list[bytes] = []

    def drop_two_oks(data: bytes, src: Address, dst: Address) -> bool:
        if data.startswith(b"SIP/2.0 200") and len(lost) < 2:
            lost.append(data)
            return True
        return False

    net = Network(drop=drop_two_oks)
    alice, bob = pair(net)
    alice.invite("sip:bob@127.0.0.1:5002", 0.0)
    net.run_until(5.0)
    ok_times = [round(t, 3) for t, _, _, d in net.log if d.startswith(b"SIP/2.0 200")]
    assert ok_times == [0.001, 0.501, 1.501]  # T1, then 2*T1: section 13.3.1.4
    assert kinds(alice) == ["CallAnswered"]
    assert kinds(bob) == ["IncomingCall", "CallAnswered"]
    assert bob.call_state(next(iter(bob.calls))) is CallState.CONFIRMED


def test_invite_to_nowhere_times_out_with_timer_b() -> None:
    net = Network()
    alice = UserAgent(UserAgentConfig("alice", "127.0.0.1", B), A, rng=random.Random(1))
    net.attach(alice, A)
    call_id = alice.invite("sip:bob@127.0.0.1:5002", 0.0)
    net.run_until(40.0)
    sends = [t for t, _, _, d in net.log if d.startswith(b"INVITE")]
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    evs = events(alice)
    assert isinstance(evs[0], TransactionTimedOut) and evs[0].at == 32.0
    failed = evs[1]
    assert isinstance(failed, CallFailed) and failed.status == 408 and failed.call_id == call_id


def test_register_to_nowhere_caps_retransmissions_at_t2() -> None:
    net = Network()
    timers = TimerConfig(t1=0.5, t2=4.0)
    alice = UserAgent(UserAgentConfig("alice", "127.0.0.1", R, timers=timers), A)
    net.attach(alice, A)
    alice.register(0.0)
    net.run_until(40.0)
    sends = [t for t, _, _, d in net.log if d.startswith(b"REGISTER")]
    assert sends[:7] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert sends[-1] < 32.0
    assert isinstance(events(alice)[-1], RegistrationFailed)


def test_rejected_call_is_acked_by_the_transaction() -> None:
    net = Network()
    alice, _bob = pair(net, answer_status=486)
    alice.invite("sip:bob@127.0.0.1:5002", 0.0)
    net.run_until(1.0)
    failed = events(alice)[-1]
    assert isinstance(failed, CallFailed) and failed.status == 486
    assert failed.reason == "Busy Here"
    assert len(net.sent("ACK")) == 1
    ack = parse_message(net.sent("ACK")[0])
    invite = parse_message(net.sent("INVITE")[0])
    assert ack.via[0].branch == invite.via[0].branch  # non-2xx ACK: same transaction


def test_cancel_of_a_ringing_call() -> None:
    net = Network()
    alice, bob = pair(net, ring_time_s=10.0)
    call_id = alice.invite("sip:bob@127.0.0.1:5002", 0.0)
    net.run_until(1.0)
    alice.hangup(call_id, net.now)
    net.run_until(2.0)
    assert "CANCEL sip:bob@127.0.0.1:5002 SIP/2.0" in first_lines(net)
    assert "SIP/2.0 487 Request Terminated" in first_lines(net)
    a_last, b_last = events(alice)[-1], events(bob)[-1]
    assert isinstance(a_last, CallCancelled) and a_last.by == "local"
    assert isinstance(b_last, CallCancelled) and b_last.by == "remote"
    cancel = parse_message(net.sent("CANCEL")[0])
    invite = parse_message(net.sent("INVITE")[0])
    assert cancel.via[0].branch == invite.via[0].branch
    assert cancel.cseq.seq == invite.cseq.seq and cancel.cseq.method == "CANCEL"


def test_cancel_before_any_provisional_waits_for_one() -> None:
    """Section 9.1: no CANCEL before a provisional response arrived."""
    net = Network(delay_s=0.1)
    alice, _bob = pair(net, ring_time_s=10.0)
    call_id = alice.invite("sip:bob@127.0.0.1:5002", 0.0)
    alice.hangup(call_id, 0.0)
    net.run_until(0.15)
    assert net.sent("CANCEL") == []
    net.run_until(1.0)
    cancels = [t for t, _, _, d in net.log if d.startswith(b"CANCEL")]
    assert cancels == [pytest.approx(0.2)]
    assert isinstance(events(alice)[-1], CallCancelled)


def test_cancel_crossing_the_200_ends_with_ack_and_bye() -> None:
    net = Network(delay_s=0.001)
    alice, bob = pair(net, ring_time_s=1.0)
    call_id = alice.invite("sip:bob@127.0.0.1:5002", 0.0)
    net.run_until(1.0015)  # bob's 200 left at 1.001 and is in flight
    alice.hangup(call_id, net.now)
    net.run_until(3.0)
    lines = first_lines(net)
    assert lines.count("CANCEL sip:bob@127.0.0.1:5002 SIP/2.0") == 1
    assert "ACK sip:bob@127.0.0.1:5002 SIP/2.0" in lines
    assert "BYE sip:bob@127.0.0.1:5002 SIP/2.0" in lines
    assert kinds(alice)[-2:] == ["CallAnswered", "CallEnded"]
    assert kinds(bob)[-2:] == ["CallAnswered", "CallEnded"]


def test_retransmitted_invite_is_absorbed() -> None:
    net = Network()
    alice, bob = pair(net, ring_time_s=5.0)
    alice.invite("sip:bob@127.0.0.1:5002", 0.0)
    net.run_until(0.1)
    invite = net.sent("INVITE")[0]
    bob.receive_datagram(invite, A, 0.2)
    net.run_until(0.3)
    assert kinds(bob) == ["IncomingCall"]
    assert bob.counters["retransmissions_received"] == 1
    assert first_lines(net).count("SIP/2.0 180 Ringing") == 2  # last provisional resent


def test_malformed_request_is_answered_400_and_the_ua_carries_on() -> None:
    net = Network()
    alice, bob = pair(net)
    garbage = (
        b"INVITE sip:bob@127.0.0.1:5002 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5001;branch=z9hG4bKx\r\n"
        b"From: <sip:alice@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: bad\r\n"
        b"CSeq: 1 INVITE\r\nContent-Length: -1\r\n\r\n"
    )
    bob.receive_datagram(garbage, A, 0.0)
    bob.receive_datagram(b"\x00\xff garbage", A, 0.0)
    net.run_until(0.5)
    bad = events(bob)
    assert [type(e) for e in bad] == [MalformedMessageReceived, MalformedMessageReceived]
    first = bad[0]
    assert isinstance(first, MalformedMessageReceived)
    assert (
        first.answered == 400 and first.error == "Content-Length '-1' is not a non-negative integer"
    )
    assert bad[1].answered is None  # type: ignore[attr-defined]
    assert first_lines(net)[0].startswith("SIP/2.0 400 Content-Length")
    assert bob.counters["malformed"] == 2
    alice.invite("sip:bob@127.0.0.1:5002", net.now)
    net.run_until(1.0)
    assert kinds(alice) == ["CallAnswered"]


def test_options_and_unknown_methods_are_answered() -> None:
    net = Network()
    _alice, bob = pair(net)
    for method, expected in (("OPTIONS", "200 OK"), ("MESSAGE", "501 Not Implemented")):
        request = Request(method, parse_uri("sip:bob@127.0.0.1:5002"))
        request.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:5001;branch=z9hG4bK{method}")
        for name, value in (
            ("From", "<sip:alice@127.0.0.1>;tag=a"),
            ("To", "<sip:bob@127.0.0.1>"),
            ("Call-ID", f"{method}-1"),
            ("CSeq", f"1 {method}"),
        ):
            request.headers.add(name, value)
        bob.receive_datagram(request.serialize(), A, net.now)
        net.run_until(net.now + 0.1)
        assert first_lines(net)[-1] == f"SIP/2.0 {expected}"
    options_ok = parse_message(net.log[0][3])
    assert options_ok.tokens("Allow") == ["invite", "ack", "cancel", "bye", "options"]


def test_bye_for_an_unknown_dialog_gets_481() -> None:
    net = Network()
    _, bob = pair(net)
    bye = (
        b"BYE sip:bob@127.0.0.1:5002 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5001;branch=z9hG4bKb\r\n"
        b"From: <sip:alice@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>;tag=2\r\nCall-ID: nope\r\n"
        b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    bob.receive_datagram(bye, A, 0.0)
    net.run_until(0.1)
    assert first_lines(net) == ["SIP/2.0 481 Call/Transaction Does Not Exist"]


class ChallengingRegistrar(TransactionLayer):
    """A minimal digest registrar for UA tests: 401 first, then 200 granting ``grant`` s."""

    def __init__(self, password: str, grant: int, stale_first: bool = False) -> None:
        super().__init__(R)
        self.password, self.grant, self.stale_first = password, grant, stale_first
        self.nonces = auth.NonceManager(b"0123456789abcdef")
        self.registers: list[Request] = []

    def request_received(
        self, request: Request, tx: ServerTransaction | None, addr: Address, now: float
    ) -> None:
        assert tx is not None
        self.registers.append(request)
        value = request.headers.get("Authorization")
        ok = False
        if value is not None:
            creds = auth.Credentials.parse(value)
            ok = auth.verify(creds, "REGISTER", self.password, realm="test")
            if ok and self.stale_first:
                self.stale_first, ok = False, False
                chal = auth.make_challenge("test", self.nonces.issue(now + 1), stale=True)
                response = self.make_response(request, 401, to_tag="r")
                response.headers.add("WWW-Authenticate", chal.serialize())
                self.respond(tx, response, now)
                return
        if not ok:
            response = self.make_response(request, 401, to_tag="r")
            chal = auth.make_challenge("test", self.nonces.issue(now))
            response.headers.add("WWW-Authenticate", chal.serialize())
        else:
            response = self.make_response(request, 200, to_tag="r")
            expires = request.expires or 0
            contact = request.headers.get("Contact") or ""
            response.headers.add("Contact", f"{contact};expires={min(expires, self.grant)}")
        self.respond(tx, response, now)


def registering_ua(net: Network, password: str, registrar: ChallengingRegistrar) -> UserAgent:
    config = UserAgentConfig("alice", "127.0.0.1", R, password=password, expires=3600)
    ua = UserAgent(config, A, rng=random.Random(3))
    net.attach(ua, A)
    net.attach(registrar, R)
    return ua


def test_register_answers_the_digest_challenge_and_refreshes_before_expiry() -> None:
    net = Network()
    registrar = ChallengingRegistrar("pw", grant=120)
    ua = registering_ua(net, "pw", registrar)
    ua.register(0.0)
    net.run_until(1.0)
    registered = events(ua)
    assert len(registered) == 1 and isinstance(registered[0], Registered)
    assert registered[0].expires == 120 and ua.registered
    assert [r.headers.get("Authorization") is None for r in registrar.registers] == [True, False]
    net.run_until(59.0)
    assert len(registrar.registers) == 2
    net.run_until(61.0)  # refresh at max(120 / 2, 120 - 60) = 60 s, pre-authorized (nc=2)
    assert len(registrar.registers) == 3
    refresh = auth.Credentials.parse(registrar.registers[2].headers.get("Authorization") or "")
    assert refresh.nc == "00000002"
    ua.unregister(net.now)
    net.run_until(62.0)
    assert [type(e) for e in events(ua)] == [Registered, Unregistered]
    assert registrar.registers[-1].expires == 0


def test_wrong_password_fails_without_looping() -> None:
    net = Network()
    registrar = ChallengingRegistrar("right", grant=3600)
    ua = registering_ua(net, "wrong", registrar)
    ua.register(0.0)
    net.run_until(5.0)
    failed = events(ua)
    assert len(failed) == 1 and isinstance(failed[0], RegistrationFailed)
    assert failed[0].status == 401 and len(registrar.registers) == 2


def test_stale_nonce_is_retried_not_reported() -> None:
    net = Network()
    registrar = ChallengingRegistrar("pw", grant=3600, stale_first=True)
    ua = registering_ua(net, "pw", registrar)
    ua.register(0.0)
    net.run_until(5.0)
    assert [type(e) for e in events(ua)] == [Registered]
    assert len(registrar.registers) == 3


def test_connection_failure_fails_the_call_at_once_with_503() -> None:
    net = Network()
    alice = UserAgent(UserAgentConfig("alice", "127.0.0.1", B), A, transport="TCP")
    net.attach(alice, A)
    call_id = alice.invite("sip:bob@127.0.0.1:5002", 0.0)
    net.run_until(0.5)
    alice.connection_failed(B, 0.5)
    failed = events(alice)
    assert len(failed) == 1 and isinstance(failed[0], CallFailed)
    assert (failed[0].call_id, failed[0].status, failed[0].at) == (call_id, 503, 0.5)
    assert alice.client_transactions == {} and alice.counters["transport_errors"] == 1
    assert len(net.sent("INVITE")) == 1  # reliable transport: no retransmission


DIALOG_INVITE = (
    b"INVITE sip:bob@127.0.0.1:5002 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5001;branch=z9hG4bKd1;rport\r\nMax-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1:5002>\r\n'
    b"Call-ID: d1@127.0.0.1\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@127.0.0.1:5001>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize(
    "record_route",
    [
        b"",
        b"Record-Route: <sip:10.0.0.2;lr>, <sip:10.0.0.1;lr>\r\n",
        b"Record-Route: <sip:10.0.0.1>\r\n",  # strict routing: the route becomes the R-URI
    ],
)
@pytest.mark.parametrize("extra", [(), (("Authorization", 'Digest username="a"'),)])
def test_rendered_ack_is_the_serialized_request(
    record_route: bytes, extra: tuple[tuple[str, str], ...]
) -> None:
    """The ACK of a 2xx is written straight to bytes: byte for byte what building the
    request and serializing it gives."""
    invite = parse_message(DIALOG_INVITE)
    ok = parse_message(
        DIALOG_INVITE.replace(b"INVITE sip:bob@127.0.0.1:5002", b"SIP/2.0 200 OK", 1)
        .replace(b"Max-Forwards: 70\r\n", record_route)
        .replace(b"To: <sip:bob@127.0.0.1:5002>", b"To: <sip:bob@127.0.0.1:5002>;tag=b1")
        .replace(b"sip:alice@127.0.0.1:5001>", b"sip:bob@127.0.0.1:5002>")
    )
    assert isinstance(invite, Request) and not isinstance(ok, Request)
    dialog = Dialog.from_uac(invite, ok)
    via = "SIP/2.0/UDP 127.0.0.1:5001;branch=z9hG4bKack;rport"
    expected = dialog.new_request("ACK", via, cseq=7)
    for name, value in extra:
        expected.headers.add(name, value)
    assert dialog.render_request("ACK", via, 7, extra) == expected.serialize()
    with pytest.raises(LocalProtocolError):
        dialog.render_request("ACK", via + "\r\nX: y", 7)
