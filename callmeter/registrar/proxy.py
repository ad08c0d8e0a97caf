"""The built-in registrar and stateful record-routing proxy (RFC 3261 sections 10.3, 16), sans-I/O.

Theory of operation
-------------------
:class:`Registrar` is a :class:`~callmeter.sip.layer.TransactionLayer`: the layer parses,
answers malformed requests with 400, matches transactions and absorbs retransmissions; this
class only sees new requests (``request_received``) and responses to what it forwarded
(``response_received``). Every lookup on the way is a dict access: accounts by username,
bindings by AOR, forwarding contexts by transaction key, nonces checked by HMAC.

REGISTER (section 10.3): the Request-URI must name our domain; the Authorization is checked
(401 with a fresh nonce, ``stale=true`` for an old one); the authenticated user must own the
To AOR (403); then the :class:`~callmeter.registrar.location.LocationService` applies it.

Other requests are proxied (section 16). The received request is validated (483 when
Max-Forwards is 0), our own Route is removed (loose routing, section 16.4), and then:

- an initial request (no To tag) whose From is one of our users must carry
  Proxy-Authorization (407, as Kamailio does; 403 when the authenticated user is not the
  From user) unless authentication is off; one from elsewhere may only reach our users
  (403 "Relay Forbidden" otherwise);
- OPTIONS to the registrar itself is answered 200;
- the target is the first remaining Route, else the Request-URI: for one of our AORs the
  latest binding (404 unknown user, 480 known but not registered), sent to the address its
  REGISTER came from (NAT-friendly); for an IP-literal URI that address; 503 for a name
  (the core does no DNS).

Forwarding (section 16.6) pushes our Via with a new branch, decrements Max-Forwards and, on
an initial INVITE, adds ``Record-Route: <sip:IP:PORT;lr>`` so the dialog's ACK, BYE and
re-INVITEs come back through us. An INVITE is answered 100 at once. Each forwarded request
has a :class:`_Forward` context linking the server transaction to the client one; responses
lose our Via and go back through the server transaction to the upstream source address
(100 is not relayed, 503 becomes 500, section 16.7). CANCEL is answered 200 hop by hop and
sent on the pending client transaction with the same branch once a provisional response
arrived (section 16.10). Timer B/F expiry answers 408 upstream (487 when cancelled); Timer C
(section 16.8) cancels a call ringing for too long. ACK for a 2xx is forwarded statelessly
(section 16.11); ACK for a non-2xx is absorbed by the server transaction.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import cast

from callmeter.registrar.accounts import AccountTable
from callmeter.registrar.guard import DigestGuard, Verdict
from callmeter.registrar.location import LocationService
from callmeter.registrar.registration import Extra, RegisterHandler, challenge_reply
from callmeter.registrar.routing import (
    LocalIdentity,
    stamp_via,
    stateless_branch,
    uri_target,
    via_target,
)
from callmeter.sip.core import Address
from callmeter.sip.layer import TransactionLayer
from callmeter.sip.message import Request, Response
from callmeter.sip.timers import TimerConfig
from callmeter.sip.transaction import (
    ClientTransaction,
    InviteClientTransaction,
    ServerTransaction,
    Transaction,
    TxState,
    build_cancel,
)
from callmeter.sip.uri import SipUri, Uri

__all__ = ["ALLOW", "Registrar", "RegistrarConfig"]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER"
_NOT_AUTHENTICATED = frozenset({"OPTIONS"})  # ACK, CANCEL and REGISTER never reach the check
_PENDING = (TxState.TRYING, TxState.PROCEEDING)


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    """How the registrar behaves. ``domain`` is the SIP domain of its accounts and the digest
    realm unless ``realm`` is set; URIs whose host is the domain, an alias or our address
    (with no port or our port) are ours."""

    domain: str = "127.0.0.1"
    realm: str | None = None
    aliases: tuple[str, ...] = ("localhost",)
    authenticate_register: bool = True
    authenticate_requests: bool = True
    min_expires_s: int = 60
    max_expires_s: int = 3600
    default_expires_s: int = 3600
    max_contacts: int = 10
    nonce_max_age_s: float = 300.0
    sweep_interval_s: float = 10.0
    timer_c_s: float = 180.0
    timers: TimerConfig = field(default_factory=TimerConfig)


@dataclass(slots=True, eq=False)
class _Forward:
    """One request we forwarded: the upstream server transaction and our client one."""

    server_tx: ServerTransaction
    client_tx: ClientTransaction
    cancelled: bool = False
    cancel_sent: bool = False


class Registrar(TransactionLayer):
    """The built-in registrar and proxy; see the module docstring."""

    def __init__(
        self,
        config: RegistrarConfig | None = None,
        accounts: AccountTable | None = None,
        local_addr: Address = ("127.0.0.1", 5060),
        *,
        transport: str = "UDP",
        rng: random.Random | None = None,
        nonce_secret: bytes | None = None,
        trace_limit: int = 0,
    ) -> None:
        config = config or RegistrarConfig()
        super().__init__(
            local_addr, transport=transport, timers=config.timers, rng=rng, trace_limit=trace_limit
        )
        self.config = config
        self.accounts = accounts if accounts is not None else AccountTable()
        self.location = LocationService(
            min_expires_s=config.min_expires_s,
            max_expires_s=config.max_expires_s,
            default_expires_s=config.default_expires_s,
            max_contacts=config.max_contacts,
        )
        secret = nonce_secret if nonce_secret is not None else self.rng.randbytes(32)
        realm = config.realm or config.domain
        self.guard = DigestGuard(
            self.accounts, realm, secret, nonce_max_age_s=config.nonce_max_age_s
        )
        self.identity = LocalIdentity(config.domain, config.aliases)
        self.registration = RegisterHandler(
            self.identity,
            self.location,
            self.guard,
            self.counters,
            authenticate=config.authenticate_register,
        )
        self._by_client: dict[tuple[str, ...], _Forward] = {}
        self._by_server: dict[tuple[str, ...], _Forward] = {}
        self._to_tag = self.new_token()
        self._sweep_at: float | None = None

    @property
    def record_route(self) -> str:
        """The Record-Route value we insert (section 16.6 step 4)."""
        self.identity.update(self.local_addr, self.transport)
        return self.identity.record_route

    # -- requests -------------------------------------------------------------------------
    def request_received(
        self, request: Request, tx: ServerTransaction | None, addr: Address, now: float
    ) -> None:
        self.identity.update(self.local_addr, self.transport)
        if tx is None:
            self._forward_ack(request, now)
        elif request.method == "REGISTER":
            self._register(tx, addr, now)
        elif request.method == "CANCEL":
            self._cancel(tx, now)
        else:
            self._proxy(request, tx, addr, now)

    def _reply(
        self, tx: ServerTransaction, status: int, now: float, reason: str | None = None,
        headers: Extra = (),
    ) -> None:  # fmt: skip
        tag = self._to_tag if status > 100 else None
        response = self.make_response(tx.request, status, reason, to_tag=tag)
        for name, value in headers:
            response.headers.add(name, value)
        self.counters[f"replied_{status}"] += 1
        self.respond(tx, response, now)

    def _register(self, tx: ServerTransaction, addr: Address, now: float) -> None:
        reply = self.registration.handle(tx.request, addr, now)
        self._reply(tx, reply.status, now, reply.reason, reply.headers)
        if reply.status == 200:
            self._arm_sweep(now)

    def _proxy(self, request: Request, tx: ServerTransaction, addr: Address, now: float) -> None:
        """Section 16.3 (validation), 16.4 (route information), 16.5 (targets)."""
        if request.max_forwards == 0:
            self._reply(tx, 483, now)
            return
        self.identity.strip_own_route(request)
        has_route = "route" in request.headers
        if not has_route and request.method == "OPTIONS" and self._addressed_to_us(request):
            self._reply(tx, 200, now, headers=(("Allow", ALLOW),))
            return
        initial = request.to.tag is None
        if initial and not self._admit(request, tx, has_route, now):
            return
        target = self._target(request, initial, has_route, now)
        if isinstance(target, int):
            self._reply(tx, target, now, "Cannot Resolve Destination" if target == 503 else None)
            return
        uri, destination = target
        if destination == self.local_addr:
            self._reply(tx, 482, now)
            return
        record = initial and request.method == "INVITE"
        self._forward(request, tx, addr, uri, destination, record, now)

    def _addressed_to_us(self, request: Request) -> bool:
        uri = request.uri
        return isinstance(uri, SipUri) and uri.user is None and self.identity.is_local(uri)

    def _admit(self, request: Request, tx: ServerTransaction, has_route: bool, now: float) -> bool:
        """Who may send an initial request: our users authenticated with Proxy-Authorization
        (section 22.3); anyone else only towards our users (no open relay)."""
        if not self.identity.is_local(request.from_.uri):
            if not has_route and self.identity.is_local(request.uri):
                return True
            self._reply(tx, 403, now, "Relay Forbidden")
            return False
        if not self.config.authenticate_requests or request.method in _NOT_AUTHENTICATED:
            return True
        verdict, username = self.guard.check(request, "Proxy-Authorization", now)
        if verdict is not Verdict.AUTHENTICATED:
            self.counters["auth_rejected"] += verdict is Verdict.REJECTED
            reply = challenge_reply(self.guard, 407, verdict, now)
            self._reply(tx, reply.status, now, reply.reason, reply.headers)
            return False
        if username != getattr(request.from_.uri, "user", None):
            self._reply(tx, 403, now, "Forbidden (authenticated user is not the caller)")
            return False
        request.headers.remove("Proxy-Authorization")  # consumed: it was for our realm
        return True

    def _target(
        self, request: Request, initial: bool, has_route: bool, now: float
    ) -> tuple[Uri, Address] | int:
        """(Request-URI, next-hop address) of the forwarded request, or a status code."""
        if has_route:
            destination = uri_target(request.routes[0].uri)
            return 503 if destination is None else (request.uri, destination)
        if not isinstance(request.uri, SipUri):
            return 416
        aor = self.identity.local_aor(request.uri)
        if aor is None:
            if self.identity.is_local(request.uri):
                return 404
            destination = uri_target(request.uri)
            return 503 if destination is None else (request.uri, destination)
        if not initial:
            return 404  # an in-dialog request for an AOR: its dialog never went through us
        bindings = self.location.lookup(aor, now)
        if not bindings:
            return 480 if request.uri.user in self.accounts else 404
        binding = max(bindings, key=lambda b: b.registered_at) if len(bindings) > 1 else bindings[0]
        return binding.uri, binding.source

    def _forward(
        self, request: Request, tx: ServerTransaction, addr: Address, uri: Uri,
        destination: Address, record_route: bool, now: float,
    ) -> None:  # fmt: skip
        """Section 16.6: copy, retarget, Max-Forwards, Record-Route, Via, send."""
        stamp_via(request, addr)
        if request.method == "INVITE":
            self._reply(tx, 100, now)
        max_forwards = request.max_forwards
        headers = request.headers.copy()
        headers.set("Max-Forwards", str(69 if max_forwards is None else max_forwards - 1))
        if record_route:
            if "record-route" in headers:
                headers.prepend("Record-Route", self.identity.record_route)
            else:
                headers.add("Record-Route", self.identity.record_route)
        headers.prepend("Via", self.via_value(self.new_branch()))
        client_tx = self.send_request(Request(request.method, uri, headers, request.body),
                                      destination, now)  # fmt: skip
        forward = _Forward(tx, client_tx)
        self._by_client[client_tx.key] = forward
        self._by_server[tx.key] = forward
        self.counters[f"forwarded_{request.method}"] += 1
        if isinstance(client_tx, InviteClientTransaction):
            self.schedule(("C", client_tx.key), now + self.config.timer_c_s)

    def _forward_ack(self, request: Request, now: float) -> None:
        """An ACK for a 2xx (end to end, section 13.2.2.4): forwarded statelessly along its
        Route, else to its Request-URI (section 16.11). One for us or nowhere is dropped."""
        if request.max_forwards == 0:
            return
        self.identity.strip_own_route(request)
        if "route" in request.headers:
            destination = uri_target(request.routes[0].uri)
        else:
            destination = None if self.identity.is_local(request.uri) else uri_target(request.uri)
        if destination is None or destination == self.local_addr:
            self.counters["acks_absorbed"] += 1
            return
        max_forwards = request.max_forwards
        headers = request.headers.copy()
        headers.set("Max-Forwards", str(69 if max_forwards is None else max_forwards - 1))
        branch = stateless_branch(request.via[0].branch or "", self.local_addr)
        headers.prepend("Via", self.via_value(branch))
        self.send_stateless(Request("ACK", request.uri, headers, request.body), destination)
        self.counters["forwarded_ACK"] += 1

    def _cancel(self, tx: ServerTransaction, now: float) -> None:
        """Section 16.10: answer the CANCEL, then cancel the matching forwarded INVITE."""
        invite_key = (tx.key[0], tx.key[1], "INVITE")
        if invite_key not in self.server_transactions:
            self._reply(tx, 481, now)
            return
        self._reply(tx, 200, now)
        forward = self._by_server.get(invite_key)
        if forward is None or forward.cancelled:
            return
        forward.cancelled = True
        if forward.client_tx.state is TxState.PROCEEDING:
            self._send_cancel(forward, now)

    def _send_cancel(self, forward: _Forward, now: float) -> None:
        forward.cancel_sent = True
        cancel = build_cancel(forward.client_tx.request)
        self.send_request(cancel, forward.client_tx.addr, now)
        self.counters["cancels_sent"] += 1

    # -- responses ------------------------------------------------------------------------
    def response_received(self, tx: ClientTransaction, response: Response, now: float) -> None:
        """Section 16.7: pop our Via and relay upstream (responses to our CANCELs stop here)."""
        forward = self._by_client.get(tx.key)
        status = response.status
        if forward is None or status == 100:
            return
        response.headers.pop_first_value("via")
        if status < 200:
            self._relay(forward, response, now)
            if forward.cancelled and not forward.cancel_sent:
                self._send_cancel(forward, now)
            elif isinstance(tx, InviteClientTransaction):
                self.schedule(("C", tx.key), now + self.config.timer_c_s)
            return
        self.unschedule(("C", tx.key))
        if status == 503:  # section 16.7 step 6: a 503 is not passed upstream as it is
            response.status, response.reason = 500, "Server Internal Error (downstream 503)"
        self._relay(forward, response, now)

    def _relay(self, forward: _Forward, response: Response, now: float) -> None:
        server = forward.server_tx
        if server.state in _PENDING or (server.state is TxState.ACCEPTED and response.status < 300):
            self.respond(server, response, now)
        elif 200 <= response.status < 300:
            self.send_stateless(response, server.addr)  # the upstream transaction is gone
        self.counters[f"relayed_{response.status // 100}xx"] += 1

    def stray_response(self, response: Response, addr: Address, now: float) -> None:
        """A 2xx to INVITE after our client transaction ended: forwarded statelessly on its
        next Via (section 16.7, RFC 6026 section 8.1); anything else is counted and dropped."""
        self.identity.update(self.local_addr, self.transport)
        vias = response.via
        if (
            len(vias) > 1
            and self.identity.is_our_via(vias[0])
            and response.cseq.method == "INVITE"
            and 200 <= response.status < 300
        ):
            response.headers.pop_first_value("via")
            self.send_stateless(response, via_target(vias[1]))
            self.counters["stray_2xx_forwarded"] += 1
            return
        super().stray_response(response, addr, now)

    # -- timers and transaction ends --------------------------------------------------------
    def transaction_timed_out(self, tx: Transaction, now: float) -> None:
        """Timer B/F: section 16.8 says to behave as if a 408 arrived (487 once cancelled)."""
        super().transaction_timed_out(tx, now)
        forward = self._by_client.get(tx.key) if isinstance(tx, ClientTransaction) else None
        if forward is not None and forward.server_tx.state in _PENDING:
            self._reply(forward.server_tx, 487 if forward.cancelled else 408, now)

    def transaction_terminated(self, tx: Transaction) -> None:
        super().transaction_terminated(tx)
        if isinstance(tx, ClientTransaction):
            if self._by_client.pop(tx.key, None) is not None:
                self.unschedule(("C", tx.key))
        else:
            self._by_server.pop(tx.key, None)

    def timer_fired(self, key: tuple[Hashable, ...], now: float) -> None:
        if key[0] == "sweep":
            self._sweep_at = None
            self.counters["bindings_expired"] += self.location.sweep(now)
            self._arm_sweep(now)
        elif key[0] == "C":
            forward = self._by_client.get(cast("tuple[str, ...]", key[1]))
            if forward is not None:
                self._timer_c(forward, now)

    def _timer_c(self, forward: _Forward, now: float) -> None:
        """Section 16.8: CANCEL a transaction that got a provisional response, else answer
        408. If the CANCEL brings nothing within another Timer C, give up on the branch."""
        tx = forward.client_tx
        if tx.state is TxState.PROCEEDING and not forward.cancel_sent:
            self._send_cancel(forward, now)
            self.schedule(("C", tx.key), now + self.config.timer_c_s)
            return
        if forward.server_tx.state in _PENDING:
            self._reply(forward.server_tx, 487 if forward.cancelled else 408, now)
        tx.abandon()

    def _arm_sweep(self, now: float) -> None:
        """Keep one sweep timer while bindings exist, at most every ``sweep_interval_s``."""
        if self._sweep_at is not None:
            return
        next_expiry = self.location.next_expiry()
        if next_expiry is not None:
            self._sweep_at = max(next_expiry, now + self.config.sweep_interval_s)
            self.schedule(("sweep",), self._sweep_at)
