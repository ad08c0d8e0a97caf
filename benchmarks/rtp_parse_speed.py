"""Microseconds per RTP parse / serialize: aiortc's ``RtpPacket`` and ours, in the same run.

    python benchmarks/rtp_parse_speed.py [--repeat 5] [--number 100000]

Packets: a PCMA packet from SIPp's ``g711a.pcap`` (fixture ``tests/data/rtp``), the same with
an RFC 6464 audio-level element, and one with two CSRCs. Each figure is the best of
``--repeat`` timeit runs. A benchmark script, not a test: it prints figures and asserts
nothing about time. The figures feed the parser decision in ``callmeter/media/rtp.py``.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

from aiortc.rtp import RtpPacket as AiortcRtpPacket

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callmeter.media.rtp import (  # noqa: E402
    AudioLevel,
    PacketHeaderTemplate,
    RtpPacket,
    parse_rtp,
    peek_header,
)

FIXTURE = ROOT / "tests" / "data" / "rtp" / "g711a-0001.rtp"


def packets() -> dict[str, bytes]:
    plain = FIXTURE.read_bytes()
    packet = parse_rtp(plain)
    level = AudioLevel(voice=True, level=30).serialize()
    with_level = RtpPacket(
        packet.payload_type,
        packet.sequence_number,
        packet.timestamp,
        packet.ssrc,
        extensions=((1, level),),
        payload=packet.payload,
    ).serialize()
    with_csrc = RtpPacket(8, 1, 160, 0x1234, csrc=(1, 2), payload=packet.payload).serialize()
    return {"plain": plain, "audio-level": with_level, "2 csrc": with_csrc}


def best_us(call: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--number", type=int, default=100_000)
    args = parser.parse_args()
    n, r = args.number, args.repeat
    print(f"{'packet':<14}{'operation':<22}{'aiortc us':>10}{'ours us':>10}")
    for name, data in packets().items():
        theirs, ours = AiortcRtpPacket.parse(data), parse_rtp(data)
        rows = [
            ("parse", lambda d=data: AiortcRtpPacket.parse(d), lambda d=data: parse_rtp(d)),
            ("serialize", theirs.serialize, ours.serialize),
        ]
        for operation, aiortc_call, our_call in rows:
            a, o = best_us(aiortc_call, n, r), best_us(our_call, n, r)
            print(f"{name:<14}{operation:<22}{a:>10.2f}{o:>10.2f}")
        peek = best_us(lambda d=data: peek_header(d), n, r)
        print(f"{name:<14}{'peek_header':<22}{'-':>10}{peek:>10.2f}")
    template = PacketHeaderTemplate(8, 0x1234)
    level_template = PacketHeaderTemplate(8, 0x1234, audio_level_id=1)
    payload = parse_rtp(FIXTURE.read_bytes()).payload
    send = best_us(lambda: template.packet(1000, 160_000, payload), n, r)
    send_level = best_us(lambda: level_template.packet_with_level(1000, 1, payload, 30), n, r)
    print(f"{'sender':<14}{'template packet':<22}{'-':>10}{send:>10.2f}")
    print(f"{'sender':<14}{'template + level':<22}{'-':>10}{send_level:>10.2f}")


if __name__ == "__main__":
    main()
