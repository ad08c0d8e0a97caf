"""Media sources and codecs: audio decoded and encoded once per run, replayed by every sender.

Theory of operation
-------------------
A load test sends the same audio from thousands of endpoints, so encoding per packet per
endpoint would spend the generator's CPU on work whose result never changes. Instead:

1. A source is turned into mono signed 16-bit PCM at the codec's audio sampling rate once:
   a media file (WAV or anything PyAV decodes) through PyAV's ``AudioResampler``
   (:func:`decode_file`), or the built-in speech-like test signal (:func:`speech_like_pcm`),
   synthesised directly at that rate, so nothing is needed to start a test.
2. The PCM is encoded once per codec and packetization time with aiortc's encoders
   (:func:`encode_pcm`) into an :class:`EncodedMedia`: a tuple of payloads for consecutive
   packets plus, per packet, the RFC 6464 audio level computed from the PCM (section 3:
   ``0..127`` meaning ``0..-127 dBov``, the RMS measure of RFC 6465 Appendix A).
3. :class:`MediaLibrary` caches the PCM by (source, sample rate) and the encoded media by
   (source, codec, ptime), so a run decodes each file once per rate and encodes once per
   codec and ptime. A sender keeps its own packet counter and calls
   ``media.payload(i)``: one modulo and one tuple index, wrapping around at the end.
4. A media file can be encoded once for good: :func:`transcode_file` writes, beside
   ``FILE``, one ``FILE.<codec>.cmenc`` per codec (:class:`PreEncoded`, a small versioned
   binary format stamped with the SHA-256 of the file it was made from). The platform does
   this at upload; every shard's :class:`MediaLibrary` then loads those instead of decoding
   and encoding, and ignores one whose stamp no longer matches the file. One file serves
   every ptime: see the next paragraph and :class:`PreEncoded`.

aiortc's audio encoders all work on 20 ms frames (G.711: 160 samples at 8 kHz, G.722: 320 at
16 kHz, Opus: 960 at 48 kHz). G.711 (ITU-T G.711, one byte per sample) and G.722 (ITU-T G.722
section 1.4, one byte per pair of 16 kHz samples, state carried across frames) are sample
streams, so other packetization times re-cut the encoded byte stream at packet boundaries
(RFC 3551 sections 4.5.2, 4.5.14). Opus frames are self-delimiting units (RFC 7587 section 4.2):
only the encoder's 20 ms is offered. The PCM is padded with silence to whole packets and whole
encoder frames, so the loop plays back seamlessly.

This module may import av, aiortc and numpy; it never touches sockets, clocks or event loops.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeAlias

import av
import numpy as np
import numpy.typing as npt
from aiortc.codecs.base import Encoder
from aiortc.codecs.g711 import PcmaEncoder, PcmuEncoder
from aiortc.codecs.g722 import G722Encoder
from aiortc.codecs.opus import OpusEncoder

from callmeter.media.sdp import CODECS, PREFERRED_DYNAMIC, Negotiated

__all__ = [
    "BUILTIN_SOURCE",
    "DEFAULT_PTIME_MS",
    "ENCODER_FRAME_MS",
    "FULL_SCALE",
    "LEVEL_SILENCE_DBOV",
    "MAX_PTIME_MS",
    "MIN_PTIME_MS",
    "PRE_ENCODED_MAGIC",
    "PRE_ENCODED_SUFFIX",
    "PRE_ENCODED_VERSION",
    "SUPPORTED_CODECS",
    "EncodedMedia",
    "MediaFileError",
    "MediaLibrary",
    "MediaSource",
    "PcmArray",
    "PreEncoded",
    "PreEncodedHeader",
    "audio_level_dbov",
    "audio_levels_dbov",
    "decode_file",
    "encode_pcm",
    "file_sha256",
    "load_pre_encoded",
    "pre_encode",
    "pre_encoded_headers",
    "pre_encoded_path",
    "read_pre_encoded_header",
    "speech_like_pcm",
    "transcode_file",
]

log = logging.getLogger(__name__)

PcmArray: TypeAlias = npt.NDArray[np.int16]
MediaSource: TypeAlias = str | Path | None

BUILTIN_SOURCE = "builtin:speech"  # the cache key and label of the built-in test signal
DEFAULT_PTIME_MS = 20  # RFC 3551 section 4.5
FULL_SCALE = 32767  # 0 dBov for 16-bit PCM (RFC 6464 section 3; RFC 7874 section 4)
LEVEL_SILENCE_DBOV = 127  # RFC 6464 section 3: digital silence is always 127
ENCODER_FRAME_MS = 20  # aiortc's audio encoders take 20 ms frames
MIN_PTIME_MS = 10
MAX_PTIME_MS = 120  # 960 bytes of G.711: well inside one Ethernet frame


@dataclass(frozen=True, slots=True)
class _CodecSpec:
    """How to encode one codec with aiortc; ``stream`` codecs may be re-cut at any sample."""

    name: str
    make_encoder: Callable[[], Encoder]
    sample_rate_hz: int
    clock_rate: int
    payload_type: int
    stream: bool


def _spec(key: str, make_encoder: Callable[[], Encoder], stream: bool) -> _CodecSpec:
    codec = CODECS[key]
    pt = codec.static_payload_type
    return _CodecSpec(
        name=codec.name,
        make_encoder=make_encoder,
        sample_rate_hz=codec.sample_rate_hz or codec.clock_rate,
        clock_rate=codec.clock_rate,
        payload_type=PREFERRED_DYNAMIC[key] if pt is None else pt,
        stream=stream,
    )


_SPECS: dict[str, _CodecSpec] = {
    "pcmu": _spec("pcmu", PcmuEncoder, stream=True),  # ITU-T G.711 mu-law, RFC 3551 4.5.14
    "pcma": _spec("pcma", PcmaEncoder, stream=True),  # ITU-T G.711 A-law
    "g722": _spec("g722", G722Encoder, stream=True),  # ITU-T G.722 64 kbit/s, RFC 3551 4.5.2
    "opus": _spec("opus", OpusEncoder, stream=False),  # RFC 7587; aiortc: 96 kbit/s stereo
}
SUPPORTED_CODECS: tuple[str, ...] = tuple(spec.name for spec in _SPECS.values())


def _codec_spec(codec: str) -> _CodecSpec:
    spec = _SPECS.get(codec.lower())
    if spec is None:
        known = ", ".join(SUPPORTED_CODECS)
        raise ValueError(f"codec {codec!r} is not supported for sending; supported: {known}")
    return spec


# -- the encoded media --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EncodedMedia:
    """One source encoded with one codec and ptime, ready to replay in a loop.

    ``samples_per_packet`` is the RTP timestamp increment per packet in ``clock_rate`` units
    (G.722: 160 per 20 ms at its 8000 Hz RTP clock although it samples at 16 kHz, RFC 3551
    section 4.5.2). ``audio_levels_dbov`` holds the RFC 6464 level per packet as the
    positive number ``-dBov`` (0 loudest, 127 silence)."""

    source: str
    codec: str
    payload_type: int
    clock_rate: int
    samples_per_packet: int
    ptime_ms: int
    payloads: tuple[bytes, ...]
    audio_levels_dbov: tuple[int, ...]

    @property
    def packet_count(self) -> int:
        return len(self.payloads)

    @property
    def duration_s(self) -> float:
        """Length of one pass through the loop."""
        return len(self.payloads) * self.ptime_ms / 1000.0

    def payload(self, index: int) -> bytes:
        """The payload of packet ``index`` of an endless loop (wraps around)."""
        return self.payloads[index % len(self.payloads)]

    def audio_level(self, index: int) -> int:
        """The RFC 6464 level (``-dBov``) of packet ``index``, wrapping like ``payload``."""
        return self.audio_levels_dbov[index % len(self.audio_levels_dbov)]


# -- levels -------------------------------------------------------------------------------------
def audio_level_dbov(pcm: PcmArray) -> int:
    """RFC 6464 section 3 level of one block: ``-20 lg(rms / FULL_SCALE)``, clamped to 0..127.

    The RMS measure is the one of RFC 6465 Appendix A; digital silence is 127."""
    if len(pcm) == 0:
        return LEVEL_SILENCE_DBOV
    return audio_levels_dbov(pcm, len(pcm))[0]


def audio_levels_dbov(pcm: PcmArray, samples_per_block: int) -> tuple[int, ...]:
    """The level of each whole block of ``samples_per_block`` samples (a trailing part is
    ignored), vectorised: this runs once per source and codec, never per packet."""
    count = len(pcm) // samples_per_block
    blocks = pcm[: count * samples_per_block].reshape(count, samples_per_block)
    return _levels_of_mean_squares(np.mean(np.square(blocks, dtype=np.float64), axis=1))


def _levels_of_mean_squares(mean_squares: npt.NDArray[np.float64]) -> tuple[int, ...]:
    """RFC 6464 levels from each block's mean square. The squares of 16-bit samples and their
    sums over a packet are integers below 2**53, so float64 holds them exactly and any route
    to the same sums (a packet at once, or its milliseconds added up) gives the same levels."""
    rms = np.sqrt(mean_squares)
    with np.errstate(divide="ignore"):
        minus_dbov = -20.0 * np.log10(rms / FULL_SCALE)  # silence: +inf, clipped to 127
    levels = np.clip(np.round(minus_dbov), 0, LEVEL_SILENCE_DBOV)
    return tuple(int(level) for level in levels)


# -- sources ------------------------------------------------------------------------------------
# Vowel formants F1..F3 in Hz (Peterson and Barney, 1952, adult male averages): /a/ /i/ /u/ /e/ /o/.
_VOWELS_HZ = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
              (570, 840, 2410))  # fmt: skip
_PHRASES = (5, 7, 4)  # syllables per phrase; a pause follows each phrase
_SYLLABLE_S = 0.22  # ~4.5 syllables per second, a typical speaking rate
_PAUSE_S = 0.5
_LEAD_S = 0.25  # silence before the first phrase
_BAND_HZ = 3400.0  # telephone band (ITU-T G.712): the signal is the same at every rate
_ACTIVE_RMS = 2600.0  # -19 dBm0 active speech level for 16-bit PCM (RFC 7874 section 4)


def _syllables() -> list[tuple[float, int, float]]:
    """(start s, vowel index, stress gain) of every syllable, in order."""
    out: list[tuple[float, int, float]] = []
    start = _LEAD_S
    for phrase, syllables in enumerate(_PHRASES):
        for n in range(syllables):
            stress = 1.0 if n % 3 == 0 else 0.6 + 0.1 * ((n + phrase) % 3)
            out.append((start, (3 * phrase + n) % len(_VOWELS_HZ), stress))
            start += _SYLLABLE_S
        start += _PAUSE_S
    return out


def _speech_duration_s() -> float:
    return _LEAD_S + sum(_PHRASES) * _SYLLABLE_S + len(_PHRASES) * _PAUSE_S


def _envelope_and_formants(t_s: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], ...]:
    """Per sample: the amplitude envelope and F1, F2, F3 of the current syllable."""
    envelope = np.zeros_like(t_s)
    formants = [np.full_like(t_s, 500.0) for _ in range(3)]
    for start, vowel, stress in _syllables():
        inside = (t_s >= start) & (t_s < start + _SYLLABLE_S)
        phase = (t_s[inside] - start) / _SYLLABLE_S
        envelope[inside] = stress * np.sin(np.pi * phase) ** 2  # syllable-rate modulation
        for formant, hz in zip(formants, _VOWELS_HZ[vowel], strict=True):
            formant[inside] = hz
    return (envelope, *formants)


@lru_cache(maxsize=8)
def speech_like_pcm(sample_rate_hz: int) -> PcmArray:
    """The built-in test signal at ``sample_rate_hz``: deterministic, speech-like, read-only.

    Three phrases of syllables (a harmonic voice at 100-130 Hz shaped by vowel formants and
    a raised-cosine syllable envelope) separated by pauses, band-limited to 3.4 kHz, active
    level -19 dBm0 (RFC 7874 section 4). It starts and ends in silence, so it loops cleanly,
    and its pauses give level and voice-activity metrics something to measure."""
    t_s = np.arange(round(_speech_duration_s() * sample_rate_hz)) / sample_rate_hz
    envelope, *formants = _envelope_and_formants(t_s)
    f0_hz = 115.0 + 15.0 * np.sin(2.0 * np.pi * 0.7 * t_s)  # intonation
    phase = 2.0 * np.pi * np.cumsum(f0_hz) / sample_rate_hz
    signal = np.zeros_like(t_s)
    for k in range(1, int(_BAND_HZ // 100.0) + 1):
        harmonic_hz = k * f0_hz
        gain = sum(np.exp(-0.5 * ((harmonic_hz - f) / (60.0 + 0.06 * f)) ** 2) for f in formants)
        gain = np.where(harmonic_hz < _BAND_HZ, gain / math.sqrt(k), 0.0)
        signal += gain * np.sin(k * phase)
    signal *= envelope
    active = envelope > 0.05
    signal *= _ACTIVE_RMS / np.sqrt(np.mean(np.square(signal[active])))
    pcm = np.clip(np.round(signal), -FULL_SCALE, FULL_SCALE).astype(np.int16)
    pcm.flags.writeable = False  # shared by every caller through the cache
    return pcm


class MediaFileError(ValueError):
    """A media file that cannot be used: ``reason`` says why (what FFmpeg said, if it spoke),
    the message names the file: ``media file 'x.wav' is not readable audio: ...``."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"media file '{path}' {reason}")
        self.path = str(path)
        self.reason = reason


def decode_file(path: str | Path, sample_rate_hz: int) -> PcmArray:
    """Decode the first audio stream of a media file to mono s16 at ``sample_rate_hz``.

    :class:`MediaFileError` (a ValueError) names the file: missing, unreadable by FFmpeg,
    without audio, or empty."""
    file = Path(path)
    if not file.exists():
        raise MediaFileError(path, "does not exist")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate_hz)
    chunks: list[npt.NDArray[Any]] = []
    try:
        with av.open(str(file)) as container:
            if not container.streams.audio:
                raise MediaFileError(path, "has no audio stream")
            for frame in container.decode(audio=0):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except (av.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise MediaFileError(path, f"is not readable audio: {reason}") from exc
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise MediaFileError(path, "contains no audio samples")
    pcm = np.concatenate(chunks).astype(np.int16, copy=False)
    pcm.flags.writeable = False
    return pcm


# -- encoding -----------------------------------------------------------------------------------
def _check_ptime(spec: _CodecSpec, ptime_ms: int) -> None:
    if not spec.stream and ptime_ms != ENCODER_FRAME_MS:
        raise ValueError(f"codec {spec.name} is sent with ptime {ENCODER_FRAME_MS} ms only, "
                         f"got {ptime_ms} ms")  # fmt: skip
    if not MIN_PTIME_MS <= ptime_ms <= MAX_PTIME_MS:
        raise ValueError(f"ptime {ptime_ms} ms is outside {MIN_PTIME_MS}..{MAX_PTIME_MS} ms")


def _run_encoder(encoder: Encoder, pcm: PcmArray, sample_rate_hz: int) -> list[bytes]:
    """Feed whole 20 ms frames through one aiortc encoder; its packets in order."""
    frame_samples = sample_rate_hz * ENCODER_FRAME_MS // 1000
    time_base = Fraction(1, sample_rate_hz)
    packets: list[bytes] = []
    for start in range(0, len(pcm), frame_samples):
        block = np.ascontiguousarray(pcm[start : start + frame_samples]).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
        frame.sample_rate = sample_rate_hz
        frame.pts = start
        frame.time_base = time_base
        payloads, _timestamp = encoder.encode(frame)
        packets.extend(payloads)
    return packets


def encode_pcm(
    pcm: PcmArray, codec: str, ptime_ms: int = DEFAULT_PTIME_MS, source: str = BUILTIN_SOURCE
) -> EncodedMedia:
    """Encode mono s16 ``pcm`` (at the codec's sampling rate) into one packet loop."""
    spec = _codec_spec(codec)
    _check_ptime(spec, ptime_ms)
    packet_samples = spec.sample_rate_hz * ptime_ms // 1000
    frame_samples = spec.sample_rate_hz * ENCODER_FRAME_MS // 1000
    unit = math.lcm(packet_samples, frame_samples)
    padded = np.zeros(max(1, -(-len(pcm) // unit)) * unit, dtype=np.int16)
    padded[: len(pcm)] = pcm
    count = len(padded) // packet_samples
    encoded = _run_encoder(spec.make_encoder(), padded, spec.sample_rate_hz)
    if spec.stream:
        data = b"".join(encoded)
        size = len(data) // count
        payloads = tuple(data[i * size : (i + 1) * size] for i in range(count))
    else:
        payloads = tuple(encoded)
    if len(payloads) != count:
        raise RuntimeError(f"{spec.name} encoder gave {len(payloads)} packets, expected {count}")
    return EncodedMedia(
        source=source,
        codec=spec.name,
        payload_type=spec.payload_type,
        clock_rate=spec.clock_rate,
        samples_per_packet=spec.clock_rate * ptime_ms // 1000,
        ptime_ms=ptime_ms,
        payloads=payloads,
        audio_levels_dbov=audio_levels_dbov(padded, packet_samples),
    )


Encode: TypeAlias = Callable[[PcmArray, str, int, str], EncodedMedia]
Decode: TypeAlias = Callable[[str | Path, int], PcmArray]


# -- pre-encoded files: encoded once at upload, loaded by every shard ----------------------------
PRE_ENCODED_MAGIC = b"CMENC\r\n\x1a"  # as PNG's: CR LF and ^Z show text-mode mangling at once
PRE_ENCODED_VERSION = 1
PRE_ENCODED_SUFFIX = ".cmenc"
_HEADER_SIZE = struct.Struct(">I")
_MAX_HEADER_BYTES = 4096
_SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class PreEncodedHeader:
    """What a pre-encoded file says about itself, readable without its payloads.

    ``source_sha256`` is the SHA-256 of the media file it was made from: a file whose content
    changed since is stale and never used. ``samples`` is the decoded length at
    ``sample_rate_hz``; ``packets`` counts the ``ENCODER_FRAME_MS`` packets stored."""

    codec: str
    source_sha256: str
    sample_rate_hz: int
    samples: int
    packets: int

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate_hz


@dataclass(frozen=True, slots=True)
class PreEncoded:
    """A source encoded with one codec, enough to serve every ptime the codec allows with
    the payloads and levels :func:`encode_pcm` would give, without running an encoder.

    ``payloads`` and ``audio_levels_dbov`` are the ``ENCODER_FRAME_MS`` packets. A sample-stream
    codec (G.711, G.722) at another ptime re-cuts that byte stream; :func:`encode_pcm` pads the
    PCM with silence to whole packets *and* encoder frames, so the cut may reach past the last
    frame: ``tail`` is the encoder's own continuation on silence (G.722 is stateful: its
    silence depends on what came before), long enough for any ptime, and ``energy`` the sum of
    squared samples per millisecond (int64, little-endian), from which the level of a packet of
    any whole number of milliseconds is exact. Frame codecs (Opus) have neither.

    On disk (:meth:`serialize`, :meth:`parse`): ``PRE_ENCODED_MAGIC``, a 4-byte big-endian
    length, a JSON header (format version, the header fields, section sizes, CRC-32 of the
    body), then the body: payload sizes (u32 LE each), payloads, levels (one byte each),
    ``tail``, ``energy``."""

    header: PreEncodedHeader
    payloads: tuple[bytes, ...]
    audio_levels_dbov: tuple[int, ...]
    tail: bytes = b""
    energy: bytes = b""

    def media(self, ptime_ms: int = DEFAULT_PTIME_MS, source: str = BUILTIN_SOURCE) -> EncodedMedia:
        """The packet loop at ``ptime_ms``, equal to ``encode_pcm(pcm, codec, ptime_ms)``."""
        spec = _codec_spec(self.header.codec)
        _check_ptime(spec, ptime_ms)
        if ptime_ms == ENCODER_FRAME_MS:
            payloads, levels = self.payloads, self.audio_levels_dbov
        else:
            payloads, levels = self._recut(spec, ptime_ms)
        return EncodedMedia(
            source=source,
            codec=spec.name,
            payload_type=spec.payload_type,
            clock_rate=spec.clock_rate,
            samples_per_packet=spec.clock_rate * ptime_ms // 1000,
            ptime_ms=ptime_ms,
            payloads=payloads,
            audio_levels_dbov=levels,
        )

    def _recut(self, spec: _CodecSpec, ptime_ms: int) -> tuple[tuple[bytes, ...], tuple[int, ...]]:
        rate = spec.sample_rate_hz
        packet_samples = rate * ptime_ms // 1000
        frame_samples = rate * ENCODER_FRAME_MS // 1000
        unit = math.lcm(packet_samples, frame_samples)
        total = max(1, -(-self.header.samples // unit)) * unit  # as encode_pcm pads
        count = total // packet_samples
        stream = b"".join(self.payloads) + self.tail
        size = total // frame_samples * len(self.payloads[0]) // count
        payloads = tuple(stream[i * size : (i + 1) * size] for i in range(count))
        per_ms = np.zeros(total * 1000 // rate, dtype=np.int64)
        energy = np.frombuffer(self.energy, dtype="<i8")
        per_ms[: len(energy)] = energy
        sums = per_ms.reshape(count, ptime_ms).sum(axis=1)
        return payloads, _levels_of_mean_squares(sums.astype(np.float64) / packet_samples)

    def serialize(self) -> bytes:
        sizes = np.array([len(p) for p in self.payloads], dtype="<u4").tobytes()
        body = b"".join(
            (sizes, *self.payloads, bytes(self.audio_levels_dbov), self.tail, self.energy)
        )
        header = {
            "format": "callmeter pre-encoded media",
            "version": PRE_ENCODED_VERSION,
            "codec": self.header.codec,
            "source_sha256": self.header.source_sha256,
            "sample_rate_hz": self.header.sample_rate_hz,
            "samples": self.header.samples,
            "packets": self.header.packets,
            "payload_bytes": sum(len(p) for p in self.payloads),
            "tail_bytes": len(self.tail),
            "energy_bytes": len(self.energy),
            "crc32": zlib.crc32(body),
        }
        text = json.dumps(header, sort_keys=True).encode()
        return PRE_ENCODED_MAGIC + _HEADER_SIZE.pack(len(text)) + text + body

    @classmethod
    def parse(cls, data: bytes) -> PreEncoded:
        """ValueError says what is wrong: not this format, another version, truncated,
        corrupt, or sections that do not fit the codec."""
        fields, offset = _parse_header(data)
        header = _header_of(fields)
        body = data[offset:]
        packets = header.packets
        lengths = (4 * packets, fields["payload_bytes"], packets, fields["tail_bytes"],
                   fields["energy_bytes"])  # fmt: skip
        if sum(lengths) != len(body):
            raise ValueError(f"the body is {len(body)} bytes, the header says {sum(lengths)}")
        if zlib.crc32(body) != fields["crc32"]:
            raise ValueError("the body does not match its CRC-32: the file is corrupt")
        ends = list(itertools.accumulate(lengths))
        sizes = np.frombuffer(body[: ends[0]], dtype="<u4")
        if int(sizes.sum()) != lengths[1]:
            raise ValueError("the payload sizes do not add up to the payload bytes")
        starts = itertools.accumulate((int(n) for n in sizes), initial=ends[0])
        payloads = tuple(body[a : a + int(n)] for a, n in zip(starts, sizes, strict=False))
        pre = cls(header, payloads, tuple(body[ends[1] : ends[2]]), body[ends[2] : ends[3]],
                  body[ends[3] : ends[4]])  # fmt: skip
        _check_sections(pre)
        return pre


def _parse_header(data: bytes) -> tuple[dict[str, Any], int]:
    """The JSON header of a pre-encoded file (``data`` may be just its start) and where the
    body begins."""
    magic = PRE_ENCODED_MAGIC
    if data[: len(magic)] != magic:
        raise ValueError("not a callmeter pre-encoded media file (bad magic)")
    start = len(magic) + _HEADER_SIZE.size
    if len(data) < start:
        raise ValueError("truncated before the header")
    (length,) = _HEADER_SIZE.unpack_from(data, len(magic))
    if length > _MAX_HEADER_BYTES or len(data) < start + length:
        raise ValueError(f"header of {length} bytes: truncated or too long")
    try:
        fields = json.loads(data[start : start + length])
    except ValueError as exc:
        raise ValueError(f"the header is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ValueError("the header is not a JSON object")
    version = fields.get("version")
    if version != PRE_ENCODED_VERSION:
        raise ValueError(f"format version {version!r}; this callmeter reads {PRE_ENCODED_VERSION}")
    for name in ("sample_rate_hz", "samples", "packets", "payload_bytes", "tail_bytes",
                 "energy_bytes", "crc32"):  # fmt: skip
        value = fields.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"header field {name}: expected a whole number, got {value!r}")
    return fields, start + length


def _header_of(fields: dict[str, Any]) -> PreEncodedHeader:
    codec = fields.get("codec")
    spec = _SPECS.get(codec.lower()) if isinstance(codec, str) else None
    if spec is None or spec.name != codec:
        raise ValueError(f"header field codec: not a supported codec: {codec!r}")
    digest = fields.get("source_sha256")
    if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _SHA256_HEX:
        raise ValueError("header field source_sha256: expected 64 lowercase hex digits")
    if fields["sample_rate_hz"] != spec.sample_rate_hz:
        raise ValueError(f"{codec} is sampled at {spec.sample_rate_hz} Hz, "
                         f"the header says {fields['sample_rate_hz']}")  # fmt: skip
    return PreEncodedHeader(
        codec, digest, fields["sample_rate_hz"], fields["samples"], fields["packets"]
    )


def _check_sections(pre: PreEncoded) -> None:
    """The sections have the sizes the codec and the source's length imply."""
    header = pre.header
    spec = _codec_spec(header.codec)
    frame_samples = spec.sample_rate_hz * ENCODER_FRAME_MS // 1000
    frames = max(1, -(-header.samples // frame_samples))
    if spec.stream:
        expected = (frames, frames * ENCODER_FRAME_MS * 8, _tail_samples(spec.sample_rate_hz))
        sizes = {len(p) for p in pre.payloads}
        bytes_per_frame = sizes.pop() if len(sizes) == 1 else 0
        found = (header.packets, len(pre.energy),
                 len(pre.tail) * frame_samples // max(1, bytes_per_frame))  # fmt: skip
        if found != expected or not bytes_per_frame:
            raise ValueError(f"{header.codec}: (packets, energy bytes, tail samples) {found}, "
                             f"expected {expected}")  # fmt: skip
    elif header.packets != frames or pre.tail or pre.energy:
        raise ValueError(f"{header.codec}: {header.packets} packets, expected {frames}")
    if len(pre.audio_levels_dbov) != header.packets or any(
        level > LEVEL_SILENCE_DBOV for level in pre.audio_levels_dbov
    ):
        raise ValueError(f"{header.codec}: audio levels do not match the packets")


@lru_cache(maxsize=8)
def _tail_samples(sample_rate_hz: int) -> int:
    """Silence past the last encoder frame that :func:`encode_pcm` may encode at some ptime:
    its padding unit less one frame (2360 ms, for 119 ms packets)."""
    frame = sample_rate_hz * ENCODER_FRAME_MS // 1000
    units = (
        math.lcm(sample_rate_hz * ptime_ms // 1000, frame)
        for ptime_ms in range(MIN_PTIME_MS, MAX_PTIME_MS + 1)
    )
    return max(units) - frame


def pre_encode(pcm: PcmArray, codec: str, source_sha256: str) -> PreEncoded:
    """Encode mono s16 ``pcm`` (at the codec's sampling rate) once for every ptime."""
    spec = _codec_spec(codec)
    frame_samples = spec.sample_rate_hz * ENCODER_FRAME_MS // 1000
    frames = max(1, -(-len(pcm) // frame_samples))
    if not spec.stream:
        media = encode_pcm(pcm, spec.name, ENCODER_FRAME_MS)
        header = PreEncodedHeader(spec.name, source_sha256, spec.sample_rate_hz, len(pcm), frames)
        return PreEncoded(header, media.payloads, media.audio_levels_dbov)
    base = frames * frame_samples
    padded = np.zeros(base + _tail_samples(spec.sample_rate_hz), dtype=np.int16)
    padded[: len(pcm)] = pcm
    stream = b"".join(_run_encoder(spec.make_encoder(), padded, spec.sample_rate_hz))
    size, rest = divmod(len(stream), len(padded) // frame_samples)
    if rest:
        raise RuntimeError(f"{spec.name} encoder gave {len(stream)} bytes: not whole frames")
    payloads = tuple(stream[i * size : (i + 1) * size] for i in range(frames))
    squares = np.square(padded[:base].astype(np.int64))
    energy = squares.reshape(-1, spec.sample_rate_hz // 1000).sum(axis=1).astype("<i8")
    header = PreEncodedHeader(spec.name, source_sha256, spec.sample_rate_hz, len(pcm), frames)
    return PreEncoded(
        header,
        payloads,
        audio_levels_dbov(padded[:base], frame_samples),
        tail=stream[frames * size :],
        energy=energy.tobytes(),
    )


def pre_encoded_path(source: str | Path, codec: str) -> Path:
    """Where the pre-encoded ``codec`` of ``source`` lives: beside it, ``FILE.<codec>.cmenc``."""
    path = Path(source)
    return path.with_name(f"{path.name}.{_codec_spec(codec).name.lower()}{PRE_ENCODED_SUFFIX}")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_pre_encoded_header(path: str | Path) -> PreEncodedHeader:
    """The header of a pre-encoded file, without reading its payloads (ValueError: not one)."""
    prefix = len(PRE_ENCODED_MAGIC) + _HEADER_SIZE.size
    with open(path, "rb") as file:
        start = file.read(prefix)
        if len(start) == prefix:
            (length,) = _HEADER_SIZE.unpack_from(start, len(PRE_ENCODED_MAGIC))
            start += file.read(min(length, _MAX_HEADER_BYTES))
    return _header_of(_parse_header(start)[0])


def load_pre_encoded(path: str | Path) -> PreEncoded:
    """A pre-encoded file (ValueError naming the file: not one, corrupt, another version)."""
    try:
        return PreEncoded.parse(Path(path).read_bytes())
    except ValueError as exc:
        raise ValueError(f"pre-encoded media file '{path}': {exc}") from None


def _current_header(path: Path, source_sha256: str, spec: _CodecSpec) -> PreEncodedHeader | None:
    """The header of ``path`` when it is a pre-encoded ``spec`` made from this content."""
    try:
        header = read_pre_encoded_header(path)
    except (OSError, ValueError):
        return None
    current = header.source_sha256 == source_sha256 and header.codec == spec.name
    return header if current else None


def pre_encoded_headers(
    source: str | Path, source_sha256: str | None = None
) -> tuple[PreEncodedHeader, ...]:
    """The usable pre-encoded files of ``source``, in ``SUPPORTED_CODECS`` order: those made
    from its current content (``source_sha256`` when the caller knows it; else the file is
    hashed, and a missing file has none)."""
    if source_sha256 is None:
        try:
            source_sha256 = file_sha256(source)
        except OSError:
            return ()
    found = (
        _current_header(pre_encoded_path(source, s.name), source_sha256, s) for s in _SPECS.values()
    )
    return tuple(header for header in found if header is not None)


def transcode_file(
    path: str | Path, codecs: Sequence[str] = SUPPORTED_CODECS, *, decode: Decode | None = None
) -> tuple[PreEncodedHeader, ...]:
    """Pre-encode the media file ``path`` into each of ``codecs``, written beside it
    (:func:`pre_encoded_path`, atomically); a file already made from this content is kept.
    Decodes once per sampling rate; :class:`MediaFileError` when the file is not audio.
    Returns the headers in the order of ``codecs``."""
    source = Path(path)
    if not source.exists():
        raise MediaFileError(path, "does not exist")
    digest = file_sha256(source)
    pcm: dict[int, PcmArray] = {}
    headers: list[PreEncodedHeader] = []
    for codec in codecs:
        spec = _codec_spec(codec)
        target = pre_encoded_path(source, spec.name)
        header = _current_header(target, digest, spec)
        if header is None:
            rate = spec.sample_rate_hz
            if rate not in pcm:
                pcm[rate] = (decode or decode_file)(source, rate)
            pre = pre_encode(pcm[rate], spec.name, digest)
            _write_atomically(target, pre.serialize())
            header = pre.header
        headers.append(header)
    return tuple(headers)


def _write_atomically(target: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a part (rename is atomic)."""
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- the per-run cache --------------------------------------------------------------------------


class MediaLibrary:
    """Encoded media of one run, built on first use and shared by every sender.

    ``get(codec, ptime_ms, source)`` decodes a source once per sampling rate and encodes it
    once per (codec, ptime); ``source`` None is the built-in signal. A media file with a
    pre-encoded file beside it (:func:`transcode_file`: the server writes them at upload) is
    loaded from that instead, once per (file, codec), and serves every ptime with neither
    decoder nor encoder, provided it was made from the file's current content (SHA-256, hashed
    once per file); a stale or unreadable one is ignored. ``encode`` and ``decode`` are
    injectable so a test can count the calls; ``pre_encoded=False`` ignores pre-encoded files."""

    __slots__ = ("_decode", "_digests", "_encode", "_media", "_pcm", "_pre", "_pre_encoded")

    def __init__(
        self, *, encode: Encode = encode_pcm, decode: Decode = decode_file, pre_encoded: bool = True
    ) -> None:
        self._encode = encode
        self._decode = decode
        self._pre_encoded = pre_encoded
        self._media: dict[tuple[str, str, int], EncodedMedia] = {}
        self._pcm: dict[tuple[str, int], PcmArray] = {}
        self._pre: dict[tuple[str, str], PreEncoded | None] = {}
        self._digests: dict[str, str | None] = {}

    def __len__(self) -> int:
        return len(self._media)

    def get(
        self, codec: str, ptime_ms: int = DEFAULT_PTIME_MS, source: MediaSource = None
    ) -> EncodedMedia:
        """The media for ``codec`` at ``ptime_ms`` from ``source`` (None: built-in)."""
        spec = _codec_spec(codec)
        _check_ptime(spec, ptime_ms)
        key = (_source_key(source), spec.name, ptime_ms)
        media = self._media.get(key)
        if media is None:
            pre = self.pre_encoded(source, spec.name)
            if pre is not None:
                media = pre.media(ptime_ms, key[0])
            else:
                pcm = self.pcm(source, spec.sample_rate_hz)
                media = self._encode(pcm, spec.name, ptime_ms, key[0])
            self._media[key] = media
        return media

    def pre_encoded(self, source: MediaSource, codec: str) -> PreEncoded | None:
        """The usable pre-encoded ``codec`` of the file ``source``, loaded once (None: none,
        stale, unreadable, or the built-in signal)."""
        name = _source_key(source)
        if name == BUILTIN_SOURCE or not self._pre_encoded:
            return None
        spec = _codec_spec(codec)
        key = (name, spec.name)
        if key not in self._pre:
            self._pre[key] = self._load_pre_encoded(name, spec)
        return self._pre[key]

    def _load_pre_encoded(self, source: str, spec: _CodecSpec) -> PreEncoded | None:
        path = pre_encoded_path(source, spec.name)
        if not path.exists():
            return None
        if source not in self._digests:
            try:
                self._digests[source] = file_sha256(source)
            except OSError:
                self._digests[source] = None  # decoding will say what is wrong with it
        digest = self._digests[source]
        if digest is None or _current_header(path, digest, spec) is None:
            log.info("%s is stale or unreadable: %s is encoded again", path, source)
            return None
        try:
            return load_pre_encoded(path)
        except (OSError, ValueError) as exc:
            log.warning("%s; encoding %s again", exc, source)
            return None

    def for_negotiated(self, negotiated: Negotiated, source: MediaSource = None) -> EncodedMedia:
        """The media an offer/answer agreed on, with the peer's payload type number."""
        media = self.get(negotiated.codec, negotiated.ptime_ms, source)
        if media.payload_type == negotiated.payload_type:
            return media
        return replace(media, payload_type=negotiated.payload_type)  # shares the payloads

    def pcm(self, source: MediaSource, sample_rate_hz: int) -> PcmArray:
        """Mono s16 PCM of ``source`` at ``sample_rate_hz``, decoded once."""
        key = (_source_key(source), sample_rate_hz)
        pcm = self._pcm.get(key)
        if pcm is None:
            if key[0] == BUILTIN_SOURCE:
                pcm = speech_like_pcm(sample_rate_hz)
            else:
                assert source is not None
                pcm = self._decode(source, sample_rate_hz)
            self._pcm[key] = pcm
        return pcm


def _source_key(source: MediaSource) -> str:
    if source is None or source == BUILTIN_SOURCE:
        return BUILTIN_SOURCE
    return str(Path(source).expanduser().resolve())
