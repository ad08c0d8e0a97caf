"""SIP and SIPS URIs (RFC 3261 section 19.1 and the grammar of section 25).

``parse_uri`` returns a :class:`SipUri` for ``sip:``/``sips:`` and an :class:`AbsoluteUri` (the
text kept as it is) for ``tel:`` and every other scheme. Escaped characters (``%HH``) in the
user, password, parameters and headers are decoded on parse and re-escaped on serialisation,
so ``parse_uri(str(uri)) == uri`` and two URIs that differ only in escaping compare equal
(section 19.1.4). Written by hand: no maintained library parses the SIP URI grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from callmeter.sip.errors import ParseError

__all__ = ["AbsoluteUri", "SipUri", "Uri", "parse_uri"]

# RFC 3261 section 25.1: unreserved = alphanum / mark
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
_PARAM_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+")
_HNAME_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})+")
_HVALUE_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})*")
_HOST_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_OPAQUE_RE = re.compile(r"[^\s<>\"]+")

# Characters that may stay literal when serialising each part (the rest is %-escaped).
_USER_SAFE = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE = "-_.!~*'()&=+$,"
_PARAM_SAFE = "-_.!~*'()[]/:&+$"
_HEADER_SAFE = "-_.!~*'()[]/?:+$"

Param = tuple[str, str | None]


def _unescape(text: str) -> str:
    return unquote(text, errors="surrogateescape")


def _escape(text: str, safe: str) -> str:
    return quote(text, safe=safe, errors="surrogateescape")


@dataclass(slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI with its parts decoded.

    ``params`` and ``headers`` keep their order; parameter names compare case-insensitively
    through :meth:`param`.
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: list[Param] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)

    def param(self, name: str) -> str | None:
        """The value of uri-parameter ``name`` ('' for a flag like ``lr``), None if absent."""
        lname = name.lower()
        for key, value in self.params:
            if key.lower() == lname:
                return "" if value is None else value
        return None

    def has_param(self, name: str) -> bool:
        return self.param(name) is not None

    def with_params(self, **params: str | None) -> SipUri:
        """A copy with the given uri-parameters set (``None`` means a flag such as ``lr``)."""
        kept = [(k, v) for k, v in self.params if k.lower() not in params]
        return SipUri(
            self.host,
            self.user,
            self.password,
            self.port,
            self.scheme,
            kept + list(params.items()),
            list(self.headers),
        )

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def aor(self) -> str:
        """The address-of-record key: ``scheme:user@host`` with host lowercased (no port)."""
        user = f"{_escape(self.user, _USER_SAFE)}@" if self.user is not None else ""
        return f"{self.scheme}:{user}{self.host.lower()}"

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                parts += [":", _escape(self.password, _PASSWORD_SAFE)]
            parts.append("@")
        parts.append(self.hostport)
        for key, value in self.params:
            parts += [";", _escape(key, _PARAM_SAFE)]
            if value is not None:
                parts += ["=", _escape(value, _PARAM_SAFE)]
        for index, (hname, hvalue) in enumerate(self.headers):
            parts += ["&" if index else "?", _escape(hname, _HEADER_SAFE), "="]
            parts.append(_escape(hvalue, _HEADER_SAFE))
        return "".join(parts)


@dataclass(slots=True, frozen=True)
class AbsoluteUri:
    """A URI of any other scheme (``tel:``, ``http:``, unknown ones), kept as it is."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """Parse a URI; raise :class:`ParseError` naming what is wrong."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise ParseError(f"URI {text[:80]!r}: missing or invalid scheme")
    lscheme = scheme.lower()
    if lscheme not in ("sip", "sips"):
        if not _OPAQUE_RE.fullmatch(rest):
            raise ParseError(f"URI {text[:80]!r}: invalid characters after the scheme")
        return AbsoluteUri(scheme, rest)
    return _parse_sip(lscheme, rest, text)


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    user = password = None
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        if not _USER_RE.fullmatch(user_text):
            raise ParseError(f"URI {text[:80]!r}: invalid user part")
        if colon and not _PASSWORD_RE.fullmatch(password_text):
            raise ParseError(f"URI {text[:80]!r}: invalid password")
        user = _unescape(user_text)
        password = _unescape(password_text) if colon else None
    hostpart, question, headers_text = hostpart.partition("?")
    hostport, *param_texts = hostpart.split(";")
    host, port = _parse_hostport(hostport, text)
    params = [_parse_param(p, text) for p in param_texts]
    headers = _parse_headers(headers_text, text) if question else []
    return SipUri(host, user, password, port, scheme, params, headers)


def _parse_hostport(hostport: str, text: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        close = hostport.find("]") + 1
        host, after = hostport[:close], hostport[close:]
        if after and not after.startswith(":"):
            raise ParseError(f"URI {text[:80]!r}: garbage after the IPv6 reference")
        has_port, port_text = bool(after), after[1:]
    else:
        host, colon, port_text = hostport.partition(":")
        has_port = bool(colon)
    if not _HOST_RE.fullmatch(host):
        raise ParseError(f"URI {text[:80]!r}: invalid host {host[:40]!r}")
    if not has_port:
        return host, None
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        raise ParseError(f"URI {text[:80]!r}: invalid port {port_text[:20]!r}")
    return host, int(port_text)


def _parse_param(param: str, text: str) -> Param:
    name, equals, value = param.partition("=")
    if not _PARAM_RE.fullmatch(name) or (equals and not _PARAM_RE.fullmatch(value)):
        raise ParseError(f"URI {text[:80]!r}: invalid uri-parameter {param[:40]!r}")
    return _unescape(name), (_unescape(value) if equals else None)


def _parse_headers(headers_text: str, text: str) -> list[tuple[str, str]]:
    headers = []
    for header in headers_text.split("&"):
        name, equals, value = header.partition("=")
        if not equals or not _HNAME_RE.fullmatch(name) or not _HVALUE_RE.fullmatch(value):
            raise ParseError(f"URI {text[:80]!r}: invalid header {header[:40]!r}")
        headers.append((_unescape(name), _unescape(value)))
    return headers
