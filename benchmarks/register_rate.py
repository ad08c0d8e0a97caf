"""REGISTER/s with digest auth at a real Kamailio: SIPp's register scenario and ours, one run.

Each registration is the full exchange a phone makes on boot: REGISTER, 401, REGISTER with
credentials, 200. Both generators climb the same ladder of offered rates for ``--duration``
seconds a step; the highest step with no failed registration is the figure. Ours uses a pool
of agents on one shared socket (``--processes`` processes), with pre-authorization off so it
makes exactly SIPp's exchange.

    python benchmarks/register_rate.py [--duration 10] [--processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import sys
import time
from collections.abc import Callable
from multiprocessing import Queue
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callmeter.sip.events import Registered, RegistrationFailed
from callmeter.sip.shared import SharedSocket
from callmeter.sip.useragent import UserAgent, UserAgentConfig
from callmeter.transport import open_udp, run, tune_gc_for_load
from tests.peers import Kamailio, Sipp

LADDER = [500, 1000, 2000, 3000, 4000, 5000, 6000, 8000]
POOL = 256  # agents per process: registrations in flight at once


async def our_registrations(
    port: int, users: list[str], rate: float, duration: float
) -> tuple[int, int, float]:
    loop = asyncio.get_running_loop()
    shared = SharedSocket(("127.0.0.1", 0))
    domain = f"127.0.0.1:{port}"
    for user in users:
        config = UserAgentConfig(
            user, domain, ("127.0.0.1", port), password=f"pw-{user}", expires=3600,
            preauthorize=False,
        )  # fmt: skip
        shared.add(UserAgent(config, trace_limit=0))
    idle = list(shared.agents)
    counts = {"ok": 0, "failed": 0}
    done = asyncio.Event()
    total = int(rate * duration)

    def on_activity() -> None:
        for agent in shared.ready():
            while (event := agent.next_event()) is not None:
                if isinstance(event, (Registered, RegistrationFailed)):
                    counts["ok" if isinstance(event, Registered) else "failed"] += 1
                    assert isinstance(agent, UserAgent)
                    agent.unschedule(("refresh",))
                    idle.append(agent)
        if counts["ok"] + counts["failed"] >= total:
            done.set()

    transport = await open_udp(shared, "127.0.0.1", 0, on_activity=on_activity)
    shared.bind(transport.local_address)
    start, sent = loop.time(), 0
    while sent < total:
        due = min(total, int((loop.time() - start) * rate) + 1)
        while sent < due and idle:
            idle.pop().register(loop.time())
            sent += 1
        transport.flush()
        await asyncio.sleep(0.002)
    if counts["ok"] + counts["failed"] < sent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 10)
    transport.close()
    return counts["ok"], total - counts["ok"], loop.time() - start


def _worker(
    port: int, users: list[str], rate: float, duration: float, queue: Queue[tuple[int, int, float]]
) -> None:
    tune_gc_for_load()  # a load process: see callmeter.transport.loop
    queue.put(run(our_registrations(port, users, rate, duration)))


def ours(port: int, rate: float, duration: float, processes: int) -> tuple[int, int, float]:
    queue: Queue[tuple[int, int, float]] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=_worker,
            args=(port, [f"u{p}x{i}" for i in range(POOL)], rate / processes, duration, queue),
        )
        for p in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(r[0] for r in results), sum(r[1] for r in results), max(r[2] for r in results)


def sipp(port: int, rate: float, duration: float) -> tuple[int, int, float]:
    calls = int(rate * duration)
    with Sipp.scenario(
        "register_auth.xml",
        f"127.0.0.1:{port}",
        calls=calls,
        service="sippuser",
        credentials=("sippuser", "pw-sippuser"),
        keys={"expires": "3600"},
        extra=["-r", f"{rate:g}"],
    ) as run_:
        started = time.monotonic()
        run_.wait(duration * 3 + 30)
        elapsed = time.monotonic() - started
        ok = run_.counter("SuccessfulCall")
    return ok, calls - ok, elapsed


def ladder(name: str, attempt: Callable[[float], tuple[int, int, float]]) -> float:
    """Climb while every registration succeeds and the achieved rate keeps up with the
    offered one (within 10 %); the best achieved rate."""
    best = 0.0
    for rate in LADDER:
        for trial in (1, 2):
            ok, failed, elapsed = attempt(rate)
            achieved = ok / elapsed
            print(
                f"  {name:>5} {rate:>5}/s offered: {ok} registered, {failed} failed, "
                f"{achieved:,.0f}/s achieved",
                flush=True,
            )
            if failed == 0 and achieved >= 0.9 * rate:
                best = max(best, achieved)
                break
            if trial == 2:
                return best
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    accounts = {"sippuser": "pw-sippuser"}
    for p in range(args.processes):
        accounts.update({f"u{p}x{i}": f"pw-u{p}x{i}" for i in range(POOL)})
    with Kamailio.start(accounts) as kamailio:
        time.sleep(0.5)
        print(f"Kamailio on 127.0.0.1:{kamailio.port}, {args.duration:g} s per step")
        sipp_best = ladder("sipp", lambda r: sipp(kamailio.port, r, args.duration))
        our_best = ladder("ours", lambda r: ours(kamailio.port, r, args.duration, args.processes))
    print()
    print(f"SIPp      : {sipp_best:>7,.0f} registrations/s clean (REGISTER, 401, REGISTER, 200)")
    print(f"callmeter : {our_best:>7,.0f} registrations/s clean ({args.processes} processes)")
    print(f"ratio callmeter / SIPp: {our_best / sipp_best if sipp_best else float('nan'):.2f}")


if __name__ == "__main__":
    main()
