"""An in-memory network with a fake clock for sans-I/O cores (tests only).

Cores are attached at their ``local_addr``. ``run_until(t)`` advances time event by event:
datagram deliveries (each after ``delay_s``, dropped by a deterministic ``drop`` predicate)
and core timers. Nothing sleeps; the clock is a number.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count

from callmeter.sip.core import Address, SansIOCore

Drop = Callable[[bytes, Address, Address], bool]


@dataclass
class Network:
    delay_s: float = 0.001
    drop: Drop | None = None
    now: float = 0.0
    cores: dict[Address, SansIOCore] = field(default_factory=dict)
    log: list[tuple[float, Address, Address, bytes]] = field(default_factory=list)
    _queue: list[tuple[float, int, Address, Address, bytes]] = field(default_factory=list)
    _seq: count[int] = field(default_factory=count)

    def attach(self, core: SansIOCore, addr: Address) -> None:
        self.cores[addr] = core

    def flush(self) -> None:
        """Collect what every core wants to send (call after issuing a command)."""
        for src, core in self.cores.items():
            for data, dst in core.datagrams_to_send():
                self.log.append((self.now, src, dst, data))
                if self.drop is not None and self.drop(data, src, dst):
                    continue
                when = self.now + self.delay_s
                heapq.heappush(self._queue, (when, next(self._seq), src, dst, data))

    def _next_timer(self) -> tuple[float, SansIOCore] | None:
        best: tuple[float, SansIOCore] | None = None
        for core in self.cores.values():
            when = core.get_timer()
            if when is not None and (best is None or when < best[0]):
                best = (when, core)
        return best

    def run_until(self, until: float) -> None:
        self.flush()
        while True:
            timer = self._next_timer()
            packet_at = self._queue[0][0] if self._queue else None
            if (
                timer is not None
                and timer[0] <= until
                and (packet_at is None or timer[0] < packet_at)
            ):
                self.now = max(self.now, timer[0])
                timer[1].handle_timer(self.now)
            elif packet_at is not None and packet_at <= until:
                when, _, src, dst, data = heapq.heappop(self._queue)
                self.now = max(self.now, when)
                core = self.cores.get(dst)
                if core is not None:
                    core.receive_datagram(data, src, self.now)
            else:
                self.now = max(self.now, until)
                return
            self.flush()

    def sent(self, first_line: str) -> list[bytes]:
        """Every datagram sent so far whose first line starts with ``first_line``."""
        return [d for _, _, _, d in self.log if d.startswith(first_line.encode())]
