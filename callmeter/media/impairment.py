"""Seeded network impairment on our own send/receive path: loss, delay, jitter, duplication.

Theory of operation
-------------------
A test that wants to see how the system under test copes with a bad network should not need
root, ``tc netem`` or a second machine. ``Impairment`` sits between an endpoint and its socket
(either side): the shell hands it each datagram with ``now`` and gets back zero (dropped), one,
or two (duplicated) ``(release_time, bytes)`` entries; it holds them in a ``DelayLine`` and
transmits (or delivers) what ``pop_due(now)`` returns, re-arming one timer at ``next_due()``.
Nothing here reads a clock or touches a socket (STYLE.md principles 1 and 2).

Per packet, in this order:

1. **Loss.** Either independent (Bernoulli) loss with ``loss_percent``, or the Gilbert-Elliott
   two-state Markov model of ITU-T G.1050 and RFC 3611 section 4.7.2 / Appendix A.2: in the
   *good* state a packet is lost with probability ``1 - gilbert_k``, in the *bad* state with
   ``1 - gilbert_h``; after each packet the chain moves good -> bad with ``gilbert_p`` and
   bad -> good with ``gilbert_r``. With ``h = 0, k = 1`` (Gilbert's original model) the loss
   rate is ``p / (p + r)`` and loss bursts are geometric with mean length ``1 / r``. As in
   netem the two models are exclusive: one profile has one loss model.
2. **Delay.** ``delay_ms`` plus a variation drawn from ``jitter_distribution``: ``uniform`` on
   ``[-jitter_ms, +jitter_ms]``, or ``normal`` with standard deviation ``jitter_ms``. A packet
   is never released before it was offered (the delay is clamped at 0, which lifts the mean
   slightly when ``jitter_ms > delay_ms``). Without ``reorder`` the release time is
   ``max(own, previous release)``: jitter without reordering, as on a single queue.
3. **Duplication.** With ``duplicate_percent`` a second copy is released at the same time.

Every random draw comes from ``random.Random`` streams seeded from ``seed``, one per aspect
(loss, delay, duplication), so a run replays exactly and, for instance, turning duplication
on leaves the loss pattern of the same seed unchanged.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = [
    "JITTER_DISTRIBUTIONS",
    "DelayLine",
    "Impairment",
    "ImpairmentProfile",
    "JitterDistribution",
]

JitterDistribution = Literal["uniform", "normal"]
JITTER_DISTRIBUTIONS: tuple[JitterDistribution, ...] = ("uniform", "normal")

T = TypeVar("T")


def _number(value: float) -> str:
    """``value`` as the user wrote it, compiled or not: mypyc turns an int passed for a float
    into a float, so ``120`` would read ``120.0``; integral values print without the ``.0``."""
    value = float(value)
    return f"{value:.16g}" if value.is_integer() else repr(value)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:  # also rejects NaN
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {_number(value)}")


def _check_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {_number(value)}")


@dataclass(frozen=True, slots=True)
class ImpairmentProfile:
    """What the network does to packets. Percentages are 0..100, Gilbert-Elliott
    probabilities 0..1 (per packet, as in ITU-T G.1050 and RFC 3611 Appendix A.2).

    The default profile changes nothing. Gilbert-Elliott loss is on when ``gilbert_p > 0``;
    its other parameters are refused without it rather than silently ignored.
    """

    loss_percent: float = 0.0
    gilbert_p: float = 0.0  # good -> bad transition probability
    gilbert_r: float = 1.0  # bad -> good transition probability
    gilbert_h: float = 0.0  # 1 - h: loss probability in the bad state
    gilbert_k: float = 1.0  # 1 - k: loss probability in the good state
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    jitter_distribution: JitterDistribution = "uniform"
    reorder: bool = False
    duplicate_percent: float = 0.0

    def __post_init__(self) -> None:
        _check_range("loss_percent", self.loss_percent, 0, 100)
        for name in ("gilbert_p", "gilbert_r", "gilbert_h", "gilbert_k"):
            _check_range(name, getattr(self, name), 0, 1)
        _check_non_negative("delay_ms", self.delay_ms)
        _check_non_negative("jitter_ms", self.jitter_ms)
        if self.jitter_distribution not in JITTER_DISTRIBUTIONS:
            raise ValueError(
                "jitter_distribution must be 'uniform' or 'normal', "
                f"got {self.jitter_distribution!r}"
            )
        _check_range("duplicate_percent", self.duplicate_percent, 0, 100)
        if self.gilbert_p == 0 and (self.gilbert_r, self.gilbert_h, self.gilbert_k) != (1, 0, 1):
            raise ValueError(
                "gilbert_r, gilbert_h and gilbert_k take effect only with gilbert_p > 0, "
                f"got gilbert_p={_number(self.gilbert_p)}"
            )
        if self.gilbert_p > 0 and self.loss_percent > 0:
            raise ValueError(
                "loss_percent and gilbert_p are exclusive loss models: set one of them, "
                f"got loss_percent={_number(self.loss_percent)} "
                f"and gilbert_p={_number(self.gilbert_p)}"
            )

    @property
    def gilbert(self) -> bool:
        """Whether loss follows the Gilbert-Elliott model."""
        return self.gilbert_p > 0

    @property
    def expected_loss_percent(self) -> float:
        """Long-run loss rate: ``loss_percent``, or the Gilbert-Elliott stationary rate
        ``(r (1 - k) + p (1 - h)) / (p + r)`` in percent."""
        if not self.gilbert:
            return self.loss_percent
        p, r = self.gilbert_p, self.gilbert_r
        return 100.0 * (r * (1.0 - self.gilbert_k) + p * (1.0 - self.gilbert_h)) / (p + r)


class Impairment:
    """Apply an ``ImpairmentProfile`` to a packet stream, deterministically for ``seed``.

    Counters: ``packets`` offered, ``dropped``, ``duplicated`` (extra copies made),
    ``delayed`` (released after the time they were offered) and ``reordered`` (released
    before a packet offered earlier).
    """

    __slots__ = (
        "_bad",
        "_delay_rng",
        "_dup_rng",
        "_last_release",
        "_loss_rng",
        "delayed",
        "dropped",
        "duplicated",
        "packets",
        "profile",
        "reordered",
        "seed",
    )

    def __init__(self, profile: ImpairmentProfile, seed: int) -> None:
        self.profile = profile
        self.seed = seed
        # One stream per aspect (str seeds are hashed with SHA-512: stable across processes).
        self._loss_rng = random.Random(f"callmeter.impairment:{seed}:loss")
        self._delay_rng = random.Random(f"callmeter.impairment:{seed}:delay")
        self._dup_rng = random.Random(f"callmeter.impairment:{seed}:duplicate")
        self._bad = False  # Gilbert-Elliott state; the chain starts good
        self._last_release = -math.inf
        self.packets = self.dropped = self.duplicated = self.delayed = self.reordered = 0

    def apply(self, packet: bytes, now: float) -> list[tuple[float, bytes]]:
        """Impair one packet offered at ``now`` (seconds): ``[]`` if dropped, else one or two
        ``(release_time, packet)`` entries."""
        self.packets += 1
        if self._lost():
            self.dropped += 1
            return []
        release = self._release_time(now)
        if release > now:
            self.delayed += 1
        if release < self._last_release:
            self.reordered += 1
        else:
            self._last_release = release
        out = [(release, packet)]
        duplicate = self.profile.duplicate_percent
        if duplicate and self._dup_rng.random() * 100.0 < duplicate:
            self.duplicated += 1
            out.append((release, packet))
        return out

    def _lost(self) -> bool:
        """One loss decision: Bernoulli, or the state-dependent Gilbert-Elliott draw followed by
        the state transition (RFC 3611 Appendix A.2)."""
        profile, rng = self.profile, self._loss_rng
        if not profile.gilbert:
            return bool(profile.loss_percent) and rng.random() * 100.0 < profile.loss_percent
        if self._bad:
            lost = rng.random() >= profile.gilbert_h
            if rng.random() < profile.gilbert_r:
                self._bad = False
        else:
            lost = rng.random() >= profile.gilbert_k
            if rng.random() < profile.gilbert_p:
                self._bad = True
        return lost

    def _release_time(self, now: float) -> float:
        profile = self.profile
        delay_ms = profile.delay_ms
        if profile.jitter_ms:
            if profile.jitter_distribution == "uniform":
                delay_ms += self._delay_rng.uniform(-profile.jitter_ms, profile.jitter_ms)
            else:
                delay_ms += self._delay_rng.gauss(0.0, profile.jitter_ms)
        release = now + max(delay_ms, 0.0) / 1000.0
        if not profile.reorder and release < self._last_release:
            release = self._last_release
        return release


class DelayLine(Generic[T]):
    """Items held until their release time: a heap of ``(release_time, seq, item)``.

    ``seq`` keeps items with equal release times in push order (and spares the heap from
    comparing items). The shell arms one timer at ``next_due()`` and sends ``pop_due(now)``.
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, release_time: float, item: T) -> None:
        """Hold ``item`` until ``release_time``."""
        heapq.heappush(self._heap, (release_time, self._seq, item))
        self._seq += 1

    def pop_due(self, now: float) -> list[tuple[float, T]]:
        """Remove and return ``(release_time, item)`` for every item due at ``now``, in
        release order."""
        heap, due = self._heap, []
        while heap and heap[0][0] <= now:
            release_time, _, item = heapq.heappop(heap)
            due.append((release_time, item))
        return due

    def next_due(self) -> float | None:
        """Release time of the earliest held item, ``None`` when empty."""
        return self._heap[0][0] if self._heap else None
