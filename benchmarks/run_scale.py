"""A 1,000-endpoint run on the local Ray (two shards), beside SIPp carrying the same calls.

Ours: ``run_test`` (the driver ``callmeter run`` uses) with 500 callers calling 500 callees
through the built-in registrar, G.711 both ways, ``--seconds`` calls after a ``--buildup``,
cut into shards of 500 (two EndpointShard actors, one event loop each). Reported: endpoints
sustained (most endpoints in call at once, from the per-second phases), each shard's CPU
(mean and max of its per-second ``cpu_percent`` while it carries all its endpoints), its
event-loop lag and send lateness p99 then,
the rows the one writer stored per second of run, and CPU per call.

SIPp in the same run: ``sipp -sn uac_pcap`` against ``sipp -sn uas -rtp_echo`` with 500
concurrent calls (each plays the 7 s PCMA pcap), CPU of both processes (benchmarks/
media_calls.py ``run_sipp``). SIPp computes no metric; we compute ~90 per endpoint-second.

    python benchmarks/run_scale.py [--endpoints 1000] [--seconds 20] [--buildup 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import actors  # noqa: E402,F401  (Ray's environment first)
from actors.cluster import disconnect  # noqa: E402
from actors.driver import Progress, run_test  # noqa: E402
from callmeter.models import parse_test  # noqa: E402
from callmeter.store import Store  # noqa: E402


def ours(
    endpoints: int, seconds: float, buildup: float, db: Path, use_uvloop: bool = True
) -> dict[str, Any]:
    half = endpoints // 2
    test = parse_test(
        {
            "name": "scale",
            "call_duration_s": seconds,
            "buildup_s": buildup,
            "groups": [
                {"name": "callers", "endpoints": half, "codecs": ["PCMA"],
                 "target": {"group": "callees"}},
                {"name": "callees", "endpoints": half, "codecs": ["PCMA"]},
            ],
            "success": {"min_success_rate": 0.0},
        }
    )  # fmt: skip
    in_call: list[int] = []

    def progress(p: Progress) -> None:
        in_call.append(p.phases.get("INCALL", 0))

    started = time.monotonic()
    with Store(db) as store:
        result = run_test(
            test, store, shard_capacity=500, on_progress=progress, use_uvloop=use_uvloop
        )
        wall = time.monotonic() - started
        con = store.connection
        (rows,) = con.execute(
            "SELECT count(*) FROM metrics WHERE run_id = ?", [result.run_id]
        ).fetchall()[0]
        (first, last) = con.execute(
            "SELECT min(ts), max(ts) FROM metrics WHERE run_id = ?", [result.run_id]
        ).fetchall()[0]
        # steady state: the seconds where the shard carried all its endpoints
        shards = con.execute(
            "WITH h AS (SELECT *, max(endpoints_active) OVER (PARTITION BY shard_id) AS full_load "
            "FROM shard_health WHERE run_id = ?) "
            "SELECT shard_id, avg(cpu_percent), max(cpu_percent), max(loop_lag_ms_p99), "
            "quantile_cont(send_lateness_ms_p99, 0.99) FROM h "
            "WHERE endpoints_active = full_load GROUP BY 1 ORDER BY 1",
            [result.run_id],
        ).fetchall()
    disconnect()
    span_s = (last - first).total_seconds() if first is not None else 0.0
    return {
        "result": result,
        "wall_s": wall,
        "sustained": max(in_call or [0]),
        "rows": rows,
        "rows_per_s": rows / span_s if span_s else 0.0,
        "shards": shards,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--buildup", type=float, default=10.0)
    parser.add_argument("--no-sipp", action="store_true")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="the shards' event loop")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cm-scale-") as tmp:
        figures = ours(
            args.endpoints, args.seconds, args.buildup, Path(tmp) / "s.duckdb",
            use_uvloop=args.loop == "uvloop",
        )  # fmt: skip
        sipp = None
        if not args.no_sipp:
            from media_calls import run_sipp

            sipp = run_sipp(args.endpoints // 2, Path(tmp) / "sipp")
    result = figures["result"]
    summary = result.summary
    print(f"callmeter ({args.loop} in the shards): {args.endpoints} endpoints, {result.status}, "
          f"outcomes {summary.get('outcomes')}, MOS {summary.get('mos_avg')}")  # fmt: skip
    print(f"  sustained in call {figures['sustained']}, run wall {figures['wall_s']:.1f} s, "
          f"metric rows {figures['rows']} ({figures['rows_per_s']:.0f} rows/s stored)")  # fmt: skip
    total_cpu = 0.0
    for shard_id, cpu_avg, cpu_max, lag_p99, late_p99 in figures["shards"]:
        total_cpu += cpu_avg or 0.0
        print(
            f"  shard {shard_id}: CPU {cpu_avg:.1f} % avg / {cpu_max:.1f} % max of a core, "
            f"loop lag p99 max {lag_p99:.1f} ms, send lateness p99 {late_p99:.1f} ms"
        )
    calls = args.endpoints // 2
    print(f"  CPU per call (both ends, media both ways): {total_cpu / calls:.3f} % of a core")
    if sipp is not None:
        peer = sipp.uac_cpu_percent + sipp.uas_cpu_percent
        print(f"SIPp uac_pcap + uas -rtp_echo, {sipp.calls} calls (min {sipp.concurrent_min} "
              f"concurrent): {peer:.1f} % CPU, {peer / sipp.calls:.3f} % per call")  # fmt: skip
        ratio = (total_cpu / calls) / (peer / sipp.calls)
        print(f"ratio (ours / SIPp, CPU per call): {ratio:.2f}")


if __name__ == "__main__":
    main()
