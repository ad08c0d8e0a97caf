"""SDP (RFC 4566) and offer/answer (RFC 3264): real bodies captured from SIPp, Kamailio and
baresip, a FreeSWITCH-style offer, broken twins with the exact error, mutation fuzzing, and two
user agents negotiating over the in-memory network."""

# ruff: noqa: E501  (exact error texts quote the broken line: long literals are the point)

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import callmeter.media.sdp as sdp_module
from callmeter.media.sdp import (
    CODECS,
    Attribute,
    Connection,
    MediaDescription,
    Negotiated,
    NegotiationFailure,
    Rtcp,
    RtpMap,
    SdpOfferAnswer,
    SessionDescription,
    make_answer,
    make_offer,
    negotiated,
    parse,
)
from callmeter.sip.core import Address
from callmeter.sip.errors import ParseError
from callmeter.sip.events import CallAnswered, CallFailed, Event, IncomingCall
from callmeter.sip.useragent import UserAgent, UserAgentConfig
from tests.netsim import Network
from tests.sip_samples import captured_messages
from tests.test_sans_io import FORBIDDEN, imported_modules


def sdp_bodies() -> dict[str, bytes]:
    """The SDP body (after the blank line) of every captured message that carries one."""
    bodies = {}
    for name, data in captured_messages().items():
        body = data.partition(b"\r\n\r\n")[2]
        if body.startswith(b"v=0"):
            bodies[name] = body
    return bodies


BODIES = sdp_bodies()
BARESIP_RTPMAPS = {0: "PCMU/8000", 8: "PCMA/8000", 101: "telephone-event/8000"}
# file -> (rtpmaps by payload type, ptime, has a=sendrecv)
EXPECTED = {
    "sipp-uac-invite.sip": ({0: "PCMU/8000"}, None, False),
    "sipp-uas-200-invite.sip": ({0: "PCMU/8000"}, None, False),
    "baresip-invite.sip": (BARESIP_RTPMAPS, 20, True),
    "baresip-200-options.sip": (BARESIP_RTPMAPS, 20, True),
    "baresip-200-invite.sip": ({0: "PCMU/8000", 101: "telephone-event/8000"}, 20, True),
    "kamailio-proxied-invite.sip": ({0: "PCMU/8000", 101: "telephone-event/8000"}, 20, True),
    "kamailio-proxied-200-invite.sip": ({0: "PCMU/8000", 101: "telephone-event/8000"}, 20, True),
}

FREESWITCH_OFFER = (
    "v=0\r\n"
    "o=FreeSWITCH 1732838400 1732838401 IN IP4 192.0.2.10\r\n"
    "s=FreeSWITCH\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=audio 16384 RTP/AVP 102 9 0 8 101 13\r\n"
    "a=rtpmap:102 opus/48000/2\r\n"
    "a=fmtp:102 useinbandfec=1; maxplaybackrate=48000; sprop-maxcapturerate=48000\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=rtpmap:13 CN/8000\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
    "a=rtcp:16385 IN IP4 192.0.2.10\r\n"
)

MINIMAL = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def offer_with(*lines: str, formats: str = "0 8 101") -> SessionDescription:
    media = [f"m=audio 4000 RTP/AVP {formats}", "a=rtpmap:101 telephone-event/8000", *lines]
    return parse(MINIMAL + "".join(line + "\r\n" for line in media))


# -- captured bodies --------------------------------------------------------------------------
def test_every_captured_sdp_is_checked() -> None:
    assert set(BODIES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_captured_sdp_parses_to_its_values(name: str) -> None:
    description = parse(BODIES[name])
    rtpmaps, ptime, sendrecv = EXPECTED[name]
    assert description.connection == Connection("127.0.0.1")
    assert description.origin.address == "127.0.0.1" and description.timing == ((0, 0),)
    (audio,) = description.media
    assert audio.media == "audio" and audio.proto == "RTP/AVP"
    assert audio.port == 9 if name == "baresip-200-options.sip" else audio.port > 1024
    assert audio.payload_types == list(rtpmaps)
    found = {pt: f"{m.encoding}/{m.clock_rate}" for pt, m in audio.rtpmaps.items()}
    assert found == rtpmaps
    assert audio.ptime == ptime and audio.has("sendrecv") is sendrecv
    assert description.direction_of(audio) == "sendrecv"
    assert audio.fmtp(101) == ("0-15" if 101 in rtpmaps else None)
    assert not audio.rtcp_mux and audio.rtcp is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_captured_sdp_round_trips_byte_for_byte(name: str) -> None:
    description = parse(BODIES[name])
    assert description.serialize() == BODIES[name]
    assert parse(description.serialize()) == description


def test_baresip_keeps_its_own_attributes_in_order() -> None:
    description = parse(BODIES["baresip-invite.sip"])
    assert description.attributes == (Attribute("tool", "baresip 1.0.0"),)
    names = [a.name for a in description.media[0].attributes]
    assert names == ["rtpmap", "rtpmap", "rtpmap", "fmtp", "sendrecv", "label", "rtcp-rsize",
                     "ssrc", "minptime", "ptime"]  # fmt: skip


def test_sipp_and_kamailio_offers_negotiate_with_their_answers() -> None:
    for offer_name, answer_name in [
        ("sipp-uac-invite.sip", "sipp-uas-200-invite.sip"),
        ("kamailio-proxied-invite.sip", "kamailio-proxied-200-invite.sip"),
        ("baresip-invite.sip", "baresip-200-invite.sip"),
    ]:
        offer, answer = parse(BODIES[offer_name]), parse(BODIES[answer_name])
        result = negotiated(offer, answer)
        assert isinstance(result, Negotiated)
        assert (result.codec, result.payload_type, result.clock_rate) == ("PCMU", 0, 8000)
        assert result.remote_rtp == ("127.0.0.1", answer.media[0].port)
        assert result.remote_rtcp == ("127.0.0.1", answer.media[0].port + 1)
        assert result.telephone_event_pt == (None if "sipp" in offer_name else 101)
        assert result.ptime_ms == 20 and result.direction == "sendrecv"


def test_lf_only_input_parses_like_crlf() -> None:
    body = BODIES["baresip-invite.sip"]
    assert parse(body.replace(b"\r\n", b"\n")) == parse(body)
    assert parse(body.decode()) == parse(body)


def test_unknown_lines_and_attributes_are_kept() -> None:
    text = (
        "v=0\r\no=- 7 8 IN IP6 ::1\r\ns=call\r\ni=info\r\nu=http://example.com\r\n"
        "e=ops@example.com\r\nc=IN IP6 ::1\r\nb=AS:64\r\nt=0 0\r\nz=0 0\r\nx=unknown\r\n"
        "a=group:BUNDLE 0\r\na=recvonly\r\nm=audio 5004/2 RTP/AVP 0 97\r\ni=voice\r\n"
        "c=IN IP6 ::2\r\nb=TIAS:64000\r\ny=other\r\na=rtpmap:97 L16/16000/2\r\na=mid:0\r\n"
        "a=rtcp:5010 IN IP6 ::3\r\na=rtcp-mux\r\na=maxptime:40\r\n"
        "m=video 0 RTP/AVP 31\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    )
    description = parse(text)
    assert description.serialize().decode() == text
    assert description.other_lines == (("i", "info"), ("u", "http://example.com"),
        ("e", "ops@example.com"), ("b", "AS:64"), ("z", "0 0"), ("x", "unknown"))  # fmt: skip
    audio, video, data = description.media
    assert audio.port_count == 2 and audio.connection == Connection("::2", "IP6")
    assert audio.other_lines == (("i", "voice"), ("b", "TIAS:64000"), ("y", "other"))
    assert audio.rtpmap(97) == RtpMap(97, "L16", 16000, 2)
    assert audio.rtpmap(0) == RtpMap(0, "PCMU", 8000)  # static, no a=rtpmap line
    assert audio.rtcp == Rtcp(5010, Connection("::3", "IP6")) and audio.rtcp_mux
    assert audio.maxptime == 40 and audio.ptime is None and audio.direction is None
    assert description.direction_of(audio) == "recvonly"  # inherited from the session
    assert video.port == 0 and data.formats == ("webrtc-datachannel",) and not data.is_rtp


def test_lines_out_of_order_are_stored_in_rfc_order_and_round_trip() -> None:
    description = parse(MINIMAL.replace("t=0 0\r\n", "t=0 0\r\nk=prompt\r\nr=7d 1h 0\r\n"))
    assert description.other_lines == (("r", "7d 1h 0"), ("k", "prompt"))
    assert parse(description.serialize()) == description


# -- broken bodies: the exact error ------------------------------------------------------------
BASE = MINIMAL + "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
BROKEN = [
    ("missing v=", BASE.removeprefix("v=0\r\n"),
     "SDP line 1: expected v=0 line, got 'o=- 1 1 IN IP4 127.0.0.1'"),
    ("empty body", "", "SDP line 1: missing v=0 line"),
    ("only v=", "v=0\r\n", "SDP line 2: missing o= line"),
    ("v=1", BASE.replace("v=0", "v=1"), "SDP line 1: v= version '1' is not 0"),
    ("missing s=", BASE.replace("s=-\r\n", ""),
     "SDP line 3: expected s= line, got 'c=IN IP4 127.0.0.1'"),
    ("o= short", BASE.replace("o=- 1 1 ", "o=- 1 "), "SDP line 2: o= expects 6 fields "
     "'username sess-id sess-version nettype addrtype address', got 5"),
    ("o= bad id", BASE.replace("o=- 1 ", "o=- x1 "), "SDP line 2: o= session id 'x1' is not a number"),
    ("c= bad address type", BASE.replace("c=IN IP4", "c=IN IP5"),
     "SDP line 4: c= address type 'IP5' is not IP4 or IP6"),
    ("c= short", BASE.replace("c=IN IP4 ", "c=IN "),
     "SDP line 4: c= expects 3 fields 'nettype addrtype address', got 2"),
    ("t= bad", BASE.replace("t=0 0", "t=0 soon"), "SDP line 5: t= stop time 'soon' is not a number"),
    ("bad m= port", BASE.replace("4000", "abc"), "SDP line 6: m= port 'abc' is not a number"),
    ("m= port too large", BASE.replace("4000", "70000"),
     "SDP line 6: m= port 70000 is larger than 65535"),
    ("m= no format", BASE.replace(" 0 101", ""),
     "SDP line 6: m= expects 'media port proto format...', got 'audio 4000 RTP/AVP'"),
    ("m= bad payload type", BASE.replace(" 0 101", " 0 128"),
     "SDP line 6: m= format '128' is not an RTP payload type (0-127)"),
    ("rtpmap bad clock rate", BASE.replace("event/8000", "event/8k"),
     "SDP line 7: a=rtpmap clock rate '8k' is not a number"),
    ("rtpmap no rate", BASE.replace("event/8000", "event"), "SDP line 7: a=rtpmap expects "
     "'<payload type> <encoding name>/<clock rate>[/<channels>]', got '101 telephone-event'"),
    ("rtpmap bad payload type", BASE.replace("rtpmap:101", "rtpmap:x"),
     "SDP line 7: a=rtpmap payload type 'x' is not a number from 0 to 127"),
    ("rtpmap without value", BASE.replace("rtpmap:101 telephone-event/8000", "rtpmap"),
     "SDP line 7: a=rtpmap needs a value"),
    ("ptime", BASE + "a=ptime:abc\r\n", "SDP line 8: a=ptime 'abc' is not a number of milliseconds"),
    ("ptime 0", BASE + "a=ptime:0\r\n", "SDP line 8: a=ptime '0' is not a number of milliseconds"),
    ("rtcp port", BASE + "a=rtcp:x\r\n", "SDP line 8: a=rtcp port 'x' is not a number"),
    ("rtcp address", BASE + "a=rtcp:4001 IN IP4\r\n",
     "SDP line 8: a=rtcp expects 3 fields 'nettype addrtype address', got 2"),
    ("direction with value", BASE + "a=sendonly:yes\r\n",
     "SDP line 8: a=sendonly takes no value, got 'yes'"),
    ("attribute name", BASE + "a=bad name\r\n", "SDP line 8: a= attribute name 'bad name' is not a token"),
    ("fmtp without format", BASE + "a=fmtp: 0-15\r\n",
     "SDP line 8: a=fmtp expects '<format> <parameters>', got ' 0-15'"),
    ("unterminated last line", BASE + "a=ptime:20",
     "SDP line 8: 'a=ptime:20' has no line end (CRLF)"),
    ("truncated mid-line", BASE[:-10], "SDP line 7: 'a=rtpmap:101 telephone-ev' has no line end (CRLF)"),
    ("not type=value", BASE + "ptime 20\r\n", "SDP line 8: expected '<type>=<value>', got 'ptime 20'"),
    ("empty line inside", BASE.replace("t=0 0\r\n", "t=0 0\r\n\r\n"),
     "SDP line 6: expected '<type>=<value>', got ''"),
    ("upper-case type", BASE.replace("t=0 0", "T=0 0"), "SDP line 5: expected '<type>=<value>', got 'T=0 0'"),
    ("CR inside", BASE.replace("s=-", "s=a\rb"), "SDP line 3: CR or NUL inside 's=a\\rb'"),
    ("t= after m=", BASE + "t=0 0\r\n", "SDP line 8: t= belongs before the first m= line"),
    ("second o=", BASE.replace("t=0 0", "o=- 1 1 IN IP4 127.0.0.1"),
     "SDP line 5: o= belongs once, at the top"),
    ("second c=", BASE + "c=IN IP4 127.0.0.2\r\nc=IN IP4 127.0.0.3\r\n",
     "SDP line 9: a second c= line in the same section"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "error"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_sdp_raises_the_exact_error(text: str, error: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(text.encode())
    assert str(caught.value) == error
    assert isinstance(caught.value, ValueError)


def test_non_utf8_and_oversized_bodies_are_refused() -> None:
    with pytest.raises(ParseError, match=r"^SDP line 3: byte 33 is not UTF-8$"):
        parse(MINIMAL.encode().replace(b"s=-", b"s=\xff"))
    big = MINIMAL.encode() + b"a=x\r\n" * 14000
    with pytest.raises(ParseError, match=r"^SDP body of 70063 bytes is larger than 65535$"):
        parse(big)


# -- fuzzing -------------------------------------------------------------------------------------
SPECIALS = [b"=", b":", b"/", b" ", b"\r\n", b"\n", b"\r", b"\x00", b"\xff", b"m=audio ",
            b"a=rtpmap:", b"a=rtcp:", b"c=IN IP6 ", b"9" * 25, b"128", b"65536", b"a=ptime:",
            b"a=fmtp:", b"/0", b"-1", b"a=sendonly"]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([*sorted(BODIES.values()), FREESWITCH_OFFER.encode()])))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(SPECIALS) | st.binary(max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 12))]
        elif kind == "truncate":
            del data[at:]
        else:
            lines = bytes(data).split(b"\r\n")
            index = draw(st.integers(0, len(lines) - 1))
            data = bytearray(b"\r\n".join([*lines[: index + 1], *lines[index:]]))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_real_sdp_gives_a_description_or_parse_error(data: bytes) -> None:
    try:
        description = parse(data)
    except ParseError as exc:
        assert str(exc)
        return
    assert parse(description.serialize()) == description
    for media in description.media:  # the typed views never raise on a parsed description
        description.direction_of(media)
        media.rtpmaps, media.ptime, media.maxptime, media.rtcp, media.rtcp_mux  # noqa: B018
        [(media.rtpmap(pt), media.fmtp(pt)) for pt in media.payload_types]
    answer = make_answer(description, "127.0.0.1", 6000, ["PCMU", "opus"], session_id=1)
    if isinstance(answer, SessionDescription):
        assert isinstance(negotiated(description, answer, role="answerer"), Negotiated)


# -- offer/answer --------------------------------------------------------------------------------
def test_make_offer_lists_codecs_in_preference_order_with_telephone_event() -> None:
    offer = make_offer("127.0.0.1", 4000, ["opus", "G722", "pcma", "PCMU"], session_id=42)
    assert offer.serialize().decode() == (
        "v=0\r\no=- 42 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 111 9 8 0 101\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    assert parse(offer.serialize()) == offer
    assert CODECS["g722"].sample_rate_hz == 16000 and CODECS["g722"].clock_rate == 8000


def test_make_offer_options() -> None:
    offer = make_offer("::1", 4000, ["PCMU"], telephone_event=False, ptime_ms=30,
                       direction="sendonly", rtcp_mux=True, session_id=1, version=3)  # fmt: skip
    (audio,) = offer.media
    assert offer.connection == Connection("::1", "IP6") and offer.origin.version == 3
    assert audio.formats == ("0",) and audio.ptime == 30 and audio.rtcp_mux
    assert offer.direction_of(audio) == "sendonly"
    with pytest.raises(ValueError, match="unknown audio codec 'G729'; known: PCMU, PCMA"):
        make_offer("127.0.0.1", 4000, ["G729"], session_id=1)


def test_freeswitch_offer_parses() -> None:
    offer = parse(FREESWITCH_OFFER)
    assert offer.serialize().decode() == FREESWITCH_OFFER
    (audio,) = offer.media
    assert audio.payload_types == [102, 9, 0, 8, 101, 13]
    assert audio.rtpmap(102) == RtpMap(102, "opus", 48000, 2)
    assert audio.fmtp(102) == "useinbandfec=1; maxplaybackrate=48000; sprop-maxcapturerate=48000"
    assert audio.fmtp(101) == "0-16" and audio.ptime == 20 and audio.direction == "sendrecv"
    assert audio.rtcp == Rtcp(16385, Connection("192.0.2.10"))


def test_answer_to_freeswitch_keeps_its_payload_types_in_our_order() -> None:
    offer = parse(FREESWITCH_OFFER)
    answer = make_answer(offer, "127.0.0.1", 5000, ["PCMA", "opus", "PCMU"], session_id=9)
    assert isinstance(answer, SessionDescription)
    assert answer.serialize().decode() == (
        "v=0\r\no=- 9 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 5000 RTP/AVP 8 102 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:102 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    ours = negotiated(offer, answer, role="answerer")
    assert ours == Negotiated("PCMA", 8, 8000, 1, 20, 5000, ("192.0.2.10", 16384),
                              ("192.0.2.10", 16385), False, 101, "sendrecv")  # fmt: skip
    theirs = negotiated(offer, answer)
    assert isinstance(theirs, Negotiated) and theirs.codec == "PCMA"
    assert theirs.remote_rtp == ("127.0.0.1", 5000) and theirs.local_rtp_port == 16384


def test_answer_with_opus_keeps_the_dynamic_payload_type_and_fmtp() -> None:
    offer = parse(FREESWITCH_OFFER)
    answer = make_answer(offer, "127.0.0.1", 5000, ["opus"], telephone_event=False, session_id=1)
    assert isinstance(answer, SessionDescription) and answer.media[0].formats == ("102",)
    result = negotiated(offer, answer, role="answerer")
    assert isinstance(result, Negotiated)
    assert (result.codec, result.payload_type, result.clock_rate, result.channels) == (
        "opus", 102, 48000, 2)  # fmt: skip
    assert result.fmtp is not None and result.fmtp.startswith("useinbandfec=1")
    assert result.telephone_event_pt is None


def test_g722_negotiates_with_its_8000_rtp_clock() -> None:
    offer = parse(FREESWITCH_OFFER)
    answer = make_answer(offer, "127.0.0.1", 5000, ["G722"], session_id=1)
    assert isinstance(answer, SessionDescription)
    result = negotiated(offer, answer)
    assert isinstance(result, Negotiated) and (result.codec, result.payload_type) == ("G722", 9)
    assert result.clock_rate == 8000


@pytest.mark.parametrize(
    ("offered", "answered", "offerer_does"),
    [("sendrecv", "sendrecv", "sendrecv"), ("sendonly", "recvonly", "sendonly"),
     ("recvonly", "sendonly", "recvonly"), ("inactive", "inactive", "inactive")],
)  # fmt: skip
def test_answer_mirrors_the_direction(offered: str, answered: str, offerer_does: str) -> None:
    offer = offer_with(f"a={offered}")
    answer = make_answer(offer, "127.0.0.1", 5000, ["PCMU"], session_id=1)
    assert isinstance(answer, SessionDescription)
    assert answer.direction_of(answer.media[0]) == answered
    for role, expected in (("offerer", offerer_does), ("answerer", answered)):
        result = negotiated(offer, answer, role=role)  # type: ignore[arg-type]
        assert isinstance(result, Negotiated) and result.direction == expected


def test_session_level_direction_and_our_own_direction_combine() -> None:
    offer = parse(MINIMAL + "a=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n")
    answer = make_answer(offer, "127.0.0.1", 5000, ["PCMU"], session_id=1)
    assert isinstance(answer, SessionDescription) and answer.media[0].direction == "recvonly"
    answer = make_answer(offer_with(), "127.0.0.1", 5000, ["PCMU"], direction="recvonly",
                         session_id=1)  # fmt: skip
    assert isinstance(answer, SessionDescription) and answer.media[0].direction == "recvonly"
    hold = parse(
        BODIES["sipp-uas-200-invite.sip"].replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0")
    )
    result = negotiated(parse(BODIES["sipp-uac-invite.sip"]), hold)
    assert isinstance(result, Negotiated) and result.direction == "recvonly"  # RFC 3264 8.4


def test_no_common_codec_is_a_488_value() -> None:
    failure = make_answer(offer_with(formats="0 101"), "127.0.0.1", 5000, ["G722", "opus"],
                          session_id=1)  # fmt: skip
    assert failure == NegotiationFailure(
        488, "no common codec: offered PCMU/8000; supported G722/8000, opus/48000"
    )
    only_video = parse(MINIMAL + "m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n")
    failure = make_answer(only_video, "127.0.0.1", 5000, ["PCMU"], session_id=1)
    assert failure == NegotiationFailure(488, "no audio RTP stream in the offer")
    no_address = parse(MINIMAL.replace("c=IN IP4 127.0.0.1\r\n", "") + "m=audio 4000 RTP/AVP 0\r\n")
    failure = make_answer(no_address, "127.0.0.1", 5000, ["PCMU"], session_id=1)
    assert failure == NegotiationFailure(488, "no c= address for the audio stream")


def test_static_payload_types_work_without_rtpmap() -> None:
    offer = parse(MINIMAL + "m=audio 4000 RTP/AVP 0 8\r\n")
    answer = make_answer(offer, "127.0.0.1", 5000, ["PCMA"], session_id=1)
    assert isinstance(answer, SessionDescription) and answer.media[0].formats == ("8",)
    result = negotiated(offer, answer)
    assert isinstance(result, Negotiated) and (result.codec, result.payload_type) == ("PCMA", 8)
    assert result.telephone_event_pt is None


def test_other_streams_are_rejected_with_port_0() -> None:
    offer = parse(MINIMAL + "m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
                  "m=audio 4000 RTP/AVP 0\r\nm=audio 4004 RTP/AVP 8\r\n")  # fmt: skip
    answer = make_answer(offer, "127.0.0.1", 5000, ["PCMU", "PCMA"], session_id=1)
    assert isinstance(answer, SessionDescription)
    assert [(m.media, m.port, m.formats) for m in answer.media] == [
        ("video", 0, ("96",)), ("audio", 5000, ("0",)), ("audio", 0, ("8",))]  # fmt: skip
    result = negotiated(offer, answer)
    assert isinstance(result, Negotiated) and result.remote_rtp == ("127.0.0.1", 5000)


def test_rtcp_address_from_rtcp_mux_or_a_rtcp_or_port_plus_one() -> None:
    offer = make_offer("127.0.0.1", 4000, ["PCMU"], rtcp_mux=True, session_id=1)
    muxed = make_answer(offer, "127.0.0.2", 5000, ["PCMU"], rtcp_mux=True, session_id=2)
    assert isinstance(muxed, SessionDescription) and muxed.media[0].rtcp_mux
    result = negotiated(offer, muxed)
    assert isinstance(result, Negotiated) and result.rtcp_mux
    assert result.remote_rtcp == result.remote_rtp == ("127.0.0.2", 5000)
    plain = make_answer(offer, "127.0.0.2", 5000, ["PCMU"], session_id=2)  # we do not mux
    assert isinstance(plain, SessionDescription) and not plain.media[0].rtcp_mux
    result = negotiated(offer, plain)
    assert isinstance(result, Negotiated) and result.remote_rtcp == ("127.0.0.2", 5001)
    moved = offer_with("a=rtcp:7000 IN IP4 192.0.2.7", "a=maxptime:10", "a=ptime:30")
    answer = make_answer(moved, "127.0.0.1", 5000, ["PCMU"], session_id=1)
    assert isinstance(answer, SessionDescription)
    result = negotiated(moved, answer, role="answerer")
    assert isinstance(result, Negotiated) and result.remote_rtcp == ("192.0.2.7", 7000)
    assert result.ptime_ms == 10  # their ptime, capped by their maxptime


def test_answer_without_an_offered_codec_fails() -> None:
    offer = make_offer("127.0.0.1", 4000, ["PCMU"], session_id=1)
    other = make_offer("127.0.0.2", 5000, ["PCMA"], session_id=2)
    assert negotiated(offer, other) == NegotiationFailure(
        488, "the answer has no codec of the offer"
    )
    two = replace_media(other, other.media * 2)
    assert negotiated(offer, two) == NegotiationFailure(
        488, "the answer has 2 m= lines, the offer 1 (RFC 3264 section 6)"
    )
    rejected = replace_media(other, (MediaDescription("audio", 0, "RTP/AVP", ("0",)),))
    assert negotiated(offer, rejected) == NegotiationFailure(
        488, "the answer accepted no audio stream"
    )


def replace_media(
    sd: SessionDescription, media: tuple[MediaDescription, ...]
) -> SessionDescription:
    return SessionDescription(
        sd.origin, sd.session_name, sd.connection, sd.timing, sd.attributes, media
    )


# -- the OfferAnswer provider ------------------------------------------------------------------
def provider(codecs: list[str], first_port: int = 20000) -> tuple[SdpOfferAnswer, list[int]]:
    released: list[int] = []
    ports = itertools.count(first_port, 2)
    oa = SdpOfferAnswer("127.0.0.1", lambda: next(ports), codecs, port_release=released.append,
                        rng=random.Random(7))  # fmt: skip
    return oa, released


def test_provider_reoffer_and_reanswer_increment_the_version() -> None:
    alice, _ = provider(["PCMU"])
    bob, _ = provider(["PCMU"], 30000)
    first = alice.create_offer("c1")
    assert first is not None and first[0] == "application/sdp"
    answer = bob.create_answer("c1", first)
    assert isinstance(answer, tuple) and alice.answer_received("c1", answer) is None
    again = alice.create_offer("c1")
    reanswer = bob.create_answer("c1", again)
    assert again is not None and isinstance(reanswer, tuple)
    for before, after in ((first, again), (answer, reanswer)):
        old, new = parse(before[1]).origin, parse(after[1]).origin
        assert new.session_id == old.session_id and new.version == old.version + 1
        assert parse(before[1]).media[0].port == parse(after[1]).media[0].port


def test_provider_rejects_what_it_cannot_use() -> None:
    oa, released = provider(["PCMU"])
    assert oa.create_answer("c1", ("text/plain", b"hello")) == 415
    assert oa.create_answer("c2", ("application/sdp", b"v=0\r\n")) == 400
    offer = make_offer("127.0.0.1", 4000, ["G722"], session_id=1)
    assert oa.create_answer("c3", offer.body()) == 488
    assert released == [20000] and oa.calls == {}
    assert oa.counters == {"unsupported_content_type": 1, "malformed_offers": 1,
                           "offers_rejected": 1}  # fmt: skip
    oa.create_offer("c4")
    assert oa.answer_received("c4", None) == 488
    assert oa.answer_received("c4", ("application/sdp", b"garbage\r\n")) == 488
    wrong = make_offer("127.0.0.2", 5000, ["PCMA"], session_id=2)
    assert oa.answer_received("c4", wrong.body()) == 488 and oa.negotiated("c4") is None
    assert oa.answer_received("unknown", wrong.body()) is None
    oa.call_ended("c4")
    assert released == [20000, 20002] and oa.negotiated("c4") is None
    with pytest.raises(ValueError, match="unknown audio codec 'iLBC'"):
        SdpOfferAnswer("127.0.0.1", lambda: 1, ["iLBC"])


def test_an_invite_without_offer_gets_an_offer_in_the_200() -> None:
    oa, _ = provider(["PCMA"])
    body = oa.create_answer("c1", None)
    assert isinstance(body, tuple) and parse(body[1]).media[0].formats == ("8", "101")


# -- two user agents over the in-memory network ------------------------------------------------
A: Address = ("127.0.0.1", 5001)
B: Address = ("127.0.0.1", 5002)


def call(alice_codecs: list[str], bob_codecs: list[str]) -> tuple[str, SdpOfferAnswer,
        SdpOfferAnswer, list[Event], list[Event]]:  # fmt: skip
    net = Network()
    alice_oa, _ = provider(alice_codecs, 20000)
    bob_oa, _ = provider(bob_codecs, 30000)
    alice = UserAgent(UserAgentConfig("alice", "127.0.0.1", B), A, rng=random.Random(1),
                      offer_answer=alice_oa)  # fmt: skip
    bob = UserAgent(UserAgentConfig("bob", "127.0.0.1", A), B, rng=random.Random(2),
                    offer_answer=bob_oa)  # fmt: skip
    net.attach(alice, A)
    net.attach(bob, B)
    call_id = alice.invite("sip:bob@127.0.0.1:5002", 0.0)
    net.run_until(1.0)
    drained = []
    for ua in (alice, bob):
        events = []
        while (event := ua.next_event()) is not None:
            events.append(event)
        drained.append(events)
    return call_id, alice_oa, bob_oa, drained[0], drained[1]


@pytest.mark.parametrize(
    ("alice_codecs", "bob_codecs", "codec"),
    [(["PCMU", "PCMA"], ["PCMA", "PCMU"], "PCMA"), (["PCMA", "PCMU"], ["PCMU"], "PCMU"),
     (["PCMU", "PCMA"], ["PCMU", "PCMA"], "PCMU")],
)  # fmt: skip
def test_two_agents_agree_on_the_callees_preferred_common_codec(
    alice_codecs: list[str], bob_codecs: list[str], codec: str
) -> None:
    call_id, alice_oa, bob_oa, alice_events, bob_events = call(alice_codecs, bob_codecs)
    assert [type(e) for e in alice_events] == [CallAnswered]
    assert [type(e) for e in bob_events] == [IncomingCall, CallAnswered]
    mine, theirs = alice_oa.negotiated(call_id), bob_oa.negotiated(call_id)
    assert mine is not None and theirs is not None
    assert mine.codec == theirs.codec == codec
    assert mine.payload_type == theirs.payload_type == CODECS[codec.lower()].static_payload_type
    assert mine.telephone_event_pt == theirs.telephone_event_pt == 101
    assert mine.remote_rtp == ("127.0.0.1", 30000) and theirs.remote_rtp == ("127.0.0.1", 20000)
    assert mine.local_rtp_port == 20000 and theirs.local_rtp_port == 30000
    assert mine.direction == theirs.direction == "sendrecv"


def test_callee_with_only_g722_answers_488() -> None:
    _, alice_oa, bob_oa, alice_events, bob_events = call(["PCMU"], ["G722"])
    (failed,) = alice_events
    assert isinstance(failed, CallFailed) and failed.status == 488
    assert [type(e) for e in bob_events] == [IncomingCall, CallFailed]
    assert alice_oa.calls == {} and bob_oa.calls == {}  # call_ended released both
    assert bob_oa.counters["offers_rejected"] == 1


def test_sdp_module_is_sans_io() -> None:
    assert imported_modules(Path(sdp_module.__file__)) & FORBIDDEN == set()


def test_declared_ssrc_goes_out_and_comes_back_negotiated() -> None:
    offer = make_offer("10.0.0.1", 4000, ["PCMU"], session_id=1, ssrc=(0xDEADBEEF, "a@x"))
    assert b"a=ssrc:3735928559 cname:a@x\r\n" in offer.body()[1]
    answer = make_answer(parse(offer.body()[1]), "10.0.0.2", 5000, ["PCMU"], session_id=2)
    assert isinstance(answer, SessionDescription) and answer.media[0].ssrc is None
    ours = negotiated(offer, answer, role="offerer")
    theirs = negotiated(offer, answer, role="answerer")
    assert isinstance(ours, Negotiated) and isinstance(theirs, Negotiated)
    assert (ours.remote_ssrc, theirs.remote_ssrc) == (None, 0xDEADBEEF)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["a=ssrc:42 cname:x"], 42),
        (["a=ssrc:42"], 42),  # no source attribute: still the source
        (["a=ssrc:x cname:y", "a=ssrc:7 msid:z"], 7),  # the first usable one
        (["a=ssrc:4294967296 cname:too-big"], None),
        (["a=ssrc:"], None),
    ],
)
def test_a_malformed_ssrc_line_is_ignored_not_an_error(lines: list[str], expected: int) -> None:
    text = (
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\n" + "".join(f"{line}\r\n" for line in lines)
    )
    assert parse(text).media[0].ssrc == expected


def test_the_offer_answer_provider_declares_one_ssrc_per_call() -> None:
    ssrcs = iter([111, 222, 333])
    ports = itertools.count(4000, 2)
    oa = SdpOfferAnswer(
        "127.0.0.1", lambda: next(ports), ["PCMU"], ssrc_allocator=lambda: next(ssrcs)
    )
    first = oa.create_offer("call-1")
    assert first is not None and b"a=ssrc:111 cname:call-1@callmeter" in first[1]
    again = oa.create_offer("call-1")  # a re-offer keeps the call's source
    assert again is not None and b"a=ssrc:111 " in again[1]
    remote = make_offer("10.0.0.9", 6000, ["PCMU"], session_id=9, ssrc=(999, "peer"))
    answer = oa.create_answer("call-2", remote.body())
    assert isinstance(answer, tuple) and b"a=ssrc:222 cname:call-2@callmeter" in answer[1]
    assert (oa.local_ssrc("call-1"), oa.local_ssrc("call-2"), oa.local_ssrc("none")) == (
        111, 222, None
    )  # fmt: skip
    call_2 = oa.negotiated("call-2")
    assert call_2 is not None and call_2.remote_ssrc == 999
    plain = SdpOfferAnswer("127.0.0.1", lambda: 4000, ["PCMU"])  # no allocator: no a=ssrc
    body = plain.create_offer("call-3")
    assert body is not None and b"a=ssrc" not in body[1] and plain.local_ssrc("call-3") is None
