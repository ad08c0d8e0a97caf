"""SIP/SIPS URIs (RFC 3261 sections 19.1 and 25): parsing, %-escaping, serialisation and the
comparison rules of section 19.1.4; other schemes kept as they are."""

from __future__ import annotations

import pytest

from callmeter.sip import AbsoluteUri, ParseError, SipUri, parse_uri
from callmeter.sip.uri import _parse_sip_general


def parts(uri: SipUri) -> tuple[object, ...]:
    """Every field, for comparisons stricter than the RFC's ``==``."""
    return (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params, uri.headers)


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


def test_all_parts_of_a_sip_uri() -> None:
    uri = sip("sips:alice:secret@example.com:5061;transport=tcp;lr?subject=project&priority=urgent")
    assert parts(uri) == (
        "sips",
        "alice",
        "secret",
        "example.com",
        5061,
        [("transport", "tcp"), ("lr", None)],
        [("subject", "project"), ("priority", "urgent")],
    )
    assert uri.hostport == "example.com:5061"
    assert str(uri) == (
        "sips:alice:secret@example.com:5061;transport=tcp;lr?subject=project&priority=urgent"
    )


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:127.0.0.1", "127.0.0.1", None),
        ("sip:[2001:db8::10]:5070", "[2001:db8::10]", 5070),
        ("sip:[::1]", "[::1]", None),
        ("sip:gw-1.example.net.", "gw-1.example.net.", None),
        ("sip:h:0", "h", 0),
        ("sip:h:65535", "h", 65535),
        ("sip:h:0005060", "h", 5060),
    ],
)
def test_hosts_and_ports(text: str, host: str, port: int | None) -> None:
    uri = sip(text)
    assert (uri.host, uri.port, uri.user) == (host, port, None)
    assert str(uri) == text.replace(":0005060", ":5060")


def test_scheme_is_case_insensitive_and_normalised() -> None:
    uri = sip("SIP:Bob@Example.COM")
    assert (uri.scheme, uri.user, uri.host) == ("sip", "Bob", "Example.COM")
    assert str(uri) == "sip:Bob@Example.COM"
    assert sip("SiPs:h").scheme == "sips"


def test_escapes_are_decoded_and_re_escaped_only_where_needed() -> None:
    uri = sip("sip:%61lice%20smith@h;n%61me=v%61lue%25%34%31?Ro%75te=%3Csip:x%3E")
    assert uri.user == "alice smith"
    assert uri.params == [("name", "value%41")]
    assert uri.headers == [("Route", "<sip:x>")]
    assert str(uri) == "sip:alice%20smith@h;name=value%2541?Route=%3Csip:x%3E"
    assert parts(sip(str(uri))) == parts(uri)


def test_user_part_keeps_its_legal_punctuation_and_escapes_the_rest() -> None:
    uri = sip("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u@example.net"
    assert str(uri) == "sip:user;par=u%40example.net@example.com"
    assert SipUri("h", user="a@b:c d").aor == "sip:a%40b%3Ac%20d@h"


def test_nul_and_non_utf8_escapes_survive_a_round_trip() -> None:
    assert sip("sip:%00%00@h").user == "\x00\x00"
    assert str(sip("sip:%00%00@h")) == "sip:%00%00@h"
    raw = sip("sip:%FF%C3%A9@h")
    assert raw.user == "\udcffé"
    assert str(raw) == "sip:%FF%C3%A9@h"


def test_password_and_telephone_user() -> None:
    uri = sip("sip:+1-212-555-1212:1234@gateway.com;user=phone")
    assert (uri.user, uri.password, uri.param("USER")) == ("+1-212-555-1212", "1234", "phone")


@pytest.mark.parametrize(
    "text",
    [
        "tel:+1-201-555-0123",
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "soap.beep://192.0.2.103:3002",
        "HTTP://www.example.com/a?b=c",
        "urn:service:sos",
    ],
)
def test_other_schemes_are_kept_as_they_are(text: str) -> None:
    uri = parse_uri(text)
    scheme, _, opaque = text.partition(":")
    assert uri == AbsoluteUri(scheme, opaque)
    assert str(uri) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "URI '': missing or invalid scheme"),
        ("example.com", "URI 'example.com': missing or invalid scheme"),
        ("1sip:a@b", "URI '1sip:a@b': missing or invalid scheme"),
        ("<sip:a@b>", "URI '<sip:a@b>': missing or invalid scheme"),
        ("tel:", "URI 'tel:': nothing after the scheme"),
        ("tel:+1 555", "URI 'tel:+1 555': whitespace, '<', '>' or '\"' in the URI"),
        ("sip:", "URI 'sip:': invalid host ''"),
        ("sip:@h", "URI 'sip:@h': invalid user part ''"),
        ("sip:a b@h", "URI 'sip:a b@h': invalid user part 'a b'"),
        ("sip:a%4@h", "URI 'sip:a%4@h': invalid user part 'a%4'"),
        ("sip:a:p w@h", "URI 'sip:a:p w@h': invalid password"),
        ("sip:a@-h", "URI 'sip:a@-h': invalid host '-h'"),
        ("sip:a@h_1", "URI 'sip:a@h_1': invalid host 'h_1'"),
        ("sip:h:", "URI 'sip:h:': invalid port ''"),
        ("sip:h:5o60", "URI 'sip:h:5o60': invalid port '5o60'"),
        ("sip:h:65536", "URI 'sip:h:65536': invalid port '65536'"),
        ("sip:h:" + "9" * 5000, "URI 'sip:h:" + "9" * 74 + "': invalid port '" + "9" * 20 + "'"),
        ("sip:[::1", "URI 'sip:[::1': unterminated IPv6 reference"),
        ("sip:[::1]x", "URI 'sip:[::1]x': garbage after the IPv6 reference"),
        ("sip:[::g]", "URI 'sip:[::g]': invalid host '[::g]'"),
        ("sip:h;", "URI 'sip:h;': invalid uri-parameter ''"),
        ("sip:h;a=", "URI 'sip:h;a=': invalid uri-parameter 'a='"),
        ("sip:h;a=b c", "URI 'sip:h;a=b c': invalid uri-parameter 'a=b c'"),
        ("sip:h?x", "URI 'sip:h?x': invalid header 'x'"),
        ("sip:h?x=1&", "URI 'sip:h?x=1&': invalid header ''"),
        ("sip:h?x=<", "URI 'sip:h?x=<': invalid header 'x=<'"),
    ],
)
def test_malformed_uris_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_uri(text)
    assert str(caught.value) == message


def test_fast_and_general_parsers_agree() -> None:
    for text in (
        "sip:alice@example.com:5060;transport=udp;lr",
        "sip:example.com",
        "sip:+1;x=y?@h",
        "sip:[::1]:5061;maddr=[::2]",
        "sip:u@h;a=b;c;d=e:f",
    ):
        fast = sip(text)
        general = _parse_sip_general("sip", text[4:], text)
        assert parts(fast) == parts(general), text


class TestEquality:
    """RFC 3261 section 19.1.4, with its own examples."""

    @pytest.mark.parametrize(
        ("left", "right"),
        [
            ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
            ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
            ("SIP:bob@h", "sip:bob@h"),
        ],
    )
    def test_equivalent(self, left: str, right: str) -> None:
        assert sip(left) == sip(right)
        assert sip(right) == sip(left)

    @pytest.mark.parametrize(
        ("left", "right"),
        [
            ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
            ("sip:bob@biloxi.com:6000;transport=tcp", "sip:bob@biloxi.com:6000"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
            ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
            ("sip:a:pw@h", "sip:a@h"),
            ("sip:h;user=phone", "sip:h"),
            ("sip:h;maddr=1.2.3.4", "sip:h;maddr=1.2.3.5"),
        ],
    )
    def test_not_equivalent(self, left: str, right: str) -> None:
        assert sip(left) != sip(right)
        assert sip(right) != sip(left)

    def test_not_equal_to_other_types_and_unhashable(self) -> None:
        uri = sip("sip:h")
        assert uri != "sip:h"
        assert uri != AbsoluteUri("sip", "h")
        with pytest.raises(TypeError):
            hash(uri)


def test_param_lookup_is_case_insensitive() -> None:
    uri = sip("sip:h;LR;Transport=TCP")
    assert uri.param("lr") == ""
    assert uri.param("transport") == "TCP"
    assert uri.param("maddr") is None
    assert uri.has_param("Lr") and not uri.has_param("ttl")


def test_with_params_replaces_and_adds_without_touching_the_original() -> None:
    uri = sip("sip:u@h;Transport=udp;x=1?a=b")
    changed = uri.with_params(transport="tcp", lr=None)
    assert str(changed) == "sip:u@h;x=1;transport=tcp;lr?a=b"
    assert str(uri) == "sip:u@h;Transport=udp;x=1?a=b"
    changed.headers.append(("c", "d"))
    assert uri.headers == [("a", "b")]


def test_aor_drops_port_and_params_and_lowercases_the_host() -> None:
    assert sip("sip:Alice@Example.COM:5070;transport=tcp").aor == "sip:Alice@example.com"
    assert sip("sips:example.com").aor == "sips:example.com"
