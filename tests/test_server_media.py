"""Media files on the platform: transcoded once at upload into every supported codec, the
pre-encoded files beside the copy runs read, loaded by the shards' media library without an
encoder (here and in a fresh process), and an upload that is not audio refused with FFmpeg's
reason."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from callmeter.media.source import (
    SUPPORTED_CODECS,
    EncodedMedia,
    MediaLibrary,
    PcmArray,
    decode_file,
    encode_pcm,
    pre_encoded_path,
)
from callmeter.server import repo_resources
from callmeter.server.testing import Harness

DEFINITION: dict[str, Any] = {
    "call_duration_s": 5,
    "groups": [
        {"name": "a", "endpoints": 1, "target": {"group": "b"}, "media_file": "prompt.wav"},
        {"name": "b", "endpoints": 1},
    ],
}


def tiny_wav(seconds: float = 0.25, rate_hz: int = 8000, freq_hz: float = 440.0) -> bytes:
    """A real mono 16-bit WAV (a tone), written with the stdlib ``wave`` module."""
    t = np.arange(round(rate_hz * seconds)) / rate_hz
    samples = np.round(8000.0 * np.sin(2 * np.pi * freq_hz * t)).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(samples.tobytes())
    return out.getvalue()


def refuse_encode(pcm: PcmArray, codec: str, ptime_ms: int, source: str) -> EncodedMedia:
    raise AssertionError(f"encoded {source} with {codec} at {ptime_ms} ms")


def refuse_decode(path: str | Path, rate_hz: int) -> PcmArray:
    raise AssertionError(f"decoded {path} at {rate_hz} Hz")


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "media.duckdb")
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def project(h: Harness) -> str:
    created = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "P"})
    project_id: str = created["project_id"]
    return project_id


def upload(h: Harness, project: str, name: str, data: bytes) -> Any:
    return h.call("POST", f"/projects/{project}/media-files", h.owner,
                  files={"file": (name, data, "audio/wav")})  # fmt: skip


def test_an_upload_is_transcoded_into_every_codec(h: Harness, project: str) -> None:
    data = tiny_wav(seconds=1.5, rate_hz=16000)
    response = upload(h, project, "prompt.wav", data)
    assert response.status_code == 201, response.text
    media = response.json()["data"]
    assert media["duration_s"] == 1.5
    assert media["codecs"] == ["PCMU", "PCMA", "G722", "opus"] == list(SUPPORTED_CODECS)
    assert h.ok("GET", f"/media-files/{media['media_file_id']}", h.owner) == media
    assert h.ok("GET", f"/projects/{project}/media-files", h.owner) == [media]
    source = repo_resources.media_path(h.platform.media_dir, media["sha256"], "prompt.wav")
    assert source.read_bytes() == data
    assert sorted(p.name for p in h.platform.media_dir.iterdir()) == sorted(
        [source.name] + [f"{source.name}.{c.lower()}.cmenc" for c in SUPPORTED_CODECS]
    )


def test_a_run_gets_the_uploaded_copy_and_shards_never_encode_it(h: Harness, project: str) -> None:
    upload(h, project, "prompt.wav", tiny_wav(seconds=1.0))
    test = h.ok("POST", f"/projects/{project}/tests", h.owner,
                json={"name": "m", "definition": DEFINITION})  # fmt: skip
    run = h.ok("POST", f"/tests/{test['test_id']}/runs", h.owner)
    h.tick()
    path = Path(h.launcher.started[run["run_id"]].groups[0].media_file or "")
    assert all(pre_encoded_path(path, codec).exists() for codec in SUPPORTED_CODECS)
    library = MediaLibrary(encode=refuse_encode, decode=refuse_decode)
    reference = MediaLibrary(pre_encoded=False)
    packets = {("PCMU", 20): 50, ("PCMA", 30): 34, ("G722", 40): 25, ("G722", 20): 50,
               ("opus", 20): 50}  # fmt: skip  # 1 s; 30 ms packets pad to 60 ms: 1020 ms
    for (codec, ptime_ms), count in packets.items():
        media = library.get(codec, ptime_ms, path)
        assert media == reference.get(codec, ptime_ms, path)
        assert media.packet_count == count


def test_a_fresh_process_loads_the_pre_encoded_files(h: Harness, project: str) -> None:
    media = upload(h, project, "prompt.wav", tiny_wav(seconds=0.5)).json()["data"]
    path = repo_resources.media_path(h.platform.media_dir, media["sha256"], "prompt.wav")
    script = textwrap.dedent(
        f"""
        from callmeter.media.source import MediaLibrary

        def refuse(*args):
            raise SystemExit("the encoder or decoder was called: " + repr(args[1:]))

        library = MediaLibrary(encode=refuse, decode=refuse)
        for codec in ("PCMU", "PCMA", "G722", "opus"):
            print(codec, library.get(codec, 20, {str(path)!r}).packet_count)
        print("G722 at 60 ms", library.get("G722", 60, {str(path)!r}).packet_count)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "PCMU 25", "PCMA 25", "G722 25", "opus 25", "G722 at 60 ms 9",
    ]  # fmt: skip


def test_an_upload_that_is_not_audio_is_refused_with_ffmpegs_reason(
    h: Harness, project: str
) -> None:
    response = upload(h, project, "garbage.wav", b"this is not audio at all\n" * 40)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_input",
        "message": "file: 'garbage.wav' is not readable audio: "
        "Invalid data found when processing input",
    }
    empty = tiny_wav(seconds=0.0)
    response = upload(h, project, "empty.wav", empty)
    assert response.json()["error"]["message"] == "file: 'empty.wav' contains no audio samples"
    assert h.ok("GET", f"/projects/{project}/media-files", h.owner) == []
    media_dir = h.platform.media_dir
    assert not media_dir.exists() or list(media_dir.iterdir()) == []


def test_a_taken_name_is_refused_before_any_transcoding(h: Harness, project: str) -> None:
    upload(h, project, "prompt.wav", tiny_wav())
    before = sorted(h.platform.media_dir.iterdir())
    response = upload(h, project, "prompt.wav", tiny_wav(freq_hz=1000.0))
    assert response.status_code == 409
    message = response.json()["error"]["message"]
    assert message == "name: 'prompt.wav' is already taken in this project"
    assert sorted(h.platform.media_dir.iterdir()) == before


def test_the_same_content_twice_is_transcoded_once(h: Harness, project: str) -> None:
    data = tiny_wav()
    first = upload(h, project, "a.wav", data).json()["data"]
    path = repo_resources.media_path(h.platform.media_dir, first["sha256"], "a.wav")
    stamps = {c: pre_encoded_path(path, c).stat().st_mtime_ns for c in SUPPORTED_CODECS}
    second = upload(h, project, "b.wav", data).json()["data"]
    assert second["codecs"] == first["codecs"] and second["sha256"] == first["sha256"]
    assert {c: pre_encoded_path(path, c).stat().st_mtime_ns for c in SUPPORTED_CODECS} == stamps


def test_a_lost_media_directory_is_rebuilt_when_a_run_starts(h: Harness, project: str) -> None:
    media = upload(h, project, "prompt.wav", tiny_wav()).json()["data"]
    for file in h.platform.media_dir.iterdir():
        file.unlink()
    assert h.ok("GET", f"/media-files/{media['media_file_id']}", h.owner)["codecs"] == []
    test = h.ok("POST", f"/projects/{project}/tests", h.owner,
                json={"name": "m", "definition": DEFINITION})  # fmt: skip
    run = h.ok("POST", f"/tests/{test['test_id']}/runs", h.owner)
    h.tick()
    path = Path(h.launcher.started[run["run_id"]].groups[0].media_file or "")
    assert path.read_bytes() == tiny_wav()
    assert h.ok("GET", f"/media-files/{media['media_file_id']}", h.owner)["codecs"] == list(
        SUPPORTED_CODECS
    )
    expected = encode_pcm(decode_file(path, 16000), "G722", 20, str(path))
    assert MediaLibrary(encode=refuse_encode).get("G722", 20, path) == expected
