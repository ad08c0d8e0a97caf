"""StreamFramer: RFC 3261 section 18.3 framing and RFC 5626 keep-alives on a byte stream."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.sip.errors import ParseError
from callmeter.sip.framing import PONG, FramingError, StreamFramer


def _sip(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
REGISTER = _sip(
    "REGISTER sip:127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bK776asdhds;rport",
    "Max-Forwards: 70",
    "To: <sip:alice@127.0.0.1>",
    "From: <sip:alice@127.0.0.1>;tag=1928301774",
    "Call-ID: a84b4c76e66710@127.0.0.1",
    "CSeq: 1 REGISTER",
    "Contact: <sip:alice@127.0.0.1:5080;transport=tcp>",
    "Expires: 3600",
    "User-Agent: baresip v3.10.1 (x86_64/linux)",
    "Content-Length: 0",
)
INVITE = _sip(
    "INVITE sip:bob@127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bKnashds8",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@127.0.0.1>",
    "From: Alice <sip:alice@127.0.0.1>;tag=1928301774",
    "Call-ID: 3848276298220188511@127.0.0.1",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@127.0.0.1:5080;transport=tcp>",
    "Content-Type: application/sdp",
    f"Content-Length: {len(SDP)}",
    body=SDP,
)
OK_COMPACT = _sip(  # Kamailio-style compact headers, "l" for Content-Length
    "SIP/2.0 200 OK",
    "v: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bKnashds8;received=127.0.0.1;rport=41234",
    "t: Bob <sip:bob@127.0.0.1>;tag=a6c85cf",
    "f: Alice <sip:alice@127.0.0.1>;tag=1928301774",
    "i: 3848276298220188511@127.0.0.1",
    "CSeq: 314159 INVITE",
    "c: application/sdp",
    f"l: {len(SDP)}",
    body=SDP,
)
MESSAGE = _sip(  # a body that itself holds an empty line must not end the message
    "MESSAGE sip:bob@127.0.0.1 SIP/2.0",
    "Call-ID: m1@127.0.0.1",
    "CSeq: 1 MESSAGE",
    "Content-Length: 13",
    body=b"hi\r\n\r\nthere\r\n",
)
MESSAGES = [REGISTER, INVITE, OK_COMPACT, MESSAGE]
STREAM = b"".join(MESSAGES)


def _feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[bytes]:
    return [message for chunk in chunks for message in framer.feed(chunk)]


@pytest.mark.parametrize("message", MESSAGES, ids=["register", "invite", "ok-compact", "body"])
def test_split_at_every_byte_position(message: bytes) -> None:
    for cut in range(len(message) + 1):
        framer = StreamFramer()
        assert _feed_all(framer, [message[:cut], message[cut:]]) == [message], cut
        assert framer.buffered == 0


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    chunks = [STREAM[i : i + 1] for i in range(len(STREAM))]
    assert _feed_all(framer, chunks) == MESSAGES


def test_several_messages_in_one_read_and_a_partial_tail() -> None:
    framer = StreamFramer()
    assert framer.feed(STREAM + INVITE[:100]) == MESSAGES
    assert framer.buffered == 100
    assert framer.feed(INVITE[100:]) == [INVITE]


def test_header_names_case_whitespace_folding_and_bare_lf() -> None:
    variants = [
        b"ACK sip:b SIP/2.0\r\nCONTENT-LENGTH : 2\r\n\r\nok",
        b"ACK sip:b SIP/2.0\r\nL:2\r\n\r\nok",
        b"ACK sip:b SIP/2.0\r\nContent-Length:\r\n  2\r\n\r\nok",  # obs-fold
        b"ACK sip:b SIP/2.0\nContent-Length: 2\n\nok",
        b"ACK sip:b SIP/2.0\r\nl: 2\r\nContent-Length: 002\r\n\r\nok",  # same value twice
        b"ACK sip:b SIP/2.0\r\nX-Content-Length: 9\r\nl: 2\r\n\r\nok",
    ]
    for message in variants:
        assert StreamFramer().feed(message) == [message]


def test_keepalive_pings_are_skipped_and_answered() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.take_pongs() == PONG
    assert framer.take_pongs() == b""
    assert framer.feed(b"\r\n\r") == []  # a ping split across reads
    assert framer.feed(b"\n" + REGISTER + b"\r\n\r\n\r\n\r\n" + INVITE) == [REGISTER, INVITE]
    assert framer.take_pongs() == PONG * 3
    assert framer.pings_received == 4


def test_a_lone_crlf_pong_is_skipped_without_answer() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n" + REGISTER) == [REGISTER]
    assert framer.take_pongs() == b""


def _error_of(data: bytes, **limits: int) -> FramingError:
    with pytest.raises(FramingError) as info:
        StreamFramer(**limits).feed(data)
    return info.value


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("Content-Length: -999", 'Content-Length "-999" is not a non-negative integer'),
        ("l: ten", 'Content-Length "ten" is not a non-negative integer'),
        ("Content-Length:", 'Content-Length "" is not a non-negative integer'),
        ("Content-Length: 1.5", 'Content-Length "1.5" is not a non-negative integer'),
        ("Content-Length: 10\r\nl: 12", 'conflicting Content-Length values "10" and "12"'),
        ("Content-Length: 2000000", "Content-Length 2000000 exceeds the limit of 1048576 bytes"),
        ("Content-Length: " + "9" * 50, "Content-Length " + "9" * 40 + "... exceeds the limit"),
        ("Content-Type: text/plain", "message has no Content-Length header, required on a stream"),
    ],
)
def test_framing_errors_name_the_problem(header: str, error: str) -> None:
    bad = f"MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n{header}\r\n\r\nbody".encode()
    exc = _error_of(REGISTER + bad)
    assert str(exc).startswith(f"stream framing: {error}")
    assert isinstance(exc, ParseError)
    assert isinstance(exc, ValueError)
    assert exc.status == 400
    assert exc.messages == [REGISTER]  # what came before the bad message is not lost
    assert exc.offending == bad


def test_header_size_bound_is_exact_and_chunking_independent() -> None:
    fits = b"OPTIONS sip:b SIP/2.0\r\nl: 0\r\n" + b"X: " + b"y" * 60 + b"\r\n\r\n"
    limit = len(fits)
    assert StreamFramer(max_header_bytes=limit).feed(fits) == [fits]
    too_big = fits.replace(b"yy", b"yyy", 1)
    message = f"stream framing: header exceeds {limit} bytes without an empty line"
    assert str(_error_of(too_big, max_header_bytes=limit)) == message
    framer = StreamFramer(max_header_bytes=limit)
    with pytest.raises(FramingError, match=message):
        _feed_all(framer, [too_big[i : i + 1] for i in range(len(too_big))])


def test_unterminated_header_is_bounded_without_waiting_for_more() -> None:
    framer = StreamFramer(max_header_bytes=1024)
    start = b"INVITE sip:b SIP/2.0\r\nX: "
    assert framer.feed(start + b"a" * (1023 - len(start))) == []
    with pytest.raises(FramingError, match="header exceeds 1024 bytes"):
        framer.feed(b"a")


def test_body_size_bound() -> None:
    message = b"MESSAGE sip:b SIP/2.0\r\nl: 11\r\n\r\nhello world"
    assert StreamFramer(max_body_bytes=11).feed(message) == [message]
    error = "stream framing: Content-Length 11 exceeds the limit of 10 bytes"
    assert str(_error_of(message, max_body_bytes=10)) == error


def test_a_failed_stream_stays_failed() -> None:
    framer = StreamFramer()
    with pytest.raises(FramingError):
        framer.feed(b"BYE sip:b SIP/2.0\r\nl: -1\r\n\r\n")
    with pytest.raises(FramingError, match='"-1" is not a non-negative') as info:
        framer.feed(REGISTER)
    assert info.value.messages == []
    assert info.value.offending == REGISTER


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=200))
    name = draw(st.sampled_from(["Content-Length", "content-length", "l", "L", "CONTENT-LENGTH"]))
    start = draw(st.sampled_from(["INVITE sip:b@127.0.0.1 SIP/2.0", "SIP/2.0 180 Ringing"]))
    token = st.text(alphabet="abcXYZ-019 ;=@.:", min_size=0, max_size=30)
    extra = draw(st.lists(st.tuples(token.filter(str.strip), token), max_size=4))
    headers = [f"X-{n.strip()}: {v}" for n, v in extra]
    order = draw(st.integers(0, len(headers)))
    headers.insert(order, f"{name}: {len(body)}")
    return _sip(start, *headers, body=body)


@st.composite
def _streams(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    messages = draw(st.lists(_messages(), max_size=5))
    gaps = st.sampled_from([b"", b"", b"\r\n", b"\r\n\r\n"])
    data = b"".join(draw(gaps) + message for message in messages) + draw(gaps)
    return messages, data


@given(_streams(), st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_any_chunking_of_a_valid_stream_yields_the_same_messages(
    stream: tuple[list[bytes], bytes], cuts: list[int]
) -> None:
    messages, data = stream
    cuts = [c for c in cuts if c <= len(data)]
    assert _feed_all(StreamFramer(), _cut(data, cuts)) == messages


def _outcome(chunks: list[bytes]) -> tuple[list[bytes], str | None, int]:
    framer = StreamFramer(max_header_bytes=96, max_body_bytes=16)
    messages: list[bytes] = []
    for chunk in chunks:
        try:
            messages += framer.feed(chunk)
        except FramingError as exc:
            return [*messages, *exc.messages], str(exc), framer.pings_received
    return messages, None, framer.pings_received


_PIECES = [
    b"INVITE sip:b SIP/2.0\r\n",
    b"l: 3\r\n",
    b"Content-Length: 0\r\n",
    b"content-length: -1\r\n",
    b"Content-Length: 99\r\n",
    b"X: y\r\n",
    b" folded\r\n",
    b"\r\n",
    b"\n",
    b"abc",
]


@given(
    st.lists(st.sampled_from(_PIECES), max_size=30),
    st.lists(st.integers(min_value=0, max_value=400), max_size=30),
)
def test_any_stream_frames_the_same_whatever_the_chunking(
    pieces: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(pieces)
    cuts = [c for c in cuts if c <= len(data)]
    assert _outcome(_cut(data, cuts)) == _outcome([data])
