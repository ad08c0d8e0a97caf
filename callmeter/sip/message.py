"""SIP messages (RFC 3261 section 7): parsing, validation and serialisation.

``parse_message(data)`` returns a :class:`Request` or :class:`Response` or raises
:class:`~callmeter.sip.errors.ParseError` naming what is wrong. It validates every header the
stack models, so a message that a UAS would have to answer with 400 (or a UAC silently drop)
never gets past it: see :func:`validate`. The header section is decoded as UTF-8 with
``surrogateescape`` so any byte survives a round trip; the body is kept as bytes, framed by
Content-Length (a datagram's trailing bytes beyond it are ignored, RFC 3261 section 18.3).

Validation parses each typed header once and leaves the result in the ``Headers.typed``
cache, so ``message.via``, ``message.from_``... cost a dict lookup afterwards. The work for
one message is bounded: at most ``MAX_MESSAGE_BYTES``, every regex linear (no nested
backtracking), no ``int()`` of an unbounded digit string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import ClassVar

from callmeter.sip.errors import LocalProtocolError, ParseError
from callmeter.sip.headers import (
    TOKEN_RE,
    CSeq,
    Headers,
    NameAddr,
    Via,
    bounded_int,
    header_title,
    parse_params,
)
from callmeter.sip.uri import SipUri, Uri, parse_uri

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

# Headers every message carries (RFC 3261 section 8.1.1).
MANDATORY = ("via", "from", "to", "call-id", "cseq")
# Headers that must appear at most once (RFC 3261 section 7.3.1 and table 2).
SINGLE_VALUE = ("from", "to", "call-id", "cseq", "max-forwards", "expires", "content-type")
# Token-list headers checked on parse (section 20: Allow, Supported, Require, Proxy-Require).
TOKEN_LISTS = ("allow", "supported", "require", "proxy-require")

_COMMON_METHODS = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO",
     "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH")
)  # fmt: skip
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
# Call-ID = word ["@" word]; after "@" anything printable is let through (an opaque id).
_CALL_ID_RE = re.compile(rf"{_WORD}(?:@[^\s@]+)?")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MEDIA_TYPE_RE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)")
# RFC 3261 section 20.17 / RFC 1123: "Sat, 13 Nov 2010 23:29:00 GMT", GMT only.
_SIP_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)
_QVALUE_RE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_DELTA_SECONDS_MAX = 2**32 - 1


# Parsers for ``Headers.typed``: each reads one header, returns an immutable value.
def _vias(headers: Headers) -> tuple[Via, ...]:
    values = headers.values("via")
    if len(values) == 1:
        return (Via.parse(values[0]),)
    return tuple([Via.parse(v) for v in values])


def _from(headers: Headers) -> NameAddr:
    return NameAddr.parse(_first(headers, "from"), "From")


def _to(headers: Headers) -> NameAddr:
    return NameAddr.parse(_first(headers, "to"), "To")


def _cseq(headers: Headers) -> CSeq:
    return CSeq.parse(_first(headers, "cseq"))


def _first(headers: Headers, key: str) -> str:
    """The first value of the header with canonical name ``key``; ParseError if absent."""
    values = headers.by_name().get(key)
    if values is None:
        raise ParseError(f"missing {header_title(key)} header")
    return values[0]


def _contacts(headers: Headers) -> tuple[NameAddr, ...]:
    values = headers.values("contact")
    if "*" in values:
        if len(values) > 1:
            raise ParseError("Contact: '*' must be the only Contact value")
        return ()
    contacts = tuple([NameAddr.parse(v, "Contact") for v in values])
    for contact in contacts:
        for name, value in contact.params:
            _check_contact_param(name.lower(), value)
    return contacts


def _check_contact_param(name: str, value: str | None) -> None:
    """RFC 3261 section 20.10: ``q`` is a qvalue, ``expires`` delta-seconds."""
    if name == "q" and (value is None or not _QVALUE_RE.fullmatch(value)):
        raise ParseError(f"Contact: q={value or ''} is not a qvalue from 0 to 1")
    if name == "expires" and (value is None or bounded_int(value, _DELTA_SECONDS_MAX) is None):
        shown = (value or "")[:30]
        raise ParseError(
            f"Contact: expires={shown} is not an integer from 0 to {_DELTA_SECONDS_MAX}"
        )


def _routes(headers: Headers) -> tuple[NameAddr, ...]:
    return tuple([NameAddr.parse(v, "Route") for v in headers.values("route")])


def _record_routes(headers: Headers) -> tuple[NameAddr, ...]:
    return tuple([NameAddr.parse(v, "Record-Route") for v in headers.values("record-route")])


def _media_type(headers: Headers) -> str | None:
    values = headers.by_name().get("content-type")
    if values is None:
        return None
    value = values[0]
    match = _MEDIA_TYPE_RE.match(value)
    if match is None:
        raise ParseError(f"Content-Type: expected 'type/subtype', got {value[:60]!r}")
    if match.end() < len(value):
        parse_params(value[match.end() :], "Content-Type")
    return f"{match.group(1)}/{match.group(2)}".lower()


def _header_int(headers: Headers, name: str, maximum: int) -> int | None:
    value = headers.get(name)
    return None if value is None else _check_int(name, value, maximum)


def _check_int(name: str, value: str, maximum: int) -> int:
    number = bounded_int(value, maximum)
    if number is None:
        raise ParseError(f"{name}: {value[:30]!r} is not an integer from 0 to {maximum}")
    return number


class Message:
    """What requests and responses share: headers, body and typed header access."""

    __slots__ = ("body", "headers")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body

    # Typed access to the headers the stack uses; each parses once and is cached. Lists are
    # fresh copies: changing one does not change the message (change ``headers`` instead).
    @property
    def via(self) -> list[Via]:
        return list(self.headers.typed("via", _vias))

    @property
    def top_via(self) -> Via:
        """The first Via (what transactions match on); ParseError when there is none."""
        vias = self.headers.typed("via", _vias)
        if not vias:
            raise ParseError("missing Via header")
        return vias[0]

    @property
    def from_(self) -> NameAddr:
        return self.headers.typed("from", _from)

    @property
    def to(self) -> NameAddr:
        return self.headers.typed("to", _to)

    @property
    def call_id(self) -> str:
        values = self.headers.by_name().get("call-id")
        if not values:
            raise ParseError("missing Call-ID header")
        return values[0]

    @property
    def cseq(self) -> CSeq:
        return self.headers.typed("cseq", _cseq)

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values (empty for ``Contact: *``, see :attr:`contact_is_star`)."""
        return list(self.headers.typed("contact", _contacts))

    @property
    def contact_is_star(self) -> bool:
        return [v.strip() for v in self.headers.get_all("contact")] == ["*"]

    @property
    def routes(self) -> list[NameAddr]:
        return list(self.headers.typed("route", _routes))

    @property
    def record_routes(self) -> list[NameAddr]:
        return list(self.headers.typed("record-route", _record_routes))

    @property
    def max_forwards(self) -> int | None:
        return _header_int(self.headers, "Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        return _header_int(self.headers, "Expires", _DELTA_SECONDS_MAX)

    @property
    def content_type(self) -> str | None:
        """The media type, lowercased, without parameters: ``application/sdp``."""
        return self.headers.typed("content-type", _media_type)

    @property
    def content_length(self) -> int | None:
        """The Content-Length header's value (parse_message checked it frames the body)."""
        value = self.headers.get("content-length")
        return None if value is None else bounded_int(value, MAX_MESSAGE_BYTES)

    def tokens(self, name: str) -> list[str]:
        """Values of a token-list header (Allow, Supported, Require), lowercased."""
        return [v.lower() for v in self.headers.values(name)]

    def _start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """The message as bytes; Content-Length is always the body's true length."""
        lines = [self._start_line(), *self.headers.wire_lines(len(self.body))]
        head = "\r\n".join(lines)
        # A CR or LF inside a value would smuggle a header line (or end the section early).
        if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
            raise LocalProtocolError("CR or LF inside the start line or a header value")
        return (head + "\r\n\r\n").encode("utf-8", "surrogateescape") + self.body

    def _comparable(self) -> tuple[object, ...]:
        headers = [
            (n.lower(), v) for n, v in self.headers if n.lower() not in ("content-length", "l")
        ]
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
        self.headers = headers if headers is not None else Headers()
        self.body = body
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
        self.headers = headers if headers is not None else Headers()
        self.body = body
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
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # CRLFs before the start line are ignored (section 7.5)
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
    if text.count("\r") != len(lines) - 1 or text.count("\n") != len(lines) - 1:
        raise ParseError("bare CR or LF in the header section (lines must end in CRLF)")
    headers = Headers.from_lines(lines[1:])
    body = _frame_body(headers, rest)
    start = lines[0]
    message: Request | Response
    if start[:4].upper() == "SIP/":
        message = _parse_status_line(start, headers, body)
    else:
        message = _parse_request_line(start, headers, body)
    validate(message)
    return message


def _frame_body(headers: Headers, rest: bytes) -> bytes:
    values = headers.by_name().get("content-length")
    if values is None:
        return rest  # UDP semantics: the body is the rest of the datagram
    if len(values) == 1:
        value = values[0]
        if len(value) < 10 and value.isdigit() and value.isascii():
            size = int(value)
            if size <= len(rest):
                return rest[:size] if size < len(rest) else rest
    for value in values:
        if not value.isascii() or not value.isdigit():
            raise ParseError(f"Content-Length {value[:20]!r} is not a non-negative integer")
    if len(values) > 1 and len({v.lstrip("0") for v in values}) > 1:
        raise ParseError(f"conflicting Content-Length values: {', '.join(values)[:60]}")
    length = bounded_int(values[0], len(rest))
    if length is None:
        raise ParseError(
            f"Content-Length {values[0][:20]} is larger than the {len(rest)} body bytes"
        )
    return rest[:length]


def _parse_request_line(start: str, headers: Headers, body: bytes) -> Request:
    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        raise ParseError(_request_line_problem(start, parts))
    method, uri_text, version = parts
    if method not in _COMMON_METHODS and not TOKEN_RE.fullmatch(method):
        raise ParseError(f"invalid method {method[:40]!r}")
    if version != SIP_VERSION and version.upper() != SIP_VERSION:
        if version[:4].upper() == "SIP/":
            raise ParseError(f"unsupported SIP version {version[:20]!r}", status=505)
        raise ParseError(f"request line: {version[:20]!r} is not a SIP version")
    if uri_text.startswith("<"):
        raise ParseError(f"Request-URI {uri_text[:80]!r} must not be enclosed in <...>")
    try:
        uri = parse_uri(uri_text)
    except ParseError as exc:
        raise ParseError(f"Request-URI: {exc}") from None
    if isinstance(uri, SipUri) and uri.headers:
        raise ParseError(f"Request-URI {uri_text[:80]!r} must not carry headers")
    return Request(method, uri, headers, body)


def _request_line_problem(start: str, parts: list[str]) -> str:
    if start != start.rstrip(" \t"):
        return f"request line: trailing whitespace in {start[:80]!r}"
    if start != start.lstrip(" \t"):
        return f"request line: leading whitespace in {start[:80]!r}"
    if "" in parts or "\t" in start:
        return f"request line: elements must be separated by a single SP in {start[:80]!r}"
    if len(parts) > 3 and parts[-1][:4].upper() == "SIP/":
        uri_text = " ".join(parts[1:-1])
        return f"request line: whitespace inside the Request-URI {uri_text[:80]!r}"
    return f"malformed request line {start[:80]!r} (expected 'Method SP Request-URI SP SIP/2.0')"


def _parse_status_line(start: str, headers: Headers, body: bytes) -> Response:
    known = _STATUS_LINES.get(start)
    if known is not None:
        return Response(known[0], known[1], headers, body)
    status, reason = _status_and_reason(start)
    if len(start) <= 64:
        if len(_STATUS_LINES) >= 256:
            _STATUS_LINES.clear()
        _STATUS_LINES[start] = (status, reason)
    return Response(status, reason, headers, body)


# Memo of status lines that parsed cleanly ("SIP/2.0 200 OK"): a load test sees a handful.
_STATUS_LINES: dict[str, tuple[int, str]] = {}


def _status_and_reason(start: str) -> tuple[int, str]:
    version, _, rest = start.partition(" ")
    if version.upper() != SIP_VERSION:
        raise ParseError(f"unsupported SIP version {version[:20]!r}", status=505)
    code, _, reason = rest.partition(" ")
    if not (len(code) == 3 and code.isascii() and code.isdigit() and "100" <= code <= "699"):
        if not code:
            raise ParseError(f"malformed status line {start[:80]!r}")
        raise ParseError(f"status code {code[:20]!r} is not from 100 to 699")
    if _CONTROL_RE.search(reason):
        raise ParseError(f"control character in the reason phrase {reason[:60]!r}")
    return int(code), reason


def validate(message: Request | Response) -> None:
    """Check the headers the stack models; raise ParseError naming the first problem.

    Mandatory in every message: Via, From, To, Call-ID, CSeq (RFC 3261 section 8.1.1); a
    request's CSeq method must equal its method (RFC 4475 3.1.2.17); single-value headers
    must not repeat (RFC 4475 3.3.8). The typed values parsed here stay cached.
    """
    headers = message.headers
    by_name = headers.by_name()
    keys = by_name.keys()
    if not keys >= _MANDATORY_SET:
        missing = [header_title(name) for name in MANDATORY if name not in by_name]
        raise ParseError(f"missing mandatory header(s): {', '.join(missing)}")
    if len(headers) != len(by_name):  # some header has several lines
        repeated = [header_title(n) for n in SINGLE_VALUE if len(by_name.get(n, ())) > 1]
        if repeated:
            raise ParseError(f"single-value header(s) repeated: {', '.join(repeated)}")
    # The typed parsers, called directly (the mandatory headers are there) and cached.
    prime = headers.prime
    prime("via", _vias, _vias(headers))
    prime("from", _from, NameAddr.parse(by_name["from"][0], "From"))
    prime("to", _to, NameAddr.parse(by_name["to"][0], "To"))
    call_id = by_name["call-id"][0]
    if not _CALL_ID_RE.fullmatch(call_id):
        if not call_id:
            raise ParseError("Call-ID: empty value")
        raise ParseError(f"Call-ID: invalid value {call_id[:60]!r}")
    cseq = prime("cseq", _cseq, CSeq.parse(by_name["cseq"][0]))
    if isinstance(message, Request) and cseq.method != message.method:
        raise ParseError(
            f"CSeq method {cseq.method!r} does not match the request method {message.method!r}"
        )
    present = keys & _OPTIONAL_SET
    if not present:
        return
    if len(present) == 1:
        name = present.pop()
        _OPTIONAL_CHECKS[name](headers, by_name[name])
        return
    for name, check in _OPTIONAL_CHECKS.items():  # in this order: the first problem is named
        if name in present:
            check(headers, by_name[name])


def _check_max_forwards(_: Headers, values: Sequence[str]) -> None:
    _check_int("Max-Forwards", values[0], 255)


def _check_expires(_: Headers, values: Sequence[str]) -> None:
    _check_int("Expires", values[0], _DELTA_SECONDS_MAX)


def _check_typed(
    name: str, parse: Callable[[Headers], object]
) -> Callable[[Headers, Sequence[str]], None]:
    """A check that parses the header into the typed cache (the UA reads it from there)."""

    def check(headers: Headers, _: Sequence[str]) -> None:
        headers.typed(name, parse)

    return check


def _check_tokens(name: str) -> Callable[[Headers, Sequence[str]], None]:
    def check(headers: Headers, _: Sequence[str]) -> None:
        for value in headers.values(name):
            if not TOKEN_RE.fullmatch(value):
                raise ParseError(f"{header_title(name)}: invalid token {value[:40]!r}")

    return check


def _check_dates(_: Headers, values: Sequence[str]) -> None:
    for value in values:
        if not _SIP_DATE_RE.fullmatch(value):
            raise ParseError(f"Date: {value[:40]!r} is not an RFC 1123 date in GMT")


_MANDATORY_SET = frozenset(MANDATORY)
# Headers checked only when present, in this order: canonical name -> check(headers, values).
_OPTIONAL_CHECKS: dict[str, Callable[[Headers, Sequence[str]], None]] = {
    "max-forwards": _check_max_forwards,
    "expires": _check_expires,
    "contact": _check_typed("contact", _contacts),
    "route": _check_typed("route", _routes),
    "record-route": _check_typed("record-route", _record_routes),
    "content-type": _check_typed("content-type", _media_type),
    **{name: _check_tokens(name) for name in TOKEN_LISTS},
    "date": _check_dates,
}
_OPTIONAL_SET = frozenset(_OPTIONAL_CHECKS)
