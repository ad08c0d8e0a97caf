"""The transaction layer every SIP core stands on: parse at the receive boundary, match
transactions, keep the one timer heap, the outgoing queue, counters and a bounded trace.

:class:`TransactionLayer` implements :class:`~callmeter.sip.core.SansIOCore`. Subclasses (the
user agent, the built-in registrar) override the ``request_received`` / ``response_received``
hooks and schedule their own timers with :meth:`schedule`.

A malformed message never escapes ``receive_datagram``: it is counted, traced, turned into a
:class:`MalformedMessageReceived` event and, when it is a request whose Via, From, To, Call-ID
and CSeq can still be read, answered with the ParseError's status (400, or 505 for a bad
version) as RFC 3261 section 16.3 and RFC 4475 ask.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Literal

from callmeter.sip.core import Address
from callmeter.sip.errors import ParseError
from callmeter.sip.events import Event, MalformedMessageReceived, TransactionTimedOut
from callmeter.sip.headers import Headers
from callmeter.sip.message import Request, Response, parse_message
from callmeter.sip.timers import TimerConfig, TimerHeap
from callmeter.sip.transaction import (
    MAGIC_COOKIE,
    ClientTransaction,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    Transaction,
    TxState,
    client_key,
    server_key,
)

__all__ = ["TraceEntry", "TransactionLayer", "Wire"]

_HEX_POOL_BITS = 1024
_KEEPALIVE_START = (b"", b"\r", b"\n")  # a datagram of CRLFs (or nothing) is a keep-alive
# Headers copied from a request into its response (RFC 3261 section 8.2.6.2).
_COPIED = ("via", "from", "to", "call-id", "cseq")


@dataclass(slots=True)
class Wire:
    """What cores sharing one socket share: the outgoing queue, the timer heap and the set of
    cores with events waiting (one socket, one timer, no scan over thousands of cores)."""

    out: list[tuple[bytes, Address]] = field(default_factory=list)
    heap: TimerHeap = field(default_factory=TimerHeap)
    ready: dict[TransactionLayer, None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One message sent or received, as bytes, for the endpoint's SIP trace."""

    at: float
    direction: Literal["in", "out"]
    addr: Address
    data: bytes


class TransactionLayer:
    """A sans-I/O SIP core with transactions. ``local_addr`` is filled in by the shell once
    the socket is bound (before any command)."""

    def __init__(
        self,
        local_addr: Address = ("127.0.0.1", 0),
        *,
        transport: str = "UDP",
        timers: TimerConfig | None = None,
        rng: random.Random | None = None,
        trace_limit: int = 64,
        wire: Wire | None = None,
    ) -> None:
        self.local_addr = local_addr
        self.transport = transport.upper()
        self.reliable = self.transport != "UDP"
        self.timers = timers or TimerConfig()
        self.rng = rng or random.Random()
        self.client_transactions: dict[tuple[str, ...], ClientTransaction] = {}
        self.server_transactions: dict[tuple[str, ...], ServerTransaction] = {}
        self.counters: Counter[str] = Counter()
        self.trace: deque[TraceEntry] = deque(maxlen=trace_limit)
        self._trace_on = trace_limit > 0
        self.wire = wire or Wire()
        self._events: deque[Event] = deque()
        self.now = 0.0  # the latest ``now`` any entry point was given (for trace stamps)
        self._hex_pool, self._hex_used = "", 0  # see random_hex
        self.label = ""  # added to our Call-IDs so a shared socket can route responses

    # -- SansIOCore ---------------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if data[:1] in _KEEPALIVE_START and not data.strip(b"\r\n"):
            return  # keep-alive (RFC 5626 section 4.4.1)
        try:
            message = parse_message(data)
        except ParseError as error:
            self.now = now
            self.counters["received"] += 1
            if self._trace_on:
                self.trace.append(TraceEntry(now, "in", addr, data))
            self._malformed(data, addr, error, now)
            return
        self.receive_message(message, data, addr, now)

    def receive_message(
        self, message: Request | Response, data: bytes, addr: Address, now: float
    ) -> None:
        """Take a message already parsed from ``data`` (a shared socket parses once)."""
        self.now = now
        self.counters["received"] += 1
        if self._trace_on:
            self.trace.append(TraceEntry(now, "in", addr, data))
        if isinstance(message, Response):
            self._receive_response(message, addr, now)
        else:
            self._receive_request(message, addr, now)

    def handle_timer(self, now: float) -> None:
        self.now = now
        for key in self.wire.heap.pop_due(now):
            if isinstance(key, Transaction):  # a transaction's wake-up
                layer = key.user
                if isinstance(layer, TransactionLayer):
                    layer.now = now
                key.handle_timer(now)
                continue
            assert isinstance(key, tuple)  # (layer, *key) from schedule()
            owner = key[0]
            if isinstance(owner, TransactionLayer):
                owner.now = now
                owner.timer_fired(key[1:], now)

    def get_timer(self) -> float | None:
        return self.wire.heap.next_deadline()

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out = self.wire.out
        self.wire.out = []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # -- for subclasses -----------------------------------------------------------------
    def emit(self, event: Event) -> None:
        self._events.append(event)
        self.wire.ready[self] = None

    def schedule(self, key: tuple[Hashable, ...], when: float) -> None:
        """Arm an application timer; ``timer_fired(key, now)`` runs when it is due."""
        self.wire.heap.arm((self, *key), when)

    def unschedule(self, key: tuple[Hashable, ...]) -> None:
        self.wire.heap.cancel((self, *key))

    def new_branch(self) -> str:
        return MAGIC_COOKIE + self.random_hex(16)

    def new_token(self) -> str:
        return self.random_hex(12)

    def random_hex(self, digits: int) -> str:
        """``digits`` random hex digits (at most ``_HEX_POOL_BITS // 4``) from ``rng``, drawn
        ``_HEX_POOL_BITS`` at a time: one getrandbits and one format serve ~16 branches."""
        start = self._hex_used
        end = start + digits
        if end > len(self._hex_pool):
            self._hex_pool = f"{self.rng.getrandbits(_HEX_POOL_BITS):0{_HEX_POOL_BITS // 4}x}"
            start, end = 0, digits
        self._hex_used = end
        return self._hex_pool[start:end]

    def via_value(self, branch: str) -> str:
        host, port = self.local_addr
        return f"SIP/2.0/{self.transport} {host}:{port};branch={branch};rport"

    def send_request(
        self, request: Request, addr: Address, now: float, *, branch: str | None = None
    ) -> ClientTransaction:
        """Start a client transaction for ``request``; its top Via carries ``branch`` (given
        when the caller just made it, else read from the Via)."""
        cls = InviteClientTransaction if request.method == "INVITE" else NonInviteClientTransaction
        self.now = now
        tx = cls(self, request, addr, reliable=self.reliable, config=self.timers, branch=branch)
        self.client_transactions[tx.key] = tx
        tx.start(now)
        return tx

    def respond(self, tx: ServerTransaction, response: Response, now: float) -> None:
        self.now = now
        tx.respond(response, now)

    def make_response(
        self, request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None
    ) -> Response:
        """A response to ``request`` with Via, From, To, Call-ID and CSeq copied (section
        8.2.6.2); ``to_tag`` is added when the To has none. Dialog-creating responses also
        copy Record-Route (section 12.1.1)."""
        headers = Headers()
        for raw, value in request.headers:
            if raw.lower() in _COPIED or (len(raw) == 1 and raw.lower() in "vfti"):
                if to_tag and raw.lower() in ("to", "t") and request.to.tag is None:
                    value = f"{value};tag={to_tag}"
                headers.add(raw, value)
        if request.method == "INVITE" and 100 < status < 300:
            for value in request.headers.get_all("record-route"):
                headers.add("Record-Route", value)
        return Response(status, reason, headers)

    def send_stateless(self, message: Request | Response, addr: Address) -> None:
        self.transmit(message.serialize(), addr)

    # -- hooks --------------------------------------------------------------------------
    def request_received(
        self, request: Request, tx: ServerTransaction | None, addr: Address, now: float
    ) -> None:
        """A new request (``tx`` is None for an ACK to a 2xx, which has no transaction)."""
        if tx is not None:
            self.respond(tx, self.make_response(request, 501), now)

    def response_received(self, tx: ClientTransaction, response: Response, now: float) -> None:
        """A response matched a client transaction (including 2xx retransmissions)."""

    def stray_response(self, response: Response, addr: Address, now: float) -> None:
        """A response matching no transaction (section 17.1.3: dropped, but counted)."""
        self.counters["stray_responses"] += 1

    def timer_fired(self, key: tuple[Hashable, ...], now: float) -> None:
        """An application timer armed with :meth:`schedule` is due."""

    # -- TransactionUser ----------------------------------------------------------------
    def transmit(self, data: bytes, addr: Address) -> None:
        self.wire.out.append((data, addr))
        self.counters["sent"] += 1
        if self._trace_on:
            self.trace.append(TraceEntry(self.now, "out", addr, data))

    def arm_timer(self, tx: Transaction, when: float) -> None:
        self.wire.heap.arm(tx, when)

    def cancel_timer(self, tx: Transaction) -> None:
        self.wire.heap.cancel(tx)

    def transaction_timed_out(self, tx: Transaction, now: float) -> None:
        self.counters["timeouts"] += 1
        self.emit(TransactionTimedOut(now, tx.method, tx.call_id))

    def transport_failed(self, tx: ClientTransaction, now: float) -> None:
        """Section 8.1.3.1: a transport error is treated as a 503 from the next hop."""
        self.counters["transport_errors"] += 1
        headers = Headers()
        for name in ("via", "from", "to", "call-id", "cseq"):
            for value in tx.request.headers.get_all(name):
                headers.add(name.title(), value)
        self.response_received(tx, Response(503, "Transport Error", headers), now)

    def connection_failed(self, addr: Address, now: float) -> None:
        """The shell could not deliver to ``addr`` (connection refused or reset): every
        client transaction waiting on it fails at once instead of at Timer B/F."""
        self.now = now
        for tx in [t for t in self.client_transactions.values() if t.addr == addr]:
            tx.transport_error(now)

    def transaction_terminated(self, tx: Transaction) -> None:
        if isinstance(tx, ClientTransaction):
            self.client_transactions.pop(tx.key, None)
        else:
            self.server_transactions.pop(tx.key, None)

    # -- receive paths ------------------------------------------------------------------
    def _receive_response(self, response: Response, addr: Address, now: float) -> None:
        branch = response.top_via.branch or ""
        tx = self.client_transactions.get(client_key(branch, response.cseq.method))
        if tx is None:
            self.stray_response(response, addr, now)
        else:
            tx.receive_response(response, now)

    def _receive_request(self, request: Request, addr: Address, now: float) -> None:
        key = server_key(request)
        tx = self.server_transactions.get(key)
        if tx is not None:
            if request.method == "ACK" and tx.state is TxState.ACCEPTED:
                # An ACK for our 2xx that reuses the INVITE's branch: it is end to end.
                self.request_received(request, None, addr, now)
                return
            self.counters["retransmissions_received"] += 1
            tx.receive_request(request, now)
            return
        if request.method == "ACK":
            self.request_received(request, None, addr, now)
            return
        cls = InviteServerTransaction if request.method == "INVITE" else NonInviteServerTransaction
        tx = cls(self, request, addr, reliable=self.reliable, config=self.timers)
        self.server_transactions[tx.key] = tx
        self.request_received(request, tx, addr, now)

    def _malformed(self, data: bytes, addr: Address, error: ParseError, now: float) -> None:
        self.counters["malformed"] += 1
        answered = None
        response = _bad_request_response(data, error)
        if response is not None:
            self.transmit(response, addr)
            answered = error.status
        self.emit(MalformedMessageReceived(now, addr, str(error), answered))


def _bad_request_response(data: bytes, error: ParseError) -> bytes | None:
    """A 400 (or the error's status) for a broken request, built from its raw header lines
    when Via, From, To, Call-ID and CSeq are all present; None for responses and for
    requests too broken to answer (RFC 3261 section 8.2: no Via means nowhere to answer)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    if not lines or lines[0].upper().startswith("SIP/"):
        return None
    found: dict[str, str] = {}
    vias: list[str] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = {"v": "via", "f": "from", "t": "to", "i": "call-id"}.get(
            name.strip().lower(), name.strip().lower()
        )
        if not colon or key not in _COPIED or "\r" in value or "\n" in value:
            continue
        if key == "via":
            vias.append(value.strip())
        else:
            found.setdefault(key, value.strip())
    if not vias or len(found) < 4:
        return None
    reason = str(error).replace("\r", " ").replace("\n", " ")[:120]
    status = error.status if 400 <= error.status < 700 else 400
    out = [f"SIP/2.0 {status} {reason}"] + [f"Via: {via}" for via in vias]
    out += [f"From: {found['from']}", f"To: {found['to']}", f"Call-ID: {found['call-id']}"]
    out += [f"CSeq: {found['cseq']}", "Content-Length: 0", "", ""]
    return "\r\n".join(out).encode("utf-8", "replace")
