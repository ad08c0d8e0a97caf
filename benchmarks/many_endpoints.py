"""Thousands of endpoints on one event loop, each on its own UDP socket like a real phone.

The built-in registrar runs in a second process (it is the system under test); this process
opens ``--endpoints`` user agents, each with its own socket and one timer, registers them all
with digest auth over ``--spread`` seconds, then half of them call the other half and hang up.
It prints how long each phase took, the worst event-loop lag seen, and the memory used per
endpoint, so "many thousands of user agents on one loop" is a measured claim.

    python benchmarks/many_endpoints.py [--endpoints 4000] [--spread 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callmeter.registrar import Account, serve
from callmeter.registrar.server import read_credentials
from callmeter.sip.events import CallAnswered, CallEnded, CallFailed, Registered
from callmeter.sip.useragent import UserAgent, UserAgentConfig
from callmeter.transport import open_udp, run
from tests.peers import free_port


def _registrar(port: int, count: int, path: str) -> None:
    run(serve("127.0.0.1", port, "udp", count, path, announce=None))


async def _lag_probe(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.01)
        lags.append(loop.time() - before - 0.01)


async def _phase(
    name: str, agents: list[UserAgent], kinds: tuple[type, ...], want: int, spread: float
) -> float:
    """Wait until ``want`` events of ``kinds`` arrived across all agents."""
    loop = asyncio.get_running_loop()
    start, seen, deadline = loop.time(), 0, loop.time() + spread + 40
    while seen < want and loop.time() < deadline:
        await asyncio.sleep(0.05)
        seen = sum(1 for a in agents for e in a.seen if isinstance(e, kinds))  # type: ignore[attr-defined]
    print(
        f"  {name}: {seen}/{want}, {loop.time() - start:.1f} s after the last was sent", flush=True
    )
    return loop.time() - start


async def main_async(count: int, spread: float, accounts: list[Account], port: int) -> None:
    loop = asyncio.get_running_loop()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    agents: list[UserAgent] = []
    transports = []
    for account in accounts[:count]:
        config = UserAgentConfig(
            account.username, "127.0.0.1", ("127.0.0.1", port), password=account.password,
            expires=600,
        )  # fmt: skip
        agent = UserAgent(config, trace_limit=0)
        agent.seen = []  # type: ignore[attr-defined]

        def drain(agent: UserAgent = agent) -> None:
            while (event := agent.next_event()) is not None:
                agent.seen.append(event)  # type: ignore[attr-defined]
                if isinstance(event, CallAnswered) and agent.calls.get(event.call_id):
                    call = agent.calls[event.call_id]
                    if call.role == "uac":
                        agent.hangup(event.call_id, loop.time())

        transport = await open_udp(agent, "127.0.0.1", 0, on_activity=drain)
        agent.local_addr = transport.local_address
        agents.append(agent)
        transports.append(transport)
    rss_open = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    lags: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(_lag_probe(lags, stop))
    start = loop.time()
    for index, (agent, transport) in enumerate(zip(agents, transports, strict=True)):
        await asyncio.sleep(max(0.0, start + spread * index / count - loop.time()))
        agent.register(loop.time())
        transport.flush()
    await _phase("registered", agents, (Registered,), count, spread)
    half = count // 2
    start = loop.time()
    for index in range(half):
        await asyncio.sleep(max(0.0, start + spread * index / half - loop.time()))
        callee = agents[half + index].config.username
        agents[index].invite(f"sip:{callee}@127.0.0.1", loop.time())
        transports[index].flush()
    await _phase("calls ended", agents[:half], (CallEnded, CallFailed), half, spread)
    failed = sum(1 for a in agents for e in a.seen if isinstance(e, CallFailed))  # type: ignore[attr-defined]
    stop.set()
    await probe
    rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for transport in transports:
        transport.close()
    print(f"  failed calls: {failed}")
    print(f"  worst event-loop lag: {max(lags) * 1000:.0f} ms, p99 "
          f"{sorted(lags)[int(len(lags) * 0.99)] * 1000:.0f} ms")  # fmt: skip
    print(f"  memory: {(rss_open - rss_before) / count:.1f} KiB per open endpoint, "
          f"peak {rss_end / 1024:.0f} MiB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=4000)
    parser.add_argument("--spread", type=float, default=10.0, help="buildup in seconds")
    args = parser.parse_args()
    port = free_port("udp")
    path = f"/tmp/callmeter-many-{port}.csv"
    server = multiprocessing.Process(target=_registrar, args=(port, args.endpoints, path))
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        accounts = read_credentials(path)
        print(f"{args.endpoints} endpoints, one socket each, one event loop; "
              f"registrar in another process on 127.0.0.1:{port}")  # fmt: skip
        run(main_async(args.endpoints, args.spread, accounts, port))
    finally:
        server.terminate()
        server.join()
        Path(path).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
