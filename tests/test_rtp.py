"""RTP packets (callmeter.media.rtp) against real bytes: SIPp's g711a.pcap and fixtures cut from
it, broken twins with the exact error, RFC 8285 / RFC 6464 extensions, the sender template,
and random bytes and mutations (a packet or a ParseError, nothing else)."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from aiortc import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap
from aiortc.rtp import RtpPacket as AiortcRtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from callmeter.media.rtp import (
    AudioLevel,
    PacketHeaderTemplate,
    RtpPacket,
    parse_rtp,
    peek_header,
)
from callmeter.sip.errors import ParseError

SIPP_PCAP = Path("/usr/share/sip-tester/g711a.pcap")
FIXTURES = Path(__file__).parent / "data" / "rtp"
PCMA = 8
# Classic libpcap format: 24-byte global header, 16-byte record headers (ts_sec, ts_usec,
# incl_len, orig_len); frames are Ethernet (link type 1).
PCAP_GLOBAL_HEADER = struct.Struct("<IHHiIII")
PCAP_RECORD_HEADER = struct.Struct("<IIII")
PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17


def udp_payloads(path: Path) -> list[bytes]:
    """The UDP payloads of an Ethernet/IPv4 classic pcap file, in capture order."""
    data = path.read_bytes()
    magic, _, _, _, _, _, link = PCAP_GLOBAL_HEADER.unpack_from(data)
    assert (magic, link) == (PCAP_MAGIC, LINKTYPE_ETHERNET)
    payloads, pos = [], PCAP_GLOBAL_HEADER.size
    while pos < len(data):
        _, _, incl_len, _ = PCAP_RECORD_HEADER.unpack_from(data, pos)
        frame = data[pos + PCAP_RECORD_HEADER.size : pos + PCAP_RECORD_HEADER.size + incl_len]
        pos += PCAP_RECORD_HEADER.size + incl_len
        if struct.unpack_from("!H", frame, 12)[0] != ETHERTYPE_IPV4:
            continue
        ip = frame[14:]
        if ip[9] != IPPROTO_UDP:
            continue
        udp = ip[(ip[0] & 0x0F) * 4 :]
        udp_length = struct.unpack_from("!H", udp, 4)[0]
        payloads.append(udp[8:udp_length])
    return payloads


needs_sipp = pytest.mark.skipif(not SIPP_PCAP.exists(), reason="sip-tester not installed")


@needs_sipp
def test_every_packet_of_sipp_g711a_pcap_parses_and_round_trips() -> None:
    datagrams = udp_payloads(SIPP_PCAP)
    packets = [parse_rtp(d) for d in datagrams]
    assert len(packets) == 236
    assert [p.serialize() for p in packets] == datagrams
    assert {(p.payload_type, p.ssrc, len(p.payload)) for p in packets} == {(PCMA, 0xDEE0EE8F, 240)}
    assert [p.marker for p in packets].count(True) == 1 and packets[0].marker
    for before, after in itertools.pairwise(packets):
        assert (after.sequence_number - before.sequence_number) & 0xFFFF == 1
        # 8 kHz PCMA, one byte per sample: 240 samples per 30 ms packet in this capture.
        assert (after.timestamp - before.timestamp) & 0xFFFF_FFFF == len(before.payload)


@needs_sipp
def test_fixtures_are_packets_of_the_capture() -> None:
    datagrams = udp_payloads(SIPP_PCAP)
    for path in sorted(FIXTURES.glob("g711a-*.rtp")):
        index = int(path.stem.split("-")[1])
        assert path.read_bytes() == datagrams[index], path.name


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_fixture_fields() -> None:
    first = parse_rtp(fixture("g711a-0000.rtp"))
    assert (first.payload_type, first.sequence_number, first.timestamp) == (PCMA, 0xE6FD, 240)
    assert (first.ssrc, first.marker, first.csrc, first.extensions) == (0xDEE0EE8F, True, (), ())
    assert peek_header(fixture("g711a-0001.rtp")) == (PCMA, 0xE6FE, 480, 0xDEE0EE8F, False)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.rtp")))
def test_fixture_round_trips_byte_for_byte(name: str) -> None:
    data = fixture(name)
    assert parse_rtp(data).serialize() == data


def set_first_byte(data: bytes, value: int) -> bytes:
    return bytes((value,)) + data[1:]


PLAIN = "g711a-0001.rtp"
# (fixture, how to break it, the exact error)
TWINS = [
    (PLAIN, lambda d: d[:7], "RTP: packet of 7 bytes is shorter than the 12-byte header"),
    (PLAIN, lambda d: set_first_byte(d, 0x40), "RTP: version 1 is not 2"),
    (PLAIN, lambda d: set_first_byte(d, 0x00), "RTP: version 0 is not 2"),
    (
        PLAIN,
        lambda d: set_first_byte(d, 0x8F)[:40],
        "RTP: 15 CSRCs need 72 bytes, the packet has 40",
    ),
    (
        PLAIN,
        lambda d: set_first_byte(d, 0xA0)[:-1] + b"\xf5",
        "RTP: padding of 245 bytes is longer than the 240 bytes after the header",
    ),
    (
        PLAIN,
        lambda d: set_first_byte(d, 0xA0)[:-1] + b"\x00",
        "RTP: padding bit set but the padding count octet is 0",
    ),
    (
        PLAIN,
        lambda d: set_first_byte(d, 0x90)[:14],
        "RTP: header extension header at byte 12 overruns the 14-byte packet",
    ),
    (
        PLAIN,
        lambda d: set_first_byte(d, 0x90)[:12] + b"\xbe\xde\x00\x50" + d[16:],
        "RTP: header extension of 80 words ends at byte 336, the packet has 252",
    ),
    (
        PLAIN,
        lambda d: set_first_byte(d, 0x90)[:12] + b"\xbe\xde\x00\x01\x1f\x00\x00\x00" + d[20:],
        "RTP: one-byte extension id 1 of 16 bytes overruns the 4-byte extension block",
    ),
]


@pytest.mark.parametrize(("name", "damage", "error"), TWINS, ids=[t[2] for t in TWINS])
def test_broken_twin_raises_the_exact_error(
    name: str, damage: Callable[[bytes], bytes], error: str
) -> None:
    with pytest.raises(ParseError) as raised:
        parse_rtp(damage(fixture(name)))
    assert str(raised.value) == error
    assert isinstance(raised.value, ValueError)


def test_peek_header_checks_length_and_version() -> None:
    with pytest.raises(ParseError, match=r"^RTP: packet of 0 bytes is shorter"):
        peek_header(b"")
    with pytest.raises(ParseError, match=r"^RTP: version 3 is not 2$"):
        peek_header(b"\xc0" + bytes(11))


def test_one_byte_extensions_and_audio_level_round_trip() -> None:
    base = parse_rtp(fixture(PLAIN))
    level = AudioLevel(voice=True, level=42)
    packet = RtpPacket(
        base.payload_type,
        base.sequence_number,
        base.timestamp,
        base.ssrc,
        csrc=(1, 2),
        extensions=((1, level.serialize()), (5, b"abcdefghijklmnop")),
        payload=base.payload,
        padding_size=3,
    )
    data = packet.serialize()
    # RFC 8285 4.2: 0xBEDE, 5 words: [0x10 0xAA] [0x5F + 16 bytes] then 2 zero padding bytes.
    assert data[20:24] == b"\xbe\xde\x00\x05" and data[24:26] == b"\x10\xaa"
    assert data[-3:] == b"\x00\x00\x03"
    parsed = parse_rtp(data)
    assert parsed == packet
    assert parsed.audio_level(1) == level and parsed.audio_level(2) is None
    assert level.level_dbov == -42


def test_one_byte_parsing_skips_padding_and_stops_at_id_15() -> None:
    body = b"\x10\x7f\x00\x03\x21\xab\xcd\xf0\x30\x01\x00\x00"  # id 1, 2 pads, id 2, stop
    data = b"\x90\x08\x00\x01" + bytes(8) + b"\xbe\xde\x00\x03" + body + b"payload"
    packet = parse_rtp(data)
    assert packet.extensions == ((1, b"\x7f"), (2, b"\xab\xcd"))
    assert packet.audio_level(1) == AudioLevel(voice=False, level=127)
    assert parse_rtp(packet.serialize()) == packet


def test_other_extension_profiles_are_kept_raw() -> None:
    data = b"\x90\x00\x00\x01" + bytes(8) + b"\x10\x00\x00\x01\x01\x01\x07\x00" + b"x"
    packet = parse_rtp(data)
    assert (packet.extension_profile, packet.extension_data) == (0x1000, b"\x01\x01\x07\x00")
    assert packet.extensions == () and packet.serialize() == data


def test_serialize_rejects_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError, match=r"one-byte extension id 15 is outside 1\.\.14"):
        RtpPacket(0, 0, 0, 0, extensions=((15, b"x"),)).serialize()
    with pytest.raises(ValueError, match="one-byte extension value of 17 bytes"):
        RtpPacket(0, 0, 0, 0, extensions=((1, bytes(17)),)).serialize()
    with pytest.raises(ValueError, match="16 CSRCs"):
        RtpPacket(0, 0, 0, 0, csrc=tuple(range(16))).serialize()
    with pytest.raises(ValueError, match="audio level 128"):
        AudioLevel(voice=False, level=128).serialize()


def test_template_packets_equal_serialized_packets() -> None:
    payload = parse_rtp(fixture(PLAIN)).payload
    template = PacketHeaderTemplate(PCMA, 0xDEE0EE8F)
    assert template.packet(0xE6FE, 480, payload) == fixture(PLAIN)
    assert template.packet(0xE6FD, 240, payload, marker=True)[:12] == fixture("g711a-0000.rtp")[:12]
    rich = PacketHeaderTemplate(PCMA, 7, csrc=(9,), extensions=((3, b"ab"),), audio_level_id=1)
    data = rich.packet_with_level(65535, 2**32 - 1, payload, 0x85, marker=True)
    expected = RtpPacket(
        PCMA,
        65535,
        2**32 - 1,
        7,
        marker=True,
        csrc=(9,),
        extensions=((3, b"ab"), (1, b"\x85")),
        payload=payload,
    )
    assert data == expected.serialize()
    assert parse_rtp(data).audio_level(1) == AudioLevel(voice=True, level=5)
    with pytest.raises(ValueError, match="without audio_level_id"):
        template.packet_with_level(1, 1, payload, 0)


def test_cross_check_with_aiortc_both_ways() -> None:
    level_uri = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
    extensions_map = HeaderExtensionsMap()
    extensions_map.configure(
        RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri=level_uri)])
    )
    ours = RtpPacket(PCMA, 7, 1234, 0xCAFE, True, (5,), ((1, b"\x9e"),), b"payload", padding_size=4)
    theirs = AiortcRtpPacket.parse(ours.serialize(), extensions_map)
    assert (theirs.payload_type, theirs.sequence_number, theirs.timestamp) == (PCMA, 7, 1234)
    assert (theirs.ssrc, theirs.marker, theirs.csrc) == (0xCAFE, 1, [5])
    assert (theirs.payload, theirs.padding_size) == (b"payload", 4)
    assert theirs.extensions.audio_level == (True, 30)
    assert parse_rtp(theirs.serialize(extensions_map)) == ours


def check_parse(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except ParseError:
        return
    assert parse_rtp(packet.serialize()) == packet
    assert peek_header(data)[:4] == (
        packet.payload_type,
        packet.sequence_number,
        packet.timestamp,
        packet.ssrc,
    )


@given(st.binary(max_size=80))
def test_random_bytes_give_a_packet_or_a_parse_error(data: bytes) -> None:
    check_parse(data)


@given(st.binary(min_size=16, max_size=80))
def test_random_v2_bytes_give_a_packet_or_a_parse_error(data: bytes) -> None:
    check_parse(bytes(((data[0] & 0x3F) | 0x80,)) + data[1:])


@settings(max_examples=300)
@given(
    st.sampled_from(sorted(p.name for p in FIXTURES.glob("*.rtp"))),
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 260),
)
def test_mutated_real_packets_give_a_packet_or_a_parse_error(
    name: str, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(fixture(name))
    for position, value in edits:
        data[position] = value
    check_parse(bytes(data[: len(data) - cut]))
