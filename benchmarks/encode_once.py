"""Cost of encoding media once per run, and of replaying it per packet.

    python benchmarks/encode_once.py [--seconds 10] [--repeat 3]

Writes a WAV file (the built-in speech-like signal at 48 kHz, looped to ``--seconds``), then:

- per codec, the time to build a fresh ``MediaLibrary`` entry from the file (decode, resample,
  encode, audio levels), best of ``--repeat``; the encoded size and packet count beside it;
- per packet, the cost of ``EncodedMedia.payload(i)`` (a modulo and a tuple index), side by
  side with a bare tuple index and with the peer it replaces: encoding one 20 ms frame with
  aiortc's encoder per packet, which is what every sender would pay without the library.

A benchmark script, not a test: it prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import timeit
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc.codecs.g711 import PcmuEncoder

from callmeter.media.source import (
    SUPPORTED_CODECS,
    MediaLibrary,
    speech_like_pcm,
)

FILE_RATE_HZ = 48000


def write_file(path: Path, seconds: float) -> Path:
    one_pass = speech_like_pcm(FILE_RATE_HZ)
    samples = np.resize(one_pass, round(seconds * FILE_RATE_HZ))  # loops the signal
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(FILE_RATE_HZ)
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def build_costs(path: Path, repeat: int) -> None:
    print(
        f"{'codec':<6} {'build ms':>9} {'packets':>8} {'bytes':>9}   (fresh library, best of runs)"
    )
    for codec in SUPPORTED_CODECS:
        best_s = min(timeit.repeat(lambda c=codec: MediaLibrary().get(c, 20, path), number=1,
                                   repeat=repeat))  # fmt: skip
        media = MediaLibrary().get(codec, 20, path)
        size = sum(len(p) for p in media.payloads)
        print(f"{codec:<6} {best_s * 1000:9.1f} {media.packet_count:8d} {size:9d}")


def per_packet_costs(repeat: int) -> None:
    media = MediaLibrary().get("PCMU")
    payloads, count = media.payloads, media.packet_count
    encoder = PcmuEncoder()
    block = np.ascontiguousarray(speech_like_pcm(8000)[8000:8160]).reshape(1, -1)

    def encode_one() -> None:
        frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
        encoder.encode(frame)

    number = 200_000
    rows = [
        ("EncodedMedia.payload(i)", lambda: media.payload(123_457), number),
        ("payloads[i % count]", lambda: payloads[123_457 % count], number),
        ("aiortc PcmuEncoder per packet (peer)", encode_one, number // 100),
    ]
    print(f"\n{'per packet':<38} {'ns':>10}   (best of runs)")
    for name, func, n in rows:
        best_s = min(timeit.repeat(func, number=n, repeat=repeat)) / n
        print(f"{name:<38} {best_s * 1e9:10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_file(Path(tmp) / "speech.wav", args.seconds)
        print(f"{args.seconds:g} s WAV at {FILE_RATE_HZ} Hz: {path.stat().st_size} bytes\n")
        build_costs(path, args.repeat)
    per_packet_costs(args.repeat)


if __name__ == "__main__":
    main()
