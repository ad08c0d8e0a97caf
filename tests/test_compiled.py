"""The mypyc build of the media hot path: the modules really are compiled, an extension older
than its source refuses to load, and the frozen dataclasses survive pickling (Ray ships them to
its actors), compiled or not."""

from __future__ import annotations

import copy
import os
import pickle
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

import pytest

import callmeter
import callmeter.media
import callmeter.transport
from callmeter import _compiled
from callmeter._compiled import (
    COMPILED_MODULES,
    check_fresh,
    frozen_dataclasses,
    stale_modules,
)
from callmeter.media.impairment import ImpairmentProfile
from callmeter.media.jitterbuffer import JitterBuffer, JitterBufferConfig
from callmeter.media.quality import CodecImpairment, codec_impairment, r_budget
from callmeter.media.rtcp import (
    Bye,
    ExtendedReport,
    RawPacket,
    ReceiverReport,
    RemoteReport,
    ReportBlock,
    SdesChunk,
    SenderReport,
    SourceDescription,
    VoipMetrics,
    XrBlock,
)
from callmeter.media.rtp import AudioLevel
from callmeter.media.rtpstats import BurstGap, ReceiverStats
from callmeter.media.session import _PatternSummary
from callmeter.transport.media import TickerHealth

SUFFIX = EXTENSION_SUFFIXES[0]  # what setup.py builds


@pytest.mark.skipif(
    os.environ.get("CALLMETER_PURE") == "1", reason="CALLMETER_PURE=1: a pure Python install"
)
def test_the_hot_path_is_compiled() -> None:
    """``make install`` compiles these; a pure module here means the build silently fell back
    (or a stale tree), and media would cost 2-3x the CPU."""
    pure = [
        name
        for name in COMPILED_MODULES
        if not str(sys.modules[f"callmeter.{name}"].__file__).endswith(SUFFIX)
    ]
    assert pure == [], "not compiled; run `make install`, or set CALLMETER_PURE=1"


def _tree(tmp_path: Path, *, checkout: bool = True) -> Path:
    """A source tree with every compiled module built at t=1000 from sources saved at t=900;
    returns the ``callmeter`` package directory."""
    package = tmp_path / "callmeter"
    if checkout:
        (tmp_path / "pyproject.toml").write_text("")
    for name in COMPILED_MODULES:
        base = package.joinpath(*name.split("."))
        base.parent.mkdir(parents=True, exist_ok=True)
        for path, mtime in ((Path(f"{base}.py"), 900), (Path(f"{base}{SUFFIX}"), 1000)):
            path.write_text("")
            os.utime(path, (mtime, mtime))
    return package


def _edit(path: Path, mtime: int) -> None:
    os.utime(path, (mtime, mtime))


def test_a_fresh_build_is_not_stale(tmp_path: Path) -> None:
    assert stale_modules(str(_tree(tmp_path))) == []


def test_a_source_edited_after_the_build_is_stale(tmp_path: Path) -> None:
    package = _tree(tmp_path)
    _edit(package / "media" / "session.py", 1001)
    _edit(package / "media" / "rtp.py", 1000)  # same second as the build: not newer
    _edit(package / "transport" / "mediaport.py", 1001)
    assert stale_modules(str(package)) == ["media.session", "transport.mediaport"]


def test_a_pure_module_is_never_stale(tmp_path: Path) -> None:
    package = _tree(tmp_path)
    (package / "media" / f"session{SUFFIX}").unlink()
    _edit(package / "media" / "session.py", 2000)
    assert stale_modules(str(package)) == []


def test_outside_a_source_checkout_nothing_is_stale(tmp_path: Path) -> None:
    """A wheel install writes its files in any order; nobody edits them there."""
    package = _tree(tmp_path, checkout=False)
    _edit(package / "media" / "session.py", 2000)
    assert stale_modules(str(package)) == []


def test_a_stale_extension_refuses_to_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = _tree(tmp_path)
    _edit(package / "media" / "jitterbuffer.py", 1001)
    _edit(package / "media" / "session.py", 1001)
    monkeypatch.delenv("CALLMETER_ALLOW_STALE", raising=False)
    with pytest.raises(ImportError) as excinfo:
        check_fresh(str(package))
    message = str(excinfo.value)
    assert message.startswith("callmeter.media.jitterbuffer, callmeter.media.session: ")
    assert "make install" in message
    monkeypatch.setenv("CALLMETER_ALLOW_STALE", "1")
    check_fresh(str(package))


def test_importing_the_package_checks_before_loading_an_extension(tmp_path: Path) -> None:
    """End to end, in a copy of the package whose session extension is an old, unloadable file:
    the import fails with the guard's message, not the loader's."""
    package = Path(callmeter.__file__).parent
    shutil.copytree(
        package, tmp_path / "callmeter", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    (tmp_path / "pyproject.toml").write_text("")
    stale = tmp_path / "callmeter" / "media" / f"session{SUFFIX}"
    stale.write_text("not an extension")
    os.utime(stale, (900, 900))
    env = {k: v for k, v in os.environ.items() if k != "CALLMETER_ALLOW_STALE"}
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import callmeter.media"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 1
    assert "ImportError: callmeter.media.session: the compiled extension is older" in (
        result.stderr
    )


# One instance of each frozen dataclass the compiled modules define, with values unlike the
# defaults so a round trip that fell back to them would show.
_BLOCK = ReportBlock(0x11223344, 12, -3, 70000, 160, 0xABCD, 0x1234)
_VOIP = VoipMetrics(0x55667788, loss_rate=12, discard_rate=3, r_factor=85, mos_cq=41)
_BURST = BurstGap(0.25, 0.01, 3.5, 120.0)


def _receiver_snapshot() -> Any:
    stats = ReceiverStats(8000)
    for seq in (100, 101, 103, 102, 105):
        stats.add(seq, seq * 160, 0x5EED, 160, seq * 0.02)
    return stats.snapshot(2.5)


def _jitter_snapshot() -> Any:
    buffer = JitterBuffer(8000, JitterBufferConfig(mode="fixed", target_delay_ms=40.0))
    for seq in (0, 1, 3, 2):
        buffer.add(seq, seq * 160, seq * 0.02 + 0.01 * (seq % 2))
    return buffer.snapshot(1.0)


SAMPLES: list[object] = [
    ImpairmentProfile(
        delay_ms=40,
        jitter_ms=12.5,
        jitter_distribution="normal",
        reorder=True,
        duplicate_percent=1,
        gilbert_p=0.02,
        gilbert_r=0.4,
        gilbert_h=0.1,
    ),
    JitterBufferConfig(mode="fixed", target_delay_ms=80, capacity_ms=500, slew_ms_per_packet=1),
    _jitter_snapshot(),
    codec_impairment("G729") or CodecImpairment(11.0, 19.0, False),
    r_budget(ie=11.0, bpl=19.0, ppl=2.5, burst_r=1.4, ta_ms=150.0),
    _BLOCK,
    SenderReport(1, 0xE000_0000_8000_0000, 48000, 300, 48000, (_BLOCK,), b"\x01\x02\x03\x04"),
    ReceiverReport(2, (_BLOCK, _BLOCK)),
    SdesChunk(3, ((1, b"alice@example"),)),
    SourceDescription((SdesChunk(3, ((1, b"alice@example"),)),)),
    Bye((3, 4), b"hung up"),
    _VOIP,
    XrBlock(42, 7, b"\x00\x01\x02\x03"),
    ExtendedReport(5, (_VOIP, XrBlock(42, 7, b"\x00\x01\x02\x03"))),
    RawPacket(204, 1, b"APP!"),
    RemoteReport(12.5, 6, 25, 40, 70000, 3.25, 82.0),
    AudioLevel(voice=True, level=30),
    _receiver_snapshot(),
    _BURST,
    _PatternSummary(_BURST, 0.03, 1.4),
    TickerHealth(2.0, 10, 100, 1.5, 4, 1000, 500.0, 0.5, 2.5, 3.0, 0.4, 1.2, 1.5, 0.1, 1),
]


def test_every_frozen_dataclass_has_a_sample() -> None:
    """A frozen dataclass added to a compiled module needs a sample here."""
    defined = {cls.__qualname__ for cls in frozen_dataclasses()}
    sampled = {type(sample).__qualname__ for sample in SAMPLES}
    assert defined == sampled
    assert {"ImpairmentProfile", "JitterBufferConfig", "ReceiverSnapshot"} <= defined


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: type(sample).__name__)
def test_frozen_dataclasses_survive_pickle_and_copy(sample: object) -> None:
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        restored = pickle.loads(pickle.dumps(sample, protocol))
        assert type(restored) is type(sample)
        assert restored == sample
    assert copy.copy(sample) == sample
    assert copy.deepcopy(sample) == sample


def test_ray_ships_an_impairment_profile() -> None:
    """Ray serializes actor arguments with its cloudpickle, which honours copyreg too."""
    cloudpickle = pytest.importorskip("ray.cloudpickle")
    profile = ImpairmentProfile(loss_percent=2.5, delay_ms=30)
    assert cloudpickle.loads(cloudpickle.dumps(profile)) == profile


def test_the_reducer_is_what_pickles_them() -> None:
    """Without the registration a compiled frozen dataclass fails to unpickle; with it, pickle
    goes through ``_rebuild`` in both modes, so the two cannot drift apart."""
    payload = pickle.dumps(ImpairmentProfile(loss_percent=2.5))
    assert b"_rebuild" in payload
    assert _compiled.__name__.encode() in payload
