"""Property tests of the SIP parser.

(a) Mutated real messages (byte flips, insertions, deletions, truncations, duplicated lines,
    random header values) either parse, and then round-trip and give typed values without
    error, or raise ParseError: never another exception, never a hang.
(b) Generated well-formed messages parse to the values they were built from and round-trip.

Seeds: the valid RFC 4475 messages, the SIPp-style samples of ``tests/sip_samples.py`` and
every captured peer message under ``tests/data``. Hypothesis picks a random seed per run and
prints it on failure; replay with ``pytest tests/test_parser_fuzz.py --hypothesis-seed=N``.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from callmeter.sip import (
    CSeq,
    NameAddr,
    ParseError,
    Request,
    Response,
    SipUri,
    Via,
    parse_message,
    parse_uri,
)
from callmeter.sip.headers import parse_params
from callmeter.sip.message import MAX_MESSAGE_BYTES
from callmeter.sip.uri import _parse_sip_general
from tests.sip_samples import RFC4475_DIR, SAMPLES, captured_messages
from tests.test_rfc4475 import PARSES

SEEDS = [
    *SAMPLES.values(),
    *captured_messages().values(),
    *((RFC4475_DIR / f"{name}.sip").read_bytes() for name in PARSES),
]
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_outcome(data: bytes) -> None:
    """The one property: a message that parses is whole; anything else is a ParseError."""
    try:
        message = parse_message(data)
    except ParseError as exc:
        assert str(exc)
        return
    assert isinstance(message, Request | Response)
    for via in message.via:
        via.branch, via.rport, via.received  # noqa: B018
    message.from_, message.to, message.call_id, message.cseq  # noqa: B018
    message.contacts, message.routes, message.record_routes  # noqa: B018
    message.max_forwards, message.expires, message.content_type, message.content_length  # noqa: B018
    for name in ("allow", "supported", "require"):
        message.tokens(name)
    wire = message.serialize()
    again = parse_message(wire)
    assert again == message
    assert again.serialize() == wire


# Bytes that matter to the grammar, to insert or to build header values from.
SPECIALS = [b",", b";", b'"', b"\\", b"<", b">", b":", b"=", b"%", b"%4", b"%00", b"@", b"?",
            b"&", b"[", b"]", b" ", b"\t", b"\r\n", b"\r\n ", b"\r\n\r\n", b"\n", b"\r", b"\x00",
            b"\xff", b"\xc3\xa9", b"*", b"0", b"65536", b"9" * 30, b"0" * 30, b"sip:", b"SIP/2.0",
            b"Via: ", b"Content-Length: ", b"l: 9999", b"m: *"]  # fmt: skip


def flip(draw: DrawFn, data: bytearray) -> bytearray:
    if data:
        index = draw(st.integers(0, len(data) - 1))
        data[index] ^= draw(st.integers(1, 255))
    return data


def insert(draw: DrawFn, data: bytearray) -> bytearray:
    index = draw(st.integers(0, len(data)))
    chunk = draw(st.one_of(st.sampled_from(SPECIALS), st.binary(min_size=1, max_size=8)))
    data[index:index] = chunk
    return data


def delete(draw: DrawFn, data: bytearray) -> bytearray:
    if data:
        start = draw(st.integers(0, len(data) - 1))
        length = draw(st.integers(1, 16))
        del data[start : start + length]
    return data


def truncate(draw: DrawFn, data: bytearray) -> bytearray:
    return data[: draw(st.integers(0, len(data)))]


def duplicate_line(draw: DrawFn, data: bytearray) -> bytearray:
    lines = bytes(data).split(b"\r\n")
    index = draw(st.integers(0, len(lines) - 1))
    lines.insert(index, lines[index])
    return bytearray(b"\r\n".join(lines))


def random_header_value(draw: DrawFn, data: bytearray) -> bytearray:
    head, blank, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if len(lines) < 2:
        return data
    index = draw(st.integers(1, len(lines) - 1))
    name = lines[index].partition(b":")[0]
    pieces = draw(st.lists(st.one_of(st.sampled_from(SPECIALS), st.binary(max_size=4)), max_size=8))
    lines[index] = name + b": " + b"".join(pieces)
    return bytearray(b"\r\n".join(lines) + blank + body)


MUTATIONS = [flip, insert, delete, truncate, duplicate_line, random_header_value]


@st.composite
def mutated_messages(draw: DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4)):
        data = mutation(draw, data)
    return bytes(data)


@FUZZ
@given(mutated_messages())
def test_mutated_real_messages_parse_or_raise_parse_error(data: bytes) -> None:
    check_outcome(data)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    check_outcome(data)


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_every_seed_parses_and_round_trips(seed: int) -> None:
    data = SEEDS[seed]
    check_outcome(data)
    parse_message(data)


def big(prefix: bytes, unit: bytes) -> bytes:
    return prefix + unit * ((MAX_MESSAGE_BYTES - len(prefix) - 4) // len(unit)) + b"\r\n\r\n"


REQUEST_LINE = b"INVITE sip:a@b SIP/2.0\r\n"


@pytest.mark.parametrize(
    "data",
    [
        big(REQUEST_LINE + b"Via: ", b","),
        big(REQUEST_LINE + b"Via: ", b'"'),
        big(REQUEST_LINE + b"Via: ", b"<"),
        big(REQUEST_LINE + b"Via: SIP/2.0/UDP h", b";a"),
        big(REQUEST_LINE + b"Via: SIP/2.0/UDP h;x=", b'"\\'),
        big(REQUEST_LINE + b"Contact: ", b"<sip:a@b>,"),
        big(REQUEST_LINE + b"To: ", b"a "),
        big(REQUEST_LINE + b"To: <sip:", b"a"),
        big(REQUEST_LINE + b"To: <sip:a@", b"a-"),
        big(REQUEST_LINE + b"CSeq: ", b"0"),
        big(REQUEST_LINE + b"Content-Length: ", b"0"),
        big(REQUEST_LINE + b"X: a", b"\r\n b"),
        big(REQUEST_LINE, b"X: y\r\n"),
        big(REQUEST_LINE + b"Via: SIP/2.0/UDP ", b"a"),
        big(b"INVITE sip:", b"a"),
        big(b"SIP/2.0 200 ", b"a"),
    ],
    ids=lambda data: repr(data[20:40]),
)
def test_largest_pathological_inputs_finish(data: bytes) -> None:
    """Each is MAX_MESSAGE_BYTES of the worst repeat for one parser step; pytest-timeout
    turns a hang (or quadratic work) into a failure."""
    assert len(data) <= MAX_MESSAGE_BYTES
    check_outcome(data)
    check_outcome(data[: len(data) // 2])


# ---------------------------------------------------------------------------------------------
# (b) well-formed messages, built from typed values

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9\-]{0,10}[a-z0-9](\.[a-z][a-z0-9]{0,8}){0,3}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.just("[2001:db8::1]"),
)
ports = st.one_of(st.none(), st.integers(1, 65535))
users = st.text(min_size=1, max_size=12)  # any text: escaped on the wire
uri_param_values = st.one_of(st.none(), st.text(min_size=1, max_size=8))


@st.composite
def sip_uris(draw: DrawFn, *, with_headers: bool = True) -> SipUri:
    params = draw(
        st.lists(st.tuples(st.text(min_size=1, max_size=6), uri_param_values), max_size=3)
    )
    headers: list[tuple[str, str]] = []
    if with_headers:
        headers = draw(
            st.lists(st.tuples(st.text(min_size=1, max_size=6), st.text(max_size=8)), max_size=2)
        )
    user = draw(st.one_of(st.none(), users))
    return SipUri(
        host=draw(hosts),
        user=user,
        password=None if user is None else draw(st.one_of(st.none(), st.text(max_size=6))),
        port=draw(ports),
        scheme=draw(st.sampled_from(["sip", "sips"])),
        params=params,
        headers=headers,
    )


def fields(uri: SipUri) -> tuple[object, ...]:
    return (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params, uri.headers)


@FUZZ
@given(sip_uris())
def test_sip_uri_serialisation_round_trips(uri: SipUri) -> None:
    text = str(uri)
    again = parse_uri(text)
    assert isinstance(again, SipUri)
    assert fields(again) == fields(uri)
    assert again == uri
    assert str(again) == text
    assert fields(_parse_sip_general(uri.scheme, text.partition(":")[2], text)) == fields(uri)


gen_params = st.lists(st.tuples(tokens, st.one_of(st.none(), tokens)), max_size=3).map(tuple)
quoted_display = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=12
)
display_names = st.one_of(
    st.none(),
    quoted_display,
    st.lists(tokens, min_size=1, max_size=3).map(" ".join),
)


@st.composite
def name_addrs(draw: DrawFn, *, tag: bool) -> NameAddr:
    params = draw(gen_params)
    params = tuple((k, v) for k, v in params if k.lower() not in ("tag", "q", "expires"))
    if tag:
        params += (("tag", draw(tokens)),)
    return NameAddr(draw(sip_uris(with_headers=False)), draw(display_names), params)


@st.composite
def vias(draw: DrawFn) -> Via:
    params = (("branch", "z9hG4bK" + draw(tokens)), *draw(gen_params))
    params = tuple((k, v) for k, v in params if k.lower() != "rport")
    if draw(st.booleans()):
        params += (("rport", draw(st.one_of(st.none(), st.integers(1, 65535).map(str)))),)
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]))
    return Via(transport, draw(hosts), draw(ports), params)


def spell(draw: DrawFn, name: str, compact: str | None = None) -> str:
    choices = [name, name.lower(), name.upper()] + ([compact] if compact else [])
    return draw(st.sampled_from(choices))


@st.composite
def well_formed(draw: DrawFn) -> tuple[bytes, dict[str, object]]:
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "REGISTER", "OPTIONS"]) | tokens)
    is_request = draw(st.booleans())
    status = draw(st.integers(100, 699))
    via_list = draw(st.lists(vias(), min_size=1, max_size=3))
    from_ = draw(name_addrs(tag=True))
    to = draw(name_addrs(tag=draw(st.booleans())))
    contacts = draw(st.lists(name_addrs(tag=False), max_size=2))
    call_id = draw(
        st.from_regex(
            r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]{1,20}(@[a-z0-9.]{1,10})?", fullmatch=True
        )
    )
    cseq = CSeq(draw(st.integers(0, CSeq.MAX)), method)
    body = draw(st.binary(max_size=64))
    lines = [
        f"{method} {draw(sip_uris(with_headers=False))} SIP/2.0"
        if is_request
        else f"SIP/2.0 {status} {draw(st.text(string.ascii_letters + ' ', max_size=12))}"
    ]
    if draw(st.booleans()):
        lines.append(f"{spell(draw, 'Via', 'v')}: {', '.join(map(str, via_list))}")
    else:
        lines += [f"{spell(draw, 'Via', 'v')}: {via}" for via in via_list]
    lines += [
        f"{spell(draw, 'From', 'f')}: {from_}",
        f"{spell(draw, 'To', 't')}: {to}",
        f"{spell(draw, 'Call-ID', 'i')}: {call_id}",
        f"{spell(draw, 'CSeq')}: {cseq}",
        f"{spell(draw, 'Max-Forwards')}: {draw(st.integers(0, 255))}",
    ]
    if contacts:
        lines.append(f"{spell(draw, 'Contact', 'm')}: {', '.join(map(str, contacts))}")
    if draw(st.booleans()):
        value = draw(st.text(string.printable.strip() + " ", max_size=20)).strip()
        lines.append(f"X-{draw(tokens)}: {value}")
    lines.append(f"{spell(draw, 'Content-Length', 'l')}: {len(body)}")
    text = "\r\n".join(lines)
    if draw(st.booleans()):  # fold the first header line after its colon
        start, crlf, rest = text.partition("\r\n")
        text = start + crlf + rest.replace(": ", ":\r\n ", 1)
    expected = {
        "vias": via_list,
        "from": from_,
        "to": to,
        "contacts": contacts,
        "call_id": call_id,
        "cseq": cseq,
        "body": body,
        "request": is_request,
    }
    return (text + "\r\n\r\n").encode() + body, expected


@FUZZ
@given(well_formed())
def test_generated_messages_parse_to_their_values_and_round_trip(
    built: tuple[bytes, dict[str, object]],
) -> None:
    data, expected = built
    message = parse_message(data)
    assert isinstance(message, Request if expected["request"] else Response)
    assert message.via == expected["vias"]
    assert message.from_ == expected["from"]
    assert message.to == expected["to"]
    assert message.contacts == expected["contacts"]
    assert message.call_id == expected["call_id"]
    assert message.body == expected["body"]
    if expected["request"]:
        assert message.cseq == expected["cseq"]
    wire = message.serialize()
    assert parse_message(wire) == message
    assert parse_message(wire).serialize() == wire


@FUZZ
@given(st.data())
def test_fast_and_general_header_parsers_agree(data: st.DataObject) -> None:
    """A leading space defeats every fast-path regex, so the general parser runs."""
    via = data.draw(vias())
    assert Via.parse(str(via)) == via
    assert Via.parse(" " + str(via)) == via
    addr = data.draw(name_addrs(tag=data.draw(st.booleans())))
    fast, general = NameAddr.parse(str(addr)), NameAddr.parse(" " + str(addr))
    assert fast == general == addr
    assert isinstance(fast.uri, SipUri) and isinstance(general.uri, SipUri)
    assert isinstance(addr.uri, SipUri)
    assert fields(fast.uri) == fields(general.uri) == fields(addr.uri)
    params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in data.draw(gen_params))
    assert parse_params(params, "X") == parse_params(" " + params, "X")
