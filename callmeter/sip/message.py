"""SIP messages (RFC 3261 section 7): parsing, validation and serialisation.

``parse_message(data)`` returns a :class:`Request` or :class:`Response` or raises
:class:`~callmeter.sip.errors.ParseError` naming what is wrong. It validates every header the
stack models, so a message that a UAS would have to answer with 400 (or a UAC silently drop)
never gets past it: see :func:`validate`. The header section is decoded as UTF-8 with
``surrogateescape`` so any byte survives a round trip; the body is kept as bytes, framed by
Content-Length (a datagram's trailing bytes beyond it are ignored, RFC 3261 section 18.3).
"""

from __future__ import annotations

import re
from typing import ClassVar

from callmeter.sip.errors import ParseError
from callmeter.sip.headers import (
    MULTI_VALUE,
    TOKEN_RE,
    CSeq,
    Headers,
    NameAddr,
    Via,
)
from callmeter.sip.uri import Uri, parse_uri

__all__ = ["REASON_PHRASES", "Message", "Request", "Response", "parse_message", "validate"]

SIP_VERSION = "SIP/2.0"
MAX_MESSAGE_BYTES = 65535 * 4  # a bound on the work done for one message

REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}  # fmt: skip

# Headers that must appear at most once (RFC 3261 section 7.3.1 and table 2).
SINGLE_VALUE = ("from", "to", "call-id", "cseq", "max-forwards", "expires", "content-type")
_CALL_ID_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[^\s@]+)?")
_STATUS_RE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9]) (.*)", re.DOTALL | re.IGNORECASE)


def _vias(headers: Headers) -> list[Via]:
    return [Via.parse(v) for v in headers.values("via")]


def _name_addrs(name: str) -> _NameAddrList:
    return _NameAddrList(name)


class _NameAddrList:
    """Parser of a name-addr list header (Contact, Route, Record-Route) for ``Headers.typed``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, headers: Headers) -> list[NameAddr]:
        values = headers.values(self.name)
        if self.name == "contact" and values == ["*"]:
            return []
        return [NameAddr.parse(v, self.name.title()) for v in values]


_CONTACTS, _ROUTES, _RECORD_ROUTES = (
    _name_addrs("contact"),
    _name_addrs("route"),
    _name_addrs("record-route"),
)


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise ParseError(f"missing {name} header")
    return value


def _from(headers: Headers) -> NameAddr:
    return NameAddr.parse(_required(headers, "From"), "From")


def _to(headers: Headers) -> NameAddr:
    return NameAddr.parse(_required(headers, "To"), "To")


def _cseq(headers: Headers) -> CSeq:
    return CSeq.parse(_required(headers, "CSeq"))


def _bounded_int(headers: Headers, name: str, maximum: int) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 12 or int(value) > maximum:
        raise ParseError(f"{name}: {value[:30]!r} is not an integer from 0 to {maximum}")
    return int(value)


class Message:
    """What requests and responses share: headers, body and typed header access."""

    __slots__ = ("body", "headers")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body

    # Typed access to the headers the stack uses; each parses once and is cached.
    @property
    def via(self) -> list[Via]:
        return self.headers.typed("via", _vias)

    @property
    def from_(self) -> NameAddr:
        return self.headers.typed("from", _from)

    @property
    def to(self) -> NameAddr:
        return self.headers.typed("to", _to)

    @property
    def call_id(self) -> str:
        return _required(self.headers, "Call-ID").strip()

    @property
    def cseq(self) -> CSeq:
        return self.headers.typed("cseq", _cseq)

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values (empty for ``Contact: *``, see :attr:`contact_is_star`)."""
        return self.headers.typed("contact", _CONTACTS)

    @property
    def contact_is_star(self) -> bool:
        return [v.strip() for v in self.headers.get_all("contact")] == ["*"]

    @property
    def routes(self) -> list[NameAddr]:
        return self.headers.typed("route", _ROUTES)

    @property
    def record_routes(self) -> list[NameAddr]:
        return self.headers.typed("record-route", _RECORD_ROUTES)

    @property
    def max_forwards(self) -> int | None:
        return _bounded_int(self.headers, "Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        return _bounded_int(self.headers, "Expires", 2**32 - 1)

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return None if value is None else value.split(";")[0].strip().lower()

    def tokens(self, name: str) -> list[str]:
        """Values of a token-list header (Allow, Supported, Require), lowercased."""
        return [v.lower() for v in self.headers.values(name)]

    def _start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """The message as bytes; Content-Length is always the body's true length."""
        lines = [self._start_line()]
        length_written = False
        for raw, value in self.headers:
            if raw.lower() in ("content-length", "l"):
                if length_written:
                    continue
                value, length_written = str(len(self.body)), True
            lines.append(f"{raw}: {value}")
        if not length_written:
            lines.append(f"Content-Length: {len(self.body)}")
        lines += ["", ""]
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def _comparable(self) -> tuple[object, ...]:
        headers = [(n.lower(), v) for n, v in self.headers if n.lower() not in ("content-length", "l")]
        return (self._start_line(), headers, self.body)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return type(self) is type(other) and self._comparable() == other._comparable()

    __hash__: ClassVar[None]  # type: ignore[assignment]


class Request(Message):
    """A SIP request. ``uri`` is the Request-URI."""

    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: Uri, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.headers.get('call-id')}>"


class Response(Message):
    """A SIP response with status code 100-699."""

    __slots__ = ("reason", "status")

    def __init__(
        self, status: int, reason: str | None = None, headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:  # fmt: skip
        super().__init__(headers, body)
        self.status = status
        self.reason = REASON_PHRASES.get(status, "") if reason is None else reason

    def _start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.headers.get('call-id')}>"


def parse_message(data: bytes) -> Request | Response:
    """Parse and validate one SIP message (a datagram, or one message framed from a stream)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ParseError(f"message of {len(data)} bytes is larger than {MAX_MESSAGE_BYTES}")
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, rest = data[:end], data[end + 4 :]
    else:
        # No empty line: a header section with no body (tolerated, e.g. RFC 4475 baddn).
        head, rest = data.rstrip(b"\r\n"), b""
    if not head.strip():
        raise ParseError("empty message")
    text = head.decode("utf-8", "surrogateescape")
    lines = text.split("\r\n")
    start, header_lines = lines[0], lines[1:]
    headers = Headers(_parse_header_lines(header_lines))
    body = _frame_body(headers, rest)
    message: Request | Response
    if start[:8].upper() == "SIP/2.0 ":
        message = _parse_status_line(start, headers, body)
    else:
        message = _parse_request_line(start, headers, body)
    validate(message)
    return message


def _parse_header_lines(lines: list[str]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not items:
                raise ParseError("continuation line before the first header")
            name, value = items[-1]
            items[-1] = (name, (value + " " + line.strip(" \t")).strip(" \t"))
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ParseError(f"header line without a colon: {line[:60]!r}")
        name = name.rstrip(" \t")
        if not TOKEN_RE.fullmatch(name):
            raise ParseError(f"invalid header name {name[:40]!r}")
        items.append((name, value.strip(" \t")))
    return items


def _frame_body(headers: Headers, rest: bytes) -> bytes:
    lengths = {value.strip() for value in headers.get_all("content-length")}
    if not lengths:
        return rest  # UDP semantics: the body is the rest of the datagram
    if len(lengths) > 1:
        raise ParseError(f"conflicting Content-Length values {sorted(lengths)}")
    (value,) = lengths
    if not value.isascii() or not value.isdigit():
        raise ParseError(f"Content-Length {value[:20]!r} is not a non-negative integer")
    length = int(value)
    if length > len(rest):
        raise ParseError(f"Content-Length {length} is larger than the {len(rest)} body bytes")
    return rest[:length]


_METHOD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


def _parse_request_line(start: str, headers: Headers, body: bytes) -> Request:
    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        raise ParseError(f"malformed request line {start[:80]!r}")
    method, uri_text, version = parts
    if not _METHOD_RE.fullmatch(method):
        raise ParseError(f"invalid method {method[:40]!r}")
    if version.upper() != SIP_VERSION:
        if version[:4].upper() == "SIP/":
            raise ParseError(f"unsupported SIP version {version[:20]!r}", status=505)
        raise ParseError(f"malformed request line {start[:80]!r}")
    uri = parse_uri(uri_text)
    if getattr(uri, "headers", None):
        raise ParseError("Request-URI must not carry headers")
    return Request(method, uri, headers, body)


def _parse_status_line(start: str, headers: Headers, body: bytes) -> Response:
    match = _STATUS_RE.fullmatch(start)
    if match is None:
        raise ParseError(f"malformed status line {start[:80]!r}")
    return Response(int(match.group(1)), match.group(2), headers, body)


def validate(message: Request | Response) -> None:
    """Check the headers the stack models; raise ParseError naming the first problem.

    Mandatory in every message: Via, From, To, Call-ID, CSeq (RFC 3261 section 8.1.1); a
    request's CSeq method must equal its method (RFC 4475 3.1.2.17); single-value headers
    must not repeat (RFC 4475 3.3.8).
    """
    headers = message.headers
    for name in SINGLE_VALUE:
        if len(headers.get_all(name)) > 1:
            raise ParseError(f"more than one {name} header")
    if not message.via:
        raise ParseError("missing Via header")
    message.from_, message.to  # noqa: B018  (parse and validate)
    if not _CALL_ID_RE.fullmatch(message.call_id):
        raise ParseError(f"invalid Call-ID {message.call_id[:60]!r}")
    cseq = message.cseq
    if isinstance(message, Request) and cseq.method != message.method:
        raise ParseError(f"CSeq method {cseq.method!r} does not match {message.method!r}")
    message.max_forwards, message.expires  # noqa: B018
    if "contact" in headers and not message.contact_is_star:
        message.contacts  # noqa: B018
    message.routes, message.record_routes  # noqa: B018
    for name in MULTI_VALUE & {"allow", "supported", "require"}:
        for value in headers.values(name):
            if not TOKEN_RE.fullmatch(value):
                raise ParseError(f"{name}: invalid token {value[:40]!r}")

