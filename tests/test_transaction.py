"""The four RFC 3261 section 17 state machines, driven directly with a fake clock."""

from __future__ import annotations

from callmeter.sip.core import Address
from callmeter.sip.message import Request, Response, parse_message
from callmeter.sip.timers import TimerConfig, TimerHeap
from callmeter.sip.transaction import (
    ClientTransaction,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Transaction,
    TxState,
)

PEER: Address = ("127.0.0.1", 5070)
INVITE = (
    b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKtx1\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: tx1\r\n"
    b"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def request(method: str = "INVITE") -> Request:
    data = INVITE.replace(b"INVITE", method.encode())
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def response(status: int, method: str = "INVITE") -> Response:
    head = f"SIP/2.0 {status} X\r\n".encode()
    lines = request(method).serialize().split(b"\r\n", 1)[1]
    message = parse_message(
        head + lines.replace(b"To: <sip:bob@127.0.0.1>", b"To: <sip:bob@127.0.0.1>;tag=b")
    )
    assert isinstance(message, Response)
    return message


class User:
    """A fake transaction user with its own timer heap and a log of what happened."""

    def __init__(self) -> None:
        self.heap = TimerHeap()
        self.sent: list[tuple[float, bytes]] = []
        self.delivered: list[int] = []
        self.timed_out: list[float] = []
        self.failed: list[float] = []
        self.terminated = False
        self.now = 0.0

    def transmit(self, data: bytes, addr: Address) -> None:
        self.sent.append((self.now, data))

    def arm_timer(self, tx: Transaction, when: float) -> None:
        self.heap.arm(tx, when)

    def cancel_timer(self, tx: Transaction) -> None:
        self.heap.cancel(tx)

    def response_received(self, tx: ClientTransaction, response: Response, now: float) -> None:
        self.delivered.append(response.status)

    def transaction_timed_out(self, tx: Transaction, now: float) -> None:
        self.timed_out.append(now)

    def transport_failed(self, tx: ClientTransaction, now: float) -> None:
        self.failed.append(now)

    def transaction_terminated(self, tx: Transaction) -> None:
        self.terminated = True

    def run_until(self, tx: Transaction, until: float) -> None:
        while (when := self.heap.next_deadline()) is not None and when <= until:
            self.now = when
            for _ in self.heap.pop_due(when):
                tx.handle_timer(when)
        self.now = until

    def first_lines(self) -> list[str]:
        return [data.split(b"\r\n", 1)[0].decode() for _, data in self.sent]


def test_invite_client_rejected_acks_in_the_transaction_and_waits_timer_d() -> None:
    user = User()
    tx = InviteClientTransaction(user, request(), PEER, reliable=False, config=TimerConfig())
    tx.start(0.0)
    user.run_until(tx, 0.7)  # one Timer A retransmission at 0.5
    tx.receive_response(response(180), 0.7)
    user.run_until(tx, 5.0)  # Proceeding: no more retransmissions
    tx.receive_response(response(486), 5.0)
    tx.receive_response(response(486), 5.1)  # retransmitted final: ACK again, not delivered
    assert user.delivered == [180, 486]
    assert (
        user.first_lines()
        == ["INVITE sip:bob@127.0.0.1 SIP/2.0"] * 2 + ["ACK sip:bob@127.0.0.1 SIP/2.0"] * 2
    )
    assert tx.state is TxState.COMPLETED
    user.run_until(tx, 5.0 + 31.9)
    assert not user.terminated
    user.run_until(tx, 5.0 + 32.0)  # Timer D: 32 s on UDP
    assert user.terminated and tx.state is TxState.TERMINATED


def test_invite_client_2xx_goes_to_accepted_and_delivers_retransmissions() -> None:
    user = User()
    tx = InviteClientTransaction(user, request(), PEER, reliable=True, config=TimerConfig())
    tx.start(0.0)
    user.run_until(tx, 10.0)
    assert len(user.sent) == 1  # reliable: no Timer A
    tx.receive_response(response(200), 10.0)
    tx.receive_response(response(200), 10.5)
    assert user.delivered == [200, 200] and tx.state is TxState.ACCEPTED
    user.run_until(tx, 10.0 + 32.0)  # Timer M
    assert user.terminated


def test_non_invite_client_retransmits_at_t2_in_proceeding_and_times_out() -> None:
    user = User()
    tx = NonInviteClientTransaction(user, request("OPTIONS"), PEER, reliable=False,
                                    config=TimerConfig())  # fmt: skip
    tx.start(0.0)
    user.run_until(tx, 1.6)
    tx.receive_response(response(100, "OPTIONS"), 1.6)
    user.run_until(tx, 40.0)
    times = [t for t, _ in user.sent]
    assert times[:3] == [0.0, 0.5, 1.5]
    assert times[3:6] == [3.5, 7.5, 11.5]  # the armed E, then every T2 in Proceeding
    assert user.timed_out == [32.0] and user.terminated


def test_one_wake_up_per_transaction_and_a_late_one_fires_every_due_timer_in_order() -> None:
    user = User()
    tx = NonInviteClientTransaction(user, request("OPTIONS"), PEER, reliable=False,
                                    config=TimerConfig())  # fmt: skip
    tx.start(0.0)
    assert len(user.heap) == 1 and user.heap.next_deadline() == 0.5  # E, not F
    user.now = 40.0
    tx.handle_timer(40.0)  # woken late: E (retransmit) first, then F (time out)
    assert [t for t, _ in user.sent] == [0.0, 40.0]
    assert user.timed_out == [40.0] and user.terminated and user.heap.next_deadline() is None


def test_a_response_withdraws_the_wake_up_and_the_final_one_asks_for_timer_k() -> None:
    user = User()
    tx = NonInviteClientTransaction(user, request("BYE"), PEER, reliable=False,
                                    config=TimerConfig())  # fmt: skip
    tx.start(0.0)
    tx.receive_response(response(200, "BYE"), 0.1)  # E and F cancelled, K armed
    assert len(user.heap) == 1 and user.heap.next_deadline() == 0.1 + TimerConfig().t4
    user.run_until(tx, 10.0)
    assert user.terminated and user.heap.next_deadline() is None


def test_client_transport_error_terminates_at_once() -> None:
    user = User()
    tx = NonInviteClientTransaction(user, request("BYE"), PEER, reliable=True, config=TimerConfig())
    tx.start(0.0)
    tx.transport_error(0.1)
    assert user.failed == [0.1] and user.terminated and user.heap.next_deadline() is None


def test_invite_server_retransmits_final_until_ack_then_absorbs_for_timer_i() -> None:
    user = User()
    tx = InviteServerTransaction(user, request(), PEER, reliable=False, config=TimerConfig())
    tx.respond(response(100), 0.0)
    user.now = 0.2
    tx.receive_request(request(), 0.2)  # retransmitted INVITE: the 100 again
    user.now = 1.0
    tx.respond(response(486), 1.0)
    user.run_until(tx, 4.0)  # Timer G at 1.5, 2.5 (then 4.5)
    tx.receive_request(request("ACK"), 4.0)
    user.run_until(tx, 8.0)
    assert [t for t, _ in user.sent] == [0.0, 0.2, 1.0, 1.5, 2.5]
    assert tx.state is TxState.CONFIRMED
    user.run_until(tx, 9.0)  # Timer I = T4 = 5 s after the ACK
    assert user.terminated


def test_invite_server_without_ack_times_out_on_timer_h() -> None:
    user = User()
    tx = InviteServerTransaction(user, request(), PEER, reliable=False, config=TimerConfig())
    tx.respond(response(603), 0.0)
    user.run_until(tx, 40.0)
    assert user.timed_out == [32.0] and user.terminated


def test_non_invite_server_resends_final_on_retransmission_and_releases_the_request() -> None:
    user = User()
    tx = NonInviteServerTransaction(user, request("OPTIONS"), PEER, reliable=False,
                                    config=TimerConfig())  # fmt: skip
    tx.respond(response(200, "OPTIONS"), 0.0)
    user.now = 1.0
    tx.receive_request(request("OPTIONS"), 1.0)
    assert [t for t, _ in user.sent] == [0.0, 1.0]
    assert tx.method == "OPTIONS" and tx.call_id == "tx1"
    user.run_until(tx, 32.0)  # Timer J
    assert user.terminated
