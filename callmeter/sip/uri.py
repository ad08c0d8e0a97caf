"""SIP and SIPS URIs (RFC 3261 section 19.1 and the grammar of section 25).

``parse_uri`` returns a :class:`SipUri` for ``sip:``/``sips:`` and an :class:`AbsoluteUri` (the
text kept as it is) for ``tel:`` and every other scheme. Escaped characters (``%HH``) in the
user, password, parameters and headers are decoded on parse and re-escaped on serialisation,
so ``parse_uri(str(uri)) == uri``. ``==`` on two :class:`SipUri` is the comparison of RFC 3261
section 19.1.4 (host, scheme and parameters case-insensitive, parameter order ignored...).
Written by hand: no maintained library parses the SIP URI grammar.

Known simplification: a reserved character written escaped in the user part (``%3B`` for
``;``) is decoded like any other, so it is re-emitted literally. Section 19.1.4 says the two
spellings differ; no peer we test against relies on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import quote, unquote

from callmeter.sip.errors import ParseError

__all__ = ["AbsoluteUri", "SipUri", "Uri", "bounded_int", "parse_uri"]

# RFC 3261 section 25.1: unreserved = alphanum / mark
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
_PARAM_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+")
_HNAME_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})+")
_HVALUE_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})*")
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?"
_HOST_RE = re.compile(_HOST)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_OPAQUE_RE = re.compile(r"[^\s<>\"]+")

# The common case as regex fragments: no escapes, no password, no headers. ``headers.py``
# embeds them in its name-addr regex so From/To/Contact take one match. Anything else takes
# the general path below, which is also the one that explains what is wrong.
FAST_SIP_ADDR = rf"(?:([{_UNRESERVED}&=+$,;?/]+)@)?({_HOST})(?::([0-9]{{1,5}}))?"
# The same for the addr-spec form of a header (no <...>), where the URI cannot hold ';', '?'
# or ',' (RFC 3261 section 20.10): what follows ';' is a header parameter.
FAST_SIP_ADDR_SPEC = rf"(?:([{_UNRESERVED}&=+$/]+)@)?({_HOST})(?::([0-9]{{1,5}}))?"
FAST_SIP_PARAMS = rf"((?:;[{_UNRESERVED}\[\]/:&+$]+(?:=[{_UNRESERVED}\[\]/:&+$]+)?)*)"
_FAST_SIP_RE = re.compile(FAST_SIP_ADDR + FAST_SIP_PARAMS)

# Characters that may stay literal when serialising each part (the rest is %-escaped).
_USER_SAFE = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE = "-_.!~*'()&=+$,"
_PARAM_SAFE = "-_.!~*'()[]/:&+$"
_HEADER_SAFE = "-_.!~*'()[]/?:+$"
_LITERAL_RE = {
    safe: re.compile("[A-Za-z0-9" + re.escape(safe) + "]*")
    for safe in (_USER_SAFE, _PASSWORD_SAFE, _PARAM_SAFE, _HEADER_SAFE)
}
_USER_LITERAL_RE = _LITERAL_RE[_USER_SAFE]
_PARAM_LITERAL_RE = _LITERAL_RE[_PARAM_SAFE]

# Section 19.1.4: these uri-parameters must match even when only one URI has them.
_ALWAYS_COMPARED = ("user", "ttl", "method", "maddr", "transport")

Param = tuple[str, str | None]


def bounded_int(text: str, maximum: int) -> int | None:
    """The value of ``text`` if it is 1*DIGIT (ASCII) and at most ``maximum``, else None.

    Never int() of a long digit string: slow, and refused past 4300 digits with a ValueError
    that would escape as something other than a ParseError.
    """
    if not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > 20:
        return None
    value = int(digits)
    return value if value <= maximum else None


def _unescape(text: str) -> str:
    return unquote(text, errors="surrogateescape") if "%" in text else text


def _escape(text: str, safe: str) -> str:
    if _LITERAL_RE[safe].fullmatch(text):
        return text
    return quote(text, safe=safe, errors="surrogateescape")


@dataclass(slots=True, eq=False)
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

    __hash__: ClassVar[None]  # type: ignore[assignment]  # mutable: not a dict key

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
        names = {name.lower() for name in params}
        kept = [(k, v) for k, v in self.params if k.lower() not in names]
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

    def __eq__(self, other: object) -> bool:
        """URI equality of RFC 3261 section 19.1.4."""
        if not isinstance(other, SipUri):
            return NotImplemented
        if (self.scheme.lower(), self.user, self.password, self.host.lower(), self.port) != (
            other.scheme.lower(),
            other.user,
            other.password,
            other.host.lower(),
            other.port,
        ):
            return False
        mine, theirs = _lowered(self.params), _lowered(other.params)
        for name in mine.keys() & theirs.keys():
            if mine[name] != theirs[name]:
                return False
        for name in _ALWAYS_COMPARED:
            if (name in mine) != (name in theirs):
                return False
        return _lowered_headers(self.headers) == _lowered_headers(other.headers)

    def __str__(self) -> str:
        user = self.user
        if not self.headers and self.password is None:
            # The usual sip:user@host:port;param=value: f-strings when nothing needs escaping.
            port = "" if self.port is None else f":{self.port}"
            if user is None:
                head = f"{self.scheme}:{self.host}{port}"
            elif _USER_LITERAL_RE.fullmatch(user):
                head = f"{self.scheme}:{user}@{self.host}{port}"
            else:
                head = ""
            if head:
                if not self.params:
                    return head
                out, literal = [head], _PARAM_LITERAL_RE.fullmatch
                for key, value in self.params:
                    if value is None and literal(key):
                        out.append(f";{key}")
                    elif value is not None and literal(key) and literal(value):
                        out.append(f";{key}={value}")
                    else:
                        break
                else:
                    return "".join(out)
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


def _lowered(params: list[Param]) -> dict[str, str | None]:
    # A repeated parameter is malformed; the first one wins, as in SipUri.param.
    result: dict[str, str | None] = {}
    for key, value in params:
        result.setdefault(key.lower(), None if value is None else value.lower())
    return result


def _lowered_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((name.lower(), value.lower()) for name, value in headers)


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
    if text.startswith("sip:"):
        fast = _FAST_SIP_RE.fullmatch(text, 4)
        if fast is not None and (uri := sip_uri_from_fast("sip", *fast.groups())) is not None:
            return uri
        return _parse_sip_general("sip", text[4:], text)
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise ParseError(f"URI {text[:80]!r}: missing or invalid scheme")
    lscheme = scheme.lower()
    if lscheme not in ("sip", "sips"):
        if not rest:
            raise ParseError(f"URI {text[:80]!r}: nothing after the scheme")
        if not _OPAQUE_RE.fullmatch(rest):
            raise ParseError(f"URI {text[:80]!r}: whitespace, '<', '>' or '\"' in the URI")
        return AbsoluteUri(scheme, rest)
    fast = _FAST_SIP_RE.fullmatch(rest)
    if fast is not None and (uri := sip_uri_from_fast(lscheme, *fast.groups())) is not None:
        return uri
    return _parse_sip_general(lscheme, rest, text)


def sip_uri_from_fast(
    scheme: str, user: str | None, host: str, port_text: str | None, params_text: str | None
) -> SipUri | None:
    """The SipUri of a match of ``FAST_SIP_ADDR`` (+ ``FAST_SIP_PARAMS``): nothing to unescape.
    None for a port above 65535: the general parser words that error."""
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            return None
    params: list[Param] = []
    if params_text:
        for param in params_text[1:].split(";"):
            name, equals, value = param.partition("=")
            params.append((name, value if equals else None))
    return SipUri(host, user, None, port, scheme, params, [])


def _parse_sip_general(scheme: str, rest: str, text: str) -> SipUri:
    user = password = None
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        if not _USER_RE.fullmatch(user_text):
            raise ParseError(f"URI {text[:80]!r}: invalid user part {user_text[:40]!r}")
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
        if not close:
            raise ParseError(f"URI {text[:80]!r}: unterminated IPv6 reference")
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
    port = bounded_int(port_text, 65535)
    if port is None:
        raise ParseError(f"URI {text[:80]!r}: invalid port {port_text[:20]!r}")
    return host, port


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
