"""SIP transactions (RFC 3261 section 17, with the RFC 6026 Accepted state).

Theory of operation
-------------------
A transaction is a small state machine fed three kinds of input: a message from the network
(a response for client transactions, a retransmitted request or ACK for server ones), a
response from the transaction user (server transactions only) and the expiry of one of its
timers. Each machine is a transition table ``(state, input) -> (next state, action)``; an
input missing from the table is absorbed (e.g. a retransmitted 1xx in Completed). Actions
send bytes, arm or cancel timers and tell the transaction user (``TransactionUser``) what
happened. Timers are named by their RFC letter and kept by the transaction itself; the owner
holds one wake-up per transaction (``arm_timer(tx, when)``, the earliest timer) in its
``TimerHeap`` and calls ``handle_timer(now)`` when it is due, which fires every timer due by
then. Cancelling a timer is a dict pop here; the wake-up is withdrawn only when no timer is
left (one heap entry per transaction instead of one per timer, as a load test arms and
cancels several timers per transaction). Nothing here knows about clocks or sockets.

Retransmission timers (A, E, G) only run on unreliable transports; on TCP the waiting timers
D, I, J, K are zero, as the RFC says.

Matching (sections 17.1.3 and 17.2.3): a response matches the client transaction whose branch
equals its top Via branch and whose method equals its CSeq method; a request matches the
server transaction with the same branch, sent-by and method, ACK matching its INVITE.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Protocol

from callmeter.sip.core import Address
from callmeter.sip.errors import LocalProtocolError
from callmeter.sip.headers import Headers
from callmeter.sip.message import Request, Response
from callmeter.sip.timers import TimerConfig

__all__ = [
    "ClientTransaction",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "ServerTransaction",
    "Transaction",
    "TransactionUser",
    "TxState",
    "build_cancel",
    "build_non2xx_ack",
    "client_key",
    "server_key",
]

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 section 8.1.1.7


class TxState(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class TransactionUser(Protocol):
    """What a transaction needs from its owner (the core holding the timer heap)."""

    def transmit(self, data: bytes, addr: Address) -> None: ...
    def arm_timer(self, tx: Transaction, when: float) -> None:
        """Call ``tx.handle_timer(now)`` once ``now >= when`` (replaces the earlier wake-up)."""
        ...

    def cancel_timer(self, tx: Transaction) -> None:
        """Forget ``tx``'s wake-up."""
        ...

    def response_received(self, tx: ClientTransaction, response: Response, now: float) -> None: ...
    def transaction_timed_out(self, tx: Transaction, now: float) -> None: ...
    def transport_failed(self, tx: ClientTransaction, now: float) -> None: ...
    def transaction_terminated(self, tx: Transaction) -> None: ...


Table = dict[tuple[TxState, str], tuple[TxState, str]]
_FIRING = float("-inf")  # Transaction._wake while handle_timer runs


def client_key(branch: str, method: str) -> tuple[str, str]:
    """Client transaction key: top Via branch and CSeq method (ACK never has its own)."""
    return branch, "INVITE" if method == "ACK" else method


def server_key(request: Request) -> tuple[str, str, str]:
    """Server transaction key of a request: (branch, sent-by, method); ACK maps to INVITE.

    A branch without the magic cookie (RFC 2543 peer) is combined with Call-ID and CSeq
    number so different requests from such a peer still get different keys.
    """
    top = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = top.branch or ""
    if not branch.startswith(MAGIC_COOKIE) or branch == MAGIC_COOKIE:
        branch = f"2543:{branch}:{request.call_id}:{request.cseq.seq}:{request.from_.tag}"
    host, port = top.sent_by
    return branch, f"{host.lower()}:{port or ''}", method


class Transaction:
    """Shared machinery: the transition table, timers and the last message sent."""

    TABLE: ClassVar[Table]
    INITIAL: ClassVar[TxState]
    __slots__ = (
        "_request",
        "_timers",
        "_wake",
        "addr",
        "call_id",
        "config",
        "key",
        "last_sent",
        "method",
        "reliable",
        "state",
        "user",
    )

    def __init__(
        self,
        user: TransactionUser,
        request: Request,
        addr: Address,
        *,
        reliable: bool,
        config: TimerConfig,
    ) -> None:
        self.user = user
        self._request: Request | None = request
        self.method = request.method
        self.call_id = request.call_id
        self.addr = addr
        self.reliable = reliable
        self.config = config
        self.state = self.INITIAL
        self.last_sent: bytes | None = None
        self.key: tuple[str, ...] = ()
        self._timers: dict[str, float] = {}  # armed timers: letter -> deadline
        self._wake: float | None = None  # the wake-up asked of the user, if any

    @property
    def request(self) -> Request:
        """The request that started the transaction (released once the final response is
        sent or received: retransmissions only need the bytes)."""
        if self._request is None:
            raise LocalProtocolError(f"{self!r} no longer holds its request")
        return self._request

    def fire(self, event: str, now: float, message: Request | Response | None = None) -> bool:
        """Feed one input; return False when the table absorbs it (no transition)."""
        entry = self.TABLE.get((self.state, event))
        if entry is None:
            return False
        self.state, action = entry
        getattr(self, action)(now, message)
        if self.state is TxState.TERMINATED:
            self._terminate()
        return True

    def handle_timer(self, now: float) -> None:
        """The wake-up from ``arm_timer`` is due: fire every timer due at ``now``, earliest
        first (a late wake-up may find several), then ask for the next wake-up."""
        self._wake = _FIRING  # timers armed meanwhile ask for no wake-up: one is asked below
        timers = self._timers
        while timers and self.state is not TxState.TERMINATED:
            letter = min(timers, key=timers.__getitem__)
            if timers[letter] > now:
                break
            del timers[letter]
            self.fire(f"timer_{letter}", now)
        if timers and self.state is not TxState.TERMINATED:
            wake = min(timers.values())
            if wake != self._wake:
                self._wake = wake
                self.user.arm_timer(self, wake)
        elif self._wake == _FIRING:
            self._wake = None

    def _send(self, data: bytes) -> None:
        self.last_sent = data
        self.user.transmit(data, self.addr)

    def _arm(self, letter: str, when: float) -> None:
        self._timers[letter] = when
        wake = self._wake
        if wake is None or when < wake:
            self._wake = when
            self.user.arm_timer(self, when)

    def _cancel(self, letter: str) -> None:
        """Disarm a timer; the wake-up goes when no timer is left (else it stays, and the
        next one is asked for when it comes)."""
        timers = self._timers
        if timers.pop(letter, None) is not None and not timers and self._wake is not None:
            self._wake = None
            self.user.cancel_timer(self)

    def _terminate(self) -> None:
        self._timers.clear()
        if self._wake is not None:
            self._wake = None
            self.user.cancel_timer(self)
        self.user.transaction_terminated(self)

    def _noop(self, now: float, message: Request | Response | None) -> None:
        pass

    def _timed_out(self, now: float, message: Request | Response | None) -> None:
        self.user.transaction_timed_out(self, now)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.state.value} {self.key}>"


def _response_class(response: Response) -> str:
    if response.status < 200:
        return "1xx"
    return "2xx" if response.status < 300 else "final"


class ClientTransaction(Transaction):
    """Sends a request and delivers its responses to the transaction user. ``branch`` is
    the top Via's branch when the caller knows it (saves parsing our own Via)."""

    __slots__ = ("interval",)

    def __init__(
        self, user: TransactionUser, request: Request, addr: Address, *, reliable: bool,
        config: TimerConfig, branch: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(user, request, addr, reliable=reliable, config=config)
        if branch is None:
            branch = request.top_via.branch or ""
        self.key = client_key(branch, request.method)
        self.interval = config.t1

    def receive_response(self, response: Response, now: float) -> None:
        self.fire(_response_class(response), now, response)

    def abandon(self) -> None:
        """Give up on the transaction at once, silently (a proxy's Timer C, section 16.8)."""
        if self.state is not TxState.TERMINATED:
            self.state = TxState.TERMINATED
            self._terminate()

    def transport_error(self, now: float) -> None:
        """The request could not be sent (e.g. TCP connection refused): section 17.1.4."""
        self.fire("transport_error", now)

    def _transport_failed(self, now: float, message: Request | Response | None) -> None:
        self.user.transport_failed(self, now)

    def _deliver(self, now: float, message: Request | Response | None) -> None:
        assert isinstance(message, Response)
        self.user.response_received(self, message, now)

    def _deliver_final(self, now: float, message: Request | Response | None) -> None:
        """Deliver the first final response, then drop the parsed request and its bytes: it
        is never sent again, and Timers D, K and M (up to 32 s) would otherwise keep
        thousands of requests alive, which the cyclic GC walks again and again under load."""
        self._deliver(now, message)
        self._request = None
        self.last_sent = None


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 figure 5 with RFC 6026: 2xx moves to Accepted and 2xx retransmissions
    reach the transaction user, which ACKs each of them."""

    __slots__ = ("ack",)

    S = TxState
    TABLE: ClassVar[Table] = {
        (S.CALLING, "timer_A"): (S.CALLING, "_retransmit"),
        (S.CALLING, "timer_B"): (S.TERMINATED, "_timed_out"),
        (S.CALLING, "transport_error"): (S.TERMINATED, "_transport_failed"),
        (S.CALLING, "1xx"): (S.PROCEEDING, "_provisional"),
        (S.CALLING, "2xx"): (S.ACCEPTED, "_accepted"),
        (S.CALLING, "final"): (S.COMPLETED, "_completed"),
        (S.PROCEEDING, "1xx"): (S.PROCEEDING, "_deliver"),
        (S.PROCEEDING, "2xx"): (S.ACCEPTED, "_accepted"),
        (S.PROCEEDING, "final"): (S.COMPLETED, "_completed"),
        (S.PROCEEDING, "transport_error"): (S.TERMINATED, "_transport_failed"),
        (S.ACCEPTED, "2xx"): (S.ACCEPTED, "_deliver"),
        (S.ACCEPTED, "timer_M"): (S.TERMINATED, "_noop"),
        (S.COMPLETED, "final"): (S.COMPLETED, "_resend_ack"),
        (S.COMPLETED, "timer_D"): (S.TERMINATED, "_noop"),
    }
    del S
    INITIAL = TxState.CALLING

    def __init__(
        self, user: TransactionUser, request: Request, addr: Address, *, reliable: bool,
        config: TimerConfig, branch: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(user, request, addr, reliable=reliable, config=config, branch=branch)
        self.ack: bytes | None = None

    def start(self, now: float) -> None:
        self._send(self.request.serialize())
        if not self.reliable:
            self._arm("A", now + self.interval)
        self._arm("B", now + self.config.b)

    def _retransmit(self, now: float, message: Request | Response | None) -> None:
        assert self.last_sent is not None
        self.user.transmit(self.last_sent, self.addr)
        self.interval *= 2
        self._arm("A", now + self.interval)

    def _provisional(self, now: float, message: Request | Response | None) -> None:
        self._cancel("A")
        self._cancel("B")
        self._deliver(now, message)

    def _accepted(self, now: float, message: Request | Response | None) -> None:
        self._cancel("A")
        self._cancel("B")
        self._arm("M", now + self.config.m)
        self._deliver_final(now, message)

    def _completed(self, now: float, message: Request | Response | None) -> None:
        assert isinstance(message, Response)
        self._cancel("A")
        self._cancel("B")
        self.ack = build_non2xx_ack(self.request, message).serialize()
        self.user.transmit(self.ack, self.addr)
        self._arm("D", now + self.config.d(self.reliable))
        self._deliver_final(now, message)

    def _resend_ack(self, now: float, message: Request | Response | None) -> None:
        if self.ack is not None:
            self.user.transmit(self.ack, self.addr)


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 figure 6."""

    __slots__ = ()

    S = TxState
    TABLE: ClassVar[Table] = {
        (S.TRYING, "timer_E"): (S.TRYING, "_retransmit"),
        (S.TRYING, "timer_F"): (S.TERMINATED, "_timed_out"),
        (S.TRYING, "transport_error"): (S.TERMINATED, "_transport_failed"),
        (S.TRYING, "1xx"): (S.PROCEEDING, "_deliver"),
        (S.TRYING, "2xx"): (S.COMPLETED, "_completed"),
        (S.TRYING, "final"): (S.COMPLETED, "_completed"),
        (S.PROCEEDING, "timer_E"): (S.PROCEEDING, "_retransmit"),
        (S.PROCEEDING, "timer_F"): (S.TERMINATED, "_timed_out"),
        (S.PROCEEDING, "transport_error"): (S.TERMINATED, "_transport_failed"),
        (S.PROCEEDING, "1xx"): (S.PROCEEDING, "_deliver"),
        (S.PROCEEDING, "2xx"): (S.COMPLETED, "_completed"),
        (S.PROCEEDING, "final"): (S.COMPLETED, "_completed"),
        (S.COMPLETED, "timer_K"): (S.TERMINATED, "_noop"),
    }
    del S
    INITIAL = TxState.TRYING

    def start(self, now: float) -> None:
        self._send(self.request.serialize())
        if not self.reliable:
            self._arm("E", now + self.interval)
        self._arm("F", now + self.config.f)

    def _retransmit(self, now: float, message: Request | Response | None) -> None:
        assert self.last_sent is not None
        self.user.transmit(self.last_sent, self.addr)
        if self.state is TxState.PROCEEDING:
            self.interval = self.config.t2
        else:
            self.interval = min(2 * self.interval, self.config.t2)
        self._arm("E", now + self.interval)

    def _completed(self, now: float, message: Request | Response | None) -> None:
        self._cancel("E")
        self._cancel("F")
        self._arm("K", now + self.config.k(self.reliable))
        self._deliver_final(now, message)


class ServerTransaction(Transaction):
    """Absorbs request retransmissions and sends the transaction user's responses."""

    __slots__ = ("interval", "last_response")

    def __init__(
        self, user: TransactionUser, request: Request, addr: Address, *, reliable: bool,
        config: TimerConfig,
    ) -> None:  # fmt: skip
        super().__init__(user, request, addr, reliable=reliable, config=config)
        self.key = server_key(request)
        self.interval = config.t1
        self.last_response: Response | None = None

    def receive_request(self, request: Request, now: float) -> None:
        """A retransmission of our request (or, for INVITE, its ACK)."""
        self.fire("ack" if request.method == "ACK" else "request", now, request)

    def respond(self, response: Response, now: float) -> None:
        """Send a response from the transaction user."""
        self.last_response = response
        self.fire(f"send_{_response_class(response)}", now, response)

    def _send_response(self, now: float, message: Request | Response | None) -> None:
        assert isinstance(message, Response)
        self._send(message.serialize())

    def _release(self) -> None:
        """After the final response only its bytes matter: drop the parsed messages so a
        busy server does not hold thousands of them for Timer J/L (32 s on UDP)."""
        self._request = None
        self.last_response = None

    def _resend(self, now: float, message: Request | Response | None) -> None:
        if self.last_sent is not None:
            self.user.transmit(self.last_sent, self.addr)


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 figure 7 with RFC 6026 (2xx moves to Accepted; the TU retransmits 2xx)."""

    __slots__ = ()

    S = TxState
    TABLE: ClassVar[Table] = {
        (S.PROCEEDING, "request"): (S.PROCEEDING, "_resend"),
        (S.PROCEEDING, "send_1xx"): (S.PROCEEDING, "_send_response"),
        (S.PROCEEDING, "send_2xx"): (S.ACCEPTED, "_accepted"),
        (S.PROCEEDING, "send_final"): (S.COMPLETED, "_completed"),
        (S.ACCEPTED, "send_2xx"): (S.ACCEPTED, "_send_response"),
        (S.ACCEPTED, "timer_L"): (S.TERMINATED, "_noop"),
        (S.COMPLETED, "request"): (S.COMPLETED, "_resend"),
        (S.COMPLETED, "timer_G"): (S.COMPLETED, "_retransmit"),
        (S.COMPLETED, "timer_H"): (S.TERMINATED, "_timed_out"),
        (S.COMPLETED, "ack"): (S.CONFIRMED, "_confirmed"),
        (S.CONFIRMED, "timer_I"): (S.TERMINATED, "_noop"),
    }
    del S
    INITIAL = TxState.PROCEEDING

    def _accepted(self, now: float, message: Request | Response | None) -> None:
        self._send_response(now, message)
        self._release()
        self._arm("L", now + self.config.m)

    def _completed(self, now: float, message: Request | Response | None) -> None:
        self._send_response(now, message)
        self._release()
        if not self.reliable:
            self._arm("G", now + self.interval)
        self._arm("H", now + self.config.h)

    def _retransmit(self, now: float, message: Request | Response | None) -> None:
        self._resend(now, message)
        self.interval = min(2 * self.interval, self.config.t2)
        self._arm("G", now + self.interval)

    def _confirmed(self, now: float, message: Request | Response | None) -> None:
        self._cancel("G")
        self._cancel("H")
        self._arm("I", now + self.config.i(self.reliable))


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 figure 8."""

    __slots__ = ()

    S = TxState
    TABLE: ClassVar[Table] = {
        (S.TRYING, "send_1xx"): (S.PROCEEDING, "_send_response"),
        (S.TRYING, "send_2xx"): (S.COMPLETED, "_completed"),
        (S.TRYING, "send_final"): (S.COMPLETED, "_completed"),
        (S.PROCEEDING, "request"): (S.PROCEEDING, "_resend"),
        (S.PROCEEDING, "send_1xx"): (S.PROCEEDING, "_send_response"),
        (S.PROCEEDING, "send_2xx"): (S.COMPLETED, "_completed"),
        (S.PROCEEDING, "send_final"): (S.COMPLETED, "_completed"),
        (S.COMPLETED, "request"): (S.COMPLETED, "_resend"),
        (S.COMPLETED, "timer_J"): (S.TERMINATED, "_noop"),
    }
    del S
    INITIAL = TxState.TRYING

    def _completed(self, now: float, message: Request | Response | None) -> None:
        self._send_response(now, message)
        self._release()
        self._arm("J", now + self.config.j(self.reliable))


def build_non2xx_ack(invite: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a 3xx-6xx (RFC 3261 section 17.1.1.3): same
    Request-URI, top Via, From, Call-ID and Route as the INVITE, To from the response."""
    headers = Headers()
    headers.add("Via", invite.headers.values("via")[0])
    for name in ("Max-Forwards", "From"):
        value = invite.headers.get(name)
        if value is not None:
            headers.add(name, value)
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.seq} ACK")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    return Request("ACK", invite.uri, headers)


def build_cancel(invite: Request) -> Request:
    """The CANCEL of a pending INVITE (RFC 3261 section 9.1; a proxy's in section 16.10): the
    INVITE's Request-URI, top Via (so the same branch), From, To, Call-ID and Route, and its
    CSeq number with method CANCEL."""
    headers = Headers([("Via", invite.headers.values("via")[0]), ("Max-Forwards", "70")])
    for name in ("From", "To", "Call-ID"):
        headers.add(name, invite.headers.get(name) or "")
    headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    return Request("CANCEL", invite.uri, headers)
