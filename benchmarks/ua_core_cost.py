"""CPU cost of one call in the sans-I/O core, UAC side only: no sockets, no event loop.

Two user agents call each other over ``tests.netsim.Network`` with a fake clock; only the
time spent inside the calling agent's entry points is counted. ``--profile`` prints where it
goes. Compare with ``sip_call_rate.py``: the difference is the asyncio shell and the OS.

The default clock is the thread's CPU time (``time.thread_time_ns``), so other processes on a
shared machine do not inflate the figure; reading that clock costs a system call, and that
cost (measured at start-up around an empty call) is subtracted. ``--clock wall`` uses
``perf_counter`` instead. Each of ``--repeat`` rounds places ``--calls`` calls; the best
round is the figure (noise only ever adds time). The second figure is the CPU time of the
whole simulation (both agents and the simulated network) per call. ``--gc load`` (the
default) sets the garbage collector up as the load processes of ``sip_call_rate.py`` do
(``tune_gc_for_load``); ``--gc default`` keeps CPython's settings.

    python benchmarks/ua_core_cost.py [--calls 3000] [--repeat 3] [--clock cpu|wall]
                                      [--gc load|default] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callmeter.sip.events import CallAnswered
from callmeter.sip.uri import parse_uri
from callmeter.sip.useragent import UserAgent, UserAgentConfig
from callmeter.transport import tune_gc_for_load
from tests.netsim import Network

A = ("127.0.0.1", 5001)
B = ("127.0.0.1", 5002)
ENTRY_POINTS = ("receive_datagram", "handle_timer", "invite", "hangup", "datagrams_to_send")
CLOCKS: dict[str, Callable[[], int]] = {"cpu": time.thread_time_ns, "wall": time.perf_counter_ns}


class Meter:
    """Sums the time spent inside wrapped calls, minus what reading the clock costs."""

    def __init__(self, clock: Callable[[], int], profile: cProfile.Profile | None) -> None:
        self.clock, self.profile = clock, profile
        self.spent_ns = self.calls = 0
        self.bias_ns = 0.0
        self.bias_ns = self._calibrate()

    def wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        clock, profile = self.clock, self.profile

        def wrapper(*call_args: Any) -> Any:
            if profile is not None:
                profile.enable()
            start = clock()
            result = method(*call_args)
            self.spent_ns += clock() - start
            self.calls += 1
            if profile is not None:
                profile.disable()
            return result

        return wrapper

    def _calibrate(self, rounds: int = 5, n: int = 20_000) -> float:
        """The smallest mean time measured around an empty call (the clock's own cost)."""
        profile, self.profile = self.profile, None  # the wrapper below must not profile
        empty = self.wrap(lambda: None)
        best = float("inf")
        for _ in range(rounds):
            self.spent_ns = self.calls = 0
            for _ in range(n):
                empty()
            best = min(best, self.spent_ns / n)
        self.profile, self.spent_ns, self.calls = profile, 0, 0
        return best

    @property
    def net_ns(self) -> float:
        return self.spent_ns - self.bias_ns * self.calls


def one_round(calls: int, clock: Callable[[], int], profile: cProfile.Profile | None
              ) -> tuple[float, float]:  # fmt: skip
    """(UAC core us per call, whole-simulation CPU us per call) for ``calls`` calls."""
    net = Network(delay_s=0.0001)
    caller = UserAgent(UserAgentConfig("alice", "127.0.0.1", B), A, rng=random.Random(1),
                       trace_limit=0)  # fmt: skip
    callee = UserAgent(UserAgentConfig("bob", "127.0.0.1", A), B, rng=random.Random(2),
                       trace_limit=0)  # fmt: skip
    net.attach(caller, A)
    net.attach(callee, B)
    meter = Meter(clock, profile)
    for name in ENTRY_POINTS:
        setattr(caller, name, meter.wrap(getattr(caller, name)))
    target = parse_uri("sip:bob@127.0.0.1:5002")
    started = time.process_time()
    for _ in range(calls):
        caller.invite(target, net.now)
        net.run_until(net.now + 0.001)
        while (event := caller.next_event()) is not None:
            if isinstance(event, CallAnswered):
                caller.hangup(event.call_id, net.now)
        net.run_until(net.now + 0.001)
        while caller.next_event() or callee.next_event():
            pass
        net.log.clear()
    whole = time.process_time() - started
    return meter.net_ns / calls / 1e3, whole / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--gc", choices=("load", "default"), default="load")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.gc == "load":
        tune_gc_for_load()
    profile = cProfile.Profile() if args.profile else None
    rounds = [one_round(args.calls, CLOCKS[args.clock], profile) for _ in range(args.repeat)]
    uac = sorted(r[0] for r in rounds)
    whole = sorted(r[1] for r in rounds)
    print(f"UAC core CPU per call: {uac[0]:.0f} us best of {args.repeat} "
          f"({', '.join(f'{u:.0f}' for u in uac)}; INVITE, 100/200, ACK, BYE, 200; "
          f"{args.calls} calls, clock {args.clock}, gc {args.gc})")  # fmt: skip
    print(f"whole simulation (both agents and the network) CPU per call: {whole[0]:.0f} us")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
