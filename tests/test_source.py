"""Media sources and codecs: decoded once, encoded once, replayed by every sender.

Files are written here with the stdlib ``wave`` module, so the expected packet counts, levels
and decoded samples can be worked out by hand.
"""

from __future__ import annotations

import json
import math
import re
import struct
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.codecs.g711 import PcmaDecoder, PcmuDecoder
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame

from callmeter.media.sdp import Negotiated
from callmeter.media.source import (
    BUILTIN_SOURCE,
    MAX_PTIME_MS,
    MIN_PTIME_MS,
    PRE_ENCODED_MAGIC,
    SUPPORTED_CODECS,
    EncodedMedia,
    MediaFileError,
    MediaLibrary,
    PcmArray,
    PreEncoded,
    audio_level_dbov,
    decode_file,
    encode_pcm,
    file_sha256,
    pre_encode,
    pre_encoded_headers,
    pre_encoded_path,
    read_pre_encoded_header,
    speech_like_pcm,
    transcode_file,
)


def exact(message: str) -> str:
    return f"^{re.escape(message)}$"


def write_wav(path: Path, samples: PcmArray, rate_hz: int, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate_hz)
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def tone(rate_hz: int, seconds: float, amplitude: float, freq_hz: float = 440.0) -> PcmArray:
    t = np.arange(round(rate_hz * seconds)) / rate_hz
    return np.round(amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def decoded(media: EncodedMedia, decoder: PcmuDecoder | PcmaDecoder) -> PcmArray:
    frames = [
        frame
        for i, payload in enumerate(media.payloads)
        for frame in decoder.decode(JitterFrame(payload, i * media.samples_per_packet))
        if isinstance(frame, av.AudioFrame)
    ]
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames])


def snr_db(reference: PcmArray, test: PcmArray) -> float:
    ref = reference.astype(np.float64)
    noise = ref - test[: len(ref)].astype(np.float64)
    return 10 * math.log10(np.sum(ref**2) / np.sum(noise**2))


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "tone.wav", tone(8000, 1.0, 8000.0), 8000)


@pytest.mark.parametrize(("codec", "pt"), [("PCMU", 0), ("PCMA", 8)])
def test_a_wav_file_becomes_160_byte_packets_for_20ms(tone_wav: Path, codec: str, pt: int) -> None:
    media = MediaLibrary().get(codec, 20, tone_wav)
    assert (media.codec, media.payload_type, media.clock_rate) == (codec, pt, 8000)
    assert (media.samples_per_packet, media.ptime_ms, media.packet_count) == (160, 20, 50)
    assert {len(p) for p in media.payloads} == {160}
    assert media.duration_s == pytest.approx(1.0)


def test_30ms_packets_are_240_bytes_and_padded_to_whole_packets(tone_wav: Path) -> None:
    media = MediaLibrary().get("pcmu", 30, tone_wav)
    # 8000 samples padded with silence to whole 60 ms units (30 ms packets, 20 ms encoder
    # frames): 17 units, 34 packets; the last one is two thirds silence.
    assert (media.samples_per_packet, media.packet_count) == (240, 34)
    assert {len(p) for p in media.payloads} == {240}
    assert media.audio_levels_dbov[-1] > media.audio_levels_dbov[0]


@pytest.mark.parametrize(("codec", "decoder"), [("PCMU", PcmuDecoder), ("PCMA", PcmaDecoder)])
def test_decoding_the_payloads_gives_back_the_source(
    tone_wav: Path, codec: str, decoder: type[PcmuDecoder | PcmaDecoder]
) -> None:
    media = MediaLibrary().get(codec, 20, tone_wav)
    source = decode_file(tone_wav, 8000)
    assert snr_db(source, decoded(media, decoder())) > 30.0  # G.711 gives about 38 dB


def test_a_stereo_48khz_file_is_resampled_to_mono_8khz(tmp_path: Path) -> None:
    mono = tone(48000, 0.5, 6000.0, 300.0)
    stereo = np.repeat(mono, 2)
    path = write_wav(tmp_path / "stereo.wav", stereo, 48000, channels=2)
    pcm = decode_file(path, 8000)
    assert abs(len(pcm) - 4000) <= 32
    reference = tone(8000, 0.5, 6000.0, 300.0)
    lag = int(np.argmax(np.correlate(pcm[:800].astype(float), reference[:400].astype(float))))
    assert snr_db(reference[: len(pcm) - lag - 100], pcm[lag:]) > 20.0
    media = MediaLibrary().get("pcmu", 20, path)
    assert {len(p) for p in media.payloads} == {160}


def test_the_default_signal_is_speech_like_and_deterministic() -> None:
    pcm = speech_like_pcm(8000)
    assert not pcm.flags.writeable
    assert np.array_equal(pcm, speech_like_pcm.__wrapped__(8000))
    media = MediaLibrary().get("PCMU")
    assert media.source == BUILTIN_SOURCE
    assert media.packet_count == math.ceil(len(pcm) / 160)
    assert {len(p) for p in media.payloads} == {160}
    levels = media.audio_levels_dbov
    assert levels[0] == levels[-1] == 127  # starts and ends in silence: loops cleanly
    active = [level for level in levels if level < 127]
    assert 0.5 < len(active) / len(levels) < 0.9  # pauses between phrases
    assert 12 <= min(active) and np.median(active) < 35  # about -19 dBm0 active speech
    assert snr_db(pcm, decoded(media, PcmuDecoder())) > 25.0


def test_audio_levels_silence_is_127_and_a_full_scale_tone_about_3() -> None:
    assert audio_level_dbov(np.zeros(160, dtype=np.int16)) == 127
    assert audio_level_dbov(tone(8000, 0.02, 32767.0, 400.0)) == 3  # sine RMS: -3.01 dBov
    assert audio_level_dbov(np.full(160, 32767, dtype=np.int16)) == 0
    assert audio_level_dbov(tone(8000, 0.02, 3277.0, 400.0)) == 23
    silence = encode_pcm(np.zeros(800, dtype=np.int16), "pcma")
    assert silence.audio_levels_dbov == (127,) * 5


def test_g722_and_opus_come_from_aiortc() -> None:
    library = MediaLibrary()
    g722 = library.get("g722")
    assert (g722.codec, g722.payload_type, g722.clock_rate, g722.samples_per_packet) == (
        "G722", 9, 8000, 160)  # fmt: skip
    assert {len(p) for p in g722.payloads} == {160}  # 64 kbit/s for 20 ms
    assert {len(p) for p in library.get("g722", 30).payloads} == {240}
    opus = library.get("OPUS")
    assert (opus.codec, opus.payload_type, opus.clock_rate, opus.samples_per_packet) == (
        "opus", 111, 48000, 960)  # fmt: skip
    assert opus.packet_count == g722.packet_count
    frames = OpusDecoder().decode(JitterFrame(data=opus.payload(40), timestamp=0))
    assert sum(f.samples for f in frames if isinstance(f, av.AudioFrame)) == 960


def test_the_library_encodes_once_for_many_senders(tone_wav: Path) -> None:
    calls: list[tuple[str, int, str]] = []
    decodes: list[int] = []

    def counting_encode(pcm: PcmArray, codec: str, ptime_ms: int, source: str) -> EncodedMedia:
        calls.append((codec, ptime_ms, source))
        return encode_pcm(pcm, codec, ptime_ms, source)

    def counting_decode(path: str | Path, rate_hz: int) -> PcmArray:
        decodes.append(rate_hz)
        return decode_file(path, rate_hz)

    library = MediaLibrary(encode=counting_encode, decode=counting_decode)
    senders = [library.get("PCMU", 20, tone_wav) for _ in range(1000)]
    assert len(calls) == 1 and all(media is senders[0] for media in senders)
    assert library.get("pcmu", 20, str(tone_wav)) is senders[0]
    library.get("PCMA", 20, tone_wav)
    library.get("PCMU", 30, tone_wav)
    library.get("PCMU")
    assert [c[:2] for c in calls] == [("PCMU", 20), ("PCMA", 20), ("PCMU", 30), ("PCMU", 20)]
    assert decodes == [8000]  # one decode per file and sampling rate
    assert len(library) == 4


def test_payloads_wrap_around_as_a_tuple_index() -> None:
    media = MediaLibrary().get("pcmu")
    count = media.packet_count
    assert media.payload(count) is media.payload(0)
    assert media.payload(5 * count + 7) is media.payloads[7]
    assert media.audio_level(count + 1) == media.audio_levels_dbov[1]


def test_negotiated_media_uses_the_peers_payload_type() -> None:
    library = MediaLibrary()
    agreed = Negotiated(codec="opus", payload_type=96, clock_rate=48000, channels=2,
                        ptime_ms=20, local_rtp_port=4000, remote_rtp=("127.0.0.1", 5000),
                        remote_rtcp=("127.0.0.1", 5001), rtcp_mux=False,
                        telephone_event_pt=101, direction="sendrecv")  # fmt: skip
    media = library.for_negotiated(agreed)
    assert media.payload_type == 96
    assert media.payloads is library.get("opus").payloads


def test_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(ValueError, match=exact(f"media file '{missing}' does not exist")):
        MediaLibrary().get("PCMU", 20, missing)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all\n" * 20)
    with pytest.raises(
        ValueError, match="^" + re.escape(f"media file '{garbage}' is not readable audio: ")
    ):
        MediaLibrary().get("PCMU", 20, garbage)
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16), 8000)
    with pytest.raises(ValueError, match=exact(f"media file '{empty}' contains no audio samples")):
        decode_file(empty, 8000)


def test_errors_name_the_codec_and_ptime() -> None:
    with pytest.raises(ValueError) as caught:
        MediaLibrary().get("G729")
    assert str(caught.value) == (
        "codec 'G729' is not supported for sending; supported: PCMU, PCMA, G722, opus"
    )
    with pytest.raises(ValueError, match=r"^codec opus is sent with ptime 20 ms only, got 30 ms$"):
        MediaLibrary().get("opus", 30)
    with pytest.raises(ValueError, match=r"^ptime 5 ms is outside 10\.\.120 ms$"):
        encode_pcm(np.zeros(80, dtype=np.int16), "pcmu", 5)


# -- pre-encoded files ----------------------------------------------------------------------------
SHA = "ab" * 32


def refuse_encode(pcm: PcmArray, codec: str, ptime_ms: int, source: str) -> EncodedMedia:
    raise AssertionError(f"encoded {source} with {codec} at {ptime_ms} ms")


def refuse_decode(path: str | Path, rate_hz: int) -> PcmArray:
    raise AssertionError(f"decoded {path} at {rate_hz} Hz")


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722"])
@pytest.mark.parametrize("seconds", [0.0001, 0.02, 0.3013])
def test_pre_encoded_stream_codecs_give_encode_pcm_at_every_ptime(
    codec: str, seconds: float
) -> None:
    rate_hz = 16000 if codec == "G722" else 8000
    pcm = (np.random.default_rng(7).normal(0.0, 4000.0, round(rate_hz * seconds))).astype(np.int16)
    pre = PreEncoded.parse(pre_encode(pcm, codec, SHA).serialize())
    for ptime_ms in range(MIN_PTIME_MS, MAX_PTIME_MS + 1):  # G.722's silence is stateful
        assert pre.media(ptime_ms, "x") == encode_pcm(pcm, codec, ptime_ms, "x"), ptime_ms


def test_pre_encoded_opus_gives_encode_pcm_at_20ms_only() -> None:
    pcm = speech_like_pcm(48000)
    pre = pre_encode(pcm, "opus", SHA)
    assert (pre.tail, pre.energy) == (b"", b"")
    assert pre.media(20, "x") == encode_pcm(pcm, "opus", 20, "x")
    with pytest.raises(ValueError, match=r"^codec opus is sent with ptime 20 ms only, got 40 ms$"):
        pre.media(40)


def test_pre_encoded_files_round_trip_and_broken_ones_say_what_is_wrong() -> None:
    pre = pre_encode(tone(8000, 0.1, 3000.0), "PCMA", SHA)
    data = pre.serialize()
    assert data.startswith(PRE_ENCODED_MAGIC) and PreEncoded.parse(data) == pre
    assert pre.header.duration_s == pytest.approx(0.1) and pre.header.packets == 5
    (length,) = struct.unpack_from(">I", data, 8)
    header = json.loads(data[12 : 12 + length])

    def with_header(**changes: object) -> bytes:
        text = json.dumps({**header, **changes}).encode()
        return data[:8] + struct.pack(">I", len(text)) + text + data[12 + length :]

    broken = {
        b"RIFF" + data[4:]: "not a callmeter pre-encoded media file (bad magic)",
        with_header(version=2): "format version 2; this callmeter reads 1",
        with_header(codec="G729"): "header field codec: not a supported codec: 'G729'",
        with_header(sample_rate_hz=16000): "PCMA is sampled at 8000 Hz, the header says 16000",
        with_header(packets=-1): "header field packets: expected a whole number, got -1",
        data[:-1]: f"the body is {len(data) - 13 - length} bytes, the header says "
        f"{len(data) - 12 - length}",
        data[:-1] + bytes([data[-1] ^ 1]): "the body does not match its CRC-32: the file is "
        "corrupt",
        data[:10]: "truncated before the header",
    }
    for twin, message in broken.items():
        with pytest.raises(ValueError, match=exact(message)):
            PreEncoded.parse(twin)


def test_transcoding_writes_beside_the_file_and_the_library_needs_no_encoder(
    tone_wav: Path,
) -> None:
    headers = transcode_file(tone_wav)
    assert [h.codec for h in headers] == list(SUPPORTED_CODECS)
    assert {h.source_sha256 for h in headers} == {file_sha256(tone_wav)}
    assert [h.duration_s for h in headers] == [1.0] * 4
    assert pre_encoded_path(tone_wav, "G722").name == "tone.wav.g722.cmenc"
    assert pre_encoded_headers(tone_wav) == headers
    assert read_pre_encoded_header(pre_encoded_path(tone_wav, "opus")) == headers[3]
    library = MediaLibrary(encode=refuse_encode, decode=refuse_decode)
    reference = MediaLibrary(pre_encoded=False)
    for codec, ptime_ms in [("PCMU", 20), ("PCMU", 30), ("PCMA", 20), ("G722", 60), ("opus", 20)]:
        assert library.get(codec, ptime_ms, tone_wav) == reference.get(codec, ptime_ms, tone_wav)
    assert library.pre_encoded(tone_wav, "pcmu") is library.pre_encoded(str(tone_wav), "PCMU")
    assert library.pre_encoded(None, "pcmu") is None  # the built-in signal is never a file


def test_a_stale_pre_encoded_file_is_never_used_and_transcoding_replaces_it(
    tone_wav: Path,
) -> None:
    transcode_file(tone_wav, ["PCMU"])
    write_wav(tone_wav, tone(8000, 0.5, 8000.0, 1000.0), 8000)  # the source changed
    encoded: list[str] = []

    def counting_encode(pcm: PcmArray, codec: str, ptime_ms: int, source: str) -> EncodedMedia:
        encoded.append(codec)
        return encode_pcm(pcm, codec, ptime_ms, source)

    media = MediaLibrary(encode=counting_encode).get("PCMU", 20, tone_wav)
    assert encoded == ["PCMU"] and media.packet_count == 25
    assert pre_encoded_headers(tone_wav) == ()
    (header,) = transcode_file(tone_wav, ["PCMU"])
    assert (header.source_sha256, header.duration_s) == (file_sha256(tone_wav), 0.5)
    assert MediaLibrary(encode=refuse_encode).get("PCMU", 20, tone_wav) == media


def test_a_corrupt_pre_encoded_file_is_ignored_with_a_warning(
    tone_wav: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transcode_file(tone_wav, ["PCMA"])
    path = pre_encoded_path(tone_wav, "PCMA")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    media = MediaLibrary().get("PCMA", 20, tone_wav)
    assert media == MediaLibrary(pre_encoded=False).get("PCMA", 20, tone_wav)
    assert caplog.messages == [
        f"pre-encoded media file '{path}': the body does not match its CRC-32: the file is "
        f"corrupt; encoding {tone_wav} again"
    ]


def test_transcoding_what_is_not_audio_says_why(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all\n" * 20)
    with pytest.raises(MediaFileError) as caught:
        transcode_file(garbage)
    assert caught.value.reason == "is not readable audio: Invalid data found when processing input"
    assert str(caught.value) == f"media file '{garbage}' {caught.value.reason}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.wav"]
