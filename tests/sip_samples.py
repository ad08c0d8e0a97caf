"""Typical SIPp-style messages (the bytes SIPp 3.6 sends with its built-in and test scenarios),
used as seeds by the parser tests and by ``benchmarks/parse_speed.py``.

Captured peer traffic lives under ``tests/data/*.sip``; these hand-written twins exist so the
parser tests run before (and without) any capture. Every line ends in CRLF.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RFC4475_DIR", "SAMPLES", "captured_messages", "shared_dir"]


def _crlf(text: str) -> bytes:
    head, _, body = text.partition("\n\n")
    head_bytes = head.strip("\n").replace("\n", "\r\n").encode() + b"\r\n\r\n"
    return head_bytes + body.replace("\n", "\r\n").encode()


_SDP = """v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""

INVITE = _crlf(
    """
INVITE sip:service@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-0
From: sipp <sip:sipp@127.0.0.1:5061>;tag=12345SIPpTag001
To: service <sip:service@127.0.0.1:5060>
Call-ID: 1-12345@127.0.0.1
CSeq: 1 INVITE
Contact: sip:sipp@127.0.0.1:5061
Max-Forwards: 70
Subject: Performance Test
Content-Type: application/sdp
Content-Length: 129

"""
    + _SDP
)

OK_200 = _crlf(
    """
SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1c7b.a1b2c3d4.0;received=127.0.0.1;rport=5060
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-0
Record-Route: <sip:127.0.0.1:5060;lr=on;ftag=12345SIPpTag001>
From: sipp <sip:sipp@127.0.0.1:5061>;tag=12345SIPpTag001
To: service <sip:service@127.0.0.1:5060>;tag=67890SIPpTag011
Call-ID: 1-12345@127.0.0.1
CSeq: 1 INVITE
Contact: <sip:127.0.0.1:5062;transport=UDP>
Content-Type: application/sdp
Content-Length: 129

"""
    + _SDP.replace("6000", "6002")
)

REGISTER = _crlf(
    """
REGISTER sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-1-0
From: <sip:alice@127.0.0.1:5060>;tag=4242SIPpTag001
To: <sip:alice@127.0.0.1:5060>
Call-ID: 1-4242@127.0.0.1
CSeq: 1 REGISTER
Contact: <sip:alice@127.0.0.1:5061;transport=UDP>
Expires: 3600
Max-Forwards: 70
User-Agent: SIPp callmeter-tests
Content-Length: 0
"""
)

UNAUTHORIZED_401 = _crlf(
    """
SIP/2.0 401 Unauthorized
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-1-0;rport=5061;received=127.0.0.1
From: <sip:alice@127.0.0.1:5060>;tag=4242SIPpTag001
To: <sip:alice@127.0.0.1:5060>;tag=b27e1a1d33761e85846fc98f5f3a7e58.a6b4
Call-ID: 1-4242@127.0.0.1
CSeq: 1 REGISTER
WWW-Authenticate: Digest realm="127.0.0.1", nonce="Y2hhbGxlbmdlLW5vbmNl", qop="auth"
Server: kamailio (5.6.3 (x86_64/linux))
Content-Length: 0
"""
)

SAMPLES: dict[str, bytes] = {
    "sipp-invite": INVITE,
    "sipp-200": OK_200,
    "sipp-register": REGISTER,
    "kamailio-401": UNAUTHORIZED_401,
}


def shared_dir() -> Path:
    """``shared/`` beside the repository (``/work/shared`` next to ``/work/main``)."""
    return Path(__file__).resolve().parents[1].parent / "shared"


RFC4475_DIR = shared_dir() / "testdata" / "rfc4475"


def captured_messages() -> dict[str, bytes]:
    """Real peer bytes captured under ``tests/data/**/*.sip`` (none yet is fine)."""
    data = Path(__file__).resolve().parent / "data"
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*.sip"))}
