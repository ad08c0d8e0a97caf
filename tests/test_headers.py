"""Header fields (RFC 3261 sections 7.3 and 20): the ordered header list, its typed cache, and
the typed values Via, NameAddr and CSeq."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from callmeter.sip import AbsoluteUri, CSeq, Headers, NameAddr, ParseError, SipUri, Via
from callmeter.sip.headers import (
    bounded_int,
    canonical_name,
    header_title,
    parse_params,
    split_values,
)


class TestNames:
    @pytest.mark.parametrize(
        ("name", "canonical"),
        [("V", "via"), ("Via", "via"), ("i", "call-id"), ("m", "contact"), ("l", "content-length"),
         ("k", "supported"), ("X-Custom", "x-custom"), ("CSEQ", "cseq")],
    )  # fmt: skip
    def test_canonical_name(self, name: str, canonical: str) -> None:
        assert canonical_name(name) == canonical

    @pytest.mark.parametrize(
        ("name", "title"),
        [("i", "Call-ID"), ("cseq", "CSeq"), ("record-route", "Record-Route"), ("v", "Via"),
         ("www-authenticate", "WWW-Authenticate")],
    )  # fmt: skip
    def test_header_title(self, name: str, title: str) -> None:
        assert header_title(name) == title


def sample() -> Headers:
    return Headers(
        [
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"),
            ("From", "<sip:a@h>;tag=1"),
            ("v", "SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/UDP c;branch=z9hG4bK3"),
            ("Contact", '"Doe, John" <sip:j@h>, <sip:k@h;x=a,b>'),
        ]
    )


class TestHeaders:
    def test_order_raw_names_and_duplicates_are_kept(self) -> None:
        headers = sample()
        assert [name for name, _ in headers] == ["Via", "From", "v", "Contact"]
        assert len(headers) == 4

    def test_lookup_is_case_insensitive_and_knows_compact_forms(self) -> None:
        headers = sample()
        assert "VIA" in headers and "v" in headers and "f" in headers
        assert "To" not in headers and 42 not in headers
        assert headers.get("V") == "SIP/2.0/UDP a;branch=z9hG4bK1"
        assert headers.get("to") is None
        assert headers.get("to", "x") == "x"
        assert headers.count("via") == 2
        assert headers.get_all("Via") == [
            "SIP/2.0/UDP a;branch=z9hG4bK1",
            "SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/UDP c;branch=z9hG4bK3",
        ]

    def test_values_split_on_commas_outside_quotes_and_brackets(self) -> None:
        headers = sample()
        assert headers.values("via") == [
            "SIP/2.0/UDP a;branch=z9hG4bK1",
            "SIP/2.0/UDP b;branch=z9hG4bK2",
            "SIP/2.0/UDP c;branch=z9hG4bK3",
        ]
        assert headers.values("m") == ['"Doe, John" <sip:j@h>', "<sip:k@h;x=a,b>"]

    def test_values_name_the_header_in_errors(self) -> None:
        headers = Headers([("v", "SIP/2.0/UDP a,,SIP/2.0/UDP b"), ("Contact", "  ")])
        with pytest.raises(ParseError) as caught:
            headers.values("Via")
        assert str(caught.value) == (
            "Via: empty element in comma-separated value 'SIP/2.0/UDP a,,SIP/2.0/UDP b'"
        )
        with pytest.raises(ParseError, match=r"^Contact: empty value$"):
            headers.values("contact")

    @pytest.mark.parametrize("name", ["Allow", "Supported", "k", "Accept"])
    def test_empty_lists_where_the_grammar_allows_them(self, name: str) -> None:
        assert Headers([(name, ""), (name, "a, b")]).values(name) == ["a", "b"]

    def test_get_all_returns_a_copy(self) -> None:
        headers = sample()
        headers.get_all("via").append("x")
        assert headers.count("via") == 2

    def test_add_prepend_set_remove(self) -> None:
        headers = sample()
        headers.add("Route", "<sip:r1>")
        headers.prepend("Via", "SIP/2.0/UDP top")
        headers.prepend("Record-Route", "<sip:rr>")
        assert [name for name, _ in headers] == [
            "Record-Route", "Via", "Via", "From", "v", "Contact", "Route",
        ]  # fmt: skip
        assert headers.get("via") == "SIP/2.0/UDP top"
        headers.set("VIA", "SIP/2.0/TCP only")
        assert list(headers)[1:3] == [("VIA", "SIP/2.0/TCP only"), ("From", "<sip:a@h>;tag=1")]
        assert headers.count("via") == 1
        headers.set("Max-Forwards", "70")
        assert list(headers)[-1] == ("Max-Forwards", "70")
        headers.remove("route")
        headers.remove("not-there")
        assert "Route" not in headers
        assert len(headers) == 5

    def test_pop_first_value_takes_the_top_via(self) -> None:
        headers = Headers([("Via", "SIP/2.0/UDP a, SIP/2.0/UDP b"), ("Via", "SIP/2.0/UDP c")])
        assert headers.pop_first_value("via") == "SIP/2.0/UDP a"
        assert headers.get_all("via") == ["SIP/2.0/UDP b", "SIP/2.0/UDP c"]
        assert headers.pop_first_value("via") == "SIP/2.0/UDP b"
        assert headers.pop_first_value("via") == "SIP/2.0/UDP c"
        assert headers.pop_first_value("via") is None
        assert len(headers) == 0

    def test_copy_is_independent(self) -> None:
        headers = sample()
        copy = headers.copy()
        copy.add("To", "<sip:b@h>")
        copy.remove("From")
        assert "To" not in headers and "From" in headers
        assert copy != headers

    def test_equality_ignores_name_spelling_but_not_order_or_values(self) -> None:
        assert Headers([("v", "x"), ("I", "y")]) == Headers([("Via", "x"), ("call-id", "y")])
        assert Headers([("Via", "x"), ("Call-ID", "y")]) != Headers(
            [("Call-ID", "y"), ("Via", "x")]
        )
        assert Headers([("Via", "x")]) != Headers([("Via", "X")])
        assert Headers() != [("Via", "x")]
        with pytest.raises(TypeError):
            hash(Headers())

    def test_by_name_is_a_snapshot_keyed_by_canonical_name(self) -> None:
        headers = sample()
        by_name = headers.by_name()
        assert list(by_name) == ["via", "from", "contact"]
        assert by_name["via"] == [
            "SIP/2.0/UDP a;branch=z9hG4bK1",
            "SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/UDP c;branch=z9hG4bK3",
        ]
        headers.add("To", "<sip:b@h>")
        assert "to" not in by_name
        assert headers.by_name()["to"] == ["<sip:b@h>"]

    def test_repr(self) -> None:
        assert repr(Headers([("To", "x")])) == "Headers([('To', 'x')])"


class TestFromLines:
    def test_names_values_and_lws(self) -> None:
        headers = Headers.from_lines(["Via  :  SIP/2.0/UDP a  ", "s:", "X-Empty :\t"])
        assert list(headers) == [("Via", "SIP/2.0/UDP a"), ("s", ""), ("X-Empty", "")]

    def test_continuation_lines_are_unfolded_with_one_space(self) -> None:
        headers = Headers.from_lines(
            ["Subject: I know you're there,", "  pick up the phone", "\tand talk to me!", "To:",
             " <sip:b@h>", "Max-Forwards: 70"]
        )  # fmt: skip
        assert list(headers) == [
            ("Subject", "I know you're there, pick up the phone and talk to me!"),
            ("To", "<sip:b@h>"),
            ("Max-Forwards", "70"),
        ]

    def test_many_continuation_lines_take_linear_time(self) -> None:
        headers = Headers.from_lines(["X: a", *([" b"] * 50_000)])
        assert len(headers.get("x") or "") == 1 + 2 * 50_000

    @pytest.mark.parametrize(
        ("lines", "message"),
        [
            ([" Via: x"], "continuation line before the first header"),
            (["Via x"], "header line without a colon: 'Via x'"),
            ([""], "header line without a colon: ''"),
            (["Via", "To: x"], "header line without a colon: 'Via'"),
            (["Bad Name: x"], "invalid header name 'Bad Name'"),
            ([": x"], "invalid header name ''"),
            (["T\u00f6: x"], "invalid header name 'T\u00f6'"),
        ],
    )
    def test_malformed_lines(self, lines: list[str], message: str) -> None:
        with pytest.raises(ParseError) as caught:
            Headers.from_lines(lines)
        assert str(caught.value) == message


class TestTypedCache:
    def counting(self) -> tuple[list[int], Callable[[Headers], int]]:
        calls: list[int] = []

        def parse(headers: Headers) -> int:
            calls.append(1)
            return headers.count("via")

        return calls, parse

    def test_parsed_once_then_cached(self) -> None:
        headers = sample()
        calls, parse = self.counting()
        assert headers.typed("Via", parse) == 2
        assert headers.typed("v", parse) == 2
        assert len(calls) == 1

    @pytest.mark.parametrize(
        "change",
        [
            lambda h: h.add("v", "SIP/2.0/UDP d"),
            lambda h: h.prepend("Via", "SIP/2.0/UDP d"),
            lambda h: h.set("VIA", "SIP/2.0/UDP d"),
            lambda h: h.remove("via"),
            lambda h: h.pop_first_value("Via"),
        ],
    )
    def test_a_change_of_that_header_invalidates(self, change: Callable[[Headers], object]) -> None:
        headers = sample()
        calls, parse = self.counting()
        before = headers.typed("via", parse)
        change(headers)
        after = headers.typed("via", parse)
        assert len(calls) == 2
        assert after == headers.count("via")
        assert before == 2

    def test_a_change_of_another_header_keeps_the_cache(self) -> None:
        headers = sample()
        calls, parse = self.counting()
        headers.typed("via", parse)
        headers.add("To", "<sip:b@h>")
        headers.set("From", "<sip:c@h>")
        headers.remove("Contact")
        headers.typed("via", parse)
        assert len(calls) == 1

    def test_two_parsers_of_one_header_do_not_share_an_entry(self) -> None:
        headers = sample()
        assert headers.typed("via", lambda h: "first") == "first"
        assert headers.typed("via", lambda h: "second") == "second"

    def test_a_failed_parse_is_not_cached(self) -> None:
        headers = Headers([("CSeq", "x")])

        def parse(h: Headers) -> CSeq:
            return CSeq.parse(h.get("cseq") or "")

        for _ in range(2):
            with pytest.raises(ParseError):
                headers.typed("cseq", parse)
        headers.set("CSeq", "2 BYE")
        assert headers.typed("cseq", parse) == CSeq(2, "BYE")

    def test_copy_starts_with_an_empty_cache(self) -> None:
        headers = sample()
        calls, parse = self.counting()
        headers.typed("via", parse)
        headers.copy().typed("via", parse)
        assert len(calls) == 2


class TestSplitAndParams:
    @pytest.mark.parametrize(
        ("value", "parts"),
        [
            ("a", ["a"]),
            (" a ,\tb ", ["a", "b"]),
            ('"x, \\"y" <sip:a>, <sip:b;p=1,2>', ['"x, \\"y" <sip:a>', "<sip:b;p=1,2>"]),
            ('<sip:a>;p="q,r", b', ['<sip:a>;p="q,r"', "b"]),
        ],
    )
    def test_split_values(self, value: str, parts: list[str]) -> None:
        assert split_values(value) == parts

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("", "empty value"),
            ("a,", "empty element in comma-separated value 'a,'"),
            (",a", "empty element in comma-separated value ',a'"),
            ('"a, b', "unterminated quoted string in '\"a, b'"),
            ('"a\\", b', "unterminated quoted string in '\"a\\\\\", b'"),
            ("<sip:a, b", "unterminated '<' in '<sip:a, b'"),
        ],
    )
    def test_split_values_errors(self, value: str, message: str) -> None:
        with pytest.raises(ParseError) as caught:
            split_values(value)
        assert str(caught.value) == message

    def test_parse_params(self) -> None:
        assert parse_params("", "X") == ()
        assert parse_params(";a=1;b;C=[::1]", "X") == (("a", "1"), ("b", None), ("C", "[::1]"))
        assert parse_params(' ;  a = "x;y" ; b ', "X") == (("a", '"x;y"'), ("b", None))

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("x", "X: unexpected 'x'"),
            (";", "X: invalid parameter ''"),
            (";a=", "X: invalid parameter 'a='"),
            (";a b=1", "X: invalid parameter 'a b=1'"),
            (";a=b c", "X: invalid parameter 'a=b c'"),
            (';a="b', "unterminated quoted string in 'a=\"b'"),
        ],
    )
    def test_parse_params_errors(self, text: str, message: str) -> None:
        with pytest.raises(ParseError) as caught:
            parse_params(text, "X")
        assert str(caught.value) == message


class TestVia:
    def test_typical(self) -> None:
        via = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776;received=192.0.2.1;rport=5070")
        assert (via.transport, via.host, via.port, via.version) == ("UDP", "10.0.0.1", 5060, "2.0")
        assert via.branch == "z9hG4bK776"
        assert via.received == "192.0.2.1"
        assert via.rport == 5070
        assert via.sent_by == ("10.0.0.1", 5060)
        assert via.param("RECEIVED") == "192.0.2.1"

    def test_rport_flag_and_absent_params(self) -> None:
        via = Via.parse("SIP/2.0/tcp h;rport")
        assert (via.transport, via.rport, via.param("rport"), via.branch, via.received) == (
            "TCP", None, "", None, None,
        )  # fmt: skip

    def test_lws_everywhere_and_ipv6(self) -> None:
        via = Via.parse("SIP / 2.0 / UDP  [2001:db8::9] : 5062 ; branch = z9hG4bKx ; rport = 1")
        assert (via.host, via.port, via.branch, via.rport) == ("[2001:db8::9]", 5062, "z9hG4bKx", 1)

    def test_str_round_trips(self) -> None:
        text = "SIP/2.0/TLS h.example.com:5061;branch=z9hG4bK1;maddr=224.2.0.1;ttl=16"
        via = Via.parse(text)
        assert str(via) == text
        assert Via.parse(str(via)) == via
        assert str(Via("UDP", "h")) == "SIP/2.0/UDP h"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "Via: expected 'SIP/2.0/transport host', got ''"),
            ("garbage", "Via: expected 'SIP/2.0/transport host', got 'garbage'"),
            ("SIP/2.0/UDP", "Via: expected 'SIP/2.0/transport host', got 'SIP/2.0/UDP'"),
            ("HTTP/1.1/TCP h", "Via: protocol 'HTTP' is not SIP"),
            ("SIP/2.0/UDP h:65536", "Via: invalid port 65536"),
            ("SIP/2.0/UDP h:" + "1" * 5000, "Via: invalid port " + "1" * 20),
            ("SIP/2.0/UDP h;rport=x", "Via: invalid rport 'x'"),
            ("SIP/2.0/UDP h;rport=70000", "Via: invalid rport '70000'"),
            ("SIP/2.0/UDP h;branch=", "Via: invalid parameter 'branch='"),
            ("SIP/2.0/UDP h;;", "Via: invalid parameter ''"),
            ("SIP/2.0/UDP h junk", "Via: unexpected 'junk'"),
        ],
    )
    def test_malformed(self, text: str, message: str) -> None:
        with pytest.raises(ParseError) as caught:
            Via.parse(text)
        assert str(caught.value) == message


class TestNameAddr:
    def test_quoted_display_name_with_escapes(self) -> None:
        addr = NameAddr.parse('"Alice \\"A\\" \\\\ Doe" <sip:alice@h>;tag=88', "From")
        assert addr.display_name == 'Alice "A" \\ Doe'
        assert addr.tag == "88"
        assert addr.sip_uri.user == "alice"
        assert str(addr) == '"Alice \\"A\\" \\\\ Doe" <sip:alice@h>;tag=88'
        assert NameAddr.parse(str(addr)) == addr

    def test_token_display_name(self) -> None:
        addr = NameAddr.parse("Bob  Smith <sip:bob@h:5070>")
        assert addr.display_name == "Bob  Smith"
        assert str(addr) == '"Bob  Smith" <sip:bob@h:5070>'
        assert NameAddr.parse("caller<sip:c@h>").display_name == "caller"

    def test_empty_quoted_display_name_is_kept(self) -> None:
        addr = NameAddr.parse('"" <sip:h>')
        assert addr.display_name == ""
        assert str(addr) == '"" <sip:h>'

    def test_uri_params_inside_brackets_header_params_outside(self) -> None:
        addr = NameAddr.parse("<sip:h;lr;transport=tcp>;expires=60;q=0.5")
        assert addr.sip_uri.params == [("lr", None), ("transport", "tcp")]
        assert addr.params == (("expires", "60"), ("q", "0.5"))

    def test_addr_spec_params_belong_to_the_header(self) -> None:
        addr = NameAddr.parse("sip:+1@gw;user=phone;tag=x")
        assert addr.sip_uri.params == []
        assert addr.params == (("user", "phone"), ("tag", "x"))
        assert str(addr) == "<sip:+1@gw>;user=phone;tag=x"

    def test_other_schemes(self) -> None:
        assert NameAddr.parse("<tel:+1-555>;tag=1").uri == AbsoluteUri("tel", "+1-555")
        with pytest.raises(ParseError, match=r"^expected a sip: or sips: URI, got 'tel:1'$"):
            NameAddr.parse("tel:1").sip_uri  # noqa: B018

    def test_escaped_uri_and_uppercase_scheme_take_the_general_path(self) -> None:
        addr = NameAddr.parse('"x" <SIP:%61@H:5060;Lr>;Tag=1')
        assert (addr.sip_uri.user, addr.sip_uri.host, addr.tag) == ("a", "H", "1")

    def test_with_tag(self) -> None:
        addr = NameAddr.parse("<sip:b@h>;tag=old;x=1")
        assert str(addr.with_tag("new")) == "<sip:b@h>;x=1;tag=new"
        assert addr.tag == "old"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "To: empty value"),
            ('"Bob <sip:b@h>', "To: unterminated quoted string in '\"Bob <sip:b@h>'"),
            ('"Bob" sip:b@h', "To: expected '<' after the display name"),
            ("Bell, Alexander <sip:a@h>", "To: display name 'Bell, Alexander' must be quoted"),
            ("<sip:b@h", "To: missing '>' in '<sip:b@h'"),
            ("< sip:b@h>", "To: whitespace inside <...> in '< sip:b@h>'"),
            ("<sip:b @h>", "To: whitespace inside the URI 'sip:b @h'"),
            ("sip:b@h?x=y", "To: URI 'sip:b@h?x=y' with '?' or ',' must be enclosed in <...>"),
            ("<sip:b@h:99999>", "To: URI 'sip:b@h:99999': invalid port '99999'"),
            ("<garbage>", "To: URI 'garbage': missing or invalid scheme"),
            ("<sip:b@h> junk", "To: unexpected 'junk'"),
            ("<sip:b@h>;", "To: invalid parameter ''"),
        ],
    )
    def test_malformed(self, text: str, message: str) -> None:
        with pytest.raises(ParseError) as caught:
            NameAddr.parse(text, "To")
        assert str(caught.value) == message


class TestCSeq:
    @pytest.mark.parametrize(
        ("text", "seq", "method"),
        [
            ("1 INVITE", 1, "INVITE"),
            ("0009  \t INVITE ", 9, "INVITE"),
            (" 2147483647 BYE", CSeq.MAX, "BYE"),
            ("0 NEWMETHOD", 0, "NEWMETHOD"),
            ("0" * 5000 + "7 ACK", 7, "ACK"),
        ],
    )
    def test_parse(self, text: str, seq: int, method: str) -> None:
        assert CSeq.parse(text) == CSeq(seq, method)

    def test_str(self) -> None:
        assert str(CSeq.parse("0009 INVITE")) == "9 INVITE"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "CSeq: empty value"),
            ("   ", "CSeq: empty value"),
            ("1", "CSeq: missing method"),
            ("-1 INVITE", "CSeq: invalid sequence number '-1'"),
            ("1.5 INVITE", "CSeq: invalid sequence number '1.5'"),
            ("\u0661 INVITE", "CSeq: invalid sequence number '\u0661'"),
            ("INVITE 1", "CSeq: invalid sequence number 'INVITE'"),
            ("1 INV ITE", "CSeq: invalid method 'INV ITE'"),
            ("2147483648 INVITE", "CSeq: sequence number 2147483648 is larger than 2**31 - 1"),
            (
                "9" * 5000 + " BYE",
                "CSeq: sequence number " + "9" * 24 + " is larger than 2**31 - 1",
            ),
        ],
    )
    def test_malformed(self, text: str, message: str) -> None:
        with pytest.raises(ParseError) as caught:
            CSeq.parse(text)
        assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "maximum", "value"),
    [("0", 0, 0), ("255", 255, 255), ("256", 255, None), ("007", 10, 7), ("", 9, None),
     ("-1", 9, None), ("+1", 9, None), ("\u00b2", 9, None), ("1" * 5000, 2**63, None),
     ("0" * 5000, 1, 0)],
)  # fmt: skip
def test_bounded_int(text: str, maximum: int, value: int | None) -> None:
    assert bounded_int(text, maximum) == value


def test_sip_uri_type_of_name_addr() -> None:
    assert isinstance(NameAddr.parse("<sip:h>").uri, SipUri)
