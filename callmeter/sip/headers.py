"""SIP header fields (RFC 3261 sections 7.3 and 20): the ordered header list and the typed
values the stack uses (Via, name-addr for From/To/Contact/Route, CSeq).

:class:`Headers` keeps every header line with its raw name, in order, duplicates included;
lookups are case-insensitive and accept compact forms (``v`` is ``Via``). Comma-separated
multi-value headers are split with quoted strings and ``<...>`` respected. Written by hand: no
maintained library parses SIP headers.

Speed: every typed parser tries one precompiled regex for the common shape first (no quoting,
no escapes, no LWS around separators) and falls back to the general parser, which accepts the
whole grammar and is the one that words the error. Both give the same result for any input the
fast regex accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from callmeter.sip.errors import ParseError
from callmeter.sip.uri import (
    FAST_SIP_ADDR,
    FAST_SIP_ADDR_SPEC,
    FAST_SIP_PARAMS,
    SipUri,
    Uri,
    bounded_int,
    parse_uri,
    sip_uri_from_fast,
)

__all__ = [
    "CSeq",
    "Headers",
    "NameAddr",
    "Params",
    "Via",
    "bounded_int",
    "canonical_name",
    "header_title",
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

# List headers whose grammar allows an empty value (``Allow:``, ``Supported:``, ``Accept:``).
EMPTY_LIST_OK = frozenset({"allow", "supported", "accept", "accept-encoding", "accept-language"})

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(_TOKEN)
_LWS = " \t"
# gen-value = token / host / quoted-string (section 25.1); unquoted form only.
_GEN = r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+"
_PARAMS_FAST = rf"(?:;{_TOKEN}(?:={_GEN})?)*"
_PARAMS_FAST_RE = re.compile(_PARAMS_FAST)

# Spelling of a header in error messages where ``.title()`` would get it wrong.
_TITLES = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
}

# Memo of canonical names: a load test sees the same few dozen header names all day.
_MEMO_LIMIT, _MEMO_KEY_CHARS = 1024, 64
_CANONICAL: dict[str, str] = {}
_PARSED_NAMES: dict[str, tuple[str, str]] = {}  # text before ':' -> (canonical, raw name)


def canonical_name(name: str) -> str:
    """Lowercase full header name: ``canonical_name("V") == "via"``."""
    known = _CANONICAL.get(name)
    if known is not None:
        return known
    lower = name.lower()
    result = COMPACT_FORMS.get(lower, lower)
    if len(name) <= _MEMO_KEY_CHARS and len(_CANONICAL) < _MEMO_LIMIT:
        _CANONICAL[name] = result
    return result


def header_title(name: str) -> str:
    """The usual spelling of a header for messages: ``header_title("i") == "Call-ID"``."""
    key = canonical_name(name)
    return _TITLES.get(key) or key.title()


def _parse_name(text: str) -> tuple[str, str]:
    """``(canonical, raw)`` for the text before a header line's colon (HCOLON allows LWS)."""
    known = _PARSED_NAMES.get(text)
    if known is not None:
        return known
    raw = text.rstrip(_LWS)
    if not TOKEN_RE.fullmatch(raw):
        raise ParseError(f"invalid header name {raw[:40]!r}")
    result = (canonical_name(raw), raw)
    if len(text) <= _MEMO_KEY_CHARS and len(_PARSED_NAMES) < _MEMO_LIMIT:
        _PARSED_NAMES[text] = result
    return result


_NO_VALUES: tuple[str, ...] = ()

# Memo of typed values by header text. A load test sees the same CSeq, Contact and
# Content-Type in every call, and each call's From, To and Via come back in its 1xx, 2xx and
# the BYE's answer: a dict hit costs ~0.1 us where a parse costs 1.5 to 4 us. Only values
# that parsed cleanly are kept (errors are raised afresh, worded for the header at hand), the
# key length is bounded and the memo is emptied when full, so hostile traffic only costs
# misses. Values are shared between messages: treat them as read-only, as ``typed`` says.
_VALUE_MEMO_LIMIT, _VALUE_KEY_CHARS = 4096, 256


def _remember(memo: dict[str, T], text: str, value: T) -> T:
    """Keep ``value``, parsed cleanly from ``text``, in ``memo`` (callers look it up first:
    a load test sees the same few header values in every call). Errors are never remembered;
    the memo is bounded and emptied when full."""
    if len(text) <= _VALUE_KEY_CHARS:
        if len(memo) >= _VALUE_MEMO_LIMIT:
            memo.clear()
        memo[text] = value
    return value


class Headers:
    """Ordered header lines: ``(raw name, value)``, duplicates kept, lookup case-insensitive.

    Typed values parsed from a header are cached until that header changes.
    """

    __slots__ = ("_cache", "_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # (canonical name, raw name, value), in wire order
        self._items: list[tuple[str, str, str]] = [(canonical_name(n), n, v) for n, v in items]
        # canonical name -> values, built on the first lookup, dropped on every change
        self._index: dict[str, list[str]] | None = None
        # parser -> (canonical name of the header it reads, typed value): one dict lookup on
        # a hit; a change of a header drops the entries of that header only
        self._cache: dict[object, tuple[str, object]] = {}

    @classmethod
    def from_canonical(cls, items: list[tuple[str, str, str]]) -> Headers:
        """Headers from ``(canonical name, raw name, value)`` triples, taken as they are (the
        list is kept, not copied): for code that builds messages from known header names
        (``canonical_name(raw)`` must be the first element) and skips the name lookups."""
        headers = cls.__new__(cls)
        headers._items, headers._index, headers._cache = items, None, {}
        return headers

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> Headers:
        """Parse header lines (without their CRLF): unfold continuation lines (RFC 3261
        section 7.3.1), check each name is a token, strip LWS around each value."""
        lines = lines if isinstance(lines, list) else list(lines)
        items: list[tuple[str, str, str]] = []
        index: dict[str, list[str]] = {}
        known_names, lws, append = _PARSED_NAMES, _LWS, items.append
        for line in lines:
            name_text, colon, value = line.partition(":")
            known = known_names.get(name_text) if colon else None
            if known is None:
                if line[:1] in (" ", "\t"):
                    return cls.from_lines(_unfold(lines))
                if not colon:
                    raise ParseError(f"header line without a colon: {line[:60]!r}")
                known = _parse_name(name_text)
            key, raw = known
            value = value.strip(lws)
            append((key, raw, value))
            same = index.get(key)
            if same is None:
                index[key] = [value]
            else:
                same.append(value)
        headers = cls.__new__(cls)
        headers._items, headers._index, headers._cache = items, index, {}
        return headers

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((raw, value) for _, raw, value in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return bool(self._lookup(canonical_name(name)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def _lookup(self, key: str) -> Sequence[str]:
        index = self._index
        if index is None:
            index = {}
            for k, _, value in self._items:
                if k in index:
                    index[k].append(value)
                else:
                    index[k] = [value]
            self._index = index
        return index.get(key, _NO_VALUES)

    def _changed(self, key: str) -> None:
        self._index = None
        cache = self._cache
        if cache:
            for parse in [p for p, (k, _) in cache.items() if k == key]:
                del cache[parse]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first line named ``name``."""
        values = self._lookup(_CANONICAL.get(name) or canonical_name(name))
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """The values of every line named ``name``, each line as it is."""
        return list(self._lookup(canonical_name(name)))

    def by_name(self) -> Mapping[str, Sequence[str]]:
        """Canonical name -> the values of its lines, in order: a snapshot, valid until the
        next change (one lookup structure for code that checks many headers at once)."""
        index = self._index
        if index is None:
            self._lookup("")
            index = self._index
            assert index is not None
        return index

    def count(self, name: str) -> int:
        """How many lines named ``name`` there are."""
        return len(self._lookup(canonical_name(name)))

    def values(self, name: str) -> list[str]:
        """Every value of a multi-value header, split on commas across all its lines.

        Raises ParseError, naming the header, for an empty element or value (an empty line is
        allowed where the grammar allows it: Allow, Supported, Accept...).
        """
        key = _CANONICAL.get(name) or canonical_name(name)
        lines = self._lookup(key)
        if len(lines) == 1:
            # One line with one value (a Via, a Contact): what split_values would return.
            line = lines[0]
            if line and "," not in line and '"' not in line and line == line.strip(_LWS):
                return [line]
        result: list[str] = []
        try:
            for line in lines:
                if key in EMPTY_LIST_OK and not line.strip(_LWS):
                    continue
                result += split_values(line)
        except ParseError as exc:
            raise ParseError(f"{header_title(key)}: {exc}") from None
        return result

    def add(self, name: str, value: str) -> None:
        key = canonical_name(name)
        self._items.append((key, name, value))
        self._changed(key)

    def prepend(self, name: str, value: str) -> None:
        """Insert a line before the first line of the same header (or at the top)."""
        key = canonical_name(name)
        index = next((i for i, (k, _, _) in enumerate(self._items) if k == key), 0)
        self._items.insert(index, (key, name, value))
        self._changed(key)

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
        self._changed(key)

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [item for item in self._items if item[0] != key]
        self._changed(key)

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
                self._changed(key)
                return first
        return None

    def wire_lines(self, content_length: int) -> list[str]:
        """``Name: value`` for each line, in order, for serialisation: the first Content-Length
        line says ``content_length`` (one is appended if there is none), later ones are dropped.
        """
        lines = []
        length_written = False
        for key, raw, value in self._items:
            if key == "content-length":
                if length_written:
                    continue
                value, length_written = str(content_length), True
            lines.append(f"{raw}: {value}" if value else f"{raw}:")
        if not length_written:
            lines.append(f"Content-Length: {content_length}")
        return lines

    def copy(self) -> Headers:
        new = Headers()
        new._items = list(self._items)
        return new

    def typed(self, name: str, parse: Callable[[Headers], T]) -> T:
        """``parse(self)`` cached under ``name`` until a line of that header changes.

        ``parse`` must read only the header ``name``. Two parsers of one header have separate
        entries. Cached values are shared: treat them as read-only.
        """
        hit = self._cache.get(parse)
        if hit is not None:
            return hit[1]  # type: ignore[return-value]
        value = parse(self)
        self._cache[parse] = (_CANONICAL.get(name) or canonical_name(name), value)
        return value

    def prime(self, key: str, parse: Callable[[Headers], T], value: T) -> T:
        """Cache ``value`` as what ``typed(key, parse)`` returns: for a caller that parsed the
        header itself (``key`` is the canonical name, ``value`` what ``parse`` would give)."""
        self._cache[parse] = (key, value)
        return value


def _unfold(lines: list[str]) -> list[str]:
    """Join each continuation line to the line before it with one SP (section 7.3.1)."""
    if lines and lines[0][:1] in (" ", "\t"):
        raise ParseError("continuation line before the first header")
    unfolded: list[list[str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            unfolded[-1].append(line.strip(_LWS))
        else:
            unfolded.append([line.rstrip(_LWS)])
    return [" ".join(part for part in parts if part) for parts in unfolded]


_SPECIAL_RE = re.compile(r'[",<]')
# Possessive quantifiers: no backtracking, linear on any input.
_QUOTED_RE = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)


def split_values(value: str) -> list[str]:
    """Split a header value on commas outside quoted strings and ``<...>``; strip each part.

    Raises ParseError for an unterminated quoted string or an empty element.
    """
    if "," not in value and '"' not in value:
        stripped = value.strip(_LWS)
        if not stripped:
            raise ParseError("empty value")
        return [stripped]
    parts: list[str] = []
    start = index = 0
    while (special := _SPECIAL_RE.search(value, index)) is not None:
        char, index = special.group(), special.start()
        if char == '"':
            index = _skip_quoted(value, index)
        elif char == "<":
            close = value.find(">", index)
            if close < 0:
                raise ParseError(f"unterminated '<' in {value[:80]!r}")
            index = close + 1
        else:
            parts.append(value[start:index])
            start = index = index + 1
    parts.append(value[start:])
    elements = [part.strip(_LWS) for part in parts]
    if not all(elements):
        raise ParseError(f"empty element in comma-separated value {value[:80]!r}")
    return elements


def _skip_quoted(value: str, index: int) -> int:
    """Index just past the quoted string starting at ``value[index] == '"'``."""
    match = _QUOTED_RE.match(value, index)
    if match is None:
        raise ParseError(f"unterminated quoted string in {value[:80]!r}")
    return match.end()


_GEN_VALUE_RE = re.compile(rf'{_GEN}|"(?:[^"\\]++|\\.)*+"', re.DOTALL)


def parse_params(text: str, what: str) -> Params:
    """Parse ``;name=value;flag...`` (RFC 3261 generic-param) after the main value."""
    if _PARAMS_FAST_RE.fullmatch(text):
        return _split_fast_params(text)
    if not text.strip(_LWS):
        return ()
    if not text.lstrip(_LWS).startswith(";"):
        raise ParseError(f"{what}: unexpected {text.strip(_LWS)[:40]!r}")
    params: list[tuple[str, str | None]] = []
    for item in _split_semicolons(text.lstrip(_LWS)[1:]):
        name, equals, value = item.partition("=")
        name, value = name.strip(_LWS), value.strip(_LWS)
        if not TOKEN_RE.fullmatch(name) or (equals and not _GEN_VALUE_RE.fullmatch(value)):
            raise ParseError(f"{what}: invalid parameter {item.strip(_LWS)[:40]!r}")
        params.append((name, value if equals else None))
    return tuple(params)


def _split_fast_params(text: str) -> Params:
    """The params of a string that matched ``_PARAMS_FAST``."""
    if not text:
        return ()
    params = []
    for item in text[1:].split(";"):
        name, equals, value = item.partition("=")
        params.append((name, value if equals else None))
    return tuple(params)


_SEMICOLON_OR_QUOTE_RE = re.compile(r'[";]')


def _split_semicolons(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    items, start, index = [], 0, 0
    while (found := _SEMICOLON_OR_QUOTE_RE.search(text, index)) is not None:
        index = found.start()
        if found.group() == '"':
            index = _skip_quoted(text, index)
        else:
            items.append(text[start:index])
            start = index = index + 1
    items.append(text[start:])
    return items


def _param(params: Params, name: str) -> str | None:
    lname = name.lower()
    for key, value in params:
        if key == lname or key.lower() == lname:
            return "" if value is None else value
    return None


def _format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


_VIA_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+"
# The common shape, "SIP/2.0/UDP host:port" then _PARAMS_FAST: none of it holds a ';', so the
# text before the first ';' is the sent-protocol and sent-by, the rest the parameters.
_VIA_HEAD_RE = re.compile(rf"SIP/2\.0/({_TOKEN}) ({_VIA_HOST})(?::([0-9]{{1,5}}))?")
_SENT_PROTOCOL_RE = re.compile(
    rf"({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]+({_VIA_HOST})"
    r"(?:[ \t]*:[ \t]*([0-9]+))?"
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
        known = _VIA_MEMO.get(text)
        return known if known is not None else _remember(_VIA_MEMO, text, cls._parse(text))

    @classmethod
    def _parse(cls, text: str) -> Via:
        # Fast path: each call's Via differs from the last one only in its branch, so the
        # sent-by before the first ';' is remembered apart from the parameters.
        end = text.find(";")
        head = text if end < 0 else text[:end]
        sent_by = _VIA_SENT_BY_MEMO.get(head)
        if sent_by is None:
            fast = _VIA_HEAD_RE.fullmatch(head)
            if fast is not None and _PARAMS_FAST_RE.fullmatch(text, len(head)):
                transport, host, port_text = fast.groups()
                port = None
                if port_text is not None:
                    port = bounded_int(port_text, 65535)
                    if port is None:
                        raise ParseError(f"Via: invalid port {port_text[:20]}")
                sent_by = _remember(_VIA_SENT_BY_MEMO, head, (transport.upper(), host, port))
        elif not _PARAMS_FAST_RE.fullmatch(text, len(head)):
            sent_by = None
        if sent_by is not None:
            params_text = text[len(head) :]
            params = _split_fast_params(params_text)
            if "rport=" in params_text.lower():
                _check_rport(params)
            return cls(sent_by[0], sent_by[1], sent_by[2], params, "2.0")
        return cls._parse_general(text)

    @classmethod
    def _parse_general(cls, text: str) -> Via:
        text = text.strip(_LWS)
        match = _SENT_PROTOCOL_RE.match(text)
        if match is None:
            raise ParseError(f"Via: expected 'SIP/2.0/transport host', got {text[:80]!r}")
        name, version, transport, host, port_text = match.groups()
        if name.upper() != "SIP":
            raise ParseError(f"Via: protocol {name[:20]!r} is not SIP")
        params = parse_params(text[match.end() :], "Via")
        port = None
        if port_text is not None:
            port = bounded_int(port_text, 65535)
            if port is None:
                raise ParseError(f"Via: invalid port {port_text[:20]}")
        _check_rport(params)
        return cls(transport.upper(), host, port, params, version)

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
        return bounded_int(value, 65535) if value else None

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/{self.version}/{self.transport} {self.host}{port}{_format_params(self.params)}"


_VIA_MEMO: dict[str, Via] = {}
_VIA_SENT_BY_MEMO: dict[str, tuple[str, str, int | None]] = {}  # head -> transport, host, port


def _check_rport(params: Params) -> None:
    for name, value in params:
        # RFC 3581: rport = "rport" [EQUAL 1*DIGIT]
        if value and name.lower() == "rport" and not _is_port(value):
            raise ParseError(f"Via: invalid rport {value[:20]!r}")


def _is_port(text: str) -> bool:
    return bounded_int(text, 65535) is not None


_DISPLAY_TOKENS = rf"{_TOKEN}(?:[ \t]+{_TOKEN})*"
_DISPLAY_TOKENS_RE = re.compile(_DISPLAY_TOKENS)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)
# name-addr with a plain sip: URI: ["display" | tokens] <sip:...> (no escapes anywhere), then
# _PARAMS_FAST. Neither the URI nor those parameters hold a '>': the text up to the last '>'
# is the head, the rest the parameters.
_NAME_ADDR_HEAD_RE = re.compile(
    rf'(?:"([^"\\]*)"[ \t]*|({_DISPLAY_TOKENS})[ \t]*)?'
    rf"<sip:{FAST_SIP_ADDR}{FAST_SIP_PARAMS}>"
)
# addr-spec with a plain sip: URI: sip:user@host ;params
_ADDR_SPEC_FAST_RE = re.compile(rf"sip:{FAST_SIP_ADDR_SPEC}({_PARAMS_FAST})")


def _parse_uri_in(text: str, what: str) -> Uri:
    try:
        return parse_uri(text)
    except ParseError as exc:
        raise ParseError(f"{what}: {exc}") from None


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
        known = _NAME_ADDR_MEMO.get(text)
        if known is not None:
            return known
        return _remember(_NAME_ADDR_MEMO, text, cls._parse(text, what))

    @classmethod
    def _parse(cls, text: str, what: str) -> NameAddr:
        # Fast path: a From or To differs from call to call only in its tag, so the
        # ``"display" <uri>`` head is remembered apart from the parameters.
        end = text.rfind(">") + 1
        if end and _PARAMS_FAST_RE.fullmatch(text, end):
            head = text[:end]
            known = _NAME_ADDR_HEAD_MEMO.get(head)
            if known is None:
                fast = _NAME_ADDR_HEAD_RE.fullmatch(head)
                if fast is not None:
                    quoted, tokens, user, host, port, uri_params = fast.groups()
                    uri = sip_uri_from_fast("sip", user, host, port, uri_params)
                    if uri is not None:
                        display = quoted if quoted is not None else tokens
                        known = _remember(_NAME_ADDR_HEAD_MEMO, head, (uri, display))
            if known is not None:
                tail = _split_fast_params(text[end:]) if end < len(text) else ()
                return cls(known[0], known[1], tail)
        fast = _ADDR_SPEC_FAST_RE.fullmatch(text)
        if fast is not None:
            user, host, port, params = fast.groups()
            uri = sip_uri_from_fast("sip", user, host, port, None)
            if uri is not None:
                return cls(uri, None, _split_fast_params(params) if params else ())
        return cls._parse_general(text, what)

    @classmethod
    def _parse_general(cls, text: str, what: str) -> NameAddr:
        text = text.strip(_LWS)
        if not text:
            raise ParseError(f"{what}: empty value")
        display: str | None = None
        if text.startswith('"'):
            try:
                end = _skip_quoted(text, 0)
            except ParseError as exc:
                raise ParseError(f"{what}: {exc}") from None
            display = _QUOTED_PAIR_RE.sub(r"\1", text[1 : end - 1])
            text = text[end:].lstrip(_LWS)
            if not text.startswith("<"):
                raise ParseError(f"{what}: expected '<' after the display name")
        elif "<" in text:
            before, _, _ = text.partition("<")
            before = before.strip(_LWS)
            if before and not _DISPLAY_TOKENS_RE.fullmatch(before):
                raise ParseError(f"{what}: display name {before[:40]!r} must be quoted")
            display = before or None
            text = text[text.index("<") :]
        if text.startswith("<"):
            close = text.find(">")
            if close < 0:
                raise ParseError(f"{what}: missing '>' in {text[:80]!r}")
            uri_text, rest = text[1:close], text[close + 1 :]
            if uri_text != uri_text.strip(_LWS):
                raise ParseError(f"{what}: whitespace inside <...> in {text[: close + 1][:80]!r}")
        else:
            # addr-spec form: parameters after ';' belong to the header, not the URI.
            uri_text, semi, rest = text.partition(";")
            uri_text, rest = uri_text.rstrip(_LWS), semi + rest
            if "?" in uri_text or "," in uri_text:
                raise ParseError(
                    f"{what}: URI {uri_text[:60]!r} with '?' or ',' must be enclosed in <...>"
                )
        if any(c in uri_text for c in " \t"):
            raise ParseError(f"{what}: whitespace inside the URI {uri_text[:60]!r}")
        return cls(_parse_uri_in(uri_text, what), display, parse_params(rest, what))

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


_NAME_ADDR_MEMO: dict[str, NameAddr] = {}
_NAME_ADDR_HEAD_MEMO: dict[str, tuple[Uri, str | None]] = {}  # head -> uri, display name
_CSEQ_FAST_RE = re.compile(rf"([0-9]{{1,10}}) ({_TOKEN})")
_CSEQ_SPLIT_RE = re.compile(r"([^ \t]*)[ \t]*(.*)", re.DOTALL)


@dataclass(slots=True, frozen=True)
class CSeq:
    """CSeq (RFC 3261 section 20.16): a sequence number below 2**31 and the method."""

    seq: int
    method: str

    MAX = 2**31 - 1

    @classmethod
    def parse(cls, text: str) -> CSeq:
        known = _CSEQ_MEMO.get(text)
        return known if known is not None else _remember(_CSEQ_MEMO, text, cls._parse(text))

    @classmethod
    def _parse(cls, text: str) -> CSeq:
        fast = _CSEQ_FAST_RE.fullmatch(text)
        if fast is not None:
            number, method = fast.groups()
        else:
            split = _CSEQ_SPLIT_RE.fullmatch(text.strip(_LWS))
            assert split is not None  # the regex matches any string
            number, method = split.groups()
            if not number:
                raise ParseError("CSeq: empty value")
            if not number.isascii() or not number.isdigit():
                raise ParseError(f"CSeq: invalid sequence number {number[:20]!r}")
            if not method:
                raise ParseError("CSeq: missing method")
            if not TOKEN_RE.fullmatch(method):
                raise ParseError(f"CSeq: invalid method {method[:20]!r}")
        seq = bounded_int(number, cls.MAX)
        if seq is None:
            raise ParseError(f"CSeq: sequence number {number[:24]} is larger than 2**31 - 1")
        return cls(seq, method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


_CSEQ_MEMO: dict[str, CSeq] = {}
