"""Every captured peer message (tests/data) has a broken twin: the same bytes with one
header damaged the way a buggy or hostile peer would, and the exact ParseError asserted."""

from __future__ import annotations

import pytest

from callmeter.sip import ParseError, parse_message
from tests.sip_samples import captured_messages

CAPTURED = captured_messages()

# (captured file, text replaced once, replacement, the exact error)
TWINS = [
    (
        "baresip-180.sip",
        "CSeq: ",
        "CSeq: 99999999999",
        "CSeq: sequence number 999999999992 is larger than 2**31 - 1",
    ),
    (
        "baresip-200-bye.sip",
        "Via: SIP/2.0/",
        "Via: SIP/2.0 ",
        "Via: expected 'SIP/2.0/transport host', got 'SIP/2.0 UDP 127.0.0.1:52671;branch=z9hG4bK96029b591ce14e97;rport=52671;received='",
    ),
    (
        "baresip-200-invite.sip",
        "From: ",
        'From: "unterminated ',
        "From: unterminated quoted string in '\"unterminated <sip:bob@127.0.0.1:52671>;tag=7f3ce51b'",
    ),
    (
        "baresip-200-options.sip",
        "Content-Length: ",
        "Content-Length: -",
        "Content-Length '-330' is not a non-negative integer",
    ),
    (
        "baresip-ack-486.sip",
        "Call-ID: ",
        "Call-ID: two words ",
        "Call-ID: invalid value 'two words 52dcdbe264f62c8f'",
    ),
    (
        "baresip-invite.sip",
        "To: ",
        "To: <sip:",
        "To: URI 'sip:<sip:bob@127.0.0.1:52671': invalid user part '<sip'",
    ),
    (
        "baresip-options.sip",
        "CSeq: ",
        "CSeq: 99999999999",
        "CSeq: sequence number 9999999999959942 is larger than 2**31 - 1",
    ),
    (
        "baresip-register-auth.sip",
        "Via: SIP/2.0/",
        "Via: SIP/2.0 ",
        "Via: expected 'SIP/2.0/transport host', got 'SIP/2.0 UDP 127.0.0.1:42872;branch=z9hG4bKa851d2af495875ec;rport'",
    ),
    (
        "baresip-register.sip",
        "From: ",
        'From: "unterminated ',
        "From: unterminated quoted string in '\"unterminated <sip:alice@127.0.0.1:52671>;tag=5200044b0b35fcb5'",
    ),
    (
        "kamailio-100-invite.sip",
        "Content-Length: ",
        "Content-Length: -",
        "Content-Length '-0' is not a non-negative integer",
    ),
    (
        "kamailio-200-options.sip",
        "Call-ID: ",
        "Call-ID: two words ",
        "Call-ID: invalid value 'two words 0dfd5be4f2fa87c8@127.0.0.1'",
    ),
    (
        "kamailio-200-register.sip",
        "To: ",
        "To: <sip:",
        "To: URI 'sip:<sip:bob@127.0.0.1:45556': invalid user part '<sip'",
    ),
    (
        "kamailio-401-register.sip",
        "CSeq: ",
        "CSeq: 99999999999",
        "CSeq: sequence number 999999999991 is larger than 2**31 - 1",
    ),
    (
        "kamailio-404.sip",
        "Via: SIP/2.0/",
        "Via: SIP/2.0 ",
        "Via: expected 'SIP/2.0/transport host', got 'SIP/2.0 UDP 127.0.0.1:45707;branch=z9hG4bK97ff7f2ac6ec817a;rport=45707;received='",
    ),
    (
        "kamailio-407-invite.sip",
        "From: ",
        'From: "unterminated ',
        "From: unterminated quoted string in '\"unterminated <sip:alice@127.0.0.1:45556>;tag=ab9107b8'",
    ),
    (
        "kamailio-proxied-180.sip",
        "Content-Length: ",
        "Content-Length: -",
        "Content-Length '-0' is not a non-negative integer",
    ),
    (
        "kamailio-proxied-200-bye.sip",
        "Call-ID: ",
        "Call-ID: two words ",
        "Call-ID: invalid value 'two words f5b1756570a62be0@127.0.0.1'",
    ),
    (
        "kamailio-proxied-200-invite.sip",
        "To: ",
        "To: <sip:",
        "To: URI 'sip:<sip:bob@127.0.0.1:45556': invalid user part '<sip'",
    ),
    (
        "kamailio-proxied-ack.sip",
        "CSeq: ",
        "CSeq: 99999999999",
        "CSeq: sequence number 999999999992 is larger than 2**31 - 1",
    ),
    (
        "kamailio-proxied-bye.sip",
        "Via: SIP/2.0/",
        "Via: SIP/2.0 ",
        "Via: expected 'SIP/2.0/transport host', got 'SIP/2.0 UDP 127.0.0.1:45556;branch=z9hG4bK78af.82d5fc4d2ecb2991f365866b03344d8e.'",
    ),
    (
        "kamailio-proxied-invite.sip",
        "From: ",
        'From: "unterminated ',
        "From: unterminated quoted string in '\"unterminated <sip:alice@127.0.0.1:45556>;tag=ab9107b8'",
    ),
    (
        "sipp-uac-ack.sip",
        "Content-Length: ",
        "Content-Length: -",
        "Content-Length '-0' is not a non-negative integer",
    ),
    (
        "sipp-uac-bye.sip",
        "Call-ID: ",
        "Call-ID: two words ",
        "Call-ID: invalid value 'two words 1-15657@127.0.0.1'",
    ),
    (
        "sipp-uac-invite.sip",
        "To: ",
        "To: <sip:",
        "To: whitespace inside the URI 'sip:service <sip:service@127.0.0.1:58011'",
    ),
    (
        "sipp-uas-180.sip",
        "CSeq: ",
        "CSeq: 99999999999",
        "CSeq: sequence number 999999999991 is larger than 2**31 - 1",
    ),
    (
        "sipp-uas-200-bye.sip",
        "Via: SIP/2.0/",
        "Via: SIP/2.0 ",
        "Via: expected 'SIP/2.0/transport host', got 'SIP/2.0 UDP 127.0.0.1:38650;branch=z9hG4bK-15657-1-7'",
    ),
    (
        "sipp-uas-200-invite.sip",
        "From: ",
        'From: "unterminated ',
        "From: unterminated quoted string in '\"unterminated sipp <sip:sipp@127.0.0.1:38650>;tag=15657SIPpTag001'",
    ),
]


def test_every_captured_message_has_a_twin() -> None:
    assert sorted(name for name, *_ in TWINS) == sorted(CAPTURED)


@pytest.mark.parametrize(("name", "old", "new", "error"), TWINS, ids=[t[0] for t in TWINS])
def test_broken_twin_raises_the_exact_error(name: str, old: str, new: str, error: str) -> None:
    original = CAPTURED[name]
    parse_message(original)  # the real message itself is fine
    twin = original.replace(old.encode(), new.encode(), 1)
    assert twin != original
    with pytest.raises(ParseError) as caught:
        parse_message(twin)
    assert str(caught.value) == error
