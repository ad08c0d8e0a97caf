"""The SIP user agent: one simulated phone (RFC 3261 sections 8, 10, 13, 15), sans-I/O.

Theory of operation
-------------------
A :class:`UserAgent` is a :class:`~callmeter.sip.layer.TransactionLayer` with one account. The
application gives it commands with ``now`` (``register``, ``unregister``, ``invite``,
``hangup``) and pulls events with ``next_event()``; the shell feeds it datagrams and timer
expiries. Nothing here blocks, sleeps or owns a socket.

Registration (section 10.2): REGISTER with Expires, digest retry on 401/407 (stale nonces
retried, refused credentials reported), 423 retried with Min-Expires, the granted expiry read
from our Contact in the 200, a refresh scheduled before it runs out, unregister with
Expires: 0.

Calls: each call is a :class:`Call` keyed by Call-ID, holding its INVITE transaction, its dialog
and its :class:`~callmeter.sip.events.CallTiming`. As UAC: INVITE, digest retry, ACK for 2xx
(sent by us, end to end; the transaction ACKs 3xx-6xx), CANCEL of a pending INVITE (sent once
a provisional response arrived, section 9.1), BYE. As UAS: 100 at once, 180 and after
``ring_time_s`` a 200 (or the configured rejection), 2xx retransmitted until the ACK arrives
(section 13.3.1.4), CANCEL answered with 200 + 487, BYE answered, OPTIONS answered. Bodies come
from a pluggable :class:`OfferAnswer` provider.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from callmeter.sip.auth import Challenge, Credentials, DigestSession, credentials_rejected
from callmeter.sip.core import Address
from callmeter.sip.dialog import Dialog
from callmeter.sip.errors import LocalProtocolError, ParseError
from callmeter.sip.events import (
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallFailed,
    CallRinging,
    CallTiming,
    IncomingCall,
    Registered,
    RegistrationFailed,
    Unregistered,
)
from callmeter.sip.headers import Headers
from callmeter.sip.layer import TransactionLayer
from callmeter.sip.message import Request, Response
from callmeter.sip.timers import TimerConfig
from callmeter.sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    Transaction,
    TxState,
    build_cancel,
)
from callmeter.sip.uri import SipUri, parse_uri

__all__ = ["Call", "CallState", "NoMedia", "OfferAnswer", "UserAgent", "UserAgentConfig"]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"
Body = tuple[str, bytes]  # (content type, bytes)
SentCredentials = tuple[str, Credentials]  # (header name, credentials)


class OfferAnswer(Protocol):
    """Supplies session descriptions (SDP) for calls; the media engine implements it."""

    def create_offer(self, call_id: str) -> Body | None: ...
    def create_answer(self, call_id: str, offer: Body | None) -> Body | int | None:
        """The answer body, or a status code (e.g. 488) to reject the offer."""
        ...

    def answer_received(self, call_id: str, answer: Body | None) -> int | None:
        """The peer's answer arrived; a status code means negotiation failed."""
        ...

    def call_ended(self, call_id: str) -> None: ...


class NoMedia:
    """Signaling only: no body offered or answered."""

    def create_offer(self, call_id: str) -> Body | None:
        return None

    def create_answer(self, call_id: str, offer: Body | None) -> Body | int | None:
        return None

    def answer_received(self, call_id: str, answer: Body | None) -> int | None:
        return None

    def call_ended(self, call_id: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class UserAgentConfig:
    """One account and how the phone behaves. ``proxy`` is where requests outside a dialog go
    (the registrar or outbound proxy), as an address."""

    username: str
    domain: str
    proxy: Address
    password: str | None = None
    auth_username: str | None = None
    realm: str | None = None
    display_name: str | None = None
    expires: int = 3600
    ring_time_s: float = 0.0
    answer_status: int = 200
    user_agent: str = "callmeter/0.1"
    preauthorize: bool = True  # reuse the last nonce (nc + 1) instead of waiting for a 401
    timers: TimerConfig = field(default_factory=TimerConfig)

    @property
    def aor(self) -> str:
        return f"sip:{self.username}@{self.domain}"


class CallState(enum.Enum):
    CALLING = "calling"
    EARLY = "early"
    ANSWERED = "answered"  # 2xx sent, ACK not yet received (UAS)
    CONFIRMED = "confirmed"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


@dataclass(slots=True)
class Call:
    call_id: str
    role: Literal["uac", "uas"]
    invite: Request
    state: CallState = CallState.CALLING
    tx: Transaction | None = None
    dialog: Dialog | None = None
    times: dict[str, float] = field(default_factory=dict)  # CallTiming field -> now
    cancel_requested: bool = False
    cancelled: bool = False
    auth_sent: SentCredentials | None = None
    ok: Response | None = None  # our 2xx (UAS), retransmitted until ACK
    ok_interval: float = 0.0
    bye_auth_tried: bool = False
    branch: str | None = None  # of our current INVITE (UAC)
    from_tag: str | None = None  # of our INVITE (UAC)

    def mark(self, step: str, now: float) -> None:
        """Record when ``step`` (a CallTiming field) first happened."""
        self.times.setdefault(step, now)

    @property
    def timing(self) -> CallTiming:
        return CallTiming(**self.times)


@dataclass(slots=True)
class _Registration:
    call_id: str
    from_tag: str
    cseq: int = 0
    expires: int = 0
    auth_sent: SentCredentials | None = None
    registered: bool = False


class UserAgent(TransactionLayer):
    """A simulated phone with one account. See the module docstring."""

    def __init__(
        self,
        config: UserAgentConfig,
        local_addr: Address = ("127.0.0.1", 0),
        *,
        transport: str = "UDP",
        offer_answer: OfferAnswer | None = None,
        rng: random.Random | None = None,
        trace_limit: int = 64,
    ) -> None:
        super().__init__(
            local_addr, transport=transport, timers=config.timers, rng=rng, trace_limit=trace_limit
        )
        self.config = config
        self.offer_answer: OfferAnswer = offer_answer or NoMedia()
        self.calls: dict[str, Call] = {}
        self.digest = (
            DigestSession(config.auth_username or config.username, config.password, config.realm)
            if config.password is not None
            else None
        )
        self._registration: _Registration | None = None
        self._auth_headers: dict[str, str] = {}  # method -> header its challenge asked for
        self._contact: tuple[Address, str] | None = None  # (local_addr, Contact value)
        name = config.display_name
        self._from_head = f'"{name}" <{config.aor}>' if name else f"<{config.aor}>"

    # -- identity -----------------------------------------------------------------------
    @property
    def contact(self) -> str:
        local = self.local_addr  # set by the shell once bound: rendered again when it moves
        cached = self._contact
        if cached is not None and cached[0] == local:
            return cached[1]
        host, port = local
        transport = "" if self.transport == "UDP" else f";transport={self.transport.lower()}"
        contact = f"<sip:{self.config.username}@{host}:{port}{transport}>"
        self._contact = (local, contact)
        return contact

    def _base_request(self, method: str, uri: SipUri | str, to: str, call_id: str,
                      from_tag: str, cseq: int, branch: str) -> Request:  # fmt: skip
        request_uri = uri if isinstance(uri, SipUri) else parse_uri(uri)
        headers = Headers.from_canonical(
            [
                ("via", "Via", self.via_value(branch)),
                ("max-forwards", "Max-Forwards", "70"),
                ("from", "From", f"{self._from_head};tag={from_tag}"),
                ("to", "To", to),
                ("call-id", "Call-ID", call_id),
                ("cseq", "CSeq", f"{cseq} {method}"),
                ("contact", "Contact", self.contact),
                ("user-agent", "User-Agent", self.config.user_agent),
            ]
        )
        return Request(method, request_uri, headers)

    def _new_call_id(self) -> str:
        return f"{self.random_hex(24)}{self.label}@{self.local_addr[0]}"

    def _cnonce(self) -> str:
        return self.random_hex(16)

    # -- registration (section 10.2) ------------------------------------------------------
    def register(self, now: float, expires: int | None = None) -> None:
        """Send a REGISTER (``expires`` defaults to the configured value; 0 unregisters)."""
        reg = self._registration
        if reg is None:
            reg = self._registration = _Registration(self._new_call_id(), self.new_token())
        reg.expires = self.config.expires if expires is None else expires
        reg.auth_sent = None
        self.unschedule(("refresh",))
        self._send_register(now, preauth=True)

    def unregister(self, now: float) -> None:
        self.register(now, expires=0)

    @property
    def registered(self) -> bool:
        return self._registration is not None and self._registration.registered

    def _send_register(self, now: float, *, preauth: bool = False,
                       challenge: tuple[str, Challenge] | None = None) -> None:  # fmt: skip
        reg = self._registration
        assert reg is not None
        reg.cseq += 1
        uri = f"sip:{self.config.domain}"
        branch = self.new_branch()
        request = self._base_request(
            "REGISTER", uri, f"<{self.config.aor}>", reg.call_id, reg.from_tag, reg.cseq, branch
        )
        request.headers.add("Expires", str(reg.expires))
        request.headers.add("Allow", ALLOW)
        reg.auth_sent = self._authorize(request, challenge, preauth)
        self.send_request(request, self.config.proxy, now, branch=branch)

    def _authorize(
        self, request: Request, challenge: tuple[str, Challenge] | None, preauth: bool
    ) -> SentCredentials | None:
        """Add Authorization/Proxy-Authorization answering ``challenge``, or pre-authorize
        from the last challenge when this method was challenged before (in the header that
        challenge asked for); returns what was sent."""
        if self.digest is None:
            return None
        uri = str(request.uri)
        if challenge is not None:
            header, chal = challenge
            self._auth_headers[request.method] = header
            creds = self.digest.authorize(chal, request.method, uri, self._cnonce(), request.body)
        elif preauth and self.config.preauthorize and request.method in self._auth_headers:
            header = self._auth_headers[request.method]
            creds = self.digest.preauthorize(request.method, uri, self._cnonce(), request.body)
        else:
            return None
        if creds is None:
            return None
        request.headers.add(header, creds.serialize())
        return header, creds

    def _may_answer(self, challenge: tuple[str, Challenge], sent: SentCredentials | None) -> bool:
        """Whether to retry: credentials sent in another header do not answer this kind of
        challenge, so they cannot have been rejected (RFC 3261 sections 22.2 and 22.3)."""
        answered = sent[1] if sent is not None and sent[0] == challenge[0] else None
        return not credentials_rejected(challenge[1], answered)

    def _challenge_of(self, response: Response) -> tuple[str, Challenge] | None:
        """The digest challenge of a 401/407 that we may answer, with the header to answer
        in; None when there is none, it is refused or our credentials were rejected."""
        name, answer = (
            ("WWW-Authenticate", "Authorization")
            if response.status == 401
            else ("Proxy-Authenticate", "Proxy-Authorization")
        )
        if self.digest is None:
            return None
        for value in response.headers.get_all(name):
            try:
                challenge = Challenge.parse(value)
            except ParseError:
                self.counters["bad_challenges"] += 1
                continue
            if self.digest.refusal(challenge) is None:
                return answer, challenge
        return None

    def _registration_response(self, response: Response, now: float) -> None:
        reg = self._registration
        if reg is None or response.call_id != reg.call_id or response.status < 200:
            return
        status = response.status
        if status in (401, 407):
            challenge = self._challenge_of(response)
            if challenge is not None and self._may_answer(challenge, reg.auth_sent):
                self._send_register(now, challenge=challenge)
                return
        elif status == 423 and reg.expires:
            min_expires = response.headers.get("Min-Expires", "")
            if min_expires and min_expires.strip().isdigit():
                reg.expires = int(min_expires.strip())
                self._send_register(now, preauth=True)
                return
        if status >= 300:
            reg.registered = False
            self.emit(RegistrationFailed(now, status, response.reason))
            return
        if reg.expires == 0:
            reg.registered = False
            self.emit(Unregistered(now, self.config.aor))
            return
        granted = self._granted_expiry(response, reg.expires)
        reg.registered = True
        self.emit(Registered(now, self.config.aor, granted))
        refresh_in = max(granted / 2, granted - 60) if granted > 0 else None
        if refresh_in is not None:
            self.schedule(("refresh",), now + refresh_in)

    def _granted_expiry(self, response: Response, requested: int) -> int:
        """Section 10.2.4: the expires param of our own Contact, else the Expires header."""
        host, port = self.local_addr
        try:
            for contact in response.contacts:
                uri = contact.uri
                mine = (
                    isinstance(uri, SipUri)
                    and uri.user == self.config.username
                    and (uri.host == host and (uri.port or 5060) == port)
                )
                value = contact.param("expires")
                if mine and value and value.isdigit():
                    return int(value)
        except ParseError:
            self.counters["bad_contacts"] += 1
        return response.expires if response.expires is not None else requested

    # -- calls as UAC ---------------------------------------------------------------------
    def invite(self, target: str | SipUri, now: float, *, call_id: str | None = None) -> str:
        """Call ``target`` (a SIP URI); returns the Call-ID. Events tell what happens."""
        call_id = call_id or self._new_call_id()
        if call_id in self.calls:
            raise LocalProtocolError(f"call {call_id} exists already")
        uri = target if isinstance(target, SipUri) else parse_uri(target)
        if not isinstance(uri, SipUri):
            raise LocalProtocolError(f"can only call sip: or sips: URIs, not {target}")
        branch, from_tag = self.new_branch(), self.new_token()
        request = self._base_request("INVITE", uri, f"<{uri}>", call_id, from_tag, 1, branch)
        request.headers.add("Allow", ALLOW)
        body = self.offer_answer.create_offer(call_id)
        if body is not None:
            request.headers.add("Content-Type", body[0])
            request.body = body[1]
        call = self.calls[call_id] = Call(call_id, "uac", request, branch=branch, from_tag=from_tag)
        call.auth_sent = self._authorize(request, None, preauth=True)
        self._send_invite(call, now)
        return call_id

    def _send_invite(self, call: Call, now: float) -> None:
        hop = self._first_hop(call.invite)
        call.tx = self.send_request(call.invite, hop, now, branch=call.branch)
        call.mark("invite", now)

    def _first_hop(self, request: Request) -> Address:
        return self.config.proxy

    def hangup(self, call_id: str, now: float) -> None:
        """End a call in any state: BYE when established, CANCEL when pending (UAC), 603
        when ringing here (UAS). Unknown or ended calls are ignored."""
        call = self.calls.get(call_id)
        if call is None or call.state in (CallState.TERMINATING, CallState.TERMINATED):
            return
        if call.state in (CallState.CONFIRMED, CallState.ANSWERED):
            self._send_bye(call, now)
        elif call.role == "uac":
            call.cancel_requested = True
            if call.state is CallState.EARLY:
                self._send_cancel(call, now)
        else:
            tx = call.tx
            if isinstance(tx, ServerTransaction) and tx.state is TxState.PROCEEDING:
                self.respond(tx, self._response(call, 603), now)
            self._finish(call, now, CallCancelled(now, call_id, "local", _ending(call, now)))

    def _send_cancel(self, call: Call, now: float) -> None:
        """Section 9.1: CANCEL the pending INVITE on the same branch."""
        cancel = build_cancel(call.invite)
        self.send_request(cancel, self._first_hop(call.invite), now)
        call.cancelled = True

    def _send_bye(self, call: Call, now: float) -> None:
        assert call.dialog is not None
        branch = self.new_branch()
        request = call.dialog.new_request("BYE", self.via_value(branch))
        request.headers.add("User-Agent", self.config.user_agent)
        self._authorize(request, None, preauth=True)
        call.state = CallState.TERMINATING
        call.mark("bye", now)
        if call.role == "uas":
            self.unschedule(("2xx", call.call_id))
        hop = call.dialog.next_hop(self.config.proxy)
        self.send_request(request, hop, now, branch=branch)

    def _send_ack(self, call: Call, response: Response, now: float) -> None:
        """The ACK for a 2xx is a new request of the dialog (section 13.2.2.4)."""
        dialog = call.dialog
        assert dialog is not None
        credentials: list[tuple[str, str]] = []
        if call.auth_sent is not None:  # the INVITE carried credentials: so does its ACK
            for name in ("Proxy-Authorization", "Authorization"):
                for value in call.invite.headers.get_all(name):
                    credentials.append((name, value))
        via = self.via_value(self.new_branch())
        data = dialog.render_request("ACK", via, call.invite.cseq.seq, credentials)
        self.transmit(data, dialog.next_hop(self.config.proxy))
        call.mark("ack", now)

    def _invite_response(self, call: Call, response: Response, now: float) -> None:
        status = response.status
        if status < 200:
            if status == 100:
                call.mark("trying", now)
            else:
                call.mark("ringing", now)
                self.emit(CallRinging(now, call.call_id, status))
            if call.state is CallState.CALLING:
                call.state = CallState.EARLY
            if call.cancel_requested and not call.cancelled:
                self._send_cancel(call, now)
            return
        if status < 300:
            self._invite_answered(call, response, now)
            return
        if status in (401, 407) and not call.cancel_requested:
            challenge = self._challenge_of(response)
            if challenge is not None and self._may_answer(challenge, call.auth_sent):
                self._retry_invite(call, challenge, now)
                return
        if call.cancel_requested and status == 487:
            event: CallCancelled | CallFailed = CallCancelled(
                now, call.call_id, "local", _ending(call, now)
            )
        else:
            event = CallFailed(now, call.call_id, status, response.reason, _ending(call, now))
        self._finish(call, now, event)

    def _retry_invite(self, call: Call, challenge: tuple[str, Challenge], now: float) -> None:
        invite = call.invite
        headers = invite.headers.copy()
        call.branch = self.new_branch()
        headers.set("Via", self.via_value(call.branch))
        headers.set("CSeq", f"{invite.cseq.seq + 1} INVITE")
        headers.remove("Authorization")
        headers.remove("Proxy-Authorization")
        call.invite = Request("INVITE", invite.uri, headers, invite.body)
        call.auth_sent = self._authorize(call.invite, challenge, preauth=False)
        call.state = CallState.CALLING
        self._send_invite(call, now)

    def _invite_answered(self, call: Call, response: Response, now: float) -> None:
        if call.dialog is None:
            call.dialog = Dialog.from_uac(call.invite, response, local_tag=call.from_tag)
        elif response.to.tag != call.dialog.remote_tag:
            self.counters["forked_2xx"] += 1  # a second branch answered: ACK and hang it up
            extra = Dialog.from_uac(call.invite, response, local_tag=call.from_tag)
            branch_call = Call(call.call_id, "uac", call.invite, dialog=extra)
            branch_call.auth_sent = call.auth_sent  # its ACK carries the INVITE's credentials
            self._send_ack(branch_call, response, now)
            bye = extra.new_request("BYE", self.via_value(self.new_branch()))
            self.send_request(bye, extra.next_hop(self.config.proxy), now)
            return
        self._send_ack(call, response, now)
        if call.state in (CallState.CALLING, CallState.EARLY):
            call.state = CallState.CONFIRMED
            call.mark("answered", now)
            failure = self.offer_answer.answer_received(call.call_id, _body(response))
            if failure is not None:
                self._send_bye(call, now)
                reason = "negotiation failed"
                self._finish(
                    call, now, CallFailed(now, call.call_id, failure, reason, _ending(call, now))
                )
                return
            self.emit(CallAnswered(now, call.call_id, call.timing))
            if call.cancel_requested:
                self._send_bye(call, now)  # we hung up while the 2xx was on its way

    # -- calls as UAS ---------------------------------------------------------------------
    def request_received(
        self, request: Request, tx: ServerTransaction | None, addr: Address, now: float
    ) -> None:
        method = request.method
        if tx is None:
            self._ack_received(request, now)
        elif method == "INVITE" and request.to.tag is None:
            self._incoming_invite(request, tx, now)
        elif method == "CANCEL":
            self._incoming_cancel(request, tx, now)
        elif method in ("BYE", "INVITE"):
            self._in_dialog_request(request, tx, now)
        elif method == "OPTIONS":
            response = self.make_response(request, 200)
            for name, value in (("Allow", ALLOW), ("Accept", "application/sdp")):
                response.headers.add(name, value)
            self.respond(tx, response, now)
        else:
            response = self.make_response(request, 405 if method == "REGISTER" else 501)
            response.headers.add("Allow", ALLOW)
            self.respond(tx, response, now)

    def _response(self, call: Call, status: int, body: Body | None = None) -> Response:
        tag = call.dialog.local_tag if call.dialog else None
        response = self.make_response(call.invite, status, to_tag=tag)
        if 100 < status < 300:
            response.headers.add("Contact", self.contact)
        if body is not None:
            response.headers.add("Content-Type", body[0])
            response.body = body[1]
        return response

    def _incoming_invite(self, request: Request, tx: ServerTransaction, now: float) -> None:
        call_id = request.call_id
        if call_id in self.calls:  # a second INVITE with our Call-ID but no To tag: a loop
            self.respond(tx, self.make_response(request, 482), now)
            return
        call = self.calls[call_id] = Call(call_id, "uas", request, tx=tx)
        call.mark("invite", now)
        call.dialog = Dialog.from_uas(request, self.new_token())
        self.respond(tx, self.make_response(request, 100), now)
        call.mark("trying", now)
        self.emit(IncomingCall(now, call_id, str(request.from_.uri), str(request.to.uri)))
        if self.config.answer_status >= 300:
            self.respond(tx, self._response(call, self.config.answer_status), now)
            reason = "rejected as configured"
            self._finish(call, now, CallFailed(now, call_id, self.config.answer_status, reason,
                                               _ending(call, now)))  # fmt: skip
        elif self.config.ring_time_s > 0:
            self.respond(tx, self._response(call, 180), now)
            call.state = CallState.EARLY
            call.mark("ringing", now)
            self.schedule(("answer", call_id), now + self.config.ring_time_s)
        else:
            self._answer(call, now)

    def _answer(self, call: Call, now: float) -> None:
        tx = call.tx
        if not isinstance(tx, ServerTransaction) or tx.state is not TxState.PROCEEDING:
            return
        answer = self.offer_answer.create_answer(call.call_id, _body(call.invite))
        if isinstance(answer, int):
            self.respond(tx, self._response(call, answer), now)
            reason = "offer rejected"
            self._finish(
                call, now, CallFailed(now, call.call_id, answer, reason, _ending(call, now))
            )
            return
        call.ok = self._response(call, 200, answer)
        self.respond(tx, call.ok, now)
        call.state = CallState.ANSWERED
        call.mark("answered", now)
        if not self.reliable:
            call.ok_interval = self.timers.t1
            self.schedule(("2xx", call.call_id), now + call.ok_interval)
        self.schedule(("ack-timeout", call.call_id), now + self.timers.h)

    def _ack_received(self, request: Request, now: float) -> None:
        call = self.calls.get(request.call_id)
        if call is None or call.role != "uas" or call.state is not CallState.ANSWERED:
            return  # an ACK retransmission, or for a call we no longer know
        call.state = CallState.CONFIRMED
        call.mark("ack", now)
        if call.dialog is not None:
            call.dialog.confirmed = True
        self.unschedule(("2xx", call.call_id))
        self.unschedule(("ack-timeout", call.call_id))
        self.emit(CallAnswered(now, call.call_id, call.timing))

    def _incoming_cancel(self, request: Request, tx: ServerTransaction, now: float) -> None:
        branch, sent_by, _ = tx.key
        invite_tx = self.server_transactions.get((branch, sent_by, "INVITE"))
        if invite_tx is None:
            self.respond(tx, self.make_response(request, 481), now)
            return
        self.respond(tx, self.make_response(request, 200), now)
        call = self.calls.get(request.call_id)
        if call is not None and invite_tx.state is TxState.PROCEEDING:
            self.respond(invite_tx, self._response(call, 487), now)
            self._finish(call, now, CallCancelled(now, call.call_id, "remote", _ending(call, now)))

    def _in_dialog_request(self, request: Request, tx: ServerTransaction, now: float) -> None:
        call = self.calls.get(request.call_id)
        dialog = call.dialog if call is not None else None
        if call is None or dialog is None or request.to.tag != dialog.local_tag:
            self.respond(tx, self.make_response(request, 481), now)
            return
        refused = dialog.check_request(request)
        if refused is not None:
            self.respond(tx, self.make_response(request, refused), now)
            return
        if request.method == "INVITE":  # re-INVITE: keep the session as it is
            answer = self.offer_answer.create_answer(call.call_id, _body(request))
            body = answer if isinstance(answer, tuple) else None
            response = self.make_response(request, 200)
            response.headers.add("Contact", self.contact)
            if body is not None:
                response.headers.add("Content-Type", body[0])
                response.body = body[1]
            self.respond(tx, response, now)
            return
        self.respond(tx, self.make_response(request, 200), now)
        call.mark("bye", now)
        self._finish(call, now, CallEnded(now, call.call_id, "remote", 200, _ending(call, now)))

    # -- responses and timers ---------------------------------------------------------------
    def response_received(self, tx: ClientTransaction, response: Response, now: float) -> None:
        method = tx.method
        if method == "REGISTER":
            self._registration_response(response, now)
            return
        call = self.calls.get(tx.call_id)  # the response matched our request (section 17.1.3)
        if call is None:
            return
        if method == "INVITE":
            self._invite_response(call, response, now)
        elif method == "BYE" and response.status >= 200:
            self._bye_response(call, tx, response, now)

    def _bye_response(
        self, call: Call, tx: ClientTransaction, response: Response, now: float
    ) -> None:
        if response.status in (401, 407) and not call.bye_auth_tried and call.dialog:
            challenge = self._challenge_of(response)
            if challenge is not None:
                call.bye_auth_tried = True
                bye = call.dialog.new_request("BYE", self.via_value(self.new_branch()))
                self._authorize(bye, challenge, preauth=False)
                self.send_request(bye, call.dialog.next_hop(self.config.proxy), now)
                return
        self._finish(call, now, CallEnded(now, call.call_id, "local", response.status,
                                          _ending(call, now)))  # fmt: skip

    def stray_response(self, response: Response, addr: Address, now: float) -> None:
        """A 2xx retransmission after the INVITE transaction ended: ACK it again."""
        call = self.calls.get(response.call_id)
        if (
            call is not None
            and call.role == "uac"
            and response.cseq.method == "INVITE"
            and 200 <= response.status < 300
            and call.dialog is not None
        ):
            self._send_ack(call, response, now)
            return
        super().stray_response(response, addr, now)

    def transaction_timed_out(self, tx: Transaction, now: float) -> None:
        super().transaction_timed_out(tx, now)
        method = tx.method
        if method == "REGISTER":
            if self._registration is not None:
                self._registration.registered = False
            self.emit(RegistrationFailed(now, 408, "Request Timeout"))
            return
        call = self.calls.get(tx.call_id)
        if call is None:
            return
        if method == "INVITE" and call.state in (CallState.CALLING, CallState.EARLY):
            self._finish(call, now, CallFailed(now, call.call_id, 408, "Request Timeout",
                                               _ending(call, now)))  # fmt: skip
        elif method == "BYE":
            self._finish(call, now, CallEnded(now, call.call_id, "local", 408, _ending(call, now)))

    def timer_fired(self, key: tuple[Hashable, ...], now: float) -> None:
        kind = key[0]
        if kind == "refresh":
            if self._registration is not None and self._registration.registered:
                self._send_register(now, preauth=True)
            return
        call = self.calls.get(str(key[1]))
        if call is None:
            return
        if kind == "answer":
            self._answer(call, now)
        elif kind == "2xx" and call.state is CallState.ANSWERED and call.ok is not None:
            assert call.tx is not None
            self.respond(call.tx, call.ok, now)  # type: ignore[arg-type]
            call.ok_interval = min(2 * call.ok_interval, self.timers.t2)
            self.schedule(("2xx", call.call_id), now + call.ok_interval)
        elif kind == "ack-timeout" and call.state is CallState.ANSWERED:
            self.counters["ack_timeouts"] += 1  # section 13.3.1.4: confirm, then BYE
            self._send_bye(call, now)
            self._finish(call, now, CallFailed(now, call.call_id, 408, "no ACK for 2xx",
                                               _ending(call, now)))  # fmt: skip

    def _finish(
        self, call: Call, now: float, event: CallFailed | CallCancelled | CallEnded
    ) -> None:
        """Record the end of a call and tell the application, once. ``event`` carries the
        timing from :func:`_ending`, so it includes the end."""
        if call.state is CallState.TERMINATED:
            return
        call.state = CallState.TERMINATED
        call.mark("ended", now)
        if call.role == "uas":  # only a UAS call schedules these
            self.unschedule(("answer", call.call_id))
            self.unschedule(("2xx", call.call_id))
            self.unschedule(("ack-timeout", call.call_id))
        self.offer_answer.call_ended(call.call_id)
        self.emit(event)
        del self.calls[call.call_id]

    def call_state(self, call_id: str) -> CallState | None:
        call = self.calls.get(call_id)
        return None if call is None else call.state


def _ending(call: Call, now: float) -> CallTiming:
    """Mark the end of ``call`` at ``now`` (once) and return its timing, for the event that
    ``UserAgent._finish`` emits."""
    call.mark("ended", now)
    return call.timing


def _body(message: Request | Response) -> Body | None:
    if not message.body:
        return None
    return message.content_type or "application/octet-stream", message.body
