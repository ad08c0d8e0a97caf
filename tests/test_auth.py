"""Digest authentication (callmeter.sip.auth): RFC 7616 vectors, wire round-trips, the client
session, the server nonce scheme and the exact parse errors."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import callmeter.sip.auth as auth_module
from callmeter.sip.auth import (
    HA1,
    MAX_HEADER_VALUE_LEN,
    Challenge,
    Credentials,
    DigestSession,
    NonceManager,
    compute_ha1,
    compute_response,
    credentials_rejected,
    make_challenge,
    verify,
)
from callmeter.sip.errors import LocalProtocolError, ParseError

# RFC 7616 section 3.9.1.
USERNAME, PASSWORD = "Mufasa", "Circle of Life"
REALM = "http-auth@example.org"
NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
URI = "/dir/index.html"
RFC7616_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


def rfc7616_challenge(algorithm: str) -> str:
    """The challenge as printed in the RFC: folded over lines (CRLF + spaces)."""
    return (
        'Digest\r\n    realm="http-auth@example.org",\r\n    qop="auth, auth-int",\r\n'
        f'    algorithm={algorithm},\r\n    nonce="{NONCE}",\r\n    opaque="{OPAQUE}"'
    )


def rfc7616_credentials(algorithm: str) -> str:
    return (
        f'Digest username="Mufasa",\r\n    realm="http-auth@example.org",\r\n'
        f'    uri="/dir/index.html",\r\n    algorithm={algorithm},\r\n    nonce="{NONCE}",\r\n'
        f'    nc=00000001,\r\n    cnonce="{CNONCE}",\r\n    qop=auth,\r\n'
        f'    response="{RFC7616_RESPONSES[algorithm]}",\r\n    opaque="{OPAQUE}"'
    )


def h(name: str, text: str) -> str:
    return hashlib.new(name, text.encode()).hexdigest()


# -- RFC 7616 test vectors ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_vector_client(algorithm: str) -> None:
    challenge = Challenge.parse(rfc7616_challenge(algorithm))
    assert challenge.qop == ("auth", "auth-int")
    creds = DigestSession(USERNAME, PASSWORD).authorize(challenge, "GET", URI, cnonce=CNONCE)
    assert creds == Credentials.parse(rfc7616_credentials(algorithm))
    assert creds is not None and creds.response == RFC7616_RESPONSES[algorithm]
    assert (creds.qop, creds.nc, creds.opaque, creds.algorithm) == (
        "auth",
        "00000001",
        OPAQUE,
        algorithm,
    )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_vector_server(algorithm: str) -> None:
    creds = Credentials.parse(rfc7616_credentials(algorithm))
    assert verify(creds, "GET", PASSWORD, realm=REALM, uri=URI)
    ha1 = HA1(compute_ha1(USERNAME, REALM, PASSWORD, algorithm), algorithm)
    assert verify(creds, "GET", ha1, realm=REALM, uri=URI)
    assert compute_response(ha1.value, creds, "GET") == RFC7616_RESPONSES[algorithm]


def test_rfc2617_no_qop_md5_computed_from_the_formula() -> None:
    nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093"
    challenge = Challenge.parse(f'Digest realm="biloxi.com", nonce="{nonce}"')
    creds = DigestSession("bob", "zanzibar").authorize(
        challenge, "REGISTER", "sip:biloxi.com", "unused"
    )
    ha1 = h("md5", "bob:biloxi.com:zanzibar")
    ha2 = h("md5", "REGISTER:sip:biloxi.com")
    assert creds is not None
    assert creds.response == h("md5", f"{ha1}:{nonce}:{ha2}")
    assert (creds.qop, creds.nc, creds.cnonce, creds.algorithm) == (None, None, None, None)
    assert str(creds) == (
        f'Digest username="bob", realm="biloxi.com", nonce="{nonce}", uri="sip:biloxi.com", '
        f'response="{creds.response}"'
    )
    assert verify(creds, "REGISTER", "zanzibar", realm="biloxi.com", require_qop=False)
    assert not verify(creds, "REGISTER", "zanzibar", realm="biloxi.com")  # qop required


@pytest.mark.parametrize(
    ("algorithm", "hashlib_name"), [("MD5-sess", "md5"), ("SHA-256-sess", "sha256")]
)
def test_sess_algorithms_computed_from_the_formula(algorithm: str, hashlib_name: str) -> None:
    challenge = make_challenge("r", "n0", algorithm)
    creds = DigestSession("u", "p").authorize(challenge, "INVITE", "sip:b@r", "c0")
    ha1 = h(hashlib_name, f"{h(hashlib_name, 'u:r:p')}:n0:c0")
    ha2 = h(hashlib_name, "INVITE:sip:b@r")
    assert creds is not None
    assert creds.response == h(hashlib_name, f"{ha1}:n0:00000001:c0:auth:{ha2}")
    assert verify(creds, "INVITE", "p", realm="r")


def test_auth_int_computed_from_the_formula() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    challenge = Challenge.parse('Digest realm="r", nonce="n", qop="auth-int"')
    creds = DigestSession("u", "p").authorize(challenge, "INVITE", "sip:b@r", "c", body)
    ha2 = h("md5", f"INVITE:sip:b@r:{hashlib.md5(body).hexdigest()}")
    assert creds is not None and creds.qop == "auth-int"
    assert creds.response == h("md5", f"{h('md5', 'u:r:p')}:n:00000001:c:auth-int:{ha2}")
    assert verify(creds, "INVITE", "p", realm="r", body=body)
    assert not verify(creds, "INVITE", "p", realm="r", body=body + b"a=sendonly\r\n")


def test_auth_is_picked_when_both_are_offered() -> None:
    creds = DigestSession("u", "p").authorize(
        Challenge.parse('Digest realm="r", nonce="n", qop="auth-int,auth"'), "OPTIONS", "sip:r", "c"
    )
    assert creds is not None and creds.qop == "auth"


# -- wire format -------------------------------------------------------------------------------

KAMAILIO_CHALLENGES = [
    'Digest realm="127.0.0.1", nonce="Z2pfmWdqXm35dL0+1wHlk1lnAcXxGeNB"',
    'Digest realm="127.0.0.1", nonce="Z2pfmWdqXm35dL0+1wHlk1lnAcXxGeNB", qop="auth"',
    'Digest realm="127.0.0.1", nonce="Z2pfmWdqXm35dL0+1wHlk1lnAcXxGeNB", qop="auth", stale=true, '
    "algorithm=SHA-256",
]


@pytest.mark.parametrize("text", KAMAILIO_CHALLENGES)
def test_kamailio_challenges_round_trip_byte_exact(text: str) -> None:
    challenge = Challenge.parse(text)
    assert (challenge.realm, challenge.nonce) == ("127.0.0.1", "Z2pfmWdqXm35dL0+1wHlk1lnAcXxGeNB")
    assert str(challenge) == challenge.serialize() == text


def test_kamailio_challenge_fields() -> None:
    plain, with_qop, stale = (Challenge.parse(t) for t in KAMAILIO_CHALLENGES)
    assert (plain.algorithm, plain.qop, plain.stale, plain.opaque) == (None, (), False, None)
    assert with_qop.qop == ("auth",) and not with_qop.stale
    assert stale.stale and stale.algorithm == "SHA-256"


def test_challenge_names_and_scheme_are_case_insensitive_and_unknown_params_kept() -> None:
    challenge = Challenge.parse(
        'digest REALM="atlanta.com" , Domain="sip:ss1.carrier.com",,NONCE = "f84f1cec41e6cbe5aea9'
        'c8e88d359", Opaque="", STALE=FALSE, Algorithm=md5, QoP="AUTH", charset=UTF-8'
    )
    assert challenge == Challenge(
        realm="atlanta.com",
        nonce="f84f1cec41e6cbe5aea9c8e88d359",
        algorithm="md5",
        qop=("AUTH",),
        opaque="",
        stale=False,
        params=(("Domain", "sip:ss1.carrier.com"), ("charset", "UTF-8")),
    )
    creds = DigestSession("alice", "secret").authorize(
        challenge, "REGISTER", "sip:atlanta.com", "c"
    )
    assert creds is not None and creds.qop == "auth" and creds.opaque == ""
    assert verify(creds, "REGISTER", "secret", realm="atlanta.com")


def test_quoted_pairs_round_trip() -> None:
    text = r'Digest realm="say \"hi\" \\ bye", nonce="a\bc"'
    challenge = Challenge.parse(text)
    assert challenge.realm == 'say "hi" \\ bye' and challenge.nonce == "abc"
    assert str(challenge) == r'Digest realm="say \"hi\" \\ bye", nonce="abc"'
    assert Challenge.parse(str(challenge)) == challenge


def test_non_utf8_bytes_hash_as_sent() -> None:
    """The message layer decodes headers as UTF-8 with surrogateescape (callmeter.sip.message)."""
    text = b'Digest realm="caf\xe9", nonce="n", qop=auth'.decode("utf-8", "surrogateescape")
    creds = DigestSession("u", "p").authorize(Challenge.parse(text), "REGISTER", "sip:r", "c")
    ha1 = hashlib.md5(b"u:caf\xe9:p").hexdigest()
    assert creds is not None
    assert creds.response == h("md5", f"{ha1}:n:00000001:c:auth:{h('md5', 'REGISTER:sip:r')}")
    assert str(creds).encode("utf-8", "surrogateescape").count(b'realm="caf\xe9"') == 1
    assert verify(Credentials.parse(str(creds)), "REGISTER", "p", realm="caf\udce9")


ROUND_TRIP_CHALLENGES = [
    Challenge("r", "n"),
    Challenge("a b", 'q"uo\\te', "SHA-256-sess", ("auth", "auth-int"), "op", True),
    Challenge("r", "n", params=(("domain", "sip:a.example sip:b.example"), ("x", ""))),
    make_challenge("127.0.0.1", "n", "SHA-256", qop=None, opaque="o"),
]


@pytest.mark.parametrize("challenge", ROUND_TRIP_CHALLENGES)
def test_challenge_round_trip(challenge: Challenge) -> None:
    assert Challenge.parse(challenge.serialize()) == challenge


ROUND_TRIP_CREDENTIALS = [
    Credentials("alice", "r", "n", "sip:r", "0" * 32),
    Credentials(
        'a"l', "r", "n", "sip:r;transport=tcp", "f" * 64, "SHA-256", "c", "", "auth", "0000000a"
    ),
    Credentials("u", "r", "n", "sip:r", "x", params=(("userhash", "false"), ("ext", "a, b"))),
]


@pytest.mark.parametrize("creds", ROUND_TRIP_CREDENTIALS)
def test_credentials_round_trip(creds: Credentials) -> None:
    assert Credentials.parse(str(creds)) == creds


def test_credentials_serialize_in_rfc7616_quoting() -> None:
    creds = Credentials("u", "r", "n", "sip:r", "x", "MD5", "c", "o", "auth", "00000001")
    assert str(creds) == (
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="x", algorithm=MD5, '
        'cnonce="c", opaque="o", qop=auth, nc=00000001'
    )
    assert creds.nonce_count == 1
    assert Credentials.parse(str(creds).replace("qop=auth", 'qop="auth"')) == creds


@given(st.text(max_size=300))
def test_parse_raises_only_parse_error_and_round_trips(text: str) -> None:
    for cls in (Challenge, Credentials):
        try:
            parsed = cls.parse(text)
        except ParseError:
            continue
        assert cls.parse(parsed.serialize()) == parsed


_SAFE = st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=20)
_TOKENS = st.text("abcXYZ019-.!%*_+`'~", min_size=1, max_size=8)


@given(
    st.builds(
        Challenge,
        _SAFE,
        _SAFE,
        st.none() | _TOKENS,
        st.lists(_TOKENS, max_size=3).map(tuple),
        st.none() | _SAFE,
        st.booleans(),
        st.lists(
            st.tuples(_TOKENS.map(lambda t: "x-" + t), _SAFE),
            max_size=2,
            unique_by=lambda p: p[0].lower(),
        ).map(tuple),
    )
)
def test_any_challenge_round_trips(challenge: Challenge) -> None:
    assert Challenge.parse(str(challenge)) == challenge


# -- malformed input: the exact message --------------------------------------------------------

CHALLENGE_ERRORS = [
    ("", "Digest challenge: empty"),
    ('Basic realm="x"', 'Digest challenge: unsupported scheme "Basic"'),
    ('Digest="x"', 'Digest challenge: expected space after "Digest"'),
    ("Digest", "Digest challenge: missing realm"),
    ('Digest realm="127.0.0.1"', "Digest challenge: missing nonce"),
    ('Digest realm="127.0.0.1, nonce="abc', 'Digest challenge: expected "," after "realm"'),
    (
        'Digest realm="127.0.0.1", nonce="abc',
        'Digest challenge: unterminated quoted string in "nonce"',
    ),
    ('Digest realm="127.0.0.1', 'Digest challenge: unterminated quoted string in "realm"'),
    ('Digest realm="x\\', 'Digest challenge: unterminated quoted string in "realm"'),
    ('Digest realm="x" nonce="y"', 'Digest challenge: expected "," after "realm"'),
    ("Digest realm", 'Digest challenge: expected "=" after "realm"'),
    ('Digest realm x, nonce="y"', 'Digest challenge: expected "=" after "realm"'),
    ('Digest realm=, nonce="y"', 'Digest challenge: missing value for "realm"'),
    ('Digest realm="x", nonce=', 'Digest challenge: missing value for "nonce"'),
    ('Digest realm="x", nonce=a/b', 'Digest challenge: expected "," after "nonce"'),
    ('Digest realm="x", Realm="y", nonce="z"', 'Digest challenge: duplicate "Realm"'),
    ('Digest realm="x", nonce="y", foo=1, FOO=2', 'Digest challenge: duplicate "FOO"'),
    ('Digest realm="a\x00b", nonce="y"', 'Digest challenge: control character in "realm"'),
    ('Digest realm="a\\\nb", nonce="y"', 'Digest challenge: control character in "realm"'),
    ('Digest realm="x", nonce="y", ="z"', 'Digest challenge: unexpected character "="'),
    ('Digest realm="\ud800", nonce="y"', "Digest challenge: invalid character encoding"),
    (
        'Digest realm="' + "x" * MAX_HEADER_VALUE_LEN + '", nonce="y"',
        f"Digest challenge: longer than {MAX_HEADER_VALUE_LEN} characters",
    ),
]


@pytest.mark.parametrize(("text", "message"), CHALLENGE_ERRORS)
def test_malformed_challenge(text: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        Challenge.parse(text)
    assert str(info.value) == message
    assert info.value.status == 400


GOOD_CREDENTIALS = 'Digest username="u", realm="r", nonce="n", uri="sip:r", response="x"'
CREDENTIALS_ERRORS = [
    (
        'Digest username="u", realm="r", nonce="n", uri="sip:r"',
        "Digest credentials: missing response",
    ),
    (GOOD_CREDENTIALS + ", qop=auth, nc=00000001", "Digest credentials: missing cnonce"),
    (GOOD_CREDENTIALS + ', qop=auth, cnonce="c"', "Digest credentials: missing nc"),
    (GOOD_CREDENTIALS + ', qop=auth, cnonce="c", nc=1', 'Digest credentials: invalid nc "1"'),
    (
        GOOD_CREDENTIALS + ', qop=auth, cnonce="c", nc=0000000g',
        'Digest credentials: invalid nc "0000000g"',
    ),
    (GOOD_CREDENTIALS + ', username="v"', 'Digest credentials: duplicate "username"'),
]


@pytest.mark.parametrize(("text", "message"), CREDENTIALS_ERRORS)
def test_malformed_credentials(text: str, message: str) -> None:
    assert Credentials.parse(GOOD_CREDENTIALS).username == "u"
    with pytest.raises(ParseError) as info:
        Credentials.parse(text)
    assert str(info.value) == message


def test_rfc4475_unknown_authorization_scheme_is_refused_by_name() -> None:
    path = Path(__file__).resolve().parents[2] / "shared/testdata/rfc4475/regaut01.sip"
    if not path.exists():
        pytest.skip(f"RFC 4475 torture messages not present at {path}")
    header = next(
        line for line in path.read_bytes().split(b"\r\n") if line.startswith(b"Authorization:")
    )
    value = header.split(b":", 1)[1].decode()
    with pytest.raises(ParseError) as info:
        Credentials.parse(value)
    assert str(info.value) == 'Digest credentials: unsupported scheme "NoOneKnowsThisScheme"'


# -- client session ----------------------------------------------------------------------------


def test_nonce_count_increments_for_preauthorized_requests() -> None:
    session = DigestSession("alice", "pw")
    assert session.preauthorize("REGISTER", "sip:r", "c0") is None  # nothing challenged yet
    first = session.authorize(make_challenge("r", "n1"), "REGISTER", "sip:r", "c1")
    second = session.preauthorize("INVITE", "sip:bob@r", "c2")
    third = session.preauthorize("BYE", "sip:bob@r", "c3", realm="r")
    assert first is not None and second is not None and third is not None
    assert [c.nc for c in (first, second, third)] == ["00000001", "00000002", "00000003"]
    assert [c.cnonce for c in (first, second, third)] == ["c1", "c2", "c3"]
    assert verify(second, "INVITE", "pw", realm="r", uri="sip:bob@r")
    assert session.preauthorize("BYE", "sip:bob@r", "c", realm="elsewhere") is None
    again = session.authorize(make_challenge("r", "n1"), "REGISTER", "sip:r", "c4")
    fresh = session.authorize(make_challenge("r", "n2"), "REGISTER", "sip:r", "c5")
    assert again is not None and again.nc == "00000004"  # same nonce: the count goes on
    assert fresh is not None and fresh.nc == "00000001"  # new nonce: starts again


def test_sess_reuses_the_first_cnonce_under_one_nonce() -> None:
    session = DigestSession("u", "p")
    first = session.authorize(make_challenge("r", "n", "MD5-sess"), "REGISTER", "sip:r", "c1")
    later = session.preauthorize("REGISTER", "sip:r", "c2")
    assert first is not None and later is not None
    assert (first.cnonce, later.cnonce, later.nc) == ("c1", "c1", "00000002")
    assert verify(later, "REGISTER", "p", realm="r")


def test_stale_challenge_is_a_retry_not_a_password_failure() -> None:
    session = DigestSession("u", "p")
    sent = session.authorize(make_challenge("r", "n1"), "REGISTER", "sip:r", "c")
    stale = Challenge.parse('Digest realm="r", nonce="n2", qop="auth", stale=TRUE')
    assert stale.stale
    assert not credentials_rejected(stale, sent)
    retry = session.authorize(stale, "REGISTER", "sip:r", "c")
    assert retry is not None and (retry.nonce, retry.nc) == ("n2", "00000001")
    assert credentials_rejected(make_challenge("r", "n3"), retry)  # not stale: wrong password
    assert credentials_rejected(make_challenge("r", "n2"), retry)


def test_rejected_preauthorization_earns_one_fresh_retry() -> None:
    session = DigestSession("u", "p")
    session.authorize(make_challenge("r", "n1"), "REGISTER", "sip:r", "c")
    preauth = session.preauthorize("REGISTER", "sip:r", "c")
    assert preauth is not None and preauth.nc == "00000002"
    assert not credentials_rejected(make_challenge("r", "n2"), preauth)  # e.g. server restarted
    assert credentials_rejected(make_challenge("r", "n1"), preauth)  # same nonce: refused
    assert not credentials_rejected(make_challenge("r", "n2"), None)
    assert not credentials_rejected(make_challenge("other", "n2"), preauth)
    fresh = session.authorize(make_challenge("r", "n3"), "REGISTER", "sip:r", "c")
    assert fresh is not None and fresh.nc == "00000001"
    assert not credentials_rejected(make_challenge("proxy", "n4"), fresh)  # another realm asks
    assert credentials_rejected(make_challenge("r", "n4"), fresh)


def test_nonce_count_never_overflows_8lhex() -> None:
    session = DigestSession("u", "p")
    session.authorize(make_challenge("r", "n"), "REGISTER", "sip:r", "c")
    session._last["r"] = (make_challenge("r", "n"), 0xFFFFFFFE, "c")  # as after 2**32 - 2 uses
    last = session.preauthorize("REGISTER", "sip:r", "c")
    assert last is not None and last.nc == "ffffffff"
    assert session.preauthorize("REGISTER", "sip:r", "c") is None  # a new challenge is needed


def test_configured_realm_only_answers_its_own_realm() -> None:
    session = DigestSession("u", "p", realm="sip.example.com")
    foreign = make_challenge("evil.example.com", "n")
    assert session.refusal(foreign) == (
        'challenge realm "evil.example.com" is not the configured "sip.example.com"'
    )
    assert session.authorize(foreign, "REGISTER", "sip:example.com", "c") is None
    own = session.authorize(make_challenge("sip.example.com", "n"), "REGISTER", "sip:x", "c")
    assert own is not None and own.realm == "sip.example.com"
    assert session.preauthorize("REGISTER", "sip:x", "c") is not None


def test_unsupported_challenges_are_refused_with_a_reason() -> None:
    session = DigestSession("u", "p")
    sha512 = Challenge.parse('Digest realm="r", nonce="n", algorithm=SHA-512-256')
    assert session.refusal(sha512) == 'unsupported algorithm "SHA-512-256"'
    assert session.authorize(sha512, "REGISTER", "sip:r", "c") is None
    odd_qop = Challenge("r", "n", qop=("auth-conf",))
    assert session.refusal(odd_qop) == 'unsupported qop "auth-conf"'
    assert session.refusal(make_challenge("r", "n", "SHA-256-sess")) is None


def test_caller_errors_raise_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        make_challenge("r", "n", "SHA-1")
    with pytest.raises(LocalProtocolError):
        compute_ha1("u", "r", "p", "SHA-1")
    with pytest.raises(LocalProtocolError):
        compute_response("0" * 32, Credentials("u", "r", "n", "sip:r", "", qop="auth"), "GET")


# -- server: verify ----------------------------------------------------------------------------


def _good() -> Credentials:
    creds = DigestSession("alice", "s3cret").authorize(
        make_challenge("127.0.0.1", "n", "SHA-256"), "REGISTER", "sip:127.0.0.1", "c"
    )
    assert creds is not None
    return creds


def test_verify_accepts_good_credentials() -> None:
    creds = _good()
    assert verify(creds, "REGISTER", "s3cret", realm="127.0.0.1", uri="sip:127.0.0.1")
    ha1 = compute_ha1("alice", "127.0.0.1", "s3cret", "SHA-256")
    assert verify(creds, "REGISTER", HA1(ha1.upper(), "sha-256"), realm="127.0.0.1")
    upper = dataclasses.replace(creds, response=creds.response.upper())
    assert verify(upper, "REGISTER", "s3cret", realm="127.0.0.1")  # hex case is not the proof


def test_verify_rejects_credentials_for_another_realm_even_when_the_ha1_fits() -> None:
    foreign = DigestSession("alice", "s3cret").authorize(
        make_challenge("x", "n"), "REGISTER", "sip:127.0.0.1", "c"
    )
    assert foreign is not None
    ha1 = HA1(compute_ha1("alice", "x", "s3cret"))
    assert verify(foreign, "REGISTER", ha1, realm="x")
    assert not verify(foreign, "REGISTER", ha1, realm="127.0.0.1")


def test_verify_honours_the_algorithm_of_a_stored_ha1() -> None:
    sha256_value = compute_ha1("alice", "127.0.0.1", "s3cret", "SHA-256")
    assert verify(_good(), "REGISTER", HA1(sha256_value, "SHA-256"), realm="127.0.0.1")
    assert not verify(_good(), "REGISTER", HA1(sha256_value, "MD5"), realm="127.0.0.1")


@pytest.mark.parametrize(
    ("creds", "method", "secret", "realm", "uri"),
    [
        (_good(), "REGISTER", "wrong", "127.0.0.1", None),  # wrong password
        (_good(), "INVITE", "s3cret", "127.0.0.1", None),  # wrong method
        (_good(), "REGISTER", "s3cret", "127.0.0.1", "sip:other"),  # digest-uri is not R-URI
        (dataclasses.replace(_good(), uri="sip:other"), "REGISTER", "s3cret", "127.0.0.1", None),
        (_good(), "REGISTER", "s3cret", "example.com", None),  # not our realm
        (dataclasses.replace(_good(), realm="x"), "REGISTER", "s3cret", "x", None),
        (dataclasses.replace(_good(), nc="00000002"), "REGISTER", "s3cret", "127.0.0.1", None),
        (dataclasses.replace(_good(), algorithm="MD5"), "REGISTER", "s3cret", "127.0.0.1", None),
        (dataclasses.replace(_good(), algorithm="SHA-1"), "REGISTER", "s3cret", "127.0.0.1", None),
        (dataclasses.replace(_good(), qop="auth-conf"), "REGISTER", "s3cret", "127.0.0.1", None),
        (dataclasses.replace(_good(), response="é" * 64), "REGISTER", "s3cret", "127.0.0.1", None),
        (dataclasses.replace(_good(), response="\ud800"), "REGISTER", "s3cret", "127.0.0.1", None),
        (_good(), "REGISTER", HA1(compute_ha1("alice", "127.0.0.1", "s3cret")), "127.0.0.1", None),
    ],
)
def test_verify_rejects(
    creds: Credentials, method: str, secret: str | HA1, realm: str, uri: str | None
) -> None:
    assert verify(_good(), "REGISTER", "s3cret", realm="127.0.0.1", uri="sip:127.0.0.1")
    assert not verify(creds, method, secret, realm=realm, uri=uri)


# -- server: nonces ----------------------------------------------------------------------------

SECRET = b"0123456789abcdef0123456789abcdef"


def test_nonce_valid_then_stale() -> None:
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(now=1000.0)
    assert nonces.check(nonce, now=1000.0, max_age_s=30) == "valid"
    assert nonces.check(nonce, now=1030.0, max_age_s=30) == "valid"
    assert nonces.check(nonce, now=1030.5, max_age_s=30) == "stale"


def test_nonces_are_unique_within_one_instant() -> None:
    nonces = NonceManager(SECRET)
    issued = {nonces.issue(now=5.0) for _ in range(1000)}
    assert len(issued) == 1000


@pytest.mark.parametrize(
    "forge",
    [
        lambda n: n[:-1] + ("0" if n[-1] != "0" else "1"),  # MAC tampered
        lambda n: f"{0:016x}" + n[16:],  # timestamp tampered
        lambda n: NonceManager(b"another secret, 32 bytes long!!!").issue(1000.0),
        lambda n: "Z2pfmWdqXm35dL0+1wHlk1lnAcXxGeNB",
        lambda n: "",
        lambda n: "zz" * 28,
        lambda n: " " + n[1:],
        lambda n: "é" * 56,
    ],
)
def test_nonce_invalid(forge: object) -> None:
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(now=1000.0)
    assert callable(forge)
    assert nonces.check(nonce, now=1000.0, max_age_s=30) == "valid"
    assert nonces.check(forge(nonce), now=1000.0, max_age_s=30) == "invalid"
    assert not nonces.accept_nc(forge(nonce), 1)


def test_nonce_from_the_future_is_invalid() -> None:
    nonces = NonceManager(SECRET)
    assert nonces.check(nonces.issue(now=10.0), now=9.0, max_age_s=30) == "invalid"


def test_nonce_count_replay_is_rejected() -> None:
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(now=0.0)
    assert nonces.accept_nc(nonce, 1)
    assert not nonces.accept_nc(nonce, 1)
    assert nonces.accept_nc(nonce, 3)
    assert not nonces.accept_nc(nonce, 2)
    other = nonces.issue(now=0.0)
    assert not nonces.accept_nc(other, 0)
    assert nonces.accept_nc(other, 1)  # each nonce has its own count


def test_replay_memory_is_bounded_and_forgotten_nonces_go_stale() -> None:
    nonces = NonceManager(SECRET, max_tracked=2)
    first, second, third = (nonces.issue(now=float(t)) for t in (1, 2, 3))
    unused = nonces.issue(now=0.5)  # issued before the evicted one, never used
    for nonce in (first, second, third):
        assert nonces.accept_nc(nonce, 1)
    assert len(nonces._nc) == 2
    assert nonces.check(first, now=4.0, max_age_s=30) == "stale"  # forgotten: no replay window
    assert not nonces.accept_nc(first, 1)
    assert nonces.check(unused, now=4.0, max_age_s=30) == "stale"
    assert nonces.check(second, now=4.0, max_age_s=30) == "valid"
    assert nonces.check(third, now=4.0, max_age_s=30) == "valid"
    assert not nonces.accept_nc(third, 1)


def test_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        NonceManager(b"short")


def test_registrar_round_trip_with_a_fake_clock() -> None:
    nonces = NonceManager(SECRET)
    session = DigestSession("alice", "pw")
    challenge = make_challenge("127.0.0.1", nonces.issue(now=100.0), "SHA-256", opaque="o")
    wire = str(challenge)
    seen: list[str] = []
    for now, creds in [
        (100.5, session.authorize(Challenge.parse(wire), "REGISTER", "sip:127.0.0.1", "c1")),
        (110.0, session.preauthorize("REGISTER", "sip:127.0.0.1", "c2")),
    ]:
        assert creds is not None
        received = Credentials.parse(str(creds))
        assert nonces.check(received.nonce, now, max_age_s=30) == "valid"
        assert verify(received, "REGISTER", "pw", realm="127.0.0.1", uri="sip:127.0.0.1")
        assert received.nonce_count is not None and nonces.accept_nc(
            received.nonce, received.nonce_count
        )
        seen.append(str(creds))
    replayed = Credentials.parse(seen[0])
    assert replayed.nonce_count is not None and not nonces.accept_nc(
        replayed.nonce, replayed.nonce_count
    )
    late = session.preauthorize("REGISTER", "sip:127.0.0.1", "c3")
    assert late is not None and nonces.check(late.nonce, now=131.0, max_age_s=30) == "stale"
    assert verify(late, "REGISTER", "pw", realm="127.0.0.1")  # so the answer is stale=true
    stale = make_challenge("127.0.0.1", nonces.issue(now=131.0), "SHA-256", stale=True)
    assert not credentials_rejected(stale, late)


# -- sans-I/O ----------------------------------------------------------------------------------


def test_auth_module_is_sans_io() -> None:
    tree = ast.parse(Path(auth_module.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported == {"__future__", "hashlib", "hmac", "dataclasses", "typing", "callmeter"}
