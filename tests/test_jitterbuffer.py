"""The jitter buffer model against hand-computed playout schedules.

Streams are synthetic PCMU: 8000 Hz clock, 20 ms packets (160 timestamp units); packet ``i``
is sent at ``i * 20 ms`` and arrives ``extra_ms[i]`` later than the first packet's transit.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from itertools import pairwise

import pytest

from callmeter.media.jitterbuffer import JitterBuffer, JitterBufferConfig, JitterBufferSnapshot

PTIME_S = 0.020
STEP = 160
FIXED_60 = JitterBufferConfig(mode="fixed", target_delay_ms=60.0)


def feed(jb: JitterBuffer, packets: Iterable[tuple[int, float]]) -> list[float | None]:
    """``packets`` as (index, extra delay ms) in arrival order; playout times returned."""
    return [
        jb.add(i & 0xFFFF, (i * STEP) & 0xFFFFFFFF, i * PTIME_S + extra_ms / 1000.0)
        for i, extra_ms in packets
    ]


def test_fixed_60ms_discards_exactly_the_packets_later_than_60ms() -> None:
    extra_ms = [0, 10, 59, 61, 30, 0, 120, 45, 62, 0]
    jb = JitterBuffer(8000, FIXED_60)
    playout = feed(jb, enumerate(extra_ms))
    late = {3, 6, 8}
    for i, when in enumerate(playout):
        if i in late:
            assert when is None
        else:
            assert when == pytest.approx(i * PTIME_S + 0.060)
    snap = jb.snapshot(0.3)
    assert (snap.expected, snap.received, snap.played, snap.late) == (10, 10, 7, 3)
    assert (snap.network_lost, snap.effective_lost) == (0, 3)
    assert snap.effective_loss_pct == pytest.approx(30.0)
    # Slot 6 came due at 0.18 s (packet 5 plays at 0.16 s) and packet 7 arrived at 0.185 s:
    # the buffer ran dry once. Packet 4 (0.11 s) and 9 (0.18 s) were waiting for slots 3, 8.
    assert snap.underruns == 1
    assert snap.buffer_delay_ms == pytest.approx((60 + 50 + 1 + 30 + 60 + 15 + 60) / 7)
    assert snap.buffer_delay_max_ms == pytest.approx(60.0)


def test_effective_loss_adds_network_loss_and_late_discards() -> None:
    jb = JitterBuffer(8000, FIXED_60)
    sent = [(i, 80.0 if i == 7 else 0.0) for i in range(20) if i not in (2, 5)]
    feed(jb, sent)
    snap = jb.snapshot(0.5)
    assert (snap.expected, snap.received, snap.network_lost, snap.late) == (20, 18, 2, 1)
    assert snap.effective_lost == 3 == snap.expected - snap.played
    assert snap.network_loss_pct == pytest.approx(10.0)
    assert snap.late_loss_pct == pytest.approx(5.0)
    assert snap.effective_loss_pct == pytest.approx(15.0)
    assert snap.effective_lost_total == 3


def test_reordering_inside_the_buffer_is_not_a_loss() -> None:
    jb = JitterBuffer(8000, FIXED_60)
    order = [(0, 0.0), (1, 0.0), (2, 0.0), (3, 0.0), (5, 1.0), (4, 25.0), (6, 0.0), (7, 0.0)]
    playout = feed(jb, order)
    assert playout[4] == pytest.approx(5 * PTIME_S + 0.060)
    assert playout[5] == pytest.approx(4 * PTIME_S + 0.060)
    snap = jb.snapshot(0.3)
    assert (snap.played, snap.late, snap.network_lost, snap.effective_lost) == (8, 0, 0, 0)
    assert snap.underruns == 0


def test_a_duplicate_is_counted_apart_and_not_played_twice() -> None:
    jb = JitterBuffer(8000, FIXED_60)
    assert feed(jb, [(0, 0.0), (1, 0.0), (1, 5.0), (2, 0.0)])[2] is None
    snap = jb.snapshot(0.1)
    assert (snap.expected, snap.received, snap.played, snap.duplicates) == (3, 3, 3, 1)
    assert snap.network_lost == 0


def test_a_loss_that_arrives_late_in_the_next_interval_evens_out() -> None:
    jb = JitterBuffer(8000, FIXED_60)
    feed(jb, [(i, 0.0) for i in range(10) if i != 8])
    first = jb.snapshot(0.2)
    feed(jb, [(8, 100.0), (10, 0.0)])
    second = jb.snapshot(0.4)
    assert (first.network_lost, first.effective_lost) == (1, 1)
    assert (second.network_lost, second.late, second.effective_lost) == (-1, 1, 0)
    assert second.network_loss_pct == 0.0
    assert second.effective_lost_total == 1


def test_sequence_numbers_and_timestamps_wrap() -> None:
    jb = JitterBuffer(8000, FIXED_60)
    start = 65530
    playout = [
        jb.add((start + n) & 0xFFFF, (0xFFFFFF00 + n * STEP) & 0xFFFFFFFF, n * PTIME_S)
        for n in range(12)
    ]
    assert playout[-1] == pytest.approx(11 * PTIME_S + 0.060)
    snap = jb.snapshot(0.3)
    assert (snap.expected, snap.played, snap.late) == (12, 12, 0)


def test_a_packet_far_too_early_overruns_the_buffer() -> None:
    config = JitterBufferConfig(
        mode="fixed", target_delay_ms=60.0, max_delay_ms=100.0, capacity_ms=100.0
    )
    jb = JitterBuffer(8000, config)
    # The first packet was held up 200 ms: every later one is 200 ms early for its schedule.
    playout = feed(jb, [(0, 200.0), (1, 0.0), (2, 170.0)])
    assert playout == [pytest.approx(0.26), None, pytest.approx(0.3)]
    snap = jb.snapshot(0.3)
    assert (snap.overruns, snap.played, snap.effective_lost) == (1, 2, 1)


def jittery(jb: JitterBuffer, rng: random.Random, first: int, count: int, jitter_ms: float
            ) -> JitterBufferSnapshot:  # fmt: skip
    feed(jb, ((i, rng.uniform(0.0, jitter_ms)) for i in range(first, first + count)))
    return jb.snapshot((first + count) * PTIME_S)


def test_adaptive_target_grows_with_jitter_and_shrinks_back() -> None:
    rng = random.Random(7)
    jb = JitterBuffer(8000, JitterBufferConfig(mode="adaptive", target_delay_ms=60.0))
    calm = jittery(jb, rng, 0, 500, 10.0)
    rising = jittery(jb, rng, 500, 500, 150.0)
    high = jittery(jb, rng, 1000, 500, 150.0)
    jittery(jb, rng, 1500, 3000, 10.0)
    settled = jittery(jb, rng, 4500, 500, 10.0)
    assert calm.target_delay_ms < 30.0
    assert high.target_delay_ms > 100.0 > calm.target_delay_ms
    assert rising.late > 0 and high.late < rising.late
    assert high.effective_loss_pct < 1.0
    assert settled.target_delay_ms == pytest.approx(20.0)  # back at min_delay_ms
    assert settled.buffer_delay_ms is not None and settled.buffer_delay_ms < 40.0


def test_adaptive_loses_less_than_a_small_fixed_target_under_heavy_jitter() -> None:
    fixed = JitterBuffer(8000, JitterBufferConfig(mode="fixed", target_delay_ms=40.0))
    adaptive = JitterBuffer(8000, JitterBufferConfig(mode="adaptive", target_delay_ms=40.0))
    results = [jittery(jb, random.Random(3), 0, 3000, 120.0) for jb in (fixed, adaptive)]
    assert results[1].effective_loss_pct < results[0].effective_loss_pct / 4


def test_adaptive_slews_inside_a_talkspurt_and_jumps_at_a_marker() -> None:
    config = JitterBufferConfig(mode="adaptive", target_delay_ms=20.0, slew_ms_per_packet=0.1)
    jb = JitterBuffer(8000, config)
    rng = random.Random(5)
    times = [jb.add(i, i * STEP, i * PTIME_S + rng.uniform(0.0, 0.1)) for i in range(300)]
    offsets = [(i, t - i * PTIME_S) for i, t in enumerate(times) if t is not None]
    for (i, before), (j, after) in pairwise(offsets):
        assert abs(after - before) <= (j - i) * 0.0001 + 1e-9  # time-scaled, 0.1 ms a packet
    # A talkspurt starts 1 s later (the marker bit): the schedule jumps to the grown target.
    when = jb.add(300, 300 * STEP + 8000, 300 * PTIME_S + 1.0 + 0.05, marker=True)
    assert when is not None
    assert (when - 300 * PTIME_S - 1.0) - offsets[-1][1] > 0.020
    assert when - (300 * PTIME_S + 1.05) > 0.060


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="target_delay_ms must lie within"):
        JitterBufferConfig(target_delay_ms=500.0)
    with pytest.raises(ValueError, match="clock_rate must be positive, got 0"):
        JitterBuffer(0)
