"""The metric catalog: the single source for the store's schema, the API, the UI and the docs.

Theory of operation
-------------------
Every value an endpoint reports is one ``Metric``: a ``key`` (snake_case, naming its unit), a
``unit``, a ``category``, a ``direction`` and a ``kind``. The catalog lists one ``Metric`` per
``(key, direction)``; a key means the same thing, with the same unit, category and kind, in
every direction it appears in, so the store keeps one column per key and the direction as a
row dimension (one row per run, endpoint, second and direction; ``column_types()``).

Directions
    ``send`` and ``receive`` name the media stream: ``receive`` is what we measure on packets
    that reach us, ``send`` is our outgoing stream, measured by us (pacing, bytes) or as the
    peer reports it over RTCP (RFC 3550 6.4, RFC 3611). For RTCP feedback the direction is that
    of the feedback message itself: ``nack_count`` in ``receive`` counts NACKs the peer sent us.
    ``call`` is a value of the call as a whole (signalling timing, generator health).

Kinds
    ``counter``: events during the one-second interval (sum over seconds for a total);
    ``gauge``: a value at, or averaged over, the interval; ``one_shot``: once per call.

Key convention
    A key names its unit: measures end with a unit suffix (``jitter_ms``, ``bitrate_bps``,
    ``loss_percent``, ``pli_count``), counts of packets, bytes or frames may lead with the
    counted thing (``packets_lost``), R-scale values of ITU-T G.107 lead with ``r_``
    (``r_factor``). The few established names outside this scheme (``mos``, ``fraction_lost``
    from the RTCP report block, the RFC 3611 densities, ``final_status_code``, ``call_result``)
    are listed in ``NAMED_EXCEPTIONS`` with their units. The catalog is checked on import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

__all__ = [
    "CALL_TIMING_PROPERTIES",
    "CATEGORIES",
    "DIRECTIONS",
    "KINDS",
    "NAMED_EXCEPTIONS",
    "RECEIVER_SNAPSHOT_FIELDS",
    "RECEIVER_SNAPSHOT_NOT_METRICS",
    "Category",
    "Direction",
    "Kind",
    "Metric",
    "by_key",
    "catalog",
    "column_types",
    "expected_unit",
    "keys",
    "markdown_table",
    "validate",
]

Category = Literal[
    "quality",
    "network",
    "rtcp_feedback",
    "jitter_buffer",
    "audio",
    "video",
    "fec",
    "call_timing",
    "generator",
]
Direction = Literal["send", "receive", "call"]
Kind = Literal["gauge", "counter", "one_shot"]
CATEGORIES: Final[tuple[Category, ...]] = get_args(Category)
DIRECTIONS: Final[tuple[Direction, ...]] = get_args(Direction)
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)

# Unit suffixes and prefixes of the key convention (see the module docstring).
_SUFFIX_UNITS: Final[Mapping[str, str]] = {
    "_ms": "ms",
    "_s": "s",
    "_bps": "bit/s",
    "_pps": "packet/s",
    "_fps": "frame/s",
    "_percent": "%",
    "_dbov": "dBov",
    "_px": "px",
    "_ratio": "ratio",
    "_count": "count",
    "_packets": "packets",
    "_bytes": "bytes",
    "_frames": "frames",
}
_SUFFIXES_LONGEST_FIRST: Final = tuple(sorted(_SUFFIX_UNITS, key=len, reverse=True))
_PREFIX_UNITS: Final[Mapping[str, str]] = {
    "packets_": "packets",
    "bytes_": "bytes",
    "frames_": "frames",
    "r_": "R",
}
_BARE_UNITS: Final = frozenset({"packets", "bytes", "frames"})
NAMED_EXCEPTIONS: Final[Mapping[str, str]] = {
    "mos": "MOS",
    "fraction_lost": "1/256",
    "remote_fraction_lost": "1/256",
    "burst_density": "fraction",
    "gap_density": "fraction",
    "xr_burst_density": "fraction",
    "xr_gap_density": "fraction",
    "final_status_code": "status",
    "call_result": "text",
}
_COUNT_UNITS: Final = frozenset({"count", "packets", "bytes", "frames"})
# Counts, pixels, RTCP fractions and status codes are integers whatever the kind.
_INTEGER_UNITS: Final = _COUNT_UNITS | {"px", "1/256", "status"}


@dataclass(frozen=True, slots=True)
class Metric:
    """One catalog entry: a value reported per endpoint (per second unless ``one_shot``)."""

    key: str
    unit: str
    category: Category
    direction: Direction
    kind: Kind
    description: str

    @property
    def column_type(self) -> str:
        """DuckDB type of the key's column, from the unit: VARCHAR for text, BIGINT for counts
        and other integer units (a mean count such as a frame size is rounded), else DOUBLE."""
        if self.unit == "text":
            return "VARCHAR"
        if self.unit in _INTEGER_UNITS:
            return "BIGINT"
        return "DOUBLE"


def expected_unit(key: str) -> str | None:
    """The unit a key names by the convention, ``None`` when it names none."""
    if key in NAMED_EXCEPTIONS:
        return NAMED_EXCEPTIONS[key]
    for suffix in _SUFFIXES_LONGEST_FIRST:
        if key.endswith(suffix):
            return _SUFFIX_UNITS[suffix]
    for prefix, unit in _PREFIX_UNITS.items():
        if key.startswith(prefix):
            return unit
    return key if key in _BARE_UNITS else None


_SR: Final[tuple[Direction, ...]] = ("send", "receive")
_S: Final[tuple[Direction, ...]] = ("send",)
_R: Final[tuple[Direction, ...]] = ("receive",)
_C: Final[tuple[Direction, ...]] = ("call",)

# (key, unit, kind, directions, description) per category, in display order.
_Spec = tuple[str, str, Kind, tuple[Direction, ...], str]

_QUALITY: Final[tuple[_Spec, ...]] = (
    ("mos", "MOS", "gauge", _SR,
     "Conversational MOS (MOS-CQE) from R, ITU-T G.107 Annex B (wideband codecs: G.107.1 "
     "Annex A, from R / 1.29); send: from the peer's RTCP reports on our stream, receive: "
     "from our own receive statistics"),
    ("r_factor", "R", "gauge", _SR,
     "Transmission rating R = Ro - Is - Id - Ie,eff + A (ITU-T G.107 clause 7.1, A = 0; "
     "G.107.1 up to 129 for wideband codecs, see r_scale_max)"),
    ("r_scale_max", "R", "gauge", _SR,
     "Top of the R scale the r_* values are on: 100 for narrowband codecs (ITU-T G.107), "
     "129 for wideband ones, G.722 and Opus (G.107.1); compare R within a scale, MOS across"),
    ("r_ro", "R", "gauge", _SR, "R budget: basic signal-to-noise ratio Ro (ITU-T G.107 7.2)"),
    ("r_simultaneous_is", "R", "gauge", _SR,
     "R budget: simultaneous impairment Is (ITU-T G.107 7.3), the part no network can fix"),
    ("r_delay_id", "R", "gauge", _SR,
     "R budget: delay impairment Id, echo plus absolute delay (ITU-T G.107 7.4)"),
    ("r_codec_ie", "R", "gauge", _SR,
     "R budget: the codec's equipment impairment Ie (ITU-T G.113 Appendix I; Ie,wb of "
     "Appendix IV for wideband codecs)"),
    ("r_loss_ie", "R", "gauge", _SR,
     "R budget: what packet loss adds to Ie, Ie,eff - Ie (ITU-T G.107 7.5)"),
    ("jitter_ms", "ms", "gauge", _SR,
     "Interarrival jitter estimate (RFC 3550 A.8); send: as the peer reports it in RTCP"),
    ("rtt_ms", "ms", "gauge", _SR,
     "Round-trip time; send: from LSR/DLSR of report blocks received (RFC 3550 6.4.1), "
     "receive: from RRTR/DLRR of extended reports (RFC 3611 4.4, 4.5)"),
    ("one_way_delay_ms", "ms", "gauge", _SR,
     "Mouth-to-ear delay Ta fed to the E-model: RTT/2 plus jitter buffer and packetisation"),
    ("loss_percent", "%", "gauge", _SR,
     "Packets lost in the network, percent of expected (RFC 3550 A.3)"),
    ("effective_loss_percent", "%", "gauge", _SR,
     "Loss as the listener hears it: network loss plus late discards, minus FEC/RTX "
     "recoveries; the Ppl of ITU-T G.107 7.5"),
    ("burst_ratio", "ratio", "gauge", _SR,
     "Mean loss burst length over the random-loss expectation (ITU-T G.113 App. I); "
     "1 for random loss"),
)  # fmt: skip

_NETWORK: Final[tuple[_Spec, ...]] = (
    ("packets", "packets", "counter", _SR, "RTP packets sent / received, duplicates included"),
    ("payload_bytes", "bytes", "counter", _SR, "RTP payload bytes sent / received"),
    ("wire_bytes", "bytes", "counter", _SR,
     "Bytes on the wire: payload plus RTP, UDP and IP headers"),
    ("bitrate_bps", "bit/s", "gauge", _SR, "RTP payload bitrate over the interval"),
    ("wire_bitrate_bps", "bit/s", "gauge", _SR, "Bitrate including RTP, UDP and IP headers"),
    ("packet_rate_pps", "packet/s", "gauge", _SR, "RTP packets per second"),
    ("spacing_min_ms", "ms", "gauge", _SR, "Shortest time between consecutive packets"),
    ("spacing_avg_ms", "ms", "gauge", _SR, "Mean time between consecutive packets"),
    ("spacing_max_ms", "ms", "gauge", _SR, "Longest time between consecutive packets"),
    ("packets_expected", "packets", "counter", _R,
     "Packets expected from the extended highest sequence number (RFC 3550 A.3)"),
    ("packets_lost", "packets", "counter", _R,
     "Expected minus received (RFC 3550 A.3); negative when duplicates outnumber losses"),
    ("fraction_lost", "1/256", "gauge", _R,
     "Lost over expected in 1/256 units, the RTCP report block field (RFC 3550 6.4.1, A.3)"),
    ("packets_duplicate", "packets", "counter", _R, "Packets received more than once"),
    ("packets_out_of_order", "packets", "counter", _R,
     "Packets arriving after a packet with a higher sequence number"),
    ("seq_gap_count", "count", "counter", _R, "Sequence number gaps (one or more packets skipped)"),
    ("seq_jump_count", "count", "counter", _R,
     "Sequence jumps beyond MAX_DROPOUT / MAX_MISORDER (RFC 3550 A.1)"),
    ("seq_reset_count", "count", "counter", _R,
     "Sequence restarts confirmed by two sequential packets (RFC 3550 A.1)"),
    ("ssrc_switch_count", "count", "counter", _R, "Changes of the sending SSRC"),
    ("timestamp_jump_count", "count", "counter", _R,
     "RTP timestamp steps inconsistent with the sequence step (RFC 3551 4.1 marker excepted)"),
    ("burst_density", "fraction", "gauge", _R,
     "Fraction of packets lost within bursts, measured locally (RFC 3611 4.7.2)"),
    ("gap_density", "fraction", "gauge", _R,
     "Fraction of packets lost within gaps, measured locally (RFC 3611 4.7.2)"),
    ("burst_duration_ms", "ms", "gauge", _R, "Mean burst duration (RFC 3611 4.7.2, Gmin 16)"),
    ("gap_duration_ms", "ms", "gauge", _R, "Mean gap duration (RFC 3611 4.7.2, Gmin 16)"),
    ("packets_malformed", "packets", "counter", _R,
     "Datagrams on the media port that do not parse as RTP (RFC 3550 5.1); counted, dropped"),
)  # fmt: skip

_RTCP: Final[tuple[_Spec, ...]] = (
    ("nack_count", "count", "counter", _SR, "Generic NACK messages (RFC 4585 6.2.1)"),
    ("packets_nacked", "packets", "counter", _SR,
     "Sequence numbers requested for retransmission in NACKs (RFC 4585 6.2.1)"),
    ("pli_count", "count", "counter", _SR, "Picture Loss Indications (RFC 4585 6.3.1)"),
    ("fir_count", "count", "counter", _SR, "Full Intra Requests (RFC 5104 4.3.1)"),
    ("sr_count", "count", "counter", _SR, "RTCP sender reports (RFC 3550 6.4.1)"),
    ("rr_count", "count", "counter", _SR, "RTCP receiver reports (RFC 3550 6.4.2)"),
    ("xr_count", "count", "counter", _SR, "RTCP extended reports (RFC 3611)"),
    ("rtcp_bye_count", "count", "counter", _SR, "RTCP BYE packets (RFC 3550 6.6)"),
    ("rtcp_bytes", "bytes", "counter", _SR, "RTCP compound packet bytes (RFC 3550 6.2)"),
    ("remb_bitrate_bps", "bit/s", "gauge", _SR,
     "Receiver-estimated maximum bitrate (draft-alvestrand-rmcat-remb)"),
    ("remote_fraction_lost", "1/256", "gauge", _R,
     "Fraction lost of our stream as the peer reports it (RFC 3550 6.4.1 report block)"),
    ("remote_cumulative_lost_packets", "packets", "gauge", _R,
     "Cumulative number of packets lost as the peer reports it (RFC 3550 6.4.1)"),
    ("remote_jitter_ms", "ms", "gauge", _R,
     "Interarrival jitter of our stream as the peer reports it (RFC 3550 6.4.1)"),
    ("xr_burst_density", "fraction", "gauge", _R,
     "Burst density from the peer's VoIP Metrics block (RFC 3611 4.7.2)"),
    ("xr_gap_density", "fraction", "gauge", _R,
     "Gap density from the peer's VoIP Metrics block (RFC 3611 4.7.2)"),
    ("xr_burst_duration_ms", "ms", "gauge", _R,
     "Burst duration from the peer's VoIP Metrics block (RFC 3611 4.7.2)"),
    ("xr_gap_duration_ms", "ms", "gauge", _R,
     "Gap duration from the peer's VoIP Metrics block (RFC 3611 4.7.2)"),
    ("xr_round_trip_delay_ms", "ms", "gauge", _R,
     "Round-trip delay from the peer's VoIP Metrics block (RFC 3611 4.7.3)"),
    ("xr_end_system_delay_ms", "ms", "gauge", _R,
     "End system delay from the peer's VoIP Metrics block (RFC 3611 4.7.3)"),
    ("rtcp_malformed_count", "count", "counter", _R,
     "RTCP packets that fail to parse or validate (RFC 3550 A.2); counted, dropped"),
)  # fmt: skip

_JITTER_BUFFER: Final[tuple[_Spec, ...]] = (
    ("jb_delay_ms", "ms", "gauge", _R, "Mean jitter buffer delay of played packets"),
    ("jb_target_delay_ms", "ms", "gauge", _R, "Delay the adaptive jitter buffer aims for"),
    ("jb_delay_max_ms", "ms", "gauge", _R, "Longest jitter buffer delay of a played packet"),
    ("packets_played", "packets", "counter", _R, "Packets taken out of the buffer for playout"),
    ("packets_late_discarded", "packets", "counter", _R,
     "Packets that arrived after their playout time and were discarded (RFC 3611 4.7.1)"),
    ("jb_discard_percent", "%", "gauge", _R,
     "Discard rate: late and overrun discards, percent of expected (RFC 3611 4.7.1)"),
    ("jb_underrun_count", "count", "counter", _R, "Playout found the buffer empty"),
    ("jb_overrun_count", "count", "counter", _R, "Packets discarded because the buffer was full"),
    ("jb_resize_count", "count", "counter", _R, "Adaptive buffer delay changes"),
)  # fmt: skip

_AUDIO: Final[tuple[_Spec, ...]] = (
    ("audio_level_dbov", "dBov", "gauge", _SR,
     "Mean audio level from the client-to-mixer extension (RFC 6464), 0 loudest, -127 silence"),
    ("audio_level_max_dbov", "dBov", "gauge", _SR,
     "Loudest audio level in the interval (RFC 6464)"),
    ("voice_activity_percent", "%", "gauge", _SR,
     "Packets with the voice activity flag set (RFC 6464 V bit)"),
    ("silence_percent", "%", "gauge", _SR,
     "Time without speech: comfort noise, digital silence or no packets"),
    ("packets_comfort_noise", "packets", "counter", _SR, "Comfort noise packets (RFC 3389)"),
    ("talkspurt_count", "count", "counter", _SR,
     "Talkspurts started (marker bit set, RFC 3551 4.1)"),
    ("dtmf_events_count", "count", "counter", _SR, "Telephone-event DTMF digits (RFC 4733)"),
    ("packets_dtmf", "packets", "counter", _R,
     "Telephone-event packets (RFC 4733): sequenced, but not timed or buffered as audio"),
    ("dtmf_sip_info_count", "count", "counter", _SR,
     "DTMF digits in SIP INFO requests (application/dtmf-relay)"),
    ("plc_event_count", "count", "counter", _R, "Packet loss concealment operations"),
    ("concealed_audio_ms", "ms", "gauge", _R, "Audio synthesised by loss concealment"),
)  # fmt: skip

_VIDEO: Final[tuple[_Spec, ...]] = (
    ("frame_rate_fps", "frame/s", "gauge", _SR, "Video frames per second"),
    ("frames", "frames", "counter", _SR, "Video frames sent / received complete"),
    ("key_frames", "frames", "counter", _SR, "Key (intra) frames"),
    ("frame_width_px", "px", "gauge", _SR, "Frame width of the last frame"),
    ("frame_height_px", "px", "gauge", _SR, "Frame height of the last frame"),
    ("frame_size_avg_bytes", "bytes", "gauge", _SR, "Mean encoded frame size"),
    ("frames_dropped", "frames", "counter", _R, "Frames incomplete at their playout time"),
    ("freeze_count", "count", "counter", _R,
     "Freezes: a frame interval over max(3 x mean, mean + 150 ms) (W3C webrtc-stats)"),
    ("freeze_duration_ms", "ms", "gauge", _R, "Total freeze time in the interval"),
    ("decode_error_count", "count", "counter", _R, "Frames the depacketiser could not assemble"),
    ("frame_interval_max_ms", "ms", "gauge", _R, "Longest time between frames rendered"),
)  # fmt: skip

_FEC: Final[tuple[_Spec, ...]] = (
    ("fec_packets", "packets", "counter", _SR,
     "FEC repair packets (ULPFEC RFC 5109, FlexFEC RFC 8627)"),
    ("fec_bytes", "bytes", "counter", _SR, "FEC repair payload bytes"),
    ("fec_overhead_percent", "%", "gauge", _SR, "FEC bytes over media bytes"),
    ("red_packets", "packets", "counter", _SR, "Redundant audio packets (RFC 2198 RED)"),
    ("rtx_packets", "packets", "counter", _SR, "Retransmissions answering NACKs (RFC 4588)"),
    ("packets_recovered", "packets", "counter", _R, "Lost media packets rebuilt from FEC/RED/RTX"),
    ("packets_unrecovered", "packets", "counter", _R,
     "Lost media packets repair data could not rebuild"),
)  # fmt: skip

_CALL_TIMING: Final[tuple[_Spec, ...]] = (
    ("registration_time_ms", "ms", "one_shot", _C, "REGISTER to its final 2xx, auth included"),
    ("time_to_100_ms", "ms", "one_shot", _C, "INVITE to the first 100 Trying (RFC 3261 17.1.1)"),
    ("time_to_180_ms", "ms", "one_shot", _C, "INVITE to the first 180 Ringing"),
    ("post_dial_delay_ms", "ms", "one_shot", _C,
     "INVITE to the first 18x (ITU-T E.721 PDD; RFC 6076 4.3 SRD of a successful setup)"),
    ("setup_time_ms", "ms", "one_shot", _C,
     "INVITE to the 2xx: call setup time (RFC 6076 4.3 SRD counts to the first 18x: PDD)"),
    ("ack_delay_ms", "ms", "one_shot", _C, "2xx to ACK (RFC 3261 13.2.2.4)"),
    ("time_to_first_media_ms", "ms", "one_shot", ("send", "receive", "call"),
     "From the 2xx (or the media start) to the first RTP packet sent / received; in the "
     "call row, to the first packet received"),
    ("call_duration_s", "s", "one_shot", _C, "2xx to the end of the call (RFC 6076 4.5 SDT)"),
    ("disconnect_delay_ms", "ms", "one_shot", _C,
     "BYE to its final response, the session disconnect delay (RFC 6076 4.4 SDD)"),
    ("invite_retransmission_count", "count", "one_shot", _C,
     "INVITE retransmissions by Timer A (RFC 3261 17.1.1.2)"),
    ("auth_challenge_count", "count", "one_shot", _C,
     "401/407 challenges answered (RFC 3261 22.2, 22.3)"),
    ("final_status_code", "status", "one_shot", _C, "Final response status code of the INVITE"),
    ("call_result", "text", "one_shot", _C,
     "How the call ended: SUCCESS, TIMEOUT, REJECTED or ERROR (the endpoint outcome, "
     "SUCCESS ... TEARDOWN_ERROR, is recorded as an event)"),
)  # fmt: skip

_GENERATOR: Final[tuple[_Spec, ...]] = (
    ("event_loop_lag_ms", "ms", "gauge", _C,
     "Mean lateness of the shard's event loop ticker: the generator, not the network"),
    ("event_loop_lag_max_ms", "ms", "gauge", _C, "Worst event loop lag in the interval"),
    ("send_lateness_p50_ms", "ms", "gauge", _S, "Median delay of RTP sends behind schedule"),
    ("send_lateness_p99_ms", "ms", "gauge", _S, "99th percentile of RTP send lateness"),
    ("send_lateness_max_ms", "ms", "gauge", _S, "Worst RTP send lateness"),
    ("packets_send_skipped", "packets", "counter", _S,
     "Packets the pacer skipped because they were too late to be worth sending"),
)  # fmt: skip

_SPECS: Final[Mapping[Category, tuple[_Spec, ...]]] = {
    "quality": _QUALITY,
    "network": _NETWORK,
    "rtcp_feedback": _RTCP,
    "jitter_buffer": _JITTER_BUFFER,
    "audio": _AUDIO,
    "video": _VIDEO,
    "fec": _FEC,
    "call_timing": _CALL_TIMING,
    "generator": _GENERATOR,
}

# ReceiverSnapshot field -> catalog key (direction ``receive``). Every field of the snapshot is
# either mapped here or listed in RECEIVER_SNAPSHOT_NOT_METRICS with the reason; a test holds
# the two against the dataclass so a new field forces a decision.
RECEIVER_SNAPSHOT_FIELDS: Final[Mapping[str, str]] = {
    "packets": "packets",
    "payload_bytes": "payload_bytes",
    "expected": "packets_expected",
    "lost": "packets_lost",
    "fraction_lost": "fraction_lost",
    "jitter_ms": "jitter_ms",
    "duplicates": "packets_duplicate",
    "out_of_order": "packets_out_of_order",
    "seq_gaps": "seq_gap_count",
    "seq_jumps": "seq_jump_count",
    "seq_resets": "seq_reset_count",
    "ssrc_switches": "ssrc_switch_count",
    "timestamp_jumps": "timestamp_jump_count",
    "spacing_min_ms": "spacing_min_ms",
    "spacing_avg_ms": "spacing_avg_ms",
    "spacing_max_ms": "spacing_max_ms",
    "bitrate_bps": "bitrate_bps",
    "time_to_first_packet_ms": "time_to_first_media_ms",
    "burst_ratio": "burst_ratio",
    "burst_density": "burst_density",
    "gap_density": "gap_density",
    "burst_duration_ms": "burst_duration_ms",
    "gap_duration_ms": "gap_duration_ms",
}
# CallTiming (callmeter.sip.events) property -> (catalog key, factor from seconds).
CALL_TIMING_PROPERTIES: Final[Mapping[str, tuple[str, float]]] = {
    "post_dial_delay_s": ("post_dial_delay_ms", 1000.0),
    "setup_time_s": ("setup_time_ms", 1000.0),
    "duration_s": ("call_duration_s", 1.0),
}
_BOOKKEEPING = "bookkeeping, not a measurement"
_TOTAL = "running total: the sum of the per-second counter"
RECEIVER_SNAPSHOT_NOT_METRICS: Final[Mapping[str, str]] = {
    "now": _BOOKKEEPING,
    "interval_s": _BOOKKEEPING,
    "ssrc": "identifier (traced with the stream, not a metric)",
    "extended_highest_seq": "protocol state for the RTCP report block",
    "jitter": "jitter in RTP timestamp units, reported as jitter_ms",
    "loss_runs": "raw loss pattern, summarised by burst_ratio and the burst/gap metrics",
    "packets_total": _TOTAL,
    "payload_bytes_total": _TOTAL,
    "expected_total": _TOTAL,
    "lost_total": _TOTAL,
    "fraction_lost_total": "cumulative ratio, recomputed from the totals",
    "duplicates_total": _TOTAL,
    "out_of_order_total": _TOTAL,
    "seq_gaps_total": _TOTAL,
    "seq_jumps_total": _TOTAL,
    "seq_resets_total": _TOTAL,
    "ssrc_switches_total": _TOTAL,
    "timestamp_jumps_total": _TOTAL,
}


def _build() -> tuple[Metric, ...]:
    return tuple(
        Metric(key, unit, category, direction, kind, description)
        for category, specs in _SPECS.items()
        for key, unit, kind, directions, description in specs
        for direction in directions
    )


def validate(metrics: tuple[Metric, ...]) -> None:
    """Check the catalog rules; raise ``ValueError`` naming the first offending entry.

    Unique ``(key, direction)``; snake_case keys naming their unit (``expected_unit``); known
    category, direction and kind; counters counted in count units; a non-empty description;
    and one meaning per key: the same unit, category and kind in every direction.
    """
    seen: dict[str, Metric] = {}
    pairs: set[tuple[str, Direction]] = set()
    for metric in metrics:
        key = metric.key
        if (key, metric.direction) in pairs:
            raise ValueError(f"duplicate metric {key!r} for direction {metric.direction!r}")
        pairs.add((key, metric.direction))
        if not key.isascii() or not key.replace("_", "").isalnum() or key != key.lower():
            raise ValueError(f"metric key {key!r} is not snake_case")
        if key.startswith("_") or key.endswith("_") or "__" in key or key[0].isdigit():
            raise ValueError(f"metric key {key!r} is not snake_case")
        unit = expected_unit(key)
        if unit is None:
            raise ValueError(f"metric key {key!r} names no unit and is not in NAMED_EXCEPTIONS")
        if metric.unit != unit:
            raise ValueError(f"metric {key!r} has unit {metric.unit!r}, its key says {unit!r}")
        if metric.category not in CATEGORIES:
            raise ValueError(f"metric {key!r} has unknown category {metric.category!r}")
        if metric.direction not in DIRECTIONS:
            raise ValueError(f"metric {key!r} has unknown direction {metric.direction!r}")
        if metric.kind not in KINDS:
            raise ValueError(f"metric {key!r} has unknown kind {metric.kind!r}")
        if metric.kind == "counter" and metric.unit not in _COUNT_UNITS:
            raise ValueError(f"counter {key!r} must count {sorted(_COUNT_UNITS)}, not {unit!r}")
        if not metric.description.strip():
            raise ValueError(f"metric {key!r} ({metric.direction}) has no description")
        first = seen.setdefault(key, metric)
        if (first.unit, first.category, first.kind) != (metric.unit, metric.category, metric.kind):
            raise ValueError(f"metric {key!r} differs in unit, category or kind across directions")


_CATALOG: Final[tuple[Metric, ...]] = _build()
validate(_CATALOG)
_BY_KEY: Final[Mapping[tuple[str, Direction], Metric]] = {
    (metric.key, metric.direction): metric for metric in _CATALOG
}


def catalog() -> tuple[Metric, ...]:
    """Every metric, one per ``(key, direction)``, grouped by category in display order."""
    return _CATALOG


def by_key(key: str, direction: Direction) -> Metric:
    """The metric ``key`` in ``direction``; ``KeyError`` naming both when there is none."""
    try:
        return _BY_KEY[key, direction]
    except KeyError:
        raise KeyError(f"no metric {key!r} in direction {direction!r}") from None


def keys(direction: Direction | None = None, category: Category | None = None) -> tuple[str, ...]:
    """Distinct keys in catalog order, optionally only those of a direction and/or category."""
    selected = (
        m.key
        for m in _CATALOG
        if (direction is None or m.direction == direction)
        and (category is None or m.category == category)
    )
    return tuple(dict.fromkeys(selected))


def column_types() -> dict[str, str]:
    """DuckDB column type per key (``DOUBLE``, ``BIGINT`` or ``VARCHAR``), in catalog order.

    One column per key: the direction is a row dimension of the metric table.
    """
    return {m.key: m.column_type for m in _CATALOG}


def markdown_table() -> str:
    """The catalog as a Markdown table for the docs, one row per key with its directions."""
    rows = [
        "| key | unit | category | kind | directions | description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    grouped: dict[str, list[Metric]] = {}
    for metric in _CATALOG:
        grouped.setdefault(metric.key, []).append(metric)
    for key, metrics in grouped.items():
        m = metrics[0]
        directions = ", ".join(x.direction for x in metrics)
        description = m.description.replace("|", "\\|")
        rows.append(
            f"| `{key}` | {m.unit} | {m.category} | {m.kind} | {directions} | {description} |"
        )
    return "\n".join(rows) + "\n"
