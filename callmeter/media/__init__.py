"""Media for simulated endpoints, sans-I/O: session descriptions (SDP) and offer/answer, RTP
and RTCP packets, receiver statistics, the jitter buffer model, the G.107 E-model and seeded
network impairment. ``callmeter.media.source`` (codecs via aiortc/PyAV, encoded once per run)
is imported on demand: it loads PyAV.

Like ``callmeter.sip``, nothing here imports asyncio, socket or time: it takes bytes and ``now``
and returns values.

Most of these modules are compiled with mypyc (``callmeter._compiled`` lists them and says
why); their frozen dataclasses are registered for pickling once all are imported.
"""

from callmeter._compiled import pickle_frozen_dataclasses
from callmeter.media.impairment import DelayLine, Impairment, ImpairmentProfile
from callmeter.media.jitterbuffer import JitterBuffer, JitterBufferConfig, JitterBufferSnapshot
from callmeter.media.quality import RBudget, mos_from_r, r_budget, r_factor
from callmeter.media.rtcp import RtcpSession, parse_rtcp, serialize_compound
from callmeter.media.rtp import PacketHeaderTemplate, RtpPacket, parse_rtp, peek_header
from callmeter.media.rtpstats import ReceiverSnapshot, ReceiverStats
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

pickle_frozen_dataclasses("media")

__all__ = [
    "CODECS",
    "Codec",
    "Connection",
    "DelayLine",
    "Impairment",
    "ImpairmentProfile",
    "JitterBuffer",
    "JitterBufferConfig",
    "JitterBufferSnapshot",
    "MediaDescription",
    "Negotiated",
    "NegotiationFailure",
    "PacketHeaderTemplate",
    "RBudget",
    "ReceiverSnapshot",
    "ReceiverStats",
    "RtcpSession",
    "RtpPacket",
    "SdpOfferAnswer",
    "SessionDescription",
    "make_answer",
    "make_offer",
    "mos_from_r",
    "negotiated",
    "parse",
    "parse_rtcp",
    "parse_rtp",
    "peek_header",
    "r_budget",
    "r_factor",
    "serialize_compound",
]
