"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for audio calls, sans-I/O.

Theory of operation
-------------------
:func:`parse` turns a body into a frozen :class:`SessionDescription`; ``serialize()`` turns it
back into CRLF-terminated bytes, and ``parse(x.serialize()) == x`` for every description that
parses. Lines keep their values and order: attributes in order, unknown attributes and unknown
line types kept (lines other than v/o/s/c/t/m/a are stored in the order RFC 4566 section 5
lists them). LF-only input is accepted; a last line without its line end, a line that is not
``<type>=<value>``, bad numbers, address types or typed attributes raise
:class:`~callmeter.sip.errors.ParseError` naming the line (``SDP line 5: m= port 'abc' is not
a number``). Work is linear in the input and bounded by ``MAX_SDP_BYTES``.

Typed views (``rtpmap``, ``fmtp``, ``ptime``, ``direction``, ``rtcp``, ``rtcp_mux``) read the
attributes on demand; values are validated at parse time, so a parsed description never raises
from a view. Static payload types (RFC 3551 section 6) need no ``a=rtpmap``.

Offer/answer: :func:`make_offer` lists our codecs in preference order with telephone-event
(RFC 4733). :func:`make_answer` answers the first usable audio stream with the common codecs in
*our* preference order, keeping the offer's payload type numbers (RFC 3264 section 6.1), mirrors
the direction (section 6.1), rejects every other stream with port 0 (section 6) and returns a
:class:`NegotiationFailure` (488, RFC 3261 section 21.4.26) instead of raising when nothing is
common. :func:`negotiated` reduces an offer and its answer to the :class:`Negotiated` values the
media engine needs. :class:`SdpOfferAnswer` plugs all this into the user agent's
``OfferAnswer`` protocol, one state per Call-ID; a re-offer or re-answer in the same call keeps
the o= session id and increments the version (RFC 3264 section 8).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypedDict

from callmeter.sip.errors import ParseError

__all__ = [
    "CODECS",
    "CONTENT_TYPE",
    "DEFAULT_PTIME_MS",
    "DIRECTIONS",
    "MAX_SDP_BYTES",
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Body",
    "Codec",
    "Connection",
    "Direction",
    "MediaDescription",
    "Negotiated",
    "NegotiationFailure",
    "Origin",
    "Rtcp",
    "RtpMap",
    "SdpOfferAnswer",
    "SessionDescription",
    "make_answer",
    "make_offer",
    "negotiated",
    "parse",
]

CONTENT_TYPE = "application/sdp"  # RFC 4566 section 8.1
MAX_SDP_BYTES = 65535  # a bound on the work for one body: no real SDP comes near it
DEFAULT_PTIME_MS = 20  # RFC 3551 section 4.5: default packetization of audio
DTMF_EVENTS = "0-16"  # RFC 4733 section 3.2: DTMF digits 0-9, *, #, A-D and flash
DYNAMIC_PAYLOAD_TYPES = range(96, 128)  # RFC 3551 section 6
PREFERRED_DYNAMIC = {"opus": 111, "telephone-event": 101}  # common numbering, eases traces
NOT_AUDIO_CODECS = frozenset({"telephone-event", "cn", "red", "ulpfec"})  # never "the codec"
_NO_ADDRESS = "no c= address for the audio stream"  # RFC 4566 section 5.7 requires one
REJECT_STATUS = 488  # RFC 3261 section 21.4.26 Not Acceptable Here
UNSUPPORTED_MEDIA_TYPE = 415  # RFC 3261 section 21.4.13
BAD_REQUEST = 400

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: dict[str, tuple[bool, bool]] = {  # RFC 4566 section 6: name -> (send, receive)
    "sendrecv": (True, True),
    "sendonly": (True, False),
    "recvonly": (False, True),
    "inactive": (False, False),
}
_BY_BITS: dict[tuple[bool, bool], Direction] = {
    (True, True): "sendrecv",
    (True, False): "sendonly",
    (False, True): "recvonly",
    (False, False): "inactive",
}
ADDRESS_TYPES = ("IP4", "IP6")  # RFC 4566 section 5.7
Address = tuple[str, int]
Body = tuple[str, bytes]  # (content type, bytes), as in callmeter.sip.useragent

_LINE = re.compile(r"([a-z])=(.*)")
_NUMBER = re.compile(r"\d{1,20}")
_MS = re.compile(r"\d{1,6}(?:\.\d{0,6})?")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 4566 token-char
_BAD_CHARS = re.compile(r"[\x00\r\n]")
_SESSION_RANK = {letter: rank for rank, letter in enumerate("iuepbrzk")}  # order of section 5
_MEDIA_RANK = {letter: rank for rank, letter in enumerate("ibk")}
_SESSION_ONLY = frozenset("vosueptrz")  # never inside a media section


# -- the model ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Origin:
    """``o=`` (RFC 4566 section 5.2): the session's id and version."""

    username: str
    session_id: int
    version: int
    address: str
    address_type: str = "IP4"
    network_type: str = "IN"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.version} {self.network_type} "
            f"{self.address_type} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=`` (RFC 4566 section 5.7). ``address`` may carry ``/ttl`` for multicast."""

    address: str
    address_type: str = "IP4"
    network_type: str = "IN"

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    def __str__(self) -> str:
        return f"{self.network_type} {self.address_type} {self.address}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=name`` (a property, value None) or ``a=name:value`` (RFC 4566 section 5.13)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap`` (RFC 4566 section 6): payload type -> encoding/clock rate[/channels]."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None  # as written; None means 1 for audio

    def matches(self, other: RtpMap | Codec) -> bool:
        """Same codec: encoding names compare case-insensitively (RFC 4855 section 3)."""
        name = other.encoding if isinstance(other, RtpMap) else other.name
        return (
            self.encoding.lower() == name.lower()
            and self.clock_rate == other.clock_rate
            and (self.channels or 1) == (other.channels or 1)
        )

    def __str__(self) -> str:
        tail = "" if self.channels is None else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


@dataclass(frozen=True, slots=True)
class Rtcp:
    """``a=rtcp`` (RFC 3605): the RTCP port, and address when not the RTP one."""

    port: int
    connection: Connection | None = None


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 4566 section 5.14) with its c=, attributes and other lines."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    port_count: int | None = None  # m=audio 49170/2
    other_lines: tuple[tuple[str, str], ...] = ()  # i= b= k= and unknown types, RFC order

    def values(self, name: str) -> list[str]:
        return [a.value or "" for a in self.attributes if a.name == name]

    def has(self, name: str) -> bool:
        return any(a.name == name for a in self.attributes)

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.proto

    @property
    def payload_types(self) -> list[int]:
        """The formats as RTP payload types (validated 0-127 at parse time for RTP)."""
        return [int(f) for f in self.formats if f.isdigit()] if self.is_rtp else []

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """The explicit ``a=rtpmap`` lines by payload type (first one wins)."""
        maps: dict[int, RtpMap] = {}
        for value in self.values("rtpmap"):
            rtpmap = _parse_rtpmap(value)
            maps.setdefault(rtpmap.payload_type, rtpmap)
        return maps

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """The mapping of a payload type: its a=rtpmap, else the RFC 3551 static one."""
        return self.rtpmaps.get(payload_type) or STATIC_PAYLOAD_TYPES.get(payload_type)

    def mappings(self) -> list[RtpMap]:
        """The mapping of each payload type in m= order (dynamic ones without a=rtpmap are
        skipped); one pass over the attributes, however many formats."""
        explicit = self.rtpmaps
        found = (explicit.get(pt) or STATIC_PAYLOAD_TYPES.get(pt) for pt in self.payload_types)
        return [rtpmap for rtpmap in found if rtpmap is not None]

    def fmtp(self, payload_type: int | str) -> str | None:
        """The format parameters of ``a=fmtp:<format> <parameters>`` (RFC 4566 section 6)."""
        for value in self.values("fmtp"):
            fmt, _, params = value.partition(" ")
            if fmt == str(payload_type):
                return params.strip()
        return None

    @property
    def ptime(self) -> int | None:
        values = self.values("ptime")
        return _parse_ms("ptime", values[0]) if values else None

    @property
    def maxptime(self) -> int | None:
        values = self.values("maxptime")
        return _parse_ms("maxptime", values[0]) if values else None

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, if any (see SessionDescription.direction_of)."""
        return next((_BY_NAME[a.name] for a in self.attributes if a.name in _BY_NAME), None)

    @property
    def rtcp(self) -> Rtcp | None:
        values = self.values("rtcp")
        return _parse_rtcp(values[0]) if values else None

    @property
    def rtcp_mux(self) -> bool:
        """``a=rtcp-mux`` (RFC 5761 section 5.1.1): RTCP on the RTP port."""
        return self.has("rtcp-mux")

    @property
    def ssrc(self) -> int | None:
        """The first source the stream declares with ``a=ssrc:<id> ...`` (RFC 5576 section
        4.1), or None; a value that is not a 32-bit number is ignored, not an error."""
        for value in self.values("ssrc"):
            head = value.split(None, 1)[0] if value.strip() else ""
            if head.isdigit() and int(head) < 2**32:
                return int(head)
        return None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body (RFC 4566 section 5): session-level lines, then the media sections."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    timing: tuple[tuple[int, int], ...] = ((0, 0),)
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    other_lines: tuple[tuple[str, str], ...] = ()  # i u e p b r z k and unknown, RFC order

    def direction_of(self, media: MediaDescription) -> Direction:
        """A media-level direction overrides the session-level one; default sendrecv
        (RFC 4566 section 6, RFC 3264 section 5.1)."""
        if media.direction is not None:
            return media.direction
        found = next((_BY_NAME[a.name] for a in self.attributes if a.name in _BY_NAME), None)
        return found or "sendrecv"

    def with_version(self, version: int) -> SessionDescription:
        return replace(self, origin=replace(self.origin, version=version))

    def serialize(self) -> bytes:
        """CRLF-terminated lines in the order of RFC 4566 section 5."""
        out = ["v=0", f"o={self.origin}", f"s={self.session_name}"]
        out += _other(self.other_lines, _SESSION_RANK, "iuep")
        out += [] if self.connection is None else [f"c={self.connection}"]
        out += _other(self.other_lines, _SESSION_RANK, "b")
        out += [f"t={start} {stop}" for start, stop in self.timing]
        out += _other(self.other_lines, _SESSION_RANK, "rzk", unknown=True)
        out += [f"a={a}" for a in self.attributes]
        for m in self.media:
            count = "" if m.port_count is None else f"/{m.port_count}"
            out.append(f"m={m.media} {m.port}{count} {m.proto} {' '.join(m.formats)}")
            out += _other(m.other_lines, _MEDIA_RANK, "i")
            out += [] if m.connection is None else [f"c={m.connection}"]
            out += _other(m.other_lines, _MEDIA_RANK, "bk", unknown=True)
            out += [f"a={a}" for a in m.attributes]
        return ("\r\n".join(out) + "\r\n").encode()

    def body(self) -> Body:
        return CONTENT_TYPE, self.serialize()


_BY_NAME: dict[str, Direction] = {name: name for name in _BY_BITS.values()}


def _other(
    lines: tuple[tuple[str, str], ...], ranks: dict[str, int], letters: str, unknown: bool = False
) -> list[str]:
    return [f"{k}={v}" for k, v in lines if k in letters or (unknown and k not in ranks)]


# -- codecs -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Codec:
    """An audio codec we can offer. ``clock_rate`` is the RTP clock written in SDP;
    ``sample_rate_hz`` the audio sampling rate when it differs (G.722, RFC 3551 section 4.5.2)."""

    name: str
    clock_rate: int
    static_payload_type: int | None = None
    channels: int | None = None  # written in a=rtpmap only when set (opus: always 2)
    fmtp: str | None = None
    sample_rate_hz: int | None = None

    def rtpmap(self, payload_type: int) -> RtpMap:
        return RtpMap(payload_type, self.name, self.clock_rate, self.channels)


TELEPHONE_EVENT = Codec("telephone-event", 8000, fmtp=DTMF_EVENTS)  # RFC 4733 section 7.1.1
CODECS: dict[str, Codec] = {  # by lower-case name
    "pcmu": Codec("PCMU", 8000, 0),  # RFC 3551 section 4.5.14
    "pcma": Codec("PCMA", 8000, 8),
    "g722": Codec("G722", 8000, 9, sample_rate_hz=16000),  # section 4.5.2: 8000 by mistake
    "opus": Codec("opus", 48000, None, channels=2, sample_rate_hz=48000),  # RFC 7587 section 7
    "telephone-event": TELEPHONE_EVENT,
}
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {  # RFC 3551 section 6, table 4 (audio)
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in [
        (0, "PCMU", 8000, None), (3, "GSM", 8000, None), (4, "G723", 8000, None),
        (5, "DVI4", 8000, None), (6, "DVI4", 16000, None), (7, "LPC", 8000, None),
        (8, "PCMA", 8000, None), (9, "G722", 8000, None), (10, "L16", 44100, 2),
        (11, "L16", 44100, None), (12, "QCELP", 8000, None), (13, "CN", 8000, None),
        (14, "MPA", 90000, None), (15, "G728", 8000, None), (16, "DVI4", 11025, None),
        (17, "DVI4", 22050, None), (18, "G729", 8000, None),
    ]
}  # fmt: skip


def codec_named(name: str) -> Codec:
    """Our codec called ``name`` (case-insensitive); ValueError names the known ones."""
    codec = CODECS.get(name.lower())
    if codec is None or codec is TELEPHONE_EVENT:
        known = ", ".join(c.name for c in CODECS.values() if c is not TELEPHONE_EVENT)
        raise ValueError(f"unknown audio codec {name!r}; known: {known}")
    return codec


# -- parsing ----------------------------------------------------------------------------------
def parse(data: str | bytes) -> SessionDescription:
    """Parse an SDP body (RFC 4566 section 5); ParseError names the line and the problem."""
    lines = _lines(data)
    for number, (letter, expected) in enumerate((("v", "v=0"), ("o", "o="), ("s", "s=")), 1):
        if len(lines) < number:
            raise ParseError(f"SDP line {number}: missing {expected} line")
        if lines[number - 1][0] != letter:
            got = f"{lines[number - 1][0]}={lines[number - 1][1]}"
            raise ParseError(f"SDP line {number}: expected {expected} line, got {got[:40]!r}")
    builder = _Builder()
    for number, (letter, value) in enumerate(lines, 1):
        try:
            builder.line(number, letter, value)
        except ParseError as exc:
            raise ParseError(f"SDP line {number}: {exc}") from None
    return builder.build()


def _lines(data: str | bytes) -> list[tuple[str, str]]:
    """Split into (type, value); CRLF or LF line ends, the last line must have one."""
    if len(data) > MAX_SDP_BYTES:
        raise ParseError(f"SDP body of {len(data)} bytes is larger than {MAX_SDP_BYTES}")
    try:
        text = data.decode() if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        assert isinstance(data, bytes)
        number = data.count(b"\n", 0, exc.start) + 1
        raise ParseError(f"SDP line {number}: byte {exc.start} is not UTF-8") from None
    raw = text.split("\n")
    last = raw.pop()
    if last:
        raise ParseError(f"SDP line {len(raw) + 1}: {last[:40]!r} has no line end (CRLF)")
    texts = [line.removesuffix("\r") for line in raw]
    while texts and not texts[-1]:
        texts.pop()  # trailing empty lines: harmless padding some stacks add
    out = []
    for number, text in enumerate(texts, 1):
        if _BAD_CHARS.search(text):
            raise ParseError(f"SDP line {number}: CR or NUL inside {text[:40]!r}")
        match = _LINE.fullmatch(text)
        if match is None:
            raise ParseError(f"SDP line {number}: expected '<type>=<value>', got {text[:40]!r}")
        out.append((match[1], match[2]))
    return out


@dataclass
class _MediaBuilder:
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None
    connection: Connection | None = None
    attributes: list[Attribute] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)

    def build(self) -> MediaDescription:
        other = sorted(self.other, key=lambda kv: _MEDIA_RANK.get(kv[0], len(_MEDIA_RANK)))
        return MediaDescription(
            self.media,
            self.port,
            self.proto,
            self.formats,
            self.connection,
            tuple(self.attributes),
            self.port_count,
            tuple(other),
        )


@dataclass
class _Builder:
    """Accumulates lines 4.. of a body; lines 1-3 (v, o, s) are checked by position."""

    origin: Origin | None = None
    session_name: str = ""
    connection: Connection | None = None
    timing: list[tuple[int, int]] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)
    media: list[_MediaBuilder] = field(default_factory=list)

    def line(self, number: int, letter: str, value: str) -> None:
        if number == 1:
            if value != "0":
                raise ParseError(f"v= version {value[:20]!r} is not 0")
        elif number == 2:
            self.origin = _parse_origin(value)
        elif number == 3:
            self.session_name = value
        elif letter == "m":
            self.media.append(_parse_media(value))
        elif letter in "vos" or (self.media and letter in _SESSION_ONLY):
            where = "once, at the top" if letter in "vos" else "before the first m= line"
            raise ParseError(f"{letter}= belongs {where}")
        elif letter == "a":
            attribute = _parse_attribute(value)
            (self.media[-1].attributes if self.media else self.attributes).append(attribute)
        elif letter == "c":
            self._connection(_parse_connection(value, "c="))
        elif letter == "t":
            self.timing.append(_parse_timing(value))
        else:
            (self.media[-1].other if self.media else self.other).append((letter, value))

    def _connection(self, connection: Connection) -> None:
        owner: _MediaBuilder | _Builder = self.media[-1] if self.media else self
        if owner.connection is not None:
            raise ParseError("a second c= line in the same section")
        owner.connection = connection

    def build(self) -> SessionDescription:
        assert self.origin is not None  # line 2 was parsed
        other = sorted(self.other, key=lambda kv: _SESSION_RANK.get(kv[0], len(_SESSION_RANK)))
        return SessionDescription(
            self.origin,
            self.session_name,
            self.connection,
            tuple(self.timing),
            tuple(self.attributes),
            tuple(m.build() for m in self.media),
            tuple(other),
        )


def _number(text: str, what: str, maximum: int | None = None) -> int:
    if not _NUMBER.fullmatch(text):
        raise ParseError(f"{what} {text[:20]!r} is not a number")
    value = int(text)
    if maximum is not None and value > maximum:
        raise ParseError(f"{what} {value} is larger than {maximum}")
    return value


def _fields(value: str, count: int, what: str, form: str) -> list[str]:
    parts = value.split()
    if len(parts) != count:
        raise ParseError(f"{what} expects {count} fields '{form}', got {len(parts)}")
    return parts


def _address_type(text: str, what: str) -> str:
    if text not in ADDRESS_TYPES:
        raise ParseError(f"{what} address type {text[:20]!r} is not IP4 or IP6")
    return text


def _parse_origin(value: str) -> Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` (5.2)."""
    form = "username sess-id sess-version nettype addrtype address"
    username, sess_id, version, net, addr_type, address = _fields(value, 6, "o=", form)
    return Origin(
        username,
        _number(sess_id, "o= session id"),
        _number(version, "o= session version"),
        address,
        _address_type(addr_type, "o="),
        net,
    )


def _parse_connection(value: str, what: str) -> Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (section 5.7)."""
    net, addr_type, address = _fields(value, 3, what, "nettype addrtype address")
    return Connection(address, _address_type(addr_type, what), net)


def _parse_timing(value: str) -> tuple[int, int]:
    """``t=<start-time> <stop-time>`` (section 5.9), NTP seconds or 0."""
    start, stop = _fields(value, 2, "t=", "start-time stop-time")
    return _number(start, "t= start time"), _number(stop, "t= stop time")


def _parse_media(value: str) -> _MediaBuilder:
    """``m=<media> <port>[/<number of ports>] <proto> <fmt> ...`` (section 5.14)."""
    parts = value.split()
    if len(parts) < 4:
        raise ParseError(f"m= expects 'media port proto format...', got {value[:40]!r}")
    media, port_text, proto, *formats = parts
    port_text, slash, count_text = port_text.partition("/")
    port = _number(port_text, "m= port", 65535)
    count = _number(count_text, "m= port count", 65535) if slash else None
    if "RTP/" in proto:
        for fmt in formats:
            if not fmt.isdigit() or len(fmt) > 3 or int(fmt) > 127:
                raise ParseError(f"m= format {fmt[:20]!r} is not an RTP payload type (0-127)")
    return _MediaBuilder(media, port, proto, tuple(formats), count)


def _parse_attribute(value: str) -> Attribute:
    """``a=<attribute>`` or ``a=<attribute>:<value>`` (section 5.13); typed ones checked."""
    name, colon, rest = value.partition(":")
    if not _TOKEN.fullmatch(name):
        raise ParseError(f"a= attribute name {name[:20]!r} is not a token")
    attribute = Attribute(name, rest if colon else None)
    check = _CHECKS.get(name)
    if check is not None:
        if attribute.value is None:
            raise ParseError(f"a={name} needs a value")
        check(attribute.value)
    elif name in _BY_NAME or name == "rtcp-mux":
        if attribute.value is not None:
            raise ParseError(f"a={name} takes no value, got {attribute.value[:20]!r}")
    return attribute


def _parse_rtpmap(value: str) -> RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<parameters>]`` (section 6)."""
    pt_text, _, mapping = value.partition(" ")
    parts = mapping.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        form = "<payload type> <encoding name>/<clock rate>[/<channels>]"
        raise ParseError(f"a=rtpmap expects '{form}', got {value[:40]!r}")
    if not pt_text.isdigit() or len(pt_text) > 3 or int(pt_text) > 127:
        raise ParseError(f"a=rtpmap payload type {pt_text[:20]!r} is not a number from 0 to 127")
    rate = _number(parts[1], "a=rtpmap clock rate")
    channels = _number(parts[2], "a=rtpmap channels", 255) if len(parts) == 3 else None
    return RtpMap(int(pt_text), parts[0], rate, channels)


def _check_fmtp(value: str) -> None:
    """``a=fmtp:<format> <format specific parameters>`` (section 6)."""
    fmt = value.partition(" ")[0]
    if not _TOKEN.fullmatch(fmt):
        raise ParseError(f"a=fmtp expects '<format> <parameters>', got {value[:40]!r}")


def _parse_ms(name: str, value: str) -> int:
    """``a=ptime`` / ``a=maxptime`` (section 6): milliseconds, fractions rounded to whole ones."""
    if not _MS.fullmatch(value) or float(value) <= 0:
        raise ParseError(f"a={name} {value[:20]!r} is not a number of milliseconds")
    return max(1, round(float(value)))


def _parse_rtcp(value: str) -> Rtcp:
    """``a=rtcp:<port> [<nettype> <addrtype> <connection-address>]`` (RFC 3605 section 2.1)."""
    port_text, _, address = value.strip().partition(" ")
    port = _number(port_text, "a=rtcp port", 65535)
    connection = _parse_connection(address, "a=rtcp") if address.strip() else None
    return Rtcp(port, connection)


_CHECKS: dict[str, Callable[[str], object]] = {
    "rtpmap": _parse_rtpmap,
    "fmtp": _check_fmtp,
    "ptime": lambda v: _parse_ms("ptime", v),
    "maxptime": lambda v: _parse_ms("maxptime", v),
    "rtcp": _parse_rtcp,
}


# -- offer/answer (RFC 3264) ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NegotiationFailure:
    """No session could be agreed: answer (or end the call) with ``status``."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What the media engine needs for one audio stream, from our side of the call.

    ``payload_type`` is the number the peer declared for the codec: the one we send with
    (RFC 3264 section 5.1); answers keep the offer's numbers, so it is also the one we receive.
    ``ptime_ms`` is the peer's a=ptime (capped by its a=maxptime), else ours, else 20.
    ``direction`` is ours: sendonly means we send and do not expect media."""

    codec: str
    payload_type: int
    clock_rate: int
    channels: int
    ptime_ms: int
    local_rtp_port: int
    remote_rtp: Address
    remote_rtcp: Address
    rtcp_mux: bool
    telephone_event_pt: int | None
    direction: Direction
    fmtp: str | None = None
    remote_ssrc: int | None = None
    """The source the peer declared with ``a=ssrc`` (RFC 5576), if it did."""


def make_offer(address: str, rtp_port: int, codecs: Sequence[str], *, ptime_ms: int = 20,
               telephone_event: bool = True, direction: Direction = "sendrecv",
               rtcp_mux: bool = False, session_id: int, version: int = 1,
               username: str = "-", ssrc: tuple[int, str] | None = None,
               ) -> SessionDescription:  # fmt: skip
    """An audio offer (RFC 3264 section 5): ``codecs`` in preference order, static payload
    types where the codec has one, dynamic ones (96-127) otherwise, telephone-event last.
    ``ssrc`` (source, CNAME) is declared with ``a=ssrc`` (RFC 5576) when given."""
    if not codecs:
        raise ValueError("an offer needs at least one codec")
    chosen = [codec_named(name) for name in codecs]
    if telephone_event:
        chosen.append(TELEPHONE_EVENT)
    used = {c.static_payload_type for c in chosen if c.static_payload_type is not None}
    entries = []
    for codec in chosen:
        pt = codec.static_payload_type
        if pt is None:
            preferred = PREFERRED_DYNAMIC.get(codec.name.lower(), DYNAMIC_PAYLOAD_TYPES[0])
            pt = next(p for p in (preferred, *DYNAMIC_PAYLOAD_TYPES) if p not in used)
            used.add(pt)
        entries.append((codec.rtpmap(pt), codec.fmtp))
    media = _audio_media(rtp_port, entries, ptime_ms, direction, rtcp_mux, ssrc)
    return _session(address, username, session_id, version, (media,))


def make_answer(offer: SessionDescription, address: str, rtp_port: int,
                codecs: Sequence[str], *, ptime_ms: int = 20, telephone_event: bool = True,
                direction: Direction = "sendrecv", rtcp_mux: bool = False, session_id: int,
                version: int = 1, username: str = "-", ssrc: tuple[int, str] | None = None,
                ) -> SessionDescription | NegotiationFailure:  # fmt: skip
    """Answer ``offer`` (RFC 3264 section 6): one m= line per offered one, in order; the first
    audio RTP stream with a common codec is accepted, every other one rejected (port 0).
    The accepted stream lists the common codecs in *our* order with the offer's payload
    types, telephone-event when both support it, and the mirrored direction (6.1)."""
    supported = [codec_named(name) for name in codecs]
    streams: list[MediaDescription] = []
    failure = NegotiationFailure(REJECT_STATUS, "no audio RTP stream in the offer")
    accepted = False
    for m in offer.media:
        entries = None
        if not accepted and m.media == "audio" and m.is_rtp and m.port != 0:
            entries = _answer_entries(m, supported, telephone_event)
            if entries is None:
                failure = _no_common_codec(m, supported)
            elif m.connection is None and offer.connection is None:
                entries, failure = None, NegotiationFailure(REJECT_STATUS, _NO_ADDRESS)
        if entries is None:
            streams.append(MediaDescription(m.media, 0, m.proto, m.formats))
            continue
        ours = _intersect(direction, _mirror(offer.direction_of(m)))
        mux = rtcp_mux and m.rtcp_mux
        streams.append(_audio_media(rtp_port, entries, ptime_ms, ours, mux, ssrc))
        accepted = True
    if not accepted:
        return failure
    return _session(address, username, session_id, version, tuple(streams))


def _answer_entries(
    m: MediaDescription, supported: list[Codec], telephone_event: bool
) -> list[tuple[RtpMap, str | None]] | None:
    """The offer's mappings of our codecs, in our order; None when nothing is common."""
    offered = m.mappings()
    entries: list[tuple[RtpMap, str | None]] = []
    for codec in supported:
        match = next((rm for rm in offered if rm.matches(codec)), None)
        if match is not None:
            entries.append((codec.rtpmap(match.payload_type), codec.fmtp))
    if not entries:
        return None
    events = [rm for rm in offered if rm.encoding.lower() == "telephone-event"]
    if telephone_event and events:
        rate = entries[0][0].clock_rate  # RFC 4733 section 2.1: the rate of the audio codec
        event = next((rm for rm in events if rm.clock_rate == rate), events[0])
        entries.append((replace(event, encoding="telephone-event"), DTMF_EVENTS))
    return entries


def _no_common_codec(m: MediaDescription, supported: list[Codec]) -> NegotiationFailure:
    offered = [
        f"{rm.encoding}/{rm.clock_rate}"
        for rm in m.mappings()
        if rm.encoding.lower() not in NOT_AUDIO_CODECS
    ]
    ours = ", ".join(f"{c.name}/{c.clock_rate}" for c in supported)
    return NegotiationFailure(
        REJECT_STATUS,
        f"no common codec: offered {', '.join(offered) or 'none known'}; "
        f"supported {ours or 'none'}",
    )


def _audio_media(port: int, entries: list[tuple[RtpMap, str | None]], ptime_ms: int,
                 direction: Direction, rtcp_mux: bool,
                 ssrc: tuple[int, str] | None = None) -> MediaDescription:  # fmt: skip
    attributes = [Attribute("rtpmap", str(rm)) for rm, _ in entries]
    attributes += [Attribute("fmtp", f"{rm.payload_type} {p}") for rm, p in entries if p]
    attributes.append(Attribute("ptime", str(ptime_ms)))
    if rtcp_mux:
        attributes.append(Attribute("rtcp-mux"))
    if ssrc is not None:
        attributes.append(Attribute("ssrc", f"{ssrc[0]} cname:{ssrc[1]}"))
    attributes.append(Attribute(direction))
    formats = tuple(str(rm.payload_type) for rm, _ in entries)
    return MediaDescription("audio", port, "RTP/AVP", formats, attributes=tuple(attributes))


def _session(
    address: str, username: str, session_id: int, version: int, media: tuple[MediaDescription, ...]
) -> SessionDescription:
    address_type = "IP6" if ":" in address else "IP4"
    origin = Origin(username, session_id, version, address, address_type)
    return SessionDescription(origin, "-", Connection(address, address_type), media=media)


def _mirror(direction: Direction) -> Direction:
    """What the other side may do: their sendonly is our recvonly (RFC 3264 section 6.1)."""
    send, receive = DIRECTIONS[direction]
    return _BY_BITS[(receive, send)]


def _intersect(a: Direction, b: Direction) -> Direction:
    (send_a, recv_a), (send_b, recv_b) = DIRECTIONS[a], DIRECTIONS[b]
    return _BY_BITS[(send_a and send_b, recv_a and recv_b)]


def negotiated(
    offer: SessionDescription,
    answer: SessionDescription,
    *,
    role: Literal["offerer", "answerer"] = "offerer",
) -> Negotiated | NegotiationFailure:
    """The agreed audio stream, seen by ``role``: the first audio stream both sides kept,
    the answer's first codec that was offered (RFC 3264 section 5.1: the answerer's most
    preferred), the peer's addresses (RFC 3605 a=rtcp, RFC 5761 rtcp-mux, else port + 1)."""
    if len(answer.media) != len(offer.media):
        return NegotiationFailure(
            REJECT_STATUS,
            f"the answer has {len(answer.media)} m= lines, "
            f"the offer {len(offer.media)} (RFC 3264 section 6)",
        )
    pairs = [
        (o, a)
        for o, a in zip(offer.media, answer.media, strict=True)
        if o.media == "audio" and o.is_rtp and o.port and a.port
    ]
    if not pairs:
        return NegotiationFailure(REJECT_STATUS, "the answer accepted no audio stream")
    o, a = pairs[0]
    common = _common_codec(o, a)
    if common is None:
        return NegotiationFailure(REJECT_STATUS, "the answer has no codec of the offer")
    local_sd, local, remote_sd, remote = (
        (offer, o, answer, a) if role == "offerer" else (answer, a, offer, o)
    )
    connection = remote.connection or remote_sd.connection
    if connection is None:
        return NegotiationFailure(REJECT_STATUS, _NO_ADDRESS)
    send_pt = common[0 if role == "answerer" else 1]
    event_pt = _telephone_event(local, remote)
    mux = o.rtcp_mux and a.rtcp_mux
    return _negotiated(local_sd, local, remote_sd, remote, connection, send_pt, event_pt, mux)


def _common_codec(offer: MediaDescription, answer: MediaDescription) -> tuple[int, int] | None:
    """(offer payload type, answer payload type) of the answer's first offered codec."""
    offered: dict[tuple[str, int, int], int] = {}
    for rm in reversed(offer.mappings()):  # the first one of equal codecs wins
        offered[rm.encoding.lower(), rm.clock_rate, rm.channels or 1] = rm.payload_type
    for rm in answer.mappings():
        key = (rm.encoding.lower(), rm.clock_rate, rm.channels or 1)
        if key[0] not in NOT_AUDIO_CODECS and key in offered:
            return offered[key], rm.payload_type
    return None


def _telephone_event(local: MediaDescription, remote: MediaDescription) -> int | None:
    """The peer's telephone-event payload type, when both sides list one (RFC 4733)."""

    def events(m: MediaDescription) -> list[int]:
        return [rm.payload_type for rm in m.mappings() if rm.encoding.lower() == "telephone-event"]

    theirs = events(remote)
    return theirs[0] if theirs and events(local) else None


def _negotiated(local_sd: SessionDescription, local: MediaDescription,
                remote_sd: SessionDescription, remote: MediaDescription, connection: Connection,
                payload_type: int, event_pt: int | None, mux: bool) -> Negotiated:  # fmt: skip
    rtpmap = remote.rtpmap(payload_type)
    assert rtpmap is not None  # _common_codec found it
    known = CODECS.get(rtpmap.encoding.lower())
    ptime = remote.ptime or local.ptime or DEFAULT_PTIME_MS
    if remote.maxptime is not None:
        ptime = min(ptime, remote.maxptime)
    host, port = connection.host, remote.port
    rtcp = remote.rtcp
    if mux:
        remote_rtcp = (host, port)
    elif rtcp is not None:
        remote_rtcp = (rtcp.connection.host if rtcp.connection else host, rtcp.port)
    else:
        remote_rtcp = (host, port + 1)  # RFC 3550 section 11
    ours = _intersect(local_sd.direction_of(local), _mirror(remote_sd.direction_of(remote)))
    if host in ("0.0.0.0", "::"):  # RFC 3264 section 8.4: the old way to put us on hold
        ours = _intersect(ours, "recvonly")
    return Negotiated(
        known.name if known else rtpmap.encoding, payload_type, rtpmap.clock_rate,
        rtpmap.channels or 1, ptime, local.port, (host, port), remote_rtcp, mux, event_pt,
        ours, remote.fmtp(payload_type), remote.ssrc,
    )  # fmt: skip


# -- the user agent's OfferAnswer provider ------------------------------------------------------
class _Options(TypedDict):
    ptime_ms: int
    telephone_event: bool
    direction: Direction
    rtcp_mux: bool


@dataclass(slots=True)
class _CallMedia:
    role: Literal["offerer", "answerer"]
    rtp_port: int
    local: SessionDescription
    negotiated: Negotiated | None = None
    ssrc: int | None = None


class SdpOfferAnswer:
    """Implements ``callmeter.sip.useragent.OfferAnswer`` with SDP: offers in the INVITE,
    answers incoming offers, checks answers. ``port_allocator()`` gives the local RTP port of
    a new call (``port_release(port)`` gets it back when the call ends); ``negotiated(call_id)``
    is what the media engine reads once the call is answered. With ``ssrc_allocator`` each
    call's SDP declares the RTP source it will send from (``a=ssrc``, RFC 5576), which
    ``local_ssrc(call_id)`` gives the media engine: a peer sharing one port among many calls
    tells them apart by it (``callmeter.transport.mediaport``)."""

    def __init__(self, address: str, port_allocator: Callable[[], int], codecs: Sequence[str], *,
                 ptime_ms: int = DEFAULT_PTIME_MS, telephone_event: bool = True,
                 direction: Direction = "sendrecv", rtcp_mux: bool = False,
                 port_release: Callable[[int], None] | None = None,
                 rng: random.Random | None = None,
                 ssrc_allocator: Callable[[], int] | None = None) -> None:  # fmt: skip
        for name in codecs:
            codec_named(name)  # a typo in a test file fails here, not in the first call
        self.address = address
        self.codecs = list(codecs)
        self.port_allocator = port_allocator
        self.port_release = port_release
        self.ssrc_allocator = ssrc_allocator
        self.rng = rng or random.Random()
        self.ptime_ms = ptime_ms
        self.telephone_event = telephone_event
        self.rtcp_mux = rtcp_mux
        self.direction: Direction = direction
        self.calls: dict[str, _CallMedia] = {}
        self.counters: Counter[str] = Counter()

    def negotiated(self, call_id: str) -> Negotiated | None:
        call = self.calls.get(call_id)
        return None if call is None else call.negotiated

    def local_ssrc(self, call_id: str) -> int | None:
        """The source our SDP declared for the call (None without ``ssrc_allocator``)."""
        call = self.calls.get(call_id)
        return None if call is None else call.ssrc

    def _ssrc(self, call: _CallMedia | None, call_id: str) -> tuple[int, str] | None:
        """The call's declared (source, CNAME): kept across re-offers, new for a new call."""
        if call is not None and call.ssrc is not None:
            return call.ssrc, f"{call_id}@callmeter"
        if self.ssrc_allocator is None:
            return None
        return self.ssrc_allocator(), f"{call_id}@callmeter"

    def _options(self) -> _Options:
        return {
            "ptime_ms": self.ptime_ms,
            "telephone_event": self.telephone_event,
            "direction": self.direction,
            "rtcp_mux": self.rtcp_mux,
        }

    def _origin(self, call: _CallMedia | None) -> tuple[int, int]:
        """A new session id, or the call's with the version incremented (RFC 3264 section 8)."""
        if call is None:
            return self.rng.randrange(1, 2**62), 1
        return call.local.origin.session_id, call.local.origin.version + 1

    def create_offer(self, call_id: str) -> Body | None:
        call = self.calls.get(call_id)
        port = call.rtp_port if call is not None else self.port_allocator()
        session_id, version = self._origin(call)
        options = self._options()
        ssrc = self._ssrc(call, call_id)
        offer = make_offer(self.address, port, self.codecs, **options, session_id=session_id,
                           version=version, ssrc=ssrc)  # fmt: skip
        kept = call.negotiated if call is not None else None  # until the new answer arrives
        self.calls[call_id] = _CallMedia(
            "offerer", port, offer, kept, None if ssrc is None else ssrc[0]
        )
        return offer.body()

    def create_answer(self, call_id: str, offer: Body | None) -> Body | int | None:
        """Our answer, or 415 (not SDP), 400 (malformed SDP), 488 (nothing in common). An
        INVITE without an offer gets our offer in the 2xx (RFC 3261 section 13.2.1)."""
        if offer is None:
            return self.create_offer(call_id)
        if offer[0].partition(";")[0].strip().lower() != CONTENT_TYPE:
            self.counters["unsupported_content_type"] += 1
            return UNSUPPORTED_MEDIA_TYPE
        try:
            remote = parse(offer[1])
        except ParseError:
            self.counters["malformed_offers"] += 1
            return BAD_REQUEST
        call = self.calls.get(call_id)
        port = call.rtp_port if call is not None else self.port_allocator()
        session_id, version = self._origin(call)
        options = self._options()
        ssrc = self._ssrc(call, call_id)
        answer = make_answer(remote, self.address, port, self.codecs, **options,
                             session_id=session_id, version=version, ssrc=ssrc)  # fmt: skip
        result = (
            answer
            if isinstance(answer, NegotiationFailure)
            else negotiated(remote, answer, role="answerer")
        )
        if isinstance(result, NegotiationFailure):
            self.counters["offers_rejected"] += 1
            if call is None and self.port_release is not None:
                self.port_release(port)
            return result.status  # a rejected re-offer leaves the old session (section 8)
        assert isinstance(answer, SessionDescription)
        self.calls[call_id] = _CallMedia(
            "answerer", port, answer, result, None if ssrc is None else ssrc[0]
        )
        return answer.body()

    def answer_received(self, call_id: str, answer: Body | None) -> int | None:
        """Check the peer's answer to our offer; 488 when it is missing, malformed or has no
        codec we offered."""
        call = self.calls.get(call_id)
        if call is None or call.role != "offerer":
            return None  # we made no offer: nothing to check
        if answer is None:
            self.counters["missing_answers"] += 1
            return REJECT_STATUS
        try:
            result = negotiated(call.local, parse(answer[1]), role="offerer")
        except ParseError:
            self.counters["malformed_answers"] += 1
            return REJECT_STATUS
        if isinstance(result, NegotiationFailure):
            self.counters["answers_rejected"] += 1
            return result.status
        call.negotiated = result
        return None

    def call_ended(self, call_id: str) -> None:
        call = self.calls.pop(call_id, None)
        if call is not None and self.port_release is not None:
            self.port_release(call.rtp_port)
