"""Small pure helpers of the proxy (RFC 3261 section 16, RFC 3581): where a URI or a Via
points, the received/rport stamp, the CANCEL of a forwarded INVITE, stateless branches."""

from __future__ import annotations

import hashlib
import ipaddress
from functools import lru_cache

from callmeter.sip.core import Address
from callmeter.sip.headers import Via
from callmeter.sip.message import Request
from callmeter.sip.transaction import MAGIC_COOKIE
from callmeter.sip.uri import SipUri, Uri

__all__ = [
    "LocalIdentity",
    "is_ip_literal",
    "stamp_via",
    "stateless_branch",
    "uri_target",
    "via_target",
]


@lru_cache(maxsize=4096)
def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (names are resolved outside the core)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def uri_target(uri: Uri) -> Address | None:
    """The address a request for ``uri`` goes to (section 16.6 step 7 without RFC 3263: an
    IP literal host, or ``maddr``; port 5060, or 5061 for sips); None when it names a host."""
    if not isinstance(uri, SipUri):
        return None
    host = uri.param("maddr") or uri.host
    if not is_ip_literal(host):
        return None
    return host.strip("[]"), uri.port or (5061 if uri.scheme == "sips" else 5060)


def via_target(via: Via) -> Address:
    """Where a response for ``via`` goes (section 18.2.2 and RFC 3581 section 4): the
    ``received``/``rport`` values when set, else the sent-by."""
    host = via.received or via.host
    port = via.rport or via.port or 5060
    return host.strip("[]"), port


def stamp_via(request: Request, source: Address) -> None:
    """Add ``received`` (section 18.2.1) and fill ``rport`` (RFC 3581 section 4) on the top
    Via of a request that came from ``source``, so responses can follow it back."""
    top = request.via[0]
    wants_rport = top.param("rport") == ""
    if not wants_rport and top.host == source[0]:
        return
    params = [(k, v) for k, v in top.params if k.lower() not in ("received", "rport")]
    params.append(("received", source[0]))
    if wants_rport:
        params.append(("rport", str(source[1])))
    stamped = Via(top.transport, top.host, top.port, tuple(params), top.version)
    request.headers.pop_first_value("via")
    request.headers.prepend("Via", str(stamped))


def stateless_branch(received_branch: str, local: Address) -> str:
    """The branch of a request forwarded statelessly (an ACK for a 2xx): a function of the
    received branch, so a retransmission gets the same one (section 16.11)."""
    seed = f"{received_branch}|{local[0]}:{local[1]}".encode()
    digest = hashlib.md5(seed, usedforsecurity=False).hexdigest()
    return f"{MAGIC_COOKIE}{digest[:20]}"


class LocalIdentity:
    """What names this proxy: its address, domain and aliases (section 16.4), and the
    Record-Route value it inserts (section 16.6 step 4). ``update`` follows the address the
    shell bound; it is a tuple comparison when nothing changed."""

    __slots__ = ("address", "aliases", "domain", "hosts", "record_route", "transport")

    def __init__(self, domain: str, aliases: tuple[str, ...] = ()) -> None:
        self.domain = domain
        self.aliases = aliases
        self.address: Address | None = None
        self.transport = "UDP"
        self.hosts: frozenset[str] = frozenset()
        self.record_route = ""

    def update(self, address: Address, transport: str) -> None:
        if address == self.address and transport == self.transport:
            return
        host, port = address
        uri_host = f"[{host}]" if ":" in host else host
        names = {host, uri_host, self.domain, *self.aliases}
        self.hosts = frozenset(name.lower() for name in names)
        params = "" if transport == "UDP" else f";transport={transport.lower()}"
        self.record_route = f"<sip:{uri_host}:{port}{params};lr>"
        self.address, self.transport = address, transport

    def is_local(self, uri: Uri) -> bool:
        """Whether ``uri`` names us: our domain, an alias or our address, with no port or
        our port."""
        return (
            isinstance(uri, SipUri)
            and uri.host.lower() in self.hosts
            and (uri.port is None or (self.address is not None and uri.port == self.address[1]))
        )

    def local_aor(self, uri: Uri) -> str | None:
        """The AOR key (``sip:user@domain``) of a URI naming one of our users, else None."""
        if not isinstance(uri, SipUri) or uri.user is None or not self.is_local(uri):
            return None
        return f"sip:{uri.user}@{self.domain}"

    def is_us(self, uri: Uri) -> bool:
        """Whether ``uri`` is this very proxy (a Route entry): one of our names with our
        port, a missing port meaning 5060 (5061 for sips) as section 19.1.2 says."""
        if not isinstance(uri, SipUri) or uri.host.lower() not in self.hosts:
            return False
        port = uri.port or (5061 if uri.scheme == "sips" else 5060)
        return self.address is not None and port == self.address[1]

    def is_our_via(self, via: Via) -> bool:
        return self.address is not None and (via.host.strip("[]"), via.port) == self.address

    def strip_own_route(self, request: Request) -> None:
        """Section 16.4: remove the first Route value when it names us (loose routing)."""
        first = request.headers.get("route")
        if first is not None and (
            first.startswith(self.record_route) or self.is_us(request.routes[0].uri)
        ):
            request.headers.pop_first_value("route")
