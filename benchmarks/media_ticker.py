"""CPU cost of pacing G.711 streams with one MediaTicker: N sessions, 20 ms, both ways.

Each session owns a media socket and sends one pre-built 172-byte RTP packet (PCMU, 20 ms)
every 20 ms to an echo socket served by a second process, which sends every packet straight
back; the session counts what returns. All sessions share the loop's one ticker. For each N
the generator process's CPU (``resource.getrusage``) is measured over a steady window after a
warm-up, with the ticker's own send lateness and loop lag, and the packets the generator sent
against those the echo saw and those that came back.

    python benchmarks/media_ticker.py [--sessions 500 1000 2000] [--seconds 10] [--loop uvloop]

The VM sometimes stalls ~0.5 s (shared/PEERS.md): repeat a run before trusting an outlier.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import resource
import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callmeter.sip.core import Address
from callmeter.transport import run
from callmeter.transport.media import MediaSocket, MediaTicker, TickerHealth, open_media_socket

PTIME_S = 0.02
RING = 50  # pre-built packets per session (one second of sequence numbers)
WARMUP_S = 1.0


class BenchSession:
    """A fake-but-realistic media core: pre-built packets, catch-up pacing, a receive count."""

    __slots__ = ("next_at", "packets", "peer", "received", "seq")

    def __init__(self, peer: Address, start: float, ssrc: int) -> None:
        payload = bytes([0xFF]) * 160  # PCMU silence
        self.packets = [
            struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload for seq in range(RING)
        ]
        self.peer = peer
        self.next_at = start
        self.seq = 0
        self.received = 0

    def next_due(self) -> float | None:
        return self.next_at

    def packets_due(self, now: float) -> list[tuple[bytes, Address]]:
        out = []
        while self.next_at <= now:
            out.append((self.packets[self.seq % RING], self.peer))
            self.seq += 1
            self.next_at += PTIME_S
        return out

    def receive(self, data: bytes, addr: Address, now: float) -> None:
        self.received += 1

    def stop(self, now: float) -> list[tuple[bytes, Address]]:
        return []


def _echo(sock: socket.socket, control: multiprocessing.connection.Connection) -> None:
    """The echo peer (second process): send every datagram back; report the count on stop."""
    sock.settimeout(0.2)
    count = 0
    while not control.poll():
        try:
            while True:
                data, addr = sock.recvfrom(2048)
                sock.sendto(data, addr)
                count += 1
        except TimeoutError:
            continue
    control.send(count)


def _echo_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    sessions: int
    cpu_percent: float
    sys_percent: float
    """The kernel's share of ``cpu_percent`` (sendto/recvfrom on loopback, epoll)."""
    health: TickerHealth
    sent: int
    echoed: int
    returned: int
    send_errors: int
    load_1min: float
    """The machine's 1-minute load average after the run: above ~2 the two cores are shared."""


def _cpu_s() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _drain(sessions: list[BenchSession], within_s: float) -> None:
    """Let the last echoes come back: poll until the count stops moving (or a deadline)."""
    loop = asyncio.get_running_loop()
    deadline, last = loop.time() + within_s, -1
    while loop.time() < deadline:
        total = sum(s.received for s in sessions)
        if total == last:
            return
        last = total
        await asyncio.sleep(0.1)


async def measure(count: int, seconds: float, echo: Address, batch_s: float) -> Result:
    """Run ``count`` sessions for ``seconds`` after a warm-up (``echoed`` is filled in later)."""
    loop = asyncio.get_running_loop()
    ticker = MediaTicker(batch_window_s=batch_s)
    # Open every socket first, then start the streams: a socket opened under full load
    # waits behind the traffic, and late-starting streams would begin with a catch-up burst.
    sockets: list[MediaSocket] = [await open_media_socket() for _ in range(count)]
    start = loop.time() + 0.1
    sessions: list[BenchSession] = []
    for i, sock in enumerate(sockets):  # phases spread evenly over one packet time
        session = BenchSession(echo, start + PTIME_S * i / count, ssrc=i + 1)
        ticker.add(session, sock)
        sessions.append(session)
    await asyncio.sleep(max(0.0, start - loop.time()) + WARMUP_S)
    ticker.snapshot(loop.time())
    cpu_before = _cpu_s()
    await asyncio.sleep(seconds)
    cpu_after = _cpu_s()
    user, system = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
    health = ticker.snapshot(loop.time())
    ticker.close()
    await _drain(sessions, 2.0)
    result = Result(
        sessions=count,
        cpu_percent=100.0 * (user + system) / health.interval_s,
        sys_percent=100.0 * system / health.interval_s,
        health=health,
        sent=ticker.stats.packets_sent,
        echoed=0,
        returned=sum(s.received for s in sessions),
        send_errors=sum(s.stats.send_errors for s in sockets),
        load_1min=os.getloadavg()[0],
    )
    for sock in sockets:
        sock.close()
    return result


def run_one(count: int, seconds: float, use_uvloop: bool, batch_s: float) -> Result:
    """One N: start the echo process, measure, collect the echo's count."""
    sock = _echo_socket()
    echo_address = sock.getsockname()
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_echo, args=(sock, theirs), daemon=True)
    process.start()
    result = run(measure(count, seconds, echo_address, batch_s), use_uvloop=use_uvloop)
    ours.send("stop")
    echoed = int(ours.recv())
    process.join(5)
    sock.close()
    return dataclasses.replace(result, echoed=echoed)


def _row(r: Result) -> str:
    h = r.health
    return (
        f"{r.sessions:>6} {r.cpu_percent:>6.1f} {r.sys_percent:>5.1f} "
        f"{r.cpu_percent / r.sessions * 1000:>8.1f} "
        f"{h.send_late_p50_ms:>7.1f} {h.send_late_p99_ms:>7.1f} {h.loop_lag_max_ms:>7.1f} "
        f"{h.sessions_per_tick_mean:>7.1f} {h.packets_per_s:>8.0f} {r.sent:>9} "
        f"{r.echoed:>9} {r.returned:>9} {r.sent - r.echoed:>7} {r.echoed - r.returned:>6} "
        f"{r.send_errors:>4} {r.load_1min:>5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--batch-ms", type=float, default=0.0, help="ticker batch_window_s, ms")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    print(f"loop: {args.loop}; {args.seconds:.0f} s steady window after {WARMUP_S:.0f} s warm-up;"
          " echo peer in a second process")  # fmt: skip
    print(f"{'N':>6} {'CPU%':>6} {'sys%':>5} {'m%/strm':>8} {'lateP50':>7} {'lateP99':>7} "
          f"{'lagMax':>7} {'sess/tk':>7} {'pkt/s':>8} {'sent':>9} {'echoed':>9} {'returned':>9} "
          f"{'lostOut':>7} {'lostIn':>6} {'errs':>4} {'load':>5}")  # fmt: skip
    for count in args.sessions:
        print(
            _row(run_one(count, args.seconds, args.loop == "uvloop", args.batch_ms / 1000)),
            flush=True,
        )
    print("CPU%: the generator process (send + receive + ticker), of one core; m%/strm: "
          "milli-percent of a core per stream; late/lag in ms;\n"
          "lostOut = sent - echoed (dropped on the way to or by the echo process); "
          "lostIn = echoed - returned;\n"
          "load: 1-min load average (other work on the 2 cores).")  # fmt: skip
    print("Peer figure (shared/PEERS.md, measured earlier on this machine, not in this run): "
          "1,000 G.711 streams both ways, uvloop + one batched 20 ms ticker: 28 % of a core; "
          "SIPp uac_pcap ~0.1 % of a core per call.")  # fmt: skip


if __name__ == "__main__":
    main()
