"""The sans-I/O SIP core (RFC 3261): bytes and ``now`` in, bytes to send and events out.

Nothing in this package imports asyncio, socket, time, ray, duckdb or streamlit; a test checks.
"""

from callmeter.sip.errors import LocalProtocolError, ParseError, RemoteProtocolError, SipError
from callmeter.sip.headers import CSeq, Headers, NameAddr, Via
from callmeter.sip.message import Message, Request, Response, parse_message
from callmeter.sip.uri import AbsoluteUri, SipUri, Uri, parse_uri

__all__ = [
    "AbsoluteUri",
    "CSeq",
    "Headers",
    "LocalProtocolError",
    "Message",
    "NameAddr",
    "ParseError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "SipError",
    "SipUri",
    "Uri",
    "Via",
    "parse_message",
    "parse_uri",
]
