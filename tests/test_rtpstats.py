"""RTP receiver statistics against hand-computed RFC 3550 (A.1, A.3, A.8) and RFC 3611 values.

Streams are synthetic: PCMU at 8000 Hz, 20 ms packets (160 timestamp units, 160 bytes), with
arrival times chosen so every expected number can be worked out on paper.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pytest

from callmeter.media import quality, rtpstats
from callmeter.media.quality import burst_ratio
from callmeter.media.rtpstats import (
    GMIN,
    ReceiverSnapshot,
    ReceiverStats,
    burst_gap,
    fraction_lost,
)

SSRC = 0x1234ABCD
PTIME_S = 0.020
STEP = 160  # timestamp units per 20 ms at 8000 Hz


def feed(
    stats: ReceiverStats,
    seqs: Iterable[int],
    *,
    ssrc: int = SSRC,
    t0: float = 0.0,
    ts0: int = 0,
    seq0: int = 0,
) -> None:
    """Send ``seqs`` with the timestamp and arrival time their sequence number implies."""
    for seq in seqs:
        n = seq - seq0
        stats.add(seq & 0xFFFF, (ts0 + n * STEP) & 0xFFFFFFFF, ssrc, 160, t0 + n * PTIME_S)


def test_clean_pcmu_stream() -> None:
    stats = ReceiverStats(8000)
    stats.start(0.0)
    feed(stats, range(50), t0=0.05)
    snap = stats.snapshot(1.0)
    assert (snap.packets, snap.expected, snap.lost, snap.fraction_lost) == (50, 50, 0, 0)
    assert snap.payload_bytes == 50 * 160
    assert snap.jitter == pytest.approx(0.0, abs=1e-6)
    assert snap.jitter_ms == pytest.approx(0.0, abs=1e-6)
    assert snap.spacing_min_ms == pytest.approx(20.0)
    assert snap.spacing_avg_ms == pytest.approx(20.0)
    assert snap.spacing_max_ms == pytest.approx(20.0)
    assert snap.bitrate_bps == pytest.approx(64_000.0)
    assert snap.time_to_first_packet_ms == pytest.approx(50.0)
    assert snap.extended_highest_seq == 49
    assert snap.loss_runs == (50,)
    assert (snap.duplicates, snap.out_of_order, snap.seq_gaps, snap.timestamp_jumps) == (0, 0, 0, 0)
    assert (snap.burst_density, snap.gap_density, snap.burst_ratio) == (0.0, 0.0, 1.0)
    assert snap.gap_duration_ms == pytest.approx(1000.0)


def test_five_of_a_hundred_dropped() -> None:
    stats = ReceiverStats(8000)
    dropped = {10, 20, 21, 50, 77}
    feed(stats, (s for s in range(100) if s not in dropped))
    snap = stats.snapshot(2.0)
    assert (snap.packets, snap.expected, snap.lost) == (95, 100, 5)
    assert snap.fraction_lost == 12  # (5 << 8) // 100, RFC 3550 A.3
    assert (snap.lost_total, snap.fraction_lost_total) == (5, 12)
    assert snap.seq_gaps == 4  # 20 and 21 go in one gap
    assert snap.loss_runs == (10, 1, 9, 2, 28, 1, 26, 1, 22)
    assert snap.spacing_max_ms == pytest.approx(60.0)  # 19 -> 22
    assert snap.jitter == pytest.approx(0.0, abs=1e-6)  # a loss is no delay variation
    assert snap.burst_ratio == pytest.approx(burst_ratio(s in dropped for s in range(100)))


def test_jitter_of_alternating_plus_minus_5_ms_offsets() -> None:
    stats = ReceiverStats(8000)
    arrivals = [i * PTIME_S + (0.005 if i % 2 else -0.005) + 1.0 for i in range(40)]
    for i, arrival in enumerate(arrivals):
        stats.add(i, i * STEP, SSRC, 160, arrival)
    # RFC 3550 A.8 by hand: D = (Rj - Ri) - (Sj - Si) in timestamp units, J += (|D| - J) / 16.
    jitter = 0.0
    for i in range(1, 40):
        d = (arrivals[i] - arrivals[i - 1]) * 8000 - STEP
        assert abs(d) == pytest.approx(80.0)  # 10 ms either way
        jitter += (abs(d) - jitter) / 16
    snap = stats.snapshot(2.0)
    assert snap.jitter == pytest.approx(jitter)
    assert snap.jitter_ms == pytest.approx(jitter / 8)
    assert 0 < snap.jitter < 80.0
    assert snap.spacing_min_ms == pytest.approx(10.0)
    assert snap.spacing_max_ms == pytest.approx(30.0)
    assert snap.lost == 0


def test_duplicates_count_as_received_like_rfc_3550() -> None:
    stats = ReceiverStats(8000)
    feed(stats, [*range(6), 5, *range(6, 13), 10, *range(13, 20)])
    snap = stats.snapshot(1.0)
    assert (snap.packets, snap.duplicates, snap.out_of_order) == (22, 2, 0)
    assert snap.expected == 20
    assert snap.lost == -2  # A.3: received includes duplicates; RTCP clamps, we do not hide it
    assert snap.fraction_lost == 0
    assert snap.loss_runs == (20,)


def test_swapped_pair_is_out_of_order_not_lost() -> None:
    stats = ReceiverStats(8000)
    feed(stats, [*range(7), 8, 7, *range(9, 20)])
    snap = stats.snapshot(1.0)
    assert (snap.out_of_order, snap.duplicates, snap.lost, snap.fraction_lost) == (1, 0, 0, 0)
    assert snap.seq_gaps == 1  # 8 arrived while 7 was missing
    assert snap.loss_runs == (20,)


def test_late_packets_fill_their_gap_in_the_loss_pattern() -> None:
    stats = ReceiverStats(8000)
    feed(stats, [*range(10), 13, 11])
    assert stats.snapshot(1.0).loss_runs == (10, 1, 1, 1, 1)
    feed(stats, [22, 23, 22, 21, 20, 24, 26, 25])
    snap = stats.snapshot(2.0)
    # 14..19 were lost; 20..26 all arrived in the end, 20, 21 and 25 late, 22 twice.
    assert snap.loss_runs == (0, 6, 7)
    assert (snap.duplicates, snap.out_of_order) == (1, 3)


@pytest.mark.parametrize(
    ("order", "runs"),
    [([13, 10, 11, 12], (14,)), ([13, 12, 11, 10], (14,)), ([13, 10, 12], (11, 1, 2))],
)
def test_filling_every_position_of_a_lost_run(order: list[int], runs: tuple[int, ...]) -> None:
    stats = ReceiverStats(8000)
    feed(stats, [*range(10), *order])
    assert stats.snapshot(1.0).loss_runs == runs


def test_sequence_wraps_at_65535() -> None:
    stats = ReceiverStats(8000)
    feed(stats, range(65500, 65600), seq0=65500, ts0=0xFFFFFFFF - 5 * STEP)
    snap = stats.snapshot(2.0)
    assert (snap.packets, snap.expected, snap.lost) == (100, 100, 0)
    assert snap.extended_highest_seq == (1 << 16) + 63  # one cycle, max_seq 63
    assert snap.jitter == pytest.approx(0.0, abs=1e-6)  # the timestamp wrapped too
    assert (snap.seq_jumps, snap.seq_resets, snap.timestamp_jumps) == (0, 0, 0)


def test_ssrc_switch_opens_a_new_source() -> None:
    stats = ReceiverStats(8000)
    feed(stats, range(1000, 1030), seq0=1000)
    feed(stats, range(5, 35), ssrc=0xBEEF, seq0=5, t0=0.6, ts0=777)
    snap = stats.snapshot(1.5)
    assert (snap.ssrc_switches, snap.ssrc, snap.extended_highest_seq) == (1, 0xBEEF, 34)
    assert (snap.packets, snap.expected, snap.lost) == (60, 60, 0)
    assert snap.jitter == pytest.approx(0.0, abs=1e-6)  # per-source estimator starts over


def test_large_sequence_jump_restarts_after_two_sequential_packets() -> None:
    stats = ReceiverStats(8000)
    feed(stats, range(30))
    feed(stats, range(20000, 20030), seq0=19970)
    snap = stats.snapshot(2.0)
    assert (snap.seq_jumps, snap.seq_resets) == (1, 1)
    assert (snap.packets, snap.expected, snap.lost) == (60, 60, 0)
    assert snap.extended_highest_seq == 20029
    assert snap.loss_runs == (60,)


def test_a_stray_packet_far_away_is_a_jump_not_a_restart() -> None:
    stats = ReceiverStats(8000)
    feed(stats, [*range(20), 40000, *range(20, 30)])
    snap = stats.snapshot(1.0)
    assert (snap.seq_jumps, snap.seq_resets) == (1, 0)
    assert snap.packets == 31  # it arrived ...
    assert (snap.expected, snap.lost) == (30, 0)  # ... but it is not part of the stream


def test_snapshots_reset_interval_values_not_totals() -> None:
    stats = ReceiverStats(8000)
    stats.start(0.0)
    feed(stats, range(50))
    first = stats.snapshot(1.0)
    feed(stats, (s for s in range(50, 100) if s not in {60, 61, 62, 63}), seq0=0)
    second = stats.snapshot(2.0)
    assert (first.packets, first.expected, first.lost, first.fraction_lost) == (50, 50, 0, 0)
    assert (second.packets, second.expected, second.lost) == (46, 50, 4)
    assert second.fraction_lost == (4 << 8) // 50
    assert (second.packets_total, second.expected_total, second.lost_total) == (96, 100, 4)
    assert second.fraction_lost_total == (4 << 8) // 100
    assert second.payload_bytes == 46 * 160 and second.payload_bytes_total == 96 * 160
    assert second.interval_s == pytest.approx(1.0)
    assert second.bitrate_bps == pytest.approx(46 * 160 * 8)
    assert second.loss_runs == (10, 4, 36)
    assert (second.seq_gaps, second.seq_gaps_total) == (1, 1)
    empty = stats.snapshot(3.0)
    assert (empty.packets, empty.expected, empty.lost, empty.loss_runs) == (0, 0, 0, (0,))
    assert empty.spacing_avg_ms is None and empty.bitrate_bps == 0.0


def test_burst_and_gap_densities_rfc_3611() -> None:
    stats = ReceiverStats(8000)
    lost = {50, 51, 53, 55, 59, 120, 170}  # one burst 50..59, two isolated losses
    feed(stats, (s for s in range(200) if s not in lost))
    snap = stats.snapshot(4.0)
    assert snap.burst_density == pytest.approx(5 / 10)
    assert snap.gap_density == pytest.approx(2 / 190)
    assert snap.burst_duration_ms == pytest.approx(10 * 20.0)
    assert snap.gap_duration_ms == pytest.approx(190 / 2 * 20.0)  # before and after the burst


def test_gmin_separates_bursts() -> None:
    inside = burst_gap([10, 1, GMIN - 1, 1, 10])  # 15 received between: one burst
    assert inside.burst_density == pytest.approx(2 / (GMIN + 1))
    assert inside.burst_packets == GMIN + 1
    apart = burst_gap([10, 1, GMIN, 1, 10])  # 16 received: two isolated losses
    assert apart.burst_density == 0.0 and apart.gap_density == pytest.approx(2 / 38)
    assert apart.gap_packets == 38


def test_burst_at_the_edges_leaves_one_gap() -> None:
    summary = burst_gap([0, 3, 20, 2])
    assert summary.burst_density == 1.0 and summary.gap_density == 0.0
    assert (summary.burst_packets, summary.gap_packets) == (2.5, 20.0)


def test_timestamp_jump_unless_the_marker_announces_a_talkspurt() -> None:
    stats = ReceiverStats(8000)
    for seq in range(10):
        stats.add(seq, seq * STEP, SSRC, 160, seq * PTIME_S)
    stats.add(10, 10 * STEP + 8000, SSRC, 160, 10 * PTIME_S)  # one second ahead, no marker
    stats.add(11, 11 * STEP + 8000, SSRC, 160, 11 * PTIME_S)
    stats.add(12, 12 * STEP + 16000, SSRC, 160, 12 * PTIME_S, marker=True)
    stats.add(13, 13 * STEP + 16000, SSRC, 160, 13 * PTIME_S)
    assert stats.snapshot(1.0).timestamp_jumps == 1


def test_time_to_first_packet_needs_start() -> None:
    stats = ReceiverStats(8000)
    feed(stats, range(3), t0=5.0)
    snap = stats.snapshot(6.0)
    assert snap.time_to_first_packet_ms is None
    assert snap.interval_s == pytest.approx(1.0)  # from the first packet


def test_fraction_lost_rfc_3550_a3() -> None:
    assert fraction_lost(100, 5) == 12
    assert fraction_lost(0, 0) == 0
    assert fraction_lost(10, -2) == 0
    assert fraction_lost(4, 4) == 255  # 100 %: capped to the 8-bit RR field


def test_snapshot_is_frozen() -> None:
    snap: ReceiverSnapshot = ReceiverStats(8000).snapshot(0.0)
    with pytest.raises(AttributeError):
        snap.packets = 1  # type: ignore[misc]


def test_bad_clock_rate() -> None:
    with pytest.raises(ValueError, match="clock_rate must be positive, got 0"):
        ReceiverStats(0)


@pytest.mark.parametrize("module", [quality, rtpstats], ids=lambda m: m.__name__)
def test_statistics_import_no_io(module: ModuleType) -> None:
    forbidden = {"asyncio", "socket", "time", "selectors", "threading", "subprocess"}
    # The source beside __file__, which names the extension when mypyc compiled the module.
    source = Path(str(module.__file__)).with_name(module.__name__.rpartition(".")[2] + ".py")
    tree = ast.parse(source.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported & forbidden == set()


@pytest.mark.parametrize("seed", range(20))
def test_random_loss_and_reorder_against_a_plain_set_count(seed: int) -> None:
    rng = random.Random(seed)
    first = rng.randrange(1 << 16)
    seqs = [first + n for n in range(600)]
    kept = seqs[:3] + [s for s in seqs[3:] if rng.random() > 0.05]
    for i in range(3, len(kept) - 1):  # swap some neighbours: late, not lost
        if rng.random() < 0.05:
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
    stats = ReceiverStats(8000)
    feed(stats, kept, seq0=first)
    snap = stats.snapshot(20.0)
    expected = max(kept) - first + 1
    assert (snap.expected, snap.lost, snap.duplicates) == (expected, expected - len(kept), 0)
    received = set(kept)
    flags = [s not in received for s in range(first, first + expected)]
    assert expand(snap.loss_runs) == flags
    assert snap.burst_ratio == pytest.approx(burst_ratio(flags))


def expand(runs: tuple[int, ...]) -> list[bool]:
    """Run lengths ``[received, lost, ...]`` back to per-packet lost flags."""
    return [index % 2 == 1 for index, run in enumerate(runs) for _ in range(run)]
