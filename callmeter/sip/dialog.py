"""SIP dialogs (RFC 3261 section 12): identity, route set, remote target and CSeq handling.

A dialog is created from an INVITE and its 2xx (UAC side, section 12.1.2) or from a received
INVITE (UAS side, section 12.1.1). It builds in-dialog requests (section 12.2.1.1) with loose
or strict routing and checks the CSeq order of requests it receives (section 12.2.2).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from callmeter.sip.core import Address
from callmeter.sip.errors import LocalProtocolError
from callmeter.sip.headers import Headers, NameAddr
from callmeter.sip.message import Request, Response
from callmeter.sip.uri import SipUri, Uri

__all__ = ["Dialog", "uri_address"]


@functools.lru_cache(maxsize=4096)
def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def uri_address(uri: Uri, default: Address) -> Address:
    """Where to send a request for ``uri``: its host when it is an IP literal (port 5060 or
    5061 for sips unless given), else ``default`` (names are resolved before the core)."""
    if not isinstance(uri, SipUri):
        return default
    host = uri.host.strip("[]")
    if not _is_ip_literal(host):
        return default
    maddr = uri.param("maddr")
    if maddr:
        host = maddr
    return host, uri.port or (5061 if uri.scheme == "sips" else 5060)


@dataclass(slots=True)
class Dialog:
    """The state of one dialog, seen from our side."""

    call_id: str
    local_tag: str
    remote_tag: str
    local: str  # our From/To header value, tag included
    remote: str  # the peer's From/To header value, tag included
    remote_target: Uri
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 1
    remote_cseq: int | None = None
    confirmed: bool = False
    # (remote target, default, next hop) of the last next_hop() without a route set
    _hop: tuple[Uri, Address, Address] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_uac(
        cls, invite: Request, response: Response, *, local_tag: str | None = None
    ) -> Dialog:
        """Section 12.1.2: route set is the response's Record-Route reversed; remote target
        its Contact. ``local_tag`` is the INVITE's From tag when the caller knows it (saves
        parsing our own From)."""
        contacts = response.contacts
        target = contacts[0].uri if contacts else invite.uri
        routes = [str(r) for r in reversed(response.record_routes)]
        if local_tag is None:
            local_tag = invite.from_.tag or ""
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=response.to.tag or "",
            local=invite.headers.get("from") or "",
            remote=response.headers.get("to") or "",
            remote_target=target,
            route_set=routes,
            local_cseq=invite.cseq.seq,
            confirmed=response.status >= 200,
        )

    @classmethod
    def from_uas(cls, invite: Request, local_tag: str) -> Dialog:
        """Section 12.1.1: route set is the request's Record-Route in order; remote target
        its Contact."""
        contacts = invite.contacts
        target = contacts[0].uri if contacts else invite.from_.uri
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_.tag or "",
            local=str(invite.to.with_tag(local_tag)),
            remote=invite.headers.get("from") or "",
            remote_target=target,
            route_set=[str(r) for r in invite.record_routes],
            local_cseq=0,
            remote_cseq=invite.cseq.seq,
        )

    @property
    def key(self) -> tuple[str, str, str]:
        return self.call_id, self.local_tag, self.remote_tag

    def new_request(self, method: str, via: str, *, cseq: int | None = None) -> Request:
        """An in-dialog request (section 12.2.1.1). ACK and CANCEL reuse ``cseq``; any other
        method takes the next local CSeq."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        uri, routes = self._target()
        items = [
            ("via", "Via", via),
            ("max-forwards", "Max-Forwards", "70"),  # RFC 3261 section 8.1.1.6
            ("from", "From", self.local),
            ("to", "To", self.remote),
            ("call-id", "Call-ID", self.call_id),
            ("cseq", "CSeq", f"{cseq} {method}"),
        ]
        for route in routes:
            items.append(("route", "Route", route))
        return Request(method, uri, Headers.from_canonical(items))

    def render_request(
        self, method: str, via: str, cseq: int, extra: Sequence[tuple[str, str]] = ()
    ) -> bytes:
        """The bytes of ``new_request(method, via, cseq=cseq)`` with the ``extra`` header
        lines appended, written straight to text: for a request that no transaction keeps,
        the ACK of a 2xx (section 13.2.2.4), sent once per answered call."""
        if not (via and self.local and self.remote and self.call_id):
            request = self.new_request(method, via, cseq=cseq)  # empty values: the long way
            for name, value in extra:
                request.headers.add(name, value)
            return request.serialize()
        uri, routes = self._target()
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: {via}",
            "Max-Forwards: 70",
            f"From: {self.local}",
            f"To: {self.remote}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
        ]
        if routes:
            lines += [f"Route: {route}" for route in routes]
        if extra:
            lines += [f"{name}: {value}" if value else f"{name}:" for name, value in extra]
        lines.append("Content-Length: 0")
        head = "\r\n".join(lines)
        # A CR or LF inside a value would smuggle a header line, as in Message.serialize.
        if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
            raise LocalProtocolError("CR or LF inside the start line or a header value")
        return (head + "\r\n\r\n").encode("utf-8", "surrogateescape")

    def _target(self) -> tuple[Uri, list[str]]:
        """Request-URI and Route values of the next request (section 12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        uri, routes = self.remote_target, list(self.route_set)
        if routes:
            first = NameAddr.parse(routes[0], "Route").uri
            if isinstance(first, SipUri) and not first.has_param("lr"):
                # Strict routing: the first route becomes the Request-URI.
                uri, routes = first, [*routes[1:], f"<{self.remote_target}>"]
        return uri, routes

    def next_hop(self, default: Address) -> Address:
        if self.route_set:
            return uri_address(NameAddr.parse(self.route_set[0], "Route").uri, default)
        target, hop = self.remote_target, self._hop
        if hop is not None and hop[0] is target and hop[1] == default:
            return hop[2]  # the same target as for the ACK: the BYE goes there too
        address = uri_address(target, default)
        self._hop = (target, default, address)
        return address

    def check_request(self, request: Request) -> int | None:
        """Section 12.2.2: a CSeq lower than the last one is answered 500; else None and the
        remote CSeq and target are updated."""
        seq = request.cseq.seq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_cseq is not None and seq <= self.remote_cseq:
                return 500
            self.remote_cseq = seq
        if request.method == "INVITE" and request.contacts:
            self.remote_target = request.contacts[0].uri  # target refresh (section 12.2.2)
        return None
