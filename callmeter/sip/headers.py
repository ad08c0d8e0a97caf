"""SIP header fields (RFC 3261 sections 7.3 and 20): the ordered header list and the typed
values the stack uses (Via, name-addr for From/To/Contact/Route, CSeq).

:class:`Headers` keeps every header line with its raw name, in order, duplicates included;
lookups are case-insensitive and accept compact forms (``v`` is ``Via``). Comma-separated
multi-value headers are split with quoted strings and ``<...>`` respected. Written by hand: no
maintained library parses SIP headers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from callmeter.sip.errors import ParseError
from callmeter.sip.uri import SipUri, Uri, parse_uri

__all__ = [
    "CSeq",
    "Headers",
    "NameAddr",
    "Params",
    "Via",
    "canonical_name",
    "parse_params",
    "split_values",
]

T = TypeVar("T")
Params = tuple[tuple[str, str | None], ...]

# RFC 3261 section 7.3.3 and the IANA registry: compact form -> full name.
COMPACT_FORMS = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# Headers whose value is a comma-separated list (RFC 3261 section 7.3.1).
MULTI_VALUE = frozenset(
    {
        "via", "contact", "route", "record-route", "allow", "supported", "require",
        "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "content-encoding", "alert-info", "call-info", "error-info", "in-reply-to",
        "allow-events", "path", "service-route",
    }
)  # fmt: skip

TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_LWS = " \t"


def canonical_name(name: str) -> str:
    """Lowercase full header name: ``canonical_name("V") == "via"``."""
    lower = name.lower()
    return COMPACT_FORMS.get(lower, lower)


class Headers:
    """Ordered header lines: ``(raw name, value)``, duplicates kept, lookup case-insensitive.

    Typed values parsed from a header are cached until that header changes.
    """

    __slots__ = ("_cache", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = [(canonical_name(n), n, v) for n, v in items]
        self._cache: dict[str, object] = {}

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((raw, value) for _, raw, value in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name)
        return any(k == key for k, _, _ in self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first line named ``name``."""
        key = canonical_name(name)
        for k, _, value in self._items:
            if k == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """The values of every line named ``name``, each line as it is."""
        key = canonical_name(name)
        return [value for k, _, value in self._items if k == key]

    def values(self, name: str) -> list[str]:
        """Every value of a multi-value header, split on commas across all its lines."""
        return [v for line in self.get_all(name) for v in split_values(line)]

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), name, value))
        self._cache.pop(canonical_name(name), None)

    def prepend(self, name: str, value: str) -> None:
        """Insert a line before the first line of the same header (or at the top)."""
        key = canonical_name(name)
        index = next((i for i, (k, _, _) in enumerate(self._items) if k == key), 0)
        self._items.insert(index, (key, name, value))
        self._cache.pop(key, None)

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` by one line (kept where the first one was)."""
        key = canonical_name(name)
        index = next((i for i, (k, _, _) in enumerate(self._items) if k == key), None)
        self.remove(name)
        entry = (key, name, value)
        if index is None:
            self._items.append(entry)
        else:
            self._items.insert(index, entry)

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [item for item in self._items if item[0] != key]
        self._cache.pop(key, None)

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first value of a multi-value header (e.g. the top Via)."""
        key = canonical_name(name)
        for index, (k, raw, line) in enumerate(self._items):
            if k == key:
                first, *rest = split_values(line)
                if rest:
                    self._items[index] = (k, raw, ", ".join(rest))
                else:
                    del self._items[index]
                self._cache.pop(key, None)
                return first
        return None

    def copy(self) -> Headers:
        new = Headers()
        new._items = list(self._items)
        return new

    def typed(self, name: str, parse: Callable[[Headers], T]) -> T:
        """``parse(self)`` cached under ``name`` until a line of that header changes."""
        key = canonical_name(name)
        try:
            return self._cache[key]  # type: ignore[return-value]
        except KeyError:
            value = self._cache[key] = parse(self)
            return value


def split_values(value: str) -> list[str]:
    """Split a header value on commas outside quoted strings and ``<...>``; strip each part.

    Raises ParseError for an unterminated quoted string or an empty element.
    """
    if "," not in value and '"' not in value:
        stripped = value.strip(_LWS)
        if not stripped:
            raise ParseError(f"empty value in {value!r}")
        return [stripped]
    parts: list[str] = []
    start = index = 0
    length = len(value)
    while index < length:
        char = value[index]
        if char == '"':
            index = _skip_quoted(value, index)
            continue
        if char == "<":
            close = value.find(">", index)
            if close < 0:
                raise ParseError(f"unterminated '<' in {value[:80]!r}")
            index = close
        elif char == ",":
            parts.append(value[start:index])
            start = index + 1
        index += 1
    parts.append(value[start:])
    stripped = [part.strip(_LWS) for part in parts]
    if not all(stripped):
        raise ParseError(f"empty element in comma-separated value {value[:80]!r}")
    return stripped


def _skip_quoted(value: str, index: int) -> int:
    """Index just past the quoted string starting at ``value[index] == '"'``."""
    index += 1
    length = len(value)
    while index < length:
        char = value[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            return index + 1
        index += 1
    raise ParseError(f"unterminated quoted string in {value[:80]!r}")


_GEN_VALUE_RE = re.compile(r'[A-Za-z0-9\-.!%*_+`\'~:\[\]]+|"(?:[^"\\]|\\.)*"')


def parse_params(text: str, what: str) -> Params:
    """Parse ``;name=value;flag...`` (RFC 3261 generic-param) after the main value."""
    params: list[tuple[str, str | None]] = []
    if not text.strip(_LWS):
        return ()
    if not text.lstrip(_LWS).startswith(";"):
        raise ParseError(f"{what}: unexpected {text.strip(_LWS)[:40]!r}")
    for item in _split_semicolons(text.lstrip(_LWS)[1:], what):
        name, equals, value = item.partition("=")
        name, value = name.strip(_LWS), value.strip(_LWS)
        if not TOKEN_RE.fullmatch(name) or (equals and not _GEN_VALUE_RE.fullmatch(value)):
            raise ParseError(f"{what}: invalid parameter {item.strip(_LWS)[:40]!r}")
        params.append((name, value if equals else None))
    return tuple(params)


def _split_semicolons(text: str, what: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    items, start, index = [], 0, 0
    while index < len(text):
        if text[index] == '"':
            index = _skip_quoted(text, index)
            continue
        if text[index] == ";":
            items.append(text[start:index])
            start = index + 1
        index += 1
    items.append(text[start:])
    return items


def _param(params: Params, name: str) -> str | None:
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return "" if value is None else value
    return None


def _format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


_SENT_PROTOCOL_RE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
    r"(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
)


@dataclass(slots=True, frozen=True)
class Via:
    """One Via value (RFC 3261 section 20.42): ``SIP/2.0/UDP host:port;branch=...``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    version: str = "2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        match = _SENT_PROTOCOL_RE.match(text.strip(_LWS))
        if match is None:
            raise ParseError(f"Via: invalid value {text[:80]!r}")
        name, version, transport, host, port = match.groups()
        if name.upper() != "SIP":
            raise ParseError(f"Via: protocol {name!r} is not SIP")
        if port is not None and int(port) > 65535:
            raise ParseError(f"Via: invalid port {port}")
        rest = text.strip(_LWS)[match.end() :]
        params = parse_params(rest, "Via")
        return cls(transport.upper(), host, None if port is None else int(port), params, version)

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return _param(self.params, "received")

    @property
    def rport(self) -> int | None:
        """The ``rport`` value filled in by the server (None if absent or empty)."""
        value = _param(self.params, "rport")
        return int(value) if value and value.isdigit() else None

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/{self.version}/{self.transport} {self.host}{port}{_format_params(self.params)}"


_DISPLAY_TOKENS_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*")


@dataclass(slots=True, frozen=True)
class NameAddr:
    """A name-addr or addr-spec with header parameters: From, To, Contact, Route
    (RFC 3261 sections 20.10, 20.20, 20.39). ``display_name`` has quotes and escapes removed.
    ``Contact: *`` is not a NameAddr: see ``Message.contact_is_star``."""

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str, what: str = "name-addr") -> NameAddr:
        text = text.strip(_LWS)
        display: str | None = None
        if text.startswith('"'):
            end = _skip_quoted(text, 0)
            display = re.sub(r"\\(.)", r"\1", text[1 : end - 1], flags=re.DOTALL)
            text = text[end:].lstrip(_LWS)
            if not text.startswith("<"):
                raise ParseError(f"{what}: expected '<' after the display name")
        elif "<" in text:
            before, _, _ = text.partition("<")
            before = before.strip(_LWS)
            if before and not _DISPLAY_TOKENS_RE.fullmatch(before):
                raise ParseError(f"{what}: invalid display name {before[:40]!r}")
            display = before or None
            text = text[text.index("<") :]
        if text.startswith("<"):
            close = text.find(">")
            if close < 0:
                raise ParseError(f"{what}: missing '>' in {text[:80]!r}")
            uri_text, rest = text[1:close], text[close + 1 :]
            if uri_text != uri_text.strip(_LWS):
                raise ParseError(f"{what}: whitespace inside <...>")
        else:
            # addr-spec form: parameters after ';' belong to the header, not the URI.
            uri_text, semi, rest = text.partition(";")
            uri_text, rest = uri_text.rstrip(_LWS), semi + rest
            if "?" in uri_text or "," in uri_text:
                raise ParseError(f"{what}: a URI with headers or commas needs <...>")
        if any(c in uri_text for c in " \t"):
            raise ParseError(f"{what}: whitespace inside the URI {uri_text[:60]!r}")
        return cls(parse_uri(uri_text), display, parse_params(rest, what))

    @property
    def tag(self) -> str | None:
        return _param(self.params, "tag")

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    def with_tag(self, tag: str) -> NameAddr:
        params = tuple((k, v) for k, v in self.params if k.lower() != "tag")
        return NameAddr(self.uri, self.display_name, (*params, ("tag", tag)))

    @property
    def sip_uri(self) -> SipUri:
        """The URI when it is a SIP/SIPS URI; ParseError otherwise (the stack needs one)."""
        if not isinstance(self.uri, SipUri):
            raise ParseError(f"expected a sip: or sips: URI, got {str(self.uri)[:60]!r}")
        return self.uri

    def __str__(self) -> str:
        if self.display_name is not None:
            escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            head = f'"{escaped}" <{self.uri}>'
        else:
            head = f"<{self.uri}>"
        return head + _format_params(self.params)


@dataclass(slots=True, frozen=True)
class CSeq:
    """CSeq (RFC 3261 section 20.16): a sequence number below 2**31 and the method."""

    seq: int
    method: str

    MAX = 2**31 - 1

    @classmethod
    def parse(cls, text: str) -> CSeq:
        if not text.strip():
            raise ParseError("CSeq: empty value")
        number, *method_part = text.split(None, 1)
        method = method_part[0].strip(_LWS) if method_part else ""
        if not number.isascii() or not number.isdigit() or len(number) > 12:
            raise ParseError(f"CSeq: invalid sequence number {number[:20]!r}")
        if int(number) > cls.MAX:
            raise ParseError(f"CSeq: sequence number {number[:20]} is larger than 2**31 - 1")
        if not TOKEN_RE.fullmatch(method):
            raise ParseError(f"CSeq: invalid method {method[:20]!r}")
        return cls(int(number), method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"
