"""Media for simulated endpoints, sans-I/O: session descriptions (SDP) and offer/answer today;
RTP/RTCP packets, codecs, jitter and quality statistics as they arrive.

Like ``callmeter.sip``, nothing here imports asyncio, socket or time: it takes bytes and ``now``
and returns values.
"""

from callmeter.media.sdp import (
    CODECS,
    Codec,
    Connection,
    MediaDescription,
    Negotiated,
    NegotiationFailure,
    SdpOfferAnswer,
    SessionDescription,
    make_answer,
    make_offer,
    negotiated,
    parse,
)

__all__ = [
    "CODECS",
    "Codec",
    "Connection",
    "MediaDescription",
    "Negotiated",
    "NegotiationFailure",
    "SdpOfferAnswer",
    "SessionDescription",
    "make_answer",
    "make_offer",
    "negotiated",
    "parse",
]
