"""The 49 RFC 4475 torture messages through ``parse_message``.

Bytes come from ``shared/testdata/rfc4475`` beside the repository (see its INDEX.md): valid
and valid-syntax messages parse and round-trip; invalid ones (and ``insuf``, which a UAS
answers with 400) raise ParseError with the exact message below. Typed values are checked
against what the RFC's notes say about each message.
"""

from __future__ import annotations

import re

import pytest

from callmeter.sip import (
    AbsoluteUri,
    ParseError,
    Request,
    Response,
    SipUri,
    parse_message,
)
from tests.sip_samples import RFC4475_DIR

PARSES = (
    "wsinv intmeth esc01 escnull esc02 lwsdisp longreq dblreq semiuri transports mpart01 "
    "unreason noreason badbranch unkscm novelsc unksm2 bext01 invut regaut01 bcast zeromf "
    "cparam01 cparam02 regescrt sdp01 inv2543"
).split()

# name -> (exact ParseError text, status a UAS answers with)
REJECTED: dict[str, tuple[str, int]] = {
    "badinv01": ("Via: empty element in comma-separated value 'SIP/2.0/UDP 192.0.2.15;;,;,,'", 400),
    "clerr": ("Content-Length 9999 is larger than the 154 body bytes", 400),
    "ncl": ("Content-Length '-999' is not a non-negative integer", 400),
    "scalar02": ("CSeq: sequence number 36893488147419103232 is larger than 2**31 - 1", 400),
    "scalarlg": ("CSeq: sequence number 9292394834772304023312 is larger than 2**31 - 1", 400),
    "quotbal": (
        "To: unterminated quoted string in '\"Mr. J. User <sip:j.user@example.com>'",
        400,
    ),
    "ltgtruri": ("Request-URI '<sip:user@example.com>' must not be enclosed in <...>", 400),
    "lwsruri": (
        "request line: whitespace inside the Request-URI 'sip:user@example.com; lr'",
        400,
    ),
    "lwsstart": (
        "request line: elements must be separated by a single SP in "
        "'INVITE  sip:user@example.com  SIP/2.0'",
        400,
    ),
    "trws": (
        "request line: trailing whitespace in 'OPTIONS sip:remote-target@example.com SIP/2.0  '",
        400,
    ),
    "escruri": (
        "Request-URI 'sip:user@example.com?Route=%3Csip:example.com%3E' must not carry headers",
        400,
    ),
    "baddate": ("Date: 'Fri, 01 Jan 2010 16:00:00 EST' is not an RFC 1123 date in GMT", 400),
    "regbadct": (
        "Contact: URI 'sip:user@example.com?Route=%3Csip:sip.example.com%3E' with '?' or ',' "
        "must be enclosed in <...>",
        400,
    ),
    "badaspec": ("To: whitespace inside <...> in '< sip:t.watson@example.org >'", 400),
    "baddn": ("From: display name 'Bell, Alexander' must be quoted", 400),
    "badvers": ("unsupported SIP version 'SIP/7.0'", 505),
    "mismatch01": ("CSeq method 'INVITE' does not match the request method 'OPTIONS'", 400),
    "mismatch02": ("CSeq method 'INVITE' does not match the request method 'NEWMETHOD'", 400),
    "bigcode": ("status code '4294967301' is not from 100 to 699", 400),
    "insuf": ("missing mandatory header(s): From, To, Call-ID", 400),
    "multi01": (
        "single-value header(s) repeated: From, To, Call-ID, CSeq, Max-Forwards",
        400,
    ),
    "mcl01": ("conflicting Content-Length values: 13, 5", 400),
}


def torture(name: str) -> bytes:
    return (RFC4475_DIR / f"{name}.sip").read_bytes()


def parse(name: str) -> Request | Response:
    return parse_message(torture(name))


def request(name: str) -> Request:
    message = parse(name)
    assert isinstance(message, Request)
    return message


def index_verdicts() -> dict[str, str]:
    """file name -> class column of INDEX.md's table."""
    rows = re.findall(r"^\| \d+ \| `(\w+)\.sip` \|[^|]*\|[^|]*\| ([\w-]+) \|", _index(), re.M)
    return dict(rows)


def _index() -> str:
    return (RFC4475_DIR / "INDEX.md").read_text(encoding="utf-8")


def test_every_file_has_an_expectation_that_agrees_with_the_index() -> None:
    files = {path.stem for path in RFC4475_DIR.glob("*.sip")}
    verdicts = index_verdicts()
    assert len(files) == 49
    assert files == set(verdicts) == set(PARSES) | set(REJECTED)
    for name, verdict in verdicts.items():
        # insuf is valid syntax, but a UAS must answer it with 400: a ParseError by our rule.
        expected = "rejected" if verdict.startswith("invalid") or name == "insuf" else "parses"
        assert ("rejected" if name in REJECTED else "parses") == expected, name


@pytest.mark.parametrize("name", PARSES)
def test_valid_message_parses_and_round_trips(name: str) -> None:
    message = parse(name)
    wire = message.serialize()
    again = parse_message(wire)
    assert again == message
    assert again.serialize() == wire
    # the typed values survive the trip too
    assert again.via == message.via
    assert (again.from_, again.to, again.cseq) == (message.from_, message.to, message.cseq)


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_invalid_message_is_a_parse_error_naming_the_problem(name: str) -> None:
    text, status = REJECTED[name]
    with pytest.raises(ParseError) as caught:
        parse(name)
    assert str(caught.value) == text
    assert caught.value.status == status
    assert isinstance(caught.value, ValueError)


def test_wsinv_folding_whitespace_and_compact_forms() -> None:
    message = request("wsinv")
    assert message.method == "INVITE"
    assert isinstance(message.uri, SipUri) and message.uri.params == [("unknownparam", None)]
    assert message.max_forwards == 68
    assert (message.cseq.seq, message.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in message.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert message.to.display_name is None and message.to.tag == "1918181833n"
    assert message.from_.display_name == 'J Rosenberg \\"'
    assert message.from_.tag == "98asjd8"
    (contact,) = message.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.param("q") == "0.33"
    assert contact.param("newparam") == "newvalue" and contact.param("secondparam") == ""
    assert message.headers.get("s") == ""  # empty Subject, compact form
    assert message.headers.get("subject") == ""
    assert message.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert message.headers.get("NewFangledHeader") == (
        "newfangled value continued newfangled value"
    )
    assert [str(r.uri) for r in message.routes] == [
        "sip:services.example.com;lr;unknownwith=value;unknown-no-value"
    ]
    assert message.content_type == "application/sdp"
    assert len(message.body) == 150
    # raw names are kept as written
    assert [name for name, _ in message.headers][:3] == ["TO", "from", "MaX-fOrWaRdS"]


def test_intmeth_unusual_method_uri_and_display_names() -> None:
    message = request("intmeth")
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert message.cseq.method == message.method
    assert isinstance(message.uri, SipUri)
    assert message.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert message.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert message.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert message.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert message.from_.param("fromParam''~+*_!.-%") == '"работающий"'
    assert message.from_.tag == "_token~1'+`*%!-."
    assert message.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert message.max_forwards == 255


def test_esc01_escapes_are_decoded_once() -> None:
    message = request("esc01")
    assert isinstance(message.uri, SipUri) and message.uri.user == "sips:user@example.com"
    assert message.to.sip_uri.user == "user"
    assert message.from_.sip_uri.user == "I have spaces"
    (contact,) = message.contacts
    assert contact.sip_uri.user == "caller"
    assert contact.sip_uri.params == [("lr", None), ("name", "value%41")]
    assert str(message.uri) == "sip:sips%3Auser%40example.com@example.net"


def test_escnull_keeps_nul_and_two_distinct_contacts() -> None:
    message = request("escnull")
    assert message.to.sip_uri.user == "null-\x00-null"
    users = [contact.sip_uri.user for contact in message.contacts]
    assert users == ["\x00", "\x00\x00"]
    first, second = message.contacts
    assert first.uri != second.uri
    assert str(first.uri) == "sip:%00@host5.example.com"


def test_esc02_percent_that_is_not_an_escape() -> None:
    message = request("esc02")
    assert message.method == "RE%47IST%45R"
    assert message.to.display_name == message.from_.display_name == "%Z%45"
    assert [c.sip_uri.user for c in message.contacts] == ["alias1", "alias3"]
    assert message.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_display_name_without_space_before_bracket() -> None:
    assert request("lwsdisp").from_.display_name == "caller"


def test_longreq_34_via_lines_with_many_spellings() -> None:
    message = request("longreq")
    assert message.headers.count("Via") == 34
    assert len(message.via) == 34
    spellings = {name for name, _ in message.headers if name.lower() in ("via", "v")}
    assert {"Via", "v", "V", "ViA", "VIa", "VIA", "via", "viA", "vIa", "vIA"} <= spellings


def test_dblreq_ignores_the_trailing_invite() -> None:
    message = request("dblreq")
    assert message.method == "REGISTER"
    assert message.body == b""
    assert b"INVITE" not in message.serialize()


def test_semiuri_user_part_holds_semicolons() -> None:
    uri = request("semiuri").uri
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.host, uri.params) == ("user;par=u@example.net", "example.com", [])


def test_transports_unknown_transports_are_kept() -> None:
    assert [v.transport for v in request("transports").via] == [
        "UDP",
        "SCTP",
        "TLS",
        "UNKNOWN",
        "TCP",
    ]


def test_mpart01_binary_multipart_body_is_framed_by_content_length() -> None:
    message = request("mpart01")
    assert len(message.body) == 553
    assert message.content_type == "multipart/mixed"
    assert b"\x00" in message.body and message.body.count(b"\r\n") < message.body.count(b"\n")
    assert torture("mpart01").endswith(message.body)


def test_unreason_and_noreason_reason_phrases() -> None:
    unusual = parse("unreason")
    assert isinstance(unusual, Response) and unusual.status == 200
    assert unusual.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    empty = parse("noreason")
    assert isinstance(empty, Response) and (empty.status, empty.reason) == (100, "")
    assert empty.serialize().startswith(b"SIP/2.0 100 \r\n")


def test_badbranch_bare_magic_cookie_is_kept() -> None:
    assert request("badbranch").via[0].branch == "z9hG4bK"


def test_unknown_and_atypical_schemes_are_kept_as_they_are() -> None:
    assert request("unkscm").uri == AbsoluteUri("nobodyKnowsThisScheme", "totallyopaquecontent")
    assert request("novelsc").uri == AbsoluteUri("soap.beep", "//192.0.2.103:3002")
    message = request("unksm2")
    assert message.to.uri == AbsoluteUri("isbn", "2983792873")
    assert message.from_.uri == AbsoluteUri("http", "//www.example.com")
    assert message.from_.tag == "3234233"
    assert [c.uri for c in message.contacts] == [AbsoluteUri("name", "John_Smith")]
    with pytest.raises(ParseError, match="expected a sip: or sips: URI, got 'isbn:2983792873'"):
        message.to.sip_uri  # noqa: B018


def test_bext01_option_tags() -> None:
    message = request("bext01")
    assert message.tokens("Require") == ["nothingsupportsthis", "nothingsupportsthiseither"]
    assert message.tokens("Proxy-Require") == [
        "noproxiessupportthis",
        "nordoanyproxiessupportthis",
    ]


def test_invut_unknown_content_type() -> None:
    message = request("invut")
    assert message.content_type == "application/unknownformat"
    assert len(message.body) == 40


def test_regaut01_unknown_authorization_scheme_kept_raw() -> None:
    message = request("regaut01")
    assert message.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    assert message.content_length == 0


def test_bcast_broadcast_via() -> None:
    message = parse("bcast")
    assert [v.host for v in message.via] == ["192.0.2.198", "255.255.255.255"]


def test_zeromf_max_forwards_zero() -> None:
    assert request("zeromf").max_forwards == 0


def test_cparam01_unknownparam_is_a_header_parameter() -> None:
    (contact,) = request("cparam01").contacts
    assert contact.params == (("unknownparam", None),)
    assert contact.sip_uri.params == []
    assert contact.sip_uri.user == "+19725552222"


def test_cparam02_unknownparam_is_a_uri_parameter() -> None:
    (contact,) = request("cparam02").contacts
    assert contact.params == ()
    assert contact.sip_uri.params == [("unknownparam", None)]


def test_regescrt_escaped_route_header_stays_in_the_contact_uri() -> None:
    message = request("regescrt")
    (contact,) = message.contacts
    assert contact.sip_uri.headers == [("Route", "<sip:sip.example.com>")]
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    assert message.routes == []
    assert (
        message.headers.get("contact") == "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"
    )


def test_sdp01_accept_kept() -> None:
    assert request("sdp01").headers.values("Accept") == ["text/nobodyKnowsThis"]


def test_inv2543_rfc2543_request_body_is_the_rest_of_the_datagram() -> None:
    message = request("inv2543")
    data = torture("inv2543")
    assert message.headers.get("Content-Length") is None
    assert message.content_length is None
    assert len(message.body) == 105
    assert data.endswith(message.body)
    assert message.via[0].branch is None
    assert message.from_.tag is None
    assert message.max_forwards is None
    assert b"Content-Length: 105\r\n" in message.serialize()


def test_badvers_carries_status_505() -> None:
    with pytest.raises(ParseError) as caught:
        parse("badvers")
    assert caught.value.status == 505
