"""N concurrent G.711 calls in one process, real ``MediaSession``s both ways, beside SIPp.

Process A (this one) runs N ``MediaSession``s on one uvloop loop with one ``MediaTicker``, all
on the process's one shared ``MediaPort`` (batched ``sendmmsg``/``recvmmsg``, what a shard
uses between our own endpoints; ``--media-port per-call``: a socket each), negotiated with
``make_offer``/``make_answer`` (PCMA, 20 ms, rtcp-mux, each side's SSRC declared), payloads
from ``MediaLibrary``, and every session's ``snapshot()`` taken every
second (as ``CallMedia`` does: all at once, on the loop). They send to N peer sessions in
process B, real ``MediaSession``s too on their own loop and core, so both directions carry RTP
and RTCP and both are measured. Sessions start spread evenly over one packet time (calls do
not all answer in the same millisecond).

For process A over the steady window: CPU % of one core (getrusage user + sys), CPU per
endpoint, the ticker's send lateness p50/p99/max and loop lag (``TickerHealth``), the time the
per-second snapshots take, and generator-induced loss: RTP packets A sent against those B's
sessions received, packets A skipped (a late ticker), and what A's own receive statistics
call lost on B's stream.

Then SIPp: ``sipp -sn uas -rtp_echo`` and ``sipp -sn uac_pcap`` at 300 and 1,000 concurrent
calls (``-l N -m N -r N``: every call up within ~1 s, each held for the 7 s pcap); the UAC's
CPU (/proc/PID/stat utime + stime, all its threads) over the window where every call plays.

    python benchmarks/media_calls.py [--sessions 500 1000 2000] [--sipp-calls 300 1000]
                                     [--seconds 10] [--no-sipp] [--media-port per-call]

The VM sometimes stalls ~0.5 s (shared/PEERS.md): a run whose loop lag exceeds
``STALL_MS`` is repeated once.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import multiprocessing
import multiprocessing.connection
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callmeter.media.sdp import (
    Negotiated,
    NegotiationFailure,
    make_answer,
    make_offer,
    negotiated,
)
from callmeter.media.session import MediaSession
from callmeter.media.source import MediaLibrary
from callmeter.transport import run, tune_gc_for_load
from callmeter.transport.media import MediaPath, MediaTicker, TickerHealth, open_media_socket
from callmeter.transport.mediaport import MediaChannel, MediaPort

CODEC = "PCMA"  # SIPp's uac_pcap plays g711a
PTIME_S = 0.02
WARMUP_S = 2.0
STALL_MS = 300.0
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class GcPauses:
    """The cyclic garbage collector's pauses (``gc.callbacks``): count, total and longest."""

    def __init__(self) -> None:
        self.started = 0.0
        self.reset()
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.count, self.total_s, self.max_s = 0, 0.0, 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        pause = time.perf_counter() - self.started
        self.count += 1
        self.total_s += pause
        self.max_s = max(self.max_s, pause)

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Paths:
    """N media paths: a socket per call, or N channels of one shared ``MediaPort``."""

    def __init__(self, paths: list[MediaPath], closers: list[Any]) -> None:
        self.paths = paths
        self.closers = closers

    @classmethod
    async def open(cls, count: int, shared: bool) -> Paths:
        if shared:
            port = await MediaPort.open(HOST)
            return cls([port.channel() for _ in range(count)], [port])
        sockets = [await open_media_socket(HOST) for _ in range(count)]
        return cls(list(sockets), list(sockets))

    @property
    def ports(self) -> list[int]:
        return [path.local_address[1] for path in self.paths]  # type: ignore[attr-defined]

    def errors(self) -> int:
        return sum(
            c.send_errors if isinstance(c, MediaPort) else c.stats.send_errors for c in self.closers
        )

    def close(self) -> None:
        for closer in self.closers:
            closer.close()


def _sessions(
    negotiations: list[Negotiated], paths: list[MediaPath], ticker: MediaTicker, tag: str,
    ssrcs: list[int],
) -> list[MediaSession]:  # fmt: skip
    """One real session per call, phases spread over one packet time, on ``ticker``."""
    loop = asyncio.get_running_loop()
    media = MediaLibrary().for_negotiated(negotiations[0])
    rng = random.Random(tag)
    start = loop.time() + 0.05
    count = len(negotiations)
    sessions = []
    for i, (neg, path) in enumerate(zip(negotiations, paths, strict=True)):
        now = start + PTIME_S * i / count
        session = MediaSession(
            neg, media, now=now, ssrc=ssrcs[i], cname=f"{tag}{i}@bench", rng=rng,
            ntp_offset_s=time.time() - loop.time(),
        )  # fmt: skip
        if isinstance(path, MediaChannel):
            path.expect(neg.remote_rtp, neg.remote_rtcp, neg.remote_ssrc)
        ticker.add(session, path)
        sessions.append(session)
    return sessions


class Snapshots:
    """Every session's ``snapshot(now)`` once a second, timed.

    ``CallMedia`` keeps one timer per endpoint, one second after its call was answered: with
    calls answered at different moments the snapshots are spread over the second. Here the
    sessions are cut into ``slices`` groups, one group every 1/``slices`` s (``slices`` 1:
    all at once, the worst case)."""

    def __init__(self, sessions: list[MediaSession], slices: int) -> None:
        self.loop = asyncio.get_running_loop()
        size = -(-len(sessions) // slices)
        self.groups = [sessions[i : i + size] for i in range(0, len(sessions), size)]
        self.step_s = 1.0 / len(self.groups)
        self.next = 0
        self.reset()
        self.handle = self.loop.call_at(self.loop.time() + 1.0, self._tick)

    def reset(self) -> None:
        self.snapshots = self.values = self.rx_lost = self.tx_skipped = 0
        self.busy_s = 0.0
        self.slice_max_s = 0.0
        self.rows_p99_max_ms = 0.0

    def _tick(self) -> None:
        started = time.perf_counter()
        now = self.loop.time()
        group = self.groups[self.next]
        self.next = (self.next + 1) % len(self.groups)
        for session in group:
            snap = session.snapshot(now)
            rx, tx = snap["receive"], snap["send"]
            self.values += len(rx) + len(tx)
            self.rx_lost += int(rx["packets_lost"] or 0)
            self.tx_skipped += int(tx["packets_send_skipped"] or 0)
            p99 = tx["send_lateness_p99_ms"]
            if p99 is not None and p99 > self.rows_p99_max_ms:
                self.rows_p99_max_ms = float(p99)
        self.snapshots += len(group)
        spent = time.perf_counter() - started
        self.busy_s += spent
        self.slice_max_s = max(self.slice_max_s, spent)
        self.handle = self.loop.call_at(now + self.step_s, self._tick)


# --------------------------------------------------------------------------- process B


def _peer(
    control: multiprocessing.connection.Connection, count: int, slices: int, shared: bool
) -> None:
    tune_gc_for_load()  # as every shard does (actors/shard.py)
    run(_peer_main(control, count, slices, shared), use_uvloop=True)


async def _peer_main(
    control: multiprocessing.connection.Connection, count: int, slices: int, shared: bool
) -> None:
    """B: N paths, then the answerer's sessions; on "stop": stop sending, report totals."""
    loop = asyncio.get_running_loop()
    paths = await Paths.open(count, shared)
    control.send(paths.ports)
    negotiations: list[Negotiated]
    negotiations, ssrcs = await asyncio.to_thread(control.recv)
    ticker = MediaTicker()
    sessions = _sessions(negotiations, paths.paths, ticker, "b", ssrcs)
    snapshots = Snapshots(sessions, slices)
    control.send("ready")
    cpu0, t0 = _cpu_s(), loop.time()
    await asyncio.to_thread(control.recv)  # "stop"
    cpu = 100.0 * (_cpu_s() - cpu0) / (loop.time() - t0)
    health = ticker.snapshot(loop.time())
    ticker.close()
    snapshots.handle.cancel()
    await asyncio.sleep(0.5)  # A's last packets
    control.send(
        {
            "received": sum(s.stats.received for s in sessions),
            "sent": sum(s.packets_sent_total for s in sessions),
            "skipped": sum(s.packets_skipped_total for s in sessions),
            "cpu_percent": cpu,
            "late_p99_ms": health.send_late_p99_ms,
        }
    )
    await asyncio.to_thread(control.recv)  # "close": A has counted what B sent
    paths.close()


# --------------------------------------------------------------------------- process A


@dataclasses.dataclass(frozen=True, slots=True)
class Snapped:
    """The per-second snapshots over the steady window."""

    per_s: float
    busy_ms_per_s: float
    slice_max_ms: float
    values_per_s: float
    rx_lost: int
    """``packets_lost`` summed over A's receive rows: B's stream as A measured it."""
    rows_p99_max_ms: float
    """The worst per-session ``send_lateness_p99_ms`` of any row."""


_SNAPPED = Snapped(0.0, 0.0, 0.0, 0.0, 0, 0.0)


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    sessions: int
    cpu_percent: float
    health: TickerHealth
    snapped: Snapped
    gc_pauses: int
    gc_ms_per_s: float
    gc_max_ms: float
    a_sent: int
    a_skipped: int
    b_received: int
    b_sent: int
    b_skipped: int
    a_received: int
    b_cpu_percent: float
    b_late_p99_ms: float
    send_errors: int


def _negotiate(
    a_ports: list[int], b_ports: list[int], a_ssrcs: list[int], b_ssrcs: list[int]
) -> tuple[list[Negotiated], ...]:
    """Offers and answers declaring each side's SSRC (a shared port demultiplexes by it)."""
    ours: list[Negotiated] = []
    theirs: list[Negotiated] = []
    for i, (a_port, b_port) in enumerate(zip(a_ports, b_ports, strict=True)):
        offer = make_offer(
            HOST, a_port, [CODEC], rtcp_mux=True, session_id=i, ssrc=(a_ssrcs[i], f"a{i}")
        )
        answer = make_answer(
            offer, HOST, b_port, [CODEC], rtcp_mux=True, session_id=i, ssrc=(b_ssrcs[i], f"b{i}")
        )
        assert not isinstance(answer, NegotiationFailure), answer
        a = negotiated(offer, answer, role="offerer")
        b = negotiated(offer, answer, role="answerer")
        assert isinstance(a, Negotiated) and isinstance(b, Negotiated), (a, b)
        ours.append(a)
        theirs.append(b)
    return ours, theirs


async def measure(count: int, seconds: float, slices: int, shared: bool, control: Any) -> Result:
    loop = asyncio.get_running_loop()
    paths = await Paths.open(count, shared)
    b_ports: list[int] = await asyncio.to_thread(control.recv)
    ssrcs = random.Random(count).sample(range(1, 2**32), 2 * count)  # unique
    a_ssrcs, b_ssrcs = ssrcs[:count], ssrcs[count:]
    ours, theirs = _negotiate(paths.ports, b_ports, a_ssrcs, b_ssrcs)
    control.send((theirs, b_ssrcs))
    await asyncio.to_thread(control.recv)  # B's sessions run
    ticker = MediaTicker()
    sessions = _sessions(ours, paths.paths, ticker, "a", a_ssrcs)
    snapshots = Snapshots(sessions, slices)
    pauses = GcPauses()
    await asyncio.sleep(WARMUP_S)
    pauses.reset()
    ticker.snapshot(loop.time())
    snapshots.reset()
    cpu0 = _cpu_s()
    await asyncio.sleep(seconds)
    cpu = _cpu_s() - cpu0
    pauses.close()
    health = ticker.snapshot(loop.time())
    snapped = dataclasses.replace(
        _SNAPPED,
        per_s=snapshots.snapshots / health.interval_s,
        busy_ms_per_s=1000.0 * snapshots.busy_s / health.interval_s,
        slice_max_ms=1000.0 * snapshots.slice_max_s,
        values_per_s=snapshots.values / health.interval_s,
        rx_lost=snapshots.rx_lost,
        rows_p99_max_ms=snapshots.rows_p99_max_ms,
    )
    ticker.close()  # A stops sending (no BYE: the counts stay RTP only)
    snapshots.handle.cancel()
    control.send("stop")
    peer: dict[str, Any] = await asyncio.to_thread(control.recv)
    await asyncio.sleep(0.2)
    result = Result(
        sessions=count,
        cpu_percent=100.0 * cpu / health.interval_s,
        health=health,
        snapped=snapped,
        gc_pauses=pauses.count,
        gc_ms_per_s=1000.0 * pauses.total_s / health.interval_s,
        gc_max_ms=1000.0 * pauses.max_s,
        a_sent=sum(s.packets_sent_total for s in sessions),
        a_skipped=sum(s.packets_skipped_total for s in sessions),
        b_received=peer["received"],
        b_sent=peer["sent"],
        b_skipped=peer["skipped"],
        a_received=sum(s.stats.received for s in sessions),
        b_cpu_percent=peer["cpu_percent"],
        b_late_p99_ms=peer["late_p99_ms"],
        send_errors=paths.errors(),
    )
    control.send("close")
    paths.close()
    return result


def run_ours(count: int, seconds: float, slices: int, shared: bool) -> Result:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(
        target=_peer, args=(theirs, count, slices, shared), daemon=True
    )
    process.start()
    tune_gc_for_load()  # as every shard does (actors/shard.py)
    try:
        return run(measure(count, seconds, slices, shared, ours), use_uvloop=True)
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()


# --------------------------------------------------------------------------- SIPp


@dataclasses.dataclass(frozen=True, slots=True)
class SippResult:
    calls: int
    concurrent_min: int
    window_s: float
    uac_cpu_percent: float
    uas_cpu_percent: float


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def run_sipp(calls: int, root: Path) -> SippResult:
    from tests.peers import Sipp

    uac_dir = root / f"uac{calls}"
    uac_dir.mkdir(parents=True, exist_ok=True)
    (uac_dir / "pcap").unlink(missing_ok=True)
    (uac_dir / "pcap").symlink_to("/usr/share/sip-tester")
    uas = Sipp.uas(extra=["-rtp_echo"], workdir=root / f"uas{calls}")
    try:
        time.sleep(0.3)
        started = time.monotonic()
        uac = Sipp.start(
            ["-sn", "uac_pcap", uas.address, "-s", "service",
             "-l", str(calls), "-m", str(calls), "-r", str(calls), "-rp", "1000"],
            workdir=uac_dir,
        )  # fmt: skip
        try:
            # Every call is up by ~1 s; each plays the 7.05 s pcap from its answer.
            time.sleep(max(0.0, started + 1.5 - time.monotonic()))
            t0, uac0, uas0 = time.monotonic(), _proc_cpu_s(uac.pid), _proc_cpu_s(uas.pid)
            concurrent = []
            while time.monotonic() < started + 7.0:
                time.sleep(0.5)
                concurrent.append(int(uac.stats().get("CurrentCall", "0") or 0))
            t1, uac1, uas1 = time.monotonic(), _proc_cpu_s(uac.pid), _proc_cpu_s(uas.pid)
        finally:
            uac.stop(timeout=2.0)
    finally:
        uas.stop(timeout=2.0)
    return SippResult(
        calls=calls,
        concurrent_min=min(concurrent[1:] or [0]),
        window_s=t1 - t0,
        uac_cpu_percent=100.0 * (uac1 - uac0) / (t1 - t0),
        uas_cpu_percent=100.0 * (uas1 - uas0) / (t1 - t0),
    )


# --------------------------------------------------------------------------- report


def _row(r: Result) -> str:
    h = r.health
    gen_loss = r.a_skipped + r.a_sent - r.b_received  # never sent, or lost on our side
    return (
        f"{r.sessions:>6} {r.cpu_percent:>6.1f} {r.cpu_percent / r.sessions:>7.4f} "
        f"{h.send_late_p50_ms:>6.1f} {h.send_late_p99_ms:>6.1f} {h.send_late_max_ms:>6.1f} "
        f"{h.loop_lag_p99_ms:>6.1f} {h.loop_lag_max_ms:>6.1f} "
        f"{r.snapped.busy_ms_per_s:>6.1f} {r.snapped.slice_max_ms:>6.1f} "
        f"{r.snapped.values_per_s:>7.0f} "
        f"{r.a_sent:>8} {r.b_received:>8} {gen_loss:>5} {r.a_skipped:>5} "
        f"{r.b_sent - r.a_received:>6} {r.snapped.rx_lost:>5} {r.b_cpu_percent:>5.1f} "
        f"{r.send_errors:>4} {r.gc_pauses:>4} {r.gc_ms_per_s:>5.1f} {r.gc_max_ms:>5.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--sipp-calls", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-sipp", action="store_true")
    parser.add_argument(
        "--media-port", choices=["shared", "per-call"], default="shared",
        help="one batched port per process (the shard default) or a socket per call",
    )  # fmt: skip
    parser.add_argument(
        "--snapshot-slices", type=int, default=50,
        help="snapshot groups per second (1: every session's snapshot at once)",
    )  # fmt: skip
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    print(f"callmeter: {CODEC} 20 ms both ways, real MediaSessions A <-> B (two processes, "
          f"uvloop); {args.seconds:.0f} s steady window after {WARMUP_S:.0f} s warm-up; "
          f"snapshots in {args.snapshot_slices} slices/s")  # fmt: skip
    print(f"{'N':>6} {'CPU%':>6} {'%/call':>7} {'lt50':>6} {'lt99':>6} {'ltMax':>6} "
          f"{'lag99':>6} {'lagMx':>6} {'snpMs':>6} {'snpMx':>6} {'vals/s':>7} "
          f"{'A sent':>8} {'B rcvd':>8} {'genLs':>5} {'skip':>5} {'B->A':>6} {'rxLs':>5} "
          f"{'B%':>5} {'errs':>4} {'gc#':>4} {'gcMs':>5} {'gcMx':>5}")  # fmt: skip
    ours: dict[int, Result] = {}
    for count in args.sessions:
        shared = args.media_port == "shared"
        result = run_ours(count, args.seconds, args.snapshot_slices, shared)
        health = result.health
        if health.loop_lag_max_ms > STALL_MS and health.send_late_p50_ms < 5.0:  # not overload
            print(_row(result) + "  (stall: repeated)", flush=True)
            result = run_ours(count, args.seconds, args.snapshot_slices, shared)
        ours[count] = result
        print(_row(result), flush=True)
    print("CPU%: process A, of one core (getrusage); %/call: CPU% per endpoint; lt = ticker "
          "send lateness, lag = loop lag (ms);\nsnp = snapshot time, ms per second / longest "
          "slice; vals/s = metric values computed per second;\ngenLs = "
          "generator-induced loss: packets A's ticker skipped + (RTP A sent - B received);\n"
          "skip = of which skipped (ticker too late); B->A = B sent - A received; "
          "rxLs = A's receive stats' packets_lost (window); B% = peer process CPU;\n"
          "gc# / gcMs / gcMx: A's garbage-collector pauses in the window: count, ms per second, "
          "longest ms")  # fmt: skip
    if args.no_sipp:
        return
    print("\nSIPp 3.6.1 uac_pcap (g711a.pcap: 236 packets over 7.05 s, one direction) -> "
          "sipp -sn uas -rtp_echo")  # fmt: skip
    print(f"{'calls':>6} {'up(min)':>7} {'win s':>6} {'UAC%':>6} {'UAS%':>6} {'%/call':>7}")
    per_call: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="callmeter-media-calls-") as tmp:
        for calls in args.sipp_calls:
            sipp = run_sipp(calls, Path(tmp))
            if sipp.concurrent_min < calls:
                print(f"{calls:>6} {sipp.concurrent_min:>7}  (not all up: repeated)")
                sipp = run_sipp(calls, Path(tmp) / "again")
            per_call[calls] = sipp.uac_cpu_percent / calls
            print(f"{calls:>6} {sipp.concurrent_min:>7} {sipp.window_s:>6.1f} "
                  f"{sipp.uac_cpu_percent:>6.1f} {sipp.uas_cpu_percent:>6.1f} "
                  f"{per_call[calls]:>7.4f}", flush=True)  # fmt: skip
    print(
        "\nCPU per call, % of a core: ours (send + receive + RTCP + per-second metrics) "
        "vs SIPp UAC (send only)"
    )
    for count, result in ours.items():
        mine = result.cpu_percent / count
        ratios = "  ".join(
            f"x{mine / sipp_pc:.2f} of SIPp@{calls}" for calls, sipp_pc in per_call.items()
        )
        saturated = result.a_skipped > 0 or result.health.send_late_p50_ms > 5.0
        note = "  (A saturated: packets skipped, not comparable)" if saturated else ""
        print(f"  N={count:>5}: {mine:.4f}   {ratios}{note}")
    print(
        "Targets: 2,000 endpoints <= 80 % of a core, p99 lateness < 5 ms, zero generator "
        "loss, CPU per call <= 0.5x SIPp's."
    )


if __name__ == "__main__":
    main()
