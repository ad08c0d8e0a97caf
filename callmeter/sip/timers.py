"""RFC 3261 timers (section 17 and table 4) and the one timer heap a sans-I/O core keeps.

Every timer derives from T1, T2 and T4, which are configuration, never literals in code. A
core arms any number of named deadlines; the asyncio shell only ever sees the earliest one
(``TimerHeap.next_deadline``) and calls back with ``now``.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass
from itertools import count

__all__ = ["TimerConfig", "TimerHeap"]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1 (RTT estimate), T2 (maximum non-INVITE retransmit interval), T4 (maximum time a
    message stays in the network), in seconds; the lettered timers follow RFC 3261 table 4."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:
        """INVITE transaction timeout."""
        return 64 * self.t1

    @property
    def f(self) -> float:
        """Non-INVITE transaction timeout."""
        return 64 * self.t1

    @property
    def h(self) -> float:
        """Wait time for ACK receipt."""
        return 64 * self.t1

    @property
    def m(self) -> float:
        """RFC 6026 Accepted state (client) and Timer L (server): 2xx retransmissions window."""
        return 64 * self.t1

    def d(self, reliable: bool) -> float:
        """Wait time for response retransmissions (at least 32 s on UDP)."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    def i(self, reliable: bool) -> float:
        """Wait time for ACK retransmissions."""
        return 0.0 if reliable else self.t4

    def j(self, reliable: bool) -> float:
        """Wait time for non-INVITE request retransmissions."""
        return 0.0 if reliable else 64 * self.t1

    def k(self, reliable: bool) -> float:
        """Wait time for non-INVITE response retransmissions."""
        return 0.0 if reliable else self.t4


class TimerHeap:
    """Named deadlines with lazy cancellation: ``arm(key, when)`` replaces the key's deadline,
    ``cancel(key)`` forgets it, ``pop_due(now)`` returns the keys whose deadline passed."""

    __slots__ = ("_counter", "_deadlines", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._deadlines: dict[Hashable, float] = {}
        self._counter = count()

    def arm(self, key: Hashable, when: float) -> None:
        self._deadlines[key] = when
        heapq.heappush(self._heap, (when, next(self._counter), key))

    def cancel(self, key: Hashable) -> None:
        self._deadlines.pop(key, None)

    def deadline(self, key: Hashable) -> float | None:
        return self._deadlines.get(key)

    def next_deadline(self) -> float | None:
        heap, deadlines = self._heap, self._deadlines
        while heap:
            when, _, key = heap[0]
            if deadlines.get(key) == when:
                return when
            heapq.heappop(heap)  # cancelled or re-armed: drop the stale entry
        return None

    def pop_due(self, now: float) -> list[Hashable]:
        due = []
        heap, deadlines = self._heap, self._deadlines
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            if deadlines.get(key) == when:
                del deadlines[key]
                due.append(key)
        return due

    def __len__(self) -> int:
        return len(self._deadlines)
