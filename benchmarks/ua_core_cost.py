"""CPU cost of one call in the sans-I/O core, UAC side only: no sockets, no event loop.

Two user agents call each other over ``tests.netsim.Network`` with a fake clock; only the
time spent inside the calling agent's entry points is counted. ``--profile`` prints where it
goes. Compare with ``sip_call_rate.py``: the difference is the asyncio shell and the OS.

    python benchmarks/ua_core_cost.py [--calls 3000] [--profile]
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
from tests.netsim import Network

A = ("127.0.0.1", 5001)
B = ("127.0.0.1", 5002)
ENTRY_POINTS = ("receive_datagram", "handle_timer", "invite", "hangup", "datagrams_to_send")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    net = Network(delay_s=0.0001)
    caller = UserAgent(UserAgentConfig("alice", "127.0.0.1", B), A, rng=random.Random(1),
                       trace_limit=0)  # fmt: skip
    callee = UserAgent(UserAgentConfig("bob", "127.0.0.1", A), B, rng=random.Random(2),
                       trace_limit=0)  # fmt: skip
    net.attach(caller, A)
    net.attach(callee, B)
    spent = [0.0]
    profile = cProfile.Profile() if args.profile else None

    def timed(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*call_args: Any) -> Any:
            if profile is not None:
                profile.enable()
            start = time.perf_counter()
            result = method(*call_args)
            spent[0] += time.perf_counter() - start
            if profile is not None:
                profile.disable()
            return result

        return wrapper

    for name in ENTRY_POINTS:
        setattr(caller, name, timed(getattr(caller, name)))
    target = parse_uri("sip:bob@127.0.0.1:5002")
    for _ in range(args.calls):
        caller.invite(target, net.now)
        net.run_until(net.now + 0.001)
        while (event := caller.next_event()) is not None:
            if isinstance(event, CallAnswered):
                caller.hangup(event.call_id, net.now)
        net.run_until(net.now + 0.001)
        while caller.next_event() or callee.next_event():
            pass
        net.log.clear()
    print(f"UAC core CPU per call: {spent[0] / args.calls * 1e6:.0f} us "
          f"(INVITE, 180/200, ACK, BYE, 200; {args.calls} calls)")  # fmt: skip
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
