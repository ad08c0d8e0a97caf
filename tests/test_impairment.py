"""Seeded network impairment: replay, loss statistics, delay, reordering, duplication, errors.

Every test is seeded, so the statistical bounds are checked on one fixed outcome; they are
derived from the model's standard deviation so that a change of seed would pass as well.
"""

from __future__ import annotations

import math

import pytest

from callmeter.media.impairment import (
    DelayLine,
    Impairment,
    ImpairmentProfile,
    JitterDistribution,
)

PTIME_S = 0.020


def run(profile: ImpairmentProfile, n: int, seed: int = 7) -> list[list[tuple[float, bytes]]]:
    impairment = Impairment(profile, seed)
    return [impairment.apply(i.to_bytes(4, "big"), i * PTIME_S) for i in range(n)]


def loss_flags(profile: ImpairmentProfile, n: int, seed: int = 7) -> list[bool]:
    return [not out for out in run(profile, n, seed)]


def test_same_seed_replays_exactly() -> None:
    profile = ImpairmentProfile(
        gilbert_p=0.05, gilbert_r=0.4, delay_ms=30, jitter_ms=15, reorder=True,
        duplicate_percent=2,
    )  # fmt: skip
    assert run(profile, 2000, seed=42) == run(profile, 2000, seed=42)
    assert run(profile, 2000, seed=42) != run(profile, 2000, seed=43)


def test_default_profile_changes_nothing() -> None:
    impairment = Impairment(ImpairmentProfile(), seed=1)
    assert impairment.apply(b"rtp", 5.0) == [(5.0, b"rtp")]
    assert (impairment.dropped, impairment.duplicated, impairment.delayed) == (0, 0, 0)


def test_random_loss_is_within_binomial_bounds() -> None:
    n, p = 100_000, 0.05
    lost = sum(loss_flags(ImpairmentProfile(loss_percent=5), n))
    sd = math.sqrt(n * p * (1 - p))  # about 69 packets
    assert abs(lost - n * p) < 4 * sd


def test_gilbert_elliott_loss_rate_and_mean_burst_length() -> None:
    p, r, n = 0.02, 0.25, 200_000
    profile = ImpairmentProfile(gilbert_p=p, gilbert_r=r)  # h = 0, k = 1: Gilbert's model
    flags = loss_flags(profile, n)
    bursts: list[int] = []
    for lost, previous in zip(flags, [False, *flags], strict=False):
        if lost:
            if previous:
                bursts[-1] += 1
            else:
                bursts.append(1)
    rate = sum(flags) / n
    assert profile.expected_loss_percent == pytest.approx(100 * p / (p + r))
    # Losses are correlated, so the rate's sd is wider than the binomial one: with bursts of
    # mean 1/r it is about sqrt(n pi (1 - pi) (2 - p - r) / (p + r)) / n.
    pi = p / (p + r)
    sd_rate = math.sqrt(pi * (1 - pi) * (2 - p - r) / (p + r) / n)
    assert abs(rate - pi) < 4 * sd_rate
    # Burst lengths are geometric with mean 1/r and sd sqrt(1 - r)/r.
    mean_burst = sum(bursts) / len(bursts)
    assert abs(mean_burst - 1 / r) < 4 * math.sqrt(1 - r) / r / math.sqrt(len(bursts))


def test_gilbert_elliott_partial_loss_in_each_state() -> None:
    profile = ImpairmentProfile(gilbert_p=0.1, gilbert_r=0.3, gilbert_h=0.5, gilbert_k=0.99)
    n = 100_000
    rate = sum(loss_flags(profile, n)) / n
    # pi_bad = 0.25: 0.25 * 0.5 + 0.75 * 0.01 = 0.1325
    assert profile.expected_loss_percent == pytest.approx(13.25)
    assert rate == pytest.approx(0.1325, abs=0.01)


def test_fixed_delay_adds_exactly_delay_ms() -> None:
    impairment = Impairment(ImpairmentProfile(delay_ms=80), seed=3)
    for i in range(100):
        now = 10.0 + i * PTIME_S
        assert impairment.apply(b"x", now) == [(now + 0.080, b"x")]
    assert impairment.delayed == 100


def releases(profile: ImpairmentProfile, n: int = 5000) -> list[float]:
    return [out[0][0] for out in run(profile, n)]


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_jitter_without_reorder_never_reorders(distribution: JitterDistribution) -> None:
    profile = ImpairmentProfile(
        delay_ms=50, jitter_ms=40, jitter_distribution=distribution, reorder=False
    )
    times = releases(profile)
    assert times == sorted(times)
    assert len(set(times)) > len(times) // 2  # the delay does vary
    assert all(t >= i * PTIME_S for i, t in enumerate(times))


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_jitter_with_reorder_reorders(distribution: JitterDistribution) -> None:
    profile = ImpairmentProfile(
        delay_ms=50, jitter_ms=40, jitter_distribution=distribution, reorder=True
    )
    impairment = Impairment(profile, seed=11)
    times = [impairment.apply(b"x", i * PTIME_S)[0][0] for i in range(5000)]
    assert times != sorted(times)
    assert impairment.reordered > 0
    assert all(t >= i * PTIME_S for i, t in enumerate(times))  # never before it was sent


def test_uniform_jitter_stays_within_its_bounds() -> None:
    times = releases(ImpairmentProfile(delay_ms=50, jitter_ms=10, reorder=True))
    delays_ms = [(t - i * PTIME_S) * 1000 for i, t in enumerate(times)]
    assert 40 - 1e-9 <= min(delays_ms) and max(delays_ms) <= 60 + 1e-9
    assert sum(delays_ms) / len(delays_ms) == pytest.approx(50, abs=0.5)


def test_duplication_rate() -> None:
    n, p = 50_000, 0.03
    impairment = Impairment(ImpairmentProfile(duplicate_percent=3), seed=5)
    outputs = [impairment.apply(b"x", i * PTIME_S) for i in range(n)]
    doubles = sum(len(out) == 2 for out in outputs)
    assert doubles == impairment.duplicated
    assert all(len(out) in (1, 2) for out in outputs)
    assert abs(doubles - n * p) < 4 * math.sqrt(n * p * (1 - p))
    assert all(out[0] == out[-1] for out in outputs)


def test_duplication_does_not_change_the_loss_pattern() -> None:
    base = ImpairmentProfile(loss_percent=10)
    with_dups = ImpairmentProfile(loss_percent=10, duplicate_percent=20, jitter_ms=5)
    assert loss_flags(base, 5000) == loss_flags(with_dups, 5000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss_percent": 120}, "loss_percent must be between 0 and 100, got 120"),
        ({"loss_percent": -1}, "loss_percent must be between 0 and 100, got -1"),
        ({"loss_percent": math.nan}, "loss_percent must be between 0 and 100, got nan"),
        ({"gilbert_p": 1.5}, "gilbert_p must be between 0 and 1, got 1.5"),
        ({"gilbert_p": 0.1, "gilbert_r": -0.1}, "gilbert_r must be between 0 and 1, got -0.1"),
        ({"gilbert_p": 0.1, "gilbert_h": 2}, "gilbert_h must be between 0 and 1, got 2"),
        ({"gilbert_p": 0.1, "gilbert_k": 1.01}, "gilbert_k must be between 0 and 1, got 1.01"),
        ({"delay_ms": -5}, "delay_ms must be a finite number >= 0, got -5"),
        ({"jitter_ms": math.inf}, "jitter_ms must be a finite number >= 0, got inf"),
        (
            {"jitter_distribution": "pareto"},
            "jitter_distribution must be 'uniform' or 'normal', got 'pareto'",
        ),
        ({"duplicate_percent": 101}, "duplicate_percent must be between 0 and 100, got 101"),
        (
            {"gilbert_k": 0.99},
            "gilbert_r, gilbert_h and gilbert_k take effect only with gilbert_p > 0, "
            "got gilbert_p=0",
        ),
        (
            {"loss_percent": 1, "gilbert_p": 0.1},
            "loss_percent and gilbert_p are exclusive loss models: set one of them, "
            "got loss_percent=1 and gilbert_p=0.1",
        ),
    ],
)
def test_invalid_profiles_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        ImpairmentProfile(**kwargs)  # type: ignore[arg-type]
    assert str(excinfo.value) == message


def test_delay_line_releases_in_time_order() -> None:
    line: DelayLine[bytes] = DelayLine()
    assert line.next_due() is None
    assert line.pop_due(100.0) == []
    line.push(0.30, b"c")
    line.push(0.10, b"a")
    line.push(0.20, b"b1")
    line.push(0.20, b"b2")  # equal times keep push order
    assert len(line) == 4
    assert line.next_due() == 0.10
    assert line.pop_due(0.05) == []
    assert line.pop_due(0.20) == [(0.10, b"a"), (0.20, b"b1"), (0.20, b"b2")]
    assert line.next_due() == 0.30
    assert line.pop_due(1.0) == [(0.30, b"c")]
    assert len(line) == 0


def test_impairment_through_a_delay_line_with_one_timer() -> None:
    """How a shell uses it: apply on send, push, wake at next_due, pop what is due."""
    impairment = Impairment(
        ImpairmentProfile(delay_ms=40, jitter_ms=30, reorder=False, loss_percent=2), seed=9
    )
    line: DelayLine[bytes] = DelayLine()
    delivered: list[tuple[float, bytes]] = []
    for i in range(500):
        now = i * PTIME_S
        delivered += line.pop_due(now)
        for release, packet in impairment.apply(i.to_bytes(2, "big"), now):
            line.push(release, packet)
    while (due := line.next_due()) is not None:
        delivered += line.pop_due(due)
    seqs = [int.from_bytes(p, "big") for _, p in delivered]
    assert seqs == sorted(seqs)
    assert len(seqs) == 500 - impairment.dropped
