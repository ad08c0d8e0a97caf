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

import math
from collections.abc import Callable
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
    "SUPPORTED_CODECS",
    "EncodedMedia",
    "MediaLibrary",
    "MediaSource",
    "PcmArray",
    "audio_level_dbov",
    "audio_levels_dbov",
    "decode_file",
    "encode_pcm",
    "speech_like_pcm",
]

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
    rms = np.sqrt(np.mean(np.square(blocks, dtype=np.float64), axis=1))
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


def decode_file(path: str | Path, sample_rate_hz: int) -> PcmArray:
    """Decode the first audio stream of a media file to mono s16 at ``sample_rate_hz``.

    ValueError names the file: missing, unreadable by FFmpeg, without audio, or empty."""
    file = Path(path)
    if not file.exists():
        raise ValueError(f"media file '{path}' does not exist")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate_hz)
    chunks: list[npt.NDArray[Any]] = []
    try:
        with av.open(str(file)) as container:
            if not container.streams.audio:
                raise ValueError(f"media file '{path}' has no audio stream")
            for frame in container.decode(audio=0):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except (av.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ValueError(f"media file '{path}' is not readable audio: {reason}") from exc
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise ValueError(f"media file '{path}' contains no audio samples")
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


# -- the per-run cache --------------------------------------------------------------------------
Encode: TypeAlias = Callable[[PcmArray, str, int, str], EncodedMedia]
Decode: TypeAlias = Callable[[str | Path, int], PcmArray]


class MediaLibrary:
    """Encoded media of one run, built on first use and shared by every sender.

    ``get(codec, ptime_ms, source)`` decodes a source once per sampling rate and encodes it
    once per (codec, ptime); ``source`` None is the built-in signal. ``encode`` and
    ``decode`` are injectable so a test can count the calls."""

    __slots__ = ("_decode", "_encode", "_media", "_pcm")

    def __init__(self, *, encode: Encode = encode_pcm, decode: Decode = decode_file) -> None:
        self._encode = encode
        self._decode = decode
        self._media: dict[tuple[str, str, int], EncodedMedia] = {}
        self._pcm: dict[tuple[str, int], PcmArray] = {}

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
            pcm = self.pcm(source, spec.sample_rate_hz)
            media = self._encode(pcm, spec.name, ptime_ms, key[0])
            self._media[key] = media
        return media

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
