"""SIP messages (RFC 3261 section 7): parse_message, validation, typed access, serialisation.

Real peer bytes (SIPp, Kamailio, baresip under tests/data, plus SIPp-style seeds) must parse
and round-trip; every broken variant raises ParseError with the exact text asserted.
"""

from __future__ import annotations

import pytest

from callmeter.sip import (
    CSeq,
    Headers,
    LocalProtocolError,
    NameAddr,
    ParseError,
    Request,
    Response,
    SipUri,
    Via,
    parse_message,
    parse_uri,
)
from callmeter.sip.message import MAX_MESSAGE_BYTES, validate
from tests.sip_samples import SAMPLES, captured_messages

REAL = {**SAMPLES, **captured_messages()}

BASE = [
    "INVITE sip:bob@example.com SIP/2.0",
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1",
    "From: Alice <sip:alice@example.com>;tag=1",
    "To: <sip:bob@example.com>",
    "Call-ID: c1@10.0.0.1",
    "CSeq: 1 INVITE",
    "Max-Forwards: 70",
]


def sip(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def invite(*extra: str, replace: dict[str, str | None] | None = None, body: bytes = b"") -> bytes:
    """BASE plus ``extra`` lines; ``replace`` maps a line's name to a new line (None drops it)."""
    lines: list[str] = []
    for line in BASE:
        name = line.split(":")[0] if ":" in line.split(" ")[0] else line.split(" ")[0]
        new = (replace or {}).get(name, line)
        if new is not None:
            lines.append(new)
    return sip(*lines, *extra, body=body)


def parsed_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def test_captured_peer_messages_are_found() -> None:
    captured = captured_messages()
    assert any(name.startswith("sipp-") for name in captured)
    assert any(name.startswith("kamailio-") for name in captured)
    assert any(name.startswith("baresip-") for name in captured)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_messages_parse_and_round_trip(name: str) -> None:
    message = parse_message(REAL[name])
    assert message.via and message.via[0].branch
    assert message.cseq.seq >= 0
    again = parse_message(message.serialize())
    assert again == message
    assert again.serialize() == message.serialize()
    head = REAL[name].split(b"\r\n\r\n")[0]
    # the start line and header lines come back byte for byte, Content-Length aside
    if b"Content-Length:   " not in head:
        assert message.serialize().split(b"\r\n\r\n")[0] == head


def test_typical_sipp_invite_typed_access() -> None:
    message = parsed_request(SAMPLES["sipp-invite"])
    assert message.method == "INVITE"
    assert message.uri == parse_uri("sip:service@127.0.0.1:5060")
    assert message.via == [Via.parse("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-0")]
    assert (message.from_.display_name, message.from_.tag) == ("sipp", "12345SIPpTag001")
    assert (message.to.display_name, message.to.tag) == ("service", None)
    assert message.call_id == "1-12345@127.0.0.1"
    assert message.cseq == CSeq(1, "INVITE")
    assert [str(c.uri) for c in message.contacts] == ["sip:sipp@127.0.0.1:5061"]
    assert message.max_forwards == 70
    assert message.expires is None
    assert message.content_type == "application/sdp"
    assert message.content_length == len(message.body) == 129
    assert message.body.startswith(b"v=0\r\n")
    assert message.routes == [] and message.record_routes == []
    assert not message.contact_is_star


def test_response_typed_access() -> None:
    message = parse_message(SAMPLES["sipp-200"])
    assert isinstance(message, Response)
    assert (message.status, message.reason) == (200, "OK")
    top, second = message.via
    assert (top.received, top.rport, second.rport) == ("127.0.0.1", 5060, None)
    assert message.to.tag == "67890SIPpTag011"
    assert [str(r) for r in message.record_routes] == [
        "<sip:127.0.0.1:5060;lr=on;ftag=12345SIPpTag001>"
    ]
    assert message.contacts[0].sip_uri.param("transport") == "UDP"


def test_register_and_401() -> None:
    register = parsed_request(SAMPLES["sipp-register"])
    assert register.expires == 3600
    assert register.body == b""
    challenge = parse_message(SAMPLES["kamailio-401"])
    assert isinstance(challenge, Response) and challenge.status == 401
    assert (challenge.headers.get("WWW-Authenticate") or "").startswith('Digest realm="127.0.0.1"')


def test_typed_values_are_cached_and_lists_are_copies() -> None:
    message = parse_message(SAMPLES["sipp-200"])
    first = message.via
    first.pop()
    assert len(message.via) == 2
    assert message.via[0] is message.via[0]
    assert message.from_ is message.from_
    assert message.contacts[0] is message.contacts[0]


def test_typed_value_follows_a_header_change() -> None:
    message = parse_message(SAMPLES["sipp-200"])
    assert message.cseq == CSeq(1, "INVITE")
    message.headers.set("CSeq", "2 BYE")
    assert message.cseq == CSeq(2, "BYE")
    message.headers.pop_first_value("Via")
    assert [v.branch for v in message.via] == ["z9hG4bK-12345-1-0"]
    message.headers.add("Contact", "<sip:second@h>")
    assert [c.sip_uri.user for c in message.contacts] == [None, "second"]


def test_compact_forms_folding_and_multi_value_lines() -> None:
    data = sip(
        "OPTIONS sip:h SIP/2.0",
        "v: SIP/2.0/UDP a;branch=z9hG4bK1,",
        " SIP/2.0/TCP b;branch=z9hG4bK2",
        "Via: SIP/2.0/UDP c;branch=z9hG4bK3",
        "f: <sip:a@h>;tag=x",
        "t: <sip:b@h>",
        "i: abc",
        "CSeq:",
        "\t7 OPTIONS",
        "k: timer, 100rel",
        "Allow: INVITE,ACK , BYE",
        "Require: timer",
        "m: <sip:a@h1>;q=0.5,<sip:a@h2>;q=1",
        "c: application/sdp",
        "l: 3",
        body=b"v=0",
    )
    message = parsed_request(data)
    assert [v.host for v in message.via] == ["a", "b", "c"]
    assert message.call_id == "abc"
    assert message.cseq == CSeq(7, "OPTIONS")
    assert message.tokens("Supported") == ["timer", "100rel"]
    assert message.tokens("allow") == ["invite", "ack", "bye"]
    assert message.tokens("REQUIRE") == ["timer"]
    assert [c.param("q") for c in message.contacts] == ["0.5", "1"]
    assert message.body == b"v=0"
    assert message.headers.get("cseq") == "7 OPTIONS"
    assert [name for name, _ in message.headers][:2] == ["v", "Via"]


def test_contact_star() -> None:
    message = parsed_request(
        invite("Contact: *", "Expires: 0", replace={"INVITE": "REGISTER sip:h SIP/2.0",
                                                    "CSeq": "CSeq: 2 REGISTER"})
    )  # fmt: skip
    assert message.contact_is_star
    assert message.contacts == []
    assert message.expires == 0


def test_bodies_are_framed_by_content_length() -> None:
    assert parse_message(invite("Content-Length: 3", body=b"abcdef")).body == b"abc"
    assert parse_message(invite("Content-Length: 0", body=b"junk")).body == b""
    assert parse_message(invite("Content-Length: 0006", body=b"abcdef")).body == b"abcdef"
    assert parse_message(invite(body=b"rest\r\nof it")).body == b"rest\r\nof it"
    both = invite("Content-Length: 2", "l: 002", body=b"abc")
    assert parse_message(both).body == b"ab"
    multipart = b"--b\r\n\r\n\x00\n\xff--b--"
    assert parse_message(invite(f"Content-Length: {len(multipart)}", body=multipart)).body == (
        multipart
    )


def test_leading_crlf_is_ignored_and_missing_blank_line_tolerated() -> None:
    assert parse_message(b"\r\n\r\n" + invite()) == parse_message(invite())
    no_blank_line = invite().removesuffix(b"\r\n")
    assert parse_message(no_blank_line).body == b""


def test_response_without_reason_phrase_or_its_space() -> None:
    lines = ["SIP/2.0 180", *BASE[1:]]
    ringing = parse_message(sip(*lines))
    assert isinstance(ringing, Response) and (ringing.status, ringing.reason) == (180, "")
    assert ringing.serialize().startswith(b"SIP/2.0 180 \r\n")


def test_lowercase_version_and_any_status() -> None:
    assert parse_message(sip("sip/2.0 699 Whatever", *BASE[1:])).status == 699  # type: ignore[union-attr]
    assert (
        parse_message(sip("INVITE sip:bob@example.com sip/2.0", *BASE[1:]))
        .serialize()
        .startswith(b"INVITE sip:bob@example.com SIP/2.0\r\n")
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty message"),
        (b"\r\n\r\n", "empty message"),
        (b"  \r\n\r\n", "empty message"),
        (
            b"x" * (MAX_MESSAGE_BYTES + 1),
            f"message of {MAX_MESSAGE_BYTES + 1} bytes is larger than 262140",
        ),
        (
            invite().replace(b"\r\nTo", b"\nTo"),
            "bare CR or LF in the header section (lines must end in CRLF)",
        ),
        (
            invite().replace(b"\r\nTo", b"\rTo"),
            "bare CR or LF in the header section (lines must end in CRLF)",
        ),
        (b"INVITE sip:a@b SIP/2.0\r\n Via: x\r\n\r\n", "continuation line before the first header"),
        (invite("Garbage"), "header line without a colon: 'Garbage'"),
        (invite("Bad Name: x"), "invalid header name 'Bad Name'"),
        (invite("Content-Length: five"), "Content-Length 'five' is not a non-negative integer"),
        (invite("Content-Length: -1"), "Content-Length '-1' is not a non-negative integer"),
        (invite("Content-Length: 1 0"), "Content-Length '1 0' is not a non-negative integer"),
        (
            invite("Content-Length: 4", body=b"abc"),
            "Content-Length 4 is larger than the 3 body bytes",
        ),
        (
            invite("Content-Length: " + "9" * 5000),
            "Content-Length 99999999999999999999 is larger than the 0 body bytes",
        ),
        (
            invite("Content-Length: 1", "l: 2", body=b"ab"),
            "conflicting Content-Length values: 1, 2",
        ),
        (invite(replace={"Via": None}), "missing mandatory header(s): Via"),
        (invite(replace={"To": None, "CSeq": None}), "missing mandatory header(s): To, CSeq"),
        (invite("Call-ID: c2"), "single-value header(s) repeated: Call-ID"),
        (
            invite("i: c1@10.0.0.1", "Max-Forwards: 70"),
            "single-value header(s) repeated: Call-ID, Max-Forwards",
        ),
        (invite(replace={"Call-ID": "Call-ID: a b"}), "Call-ID: invalid value 'a b'"),
        (invite(replace={"Call-ID": "Call-ID:"}), "Call-ID: empty value"),
        (invite(replace={"Call-ID": "Call-ID: a@b@c"}), "Call-ID: invalid value 'a@b@c'"),
        (invite(replace={"Via": "Via:"}), "Via: empty value"),
        (
            invite(replace={"Via": "Via: garbage"}),
            "Via: expected 'SIP/2.0/transport host', got 'garbage'",
        ),
        (
            invite(replace={"Via": "Via: SIP/2.0/UDP a,"}),
            "Via: empty element in comma-separated value 'SIP/2.0/UDP a,'",
        ),
        (invite(replace={"From": "From:"}), "From: empty value"),
        (invite(replace={"From": "From: <sip:a@b"}), "From: missing '>' in '<sip:a@b'"),
        (
            invite(replace={"To": 'To: "Bob <sip:b@h>'}),
            "To: unterminated quoted string in '\"Bob <sip:b@h>'",
        ),
        (invite(replace={"CSeq": "CSeq: 1"}), "CSeq: missing method"),
        (
            invite(replace={"CSeq": "CSeq: 2147483648 INVITE"}),
            "CSeq: sequence number 2147483648 is larger than 2**31 - 1",
        ),
        (
            invite(replace={"CSeq": "CSeq: 1 BYE"}),
            "CSeq method 'BYE' does not match the request method 'INVITE'",
        ),
        (
            invite(replace={"Max-Forwards": "Max-Forwards: 256"}),
            "Max-Forwards: '256' is not an integer from 0 to 255",
        ),
        (
            invite(replace={"Max-Forwards": "Max-Forwards: -1"}),
            "Max-Forwards: '-1' is not an integer from 0 to 255",
        ),
        (
            invite(replace={"Max-Forwards": "Max-Forwards:"}),
            "Max-Forwards: '' is not an integer from 0 to 255",
        ),
        (
            invite("Expires: 4294967296"),
            "Expires: '4294967296' is not an integer from 0 to 4294967295",
        ),
        (
            invite("Expires: Thu, 01 Dec 1994 16:00:00 GMT"),
            "Expires: 'Thu, 01 Dec 1994 16:00:00 GMT' is not an integer from 0 to 4294967295",
        ),
        (invite("Contact:"), "Contact: empty value"),
        (invite("Contact: garbage"), "Contact: URI 'garbage': missing or invalid scheme"),
        (invite("Contact: <sip:a@h>, *"), "Contact: '*' must be the only Contact value"),
        (invite("Contact: <sip:a@h>;q=1.5"), "Contact: q=1.5 is not a qvalue from 0 to 1"),
        (invite("Contact: <sip:a@h>;q"), "Contact: q= is not a qvalue from 0 to 1"),
        (
            invite("Contact: <sip:a@h>;expires=soon"),
            "Contact: expires=soon is not an integer from 0 to 4294967295",
        ),
        (
            invite("Route: <sip:p1;lr>,"),
            "Route: empty element in comma-separated value '<sip:p1;lr>,'",
        ),
        (
            invite("Route: <sip:p1;lr>, sip:p2 junk"),
            "Route: whitespace inside the URI 'sip:p2 junk'",
        ),
        (invite("Record-Route: <sip:p1;lr"), "Record-Route: missing '>' in '<sip:p1;lr'"),
        (invite("Content-Type: sdp"), "Content-Type: expected 'type/subtype', got 'sdp'"),
        (invite("Content-Type: application/sdp;"), "Content-Type: invalid parameter ''"),
        (invite("Allow: INVITE, AC K"), "Allow: invalid token 'AC K'"),
        (invite("Supported: timer,"), "Supported: empty element in comma-separated value 'timer,'"),
        (invite("Proxy-Require: a/b"), "Proxy-Require: invalid token 'a/b'"),
        (
            invite("Date: Sat, 13 Nov 2010 23:29:00 UTC"),
            "Date: 'Sat, 13 Nov 2010 23:29:00 UTC' is not an RFC 1123 date in GMT",
        ),
        (
            invite(replace={"INVITE": "INVITE"}),
            "malformed request line 'INVITE' (expected 'Method SP Request-URI SP SIP/2.0')",
        ),
        (invite(replace={"INVITE": "INV(ITE sip:a@b SIP/2.0"}), "invalid method 'INV(ITE'"),
        (
            invite(replace={"INVITE": "INVITE sip:a@b HTTP/1.1"}),
            "request line: 'HTTP/1.1' is not a SIP version",
        ),
        (
            invite(replace={"INVITE": " INVITE sip:a@b SIP/2.0"}),
            "request line: leading whitespace in ' INVITE sip:a@b SIP/2.0'",
        ),
        (
            invite(replace={"INVITE": "INVITE\tsip:a@b SIP/2.0"}),
            "request line: elements must be separated by a single SP in 'INVITE\\tsip:a@b SIP/2.0'",
        ),
        (
            invite(replace={"INVITE": "INVITE sip:a@b:99999 SIP/2.0"}),
            "Request-URI: URI 'sip:a@b:99999': invalid port '99999'",
        ),
        (sip("SIP/2.0", *BASE[1:]), "malformed status line 'SIP/2.0'"),
        (sip("SIP/2.0 2000 OK", *BASE[1:]), "status code '2000' is not from 100 to 699"),
        (sip("SIP/2.0 099 OK", *BASE[1:]), "status code '099' is not from 100 to 699"),
        (sip("SIP/2.0 700 OK", *BASE[1:]), "status code '700' is not from 100 to 699"),
        (sip("SIP/2.0 2OO OK", *BASE[1:]), "status code '2OO' is not from 100 to 699"),
        (sip("SIP/2.0 200 O\x01K", *BASE[1:]), "control character in the reason phrase 'O\\x01K'"),
    ],
)
def test_malformed_messages_name_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_message(data)
    assert str(caught.value) == message
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "data",
    [
        invite(replace={"INVITE": "INVITE sip:a@b SIP/3.0"}),
        sip("SIP/3.0 200 OK", *BASE[1:]),
    ],
)
def test_unsupported_version_is_505(data: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        parse_message(data)
    assert caught.value.status == 505
    assert str(caught.value) == "unsupported SIP version 'SIP/3.0'"


def test_accepted_corner_cases() -> None:
    message = parsed_request(
        invite(
            "Allow:",
            "Supported:",
            "Expires: 4294967295",
            "Contact: <sip:a@h>;q=0.000;expires=0, <sip:b@h>;q=1.0",
            "Date: Sat, 13 Nov 2010 23:29:00 GMT",
            'Content-Type: Multipart/Mixed ; boundary="x y"',
            replace={"Max-Forwards": "Max-Forwards: 0000255", "Call-ID": "Call-ID: a"},
        )
    )
    assert message.tokens("allow") == [] and message.tokens("supported") == []
    assert message.expires == 2**32 - 1
    assert message.max_forwards == 255
    assert message.content_type == "multipart/mixed"


def test_serialize_writes_the_true_content_length_once() -> None:
    message = parsed_request(invite("l: 2", "Content-Length: 2", body=b"ab"))
    message.body = b"four"
    wire = message.serialize()
    assert wire.count(b"Content-Length") == 0 and wire.count(b"\r\nl: 4\r\n") == 1
    assert wire.endswith(b"\r\n\r\nfour")
    bare = Request("OPTIONS", parse_uri("sip:h"), Headers([("Via", "SIP/2.0/UDP a")]), b"x")
    assert (
        bare.serialize()
        == b"OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nContent-Length: 1\r\n\r\nx"
    )


def test_serialize_refuses_to_smuggle_a_header_line() -> None:
    message = parsed_request(invite())
    message.headers.add("Subject", "hi\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(
        LocalProtocolError, match=r"^CR or LF inside the start line or a header value$"
    ):
        message.serialize()
    response = Response(200, "OK\nX: y")
    with pytest.raises(LocalProtocolError):
        response.serialize()


def test_built_messages_round_trip() -> None:
    headers = Headers(
        [
            ("Via", str(Via("UDP", "10.0.0.2", 5062, (("branch", "z9hG4bKabc"), ("rport", None))))),
            ("From", str(NameAddr(parse_uri("sip:a@h"), 'A "q"', (("tag", "t1"),)))),
            ("To", str(NameAddr(SipUri("h", "b")))),
            ("Call-ID", "xyz"),
            ("CSeq", str(CSeq(5, "MESSAGE"))),
            ("Content-Type", "text/plain"),
        ]
    )
    request = Request("MESSAGE", SipUri("h", "b", port=5070), headers, "héllo".encode())
    again = parsed_request(request.serialize())
    assert again == request
    assert again.from_.display_name == 'A "q"'
    assert again.body.decode() == "héllo"
    response = Response(486, headers=headers.copy())
    assert response.reason == "Busy Here"
    assert parse_message(response.serialize()) == response
    assert Response(299).reason == ""


def test_equality() -> None:
    message = parse_message(invite())
    assert message == parse_message(invite())
    assert message == parse_message(invite("Content-Length: 0"))
    assert message != parse_message(invite("Subject: x"))
    assert message != parse_message(invite(body=b"x"))
    assert message != "INVITE"
    with pytest.raises(TypeError):
        hash(message)


def test_validate_checks_a_message_built_by_hand() -> None:
    request = Request("BYE", parse_uri("sip:h"), Headers([("Via", "SIP/2.0/UDP a")]))
    with pytest.raises(
        ParseError, match=r"^missing mandatory header\(s\): From, To, Call-ID, CSeq$"
    ):
        validate(request)


def test_repr() -> None:
    assert (
        repr(parse_message(invite())) == "<Request INVITE sip:bob@example.com call-id=c1@10.0.0.1>"
    )
    assert repr(Response(180)) == "<Response 180 Ringing call-id=None>"
