"""Calls per second: SIPp's UAC and ours, each against the same SIPp UAS, in one run.

For each generator the rate climbs a ladder; a step passes when every call of ~``--duration``
seconds of short calls (INVITE, 180, 200, ACK, BYE, 200; no hold) succeeded. The highest clean
step is the generator's figure. Ours runs in ``--processes`` processes (one agent and one
socket each) so it can use both cores, as SIPp's UAC and UAS together do. A step is repeated
once before it counts as failed (this VM stalls now and then, see PEERS.md).

    python benchmarks/sip_call_rate.py [--duration 20] [--processes 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callmeter.callrate import CallRateResult, run_call_rate
from callmeter.transport import run, tune_gc_for_load
from tests.peers import Sipp

SIPP_LADDER = [1000, 2000, 4000, 6000, 8000, 10000]
OUR_LADDER = [1000, 2000, 3000, 3500, 4000, 4500, 5000, 5500, 6000, 7000]


def _ours_worker(port: int, rate: float, duration: float, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    tune_gc_for_load()  # a load process: see callmeter.transport.loop
    start = resource.getrusage(resource.RUSAGE_SELF)
    result = run(run_call_rate(("127.0.0.1", port), rate_cps=rate, duration_s=duration))
    end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime)
    queue.put((result, cpu))


Step = tuple[int, int, float, float, int]  # ok, failed, achieved cps, cpu s/call, skipped


def ours(port: int, rate: float, duration: float, processes: int) -> Step:
    """(succeeded, failed, achieved cps, cpu seconds per call, calls the generator skipped
    because it fell behind) of our UAC over processes."""
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    workers = [
        multiprocessing.Process(target=_ours_worker, args=(port, rate / processes, duration, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    results: list[tuple[CallRateResult, float]] = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    ok = sum(r.succeeded for r, _ in results)
    failed = sum(r.failed_total for r, _ in results)
    elapsed = max(r.elapsed_s for r, _ in results)
    cpu = sum(c for _, c in results)
    skipped = sum(r.skipped for r, _ in results)
    return ok, failed, ok / elapsed, cpu / max(ok, 1), skipped


def sipp(port: int, rate: float, duration: float) -> Step:
    calls = int(rate * duration)
    with Sipp.uac(f"127.0.0.1:{port}", calls=calls, rate=rate) as uac:
        started = time.monotonic()
        code = uac.wait(duration * 3 + 30)
        elapsed = time.monotonic() - started
        ok, failed = uac.counter("SuccessfulCall"), uac.counter("FailedCall")
    failed += calls - ok - failed if code != 0 and failed == 0 else 0
    return ok, failed, ok / elapsed, 0.0, 0


def ladder(
    name: str, steps: list[int], attempt: Callable[[float], Step]
) -> tuple[int, float, float]:
    """Climb until a step fails twice; (best clean rate, its achieved cps, cpu ms/call).

    A step is clean when no call failed and at least 95 % of the offered rate was achieved
    (a generator that fell behind skips calls rather than burst them: it must not count)."""
    best = (0, 0.0, 0.0)
    for rate in steps:
        for trial in (1, 2):
            ok, failed, achieved, cpu, skipped = attempt(rate)
            print(
                f"  {name:>5} {rate:>6} cps offered: {ok} ok, {failed} failed, "
                f"{achieved:,.0f} cps achieved"
                + (f", {cpu * 1000:.3f} ms cpu/call" if cpu else "")
                + (f", {skipped} skipped by the generator" if skipped else ""),
                flush=True,
            )
            if failed == 0 and achieved >= 0.95 * rate:
                best = (rate, achieved, cpu)
                break
            if trial == 2:
                return best
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per step")
    parser.add_argument("--processes", type=int, default=2, help="processes for our UAC")
    args = parser.parse_args()
    with Sipp.uas() as uas:
        time.sleep(0.5)
        print(f"SIPp UAS on 127.0.0.1:{uas.port}; {args.duration:g} s of short calls per step")
        sipp_best = ladder("sipp", SIPP_LADDER, lambda r: sipp(uas.port, r, args.duration))
        our_best = ladder(
            "ours", OUR_LADDER, lambda r: ours(uas.port, r, args.duration, args.processes)
        )
    print()
    print(f"SIPp UAC : {sipp_best[0]:>6} cps clean ({sipp_best[1]:,.0f} achieved)")
    print(
        f"callmeter: {our_best[0]:>6} cps clean ({our_best[1]:,.0f} achieved, "
        f"{args.processes} processes, {our_best[2] * 1000:.3f} ms cpu per call)"
    )
    ratio = our_best[0] / sipp_best[0] if sipp_best[0] else float("nan")
    print(f"ratio callmeter / SIPp: {ratio:.2f}")


if __name__ == "__main__":
    main()
