"""Quickstart wall time, command to summary, beside SIPp placing the same calls.

Ours: ``callmeter run examples/quickstart.yaml --json`` in a fresh process: a private local
Ray started and stopped, the built-in registrar, 10 endpoints registering with digest auth
over a 2 s buildup, 5 calls with ring time and 10 s of G.711 both ways, every metric stored,
the summary printed. Target: under 25 s.

SIPp, the same run: ``sipp -sn uas`` and ``sipp -sn uac`` placing 5 calls over the 2 s
buildup, each held 10 s (``-d``), no registration, no media, nothing stored: the floor any
tool pays for the calls themselves. The ratio is ours over SIPp's.

    python benchmarks/quickstart_time.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def ours(db: Path) -> tuple[float, dict[str, object]]:
    env = {**os.environ}
    env.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "callmeter.cli", "run", str(REPO / "examples/quickstart.yaml"),
         "--db", str(db), "--json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"callmeter run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def sipp(workdir: Path) -> float:
    from tests.peers import Sipp

    uas = Sipp.uas(workdir=workdir / "uas")
    try:
        started = time.monotonic()
        uac = Sipp.start(
            ["-sn", "uac", uas.address, "-s", "service", "-m", "5", "-r", "5", "-rp", "2000",
             "-d", "10000"],
            workdir=workdir / "uac",
        )  # fmt: skip
        code = uac.wait(timeout=60)
        wall = time.monotonic() - started
        if code != 0:
            raise SystemExit(f"SIPp UAC exited {code}")
    finally:
        uas.stop(timeout=2.0)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cm-qs-") as tmp:
        root = Path(tmp)
        rows = []
        for i in range(args.repeat):
            wall, summary = ours(root / f"q{i}.duckdb")
            peer = sipp(root / f"sipp{i}")
            rows.append((wall, peer, summary))
    print(f"{'run':>4} {'callmeter s':>12} {'SIPp s':>8} {'ratio':>6}  summary")
    for i, (wall, peer, summary) in enumerate(rows):
        print(
            f"{i:>4} {wall:>12.1f} {peer:>8.1f} {wall / peer:>6.2f}  "
            f"status {summary['status']}, success {summary['success_rate']}, "
            f"MOS {summary['mos_avg']:.2f}, outcomes {summary['outcomes']}"
        )
    best = min(r[0] for r in rows)
    print(f"best callmeter wall time {best:.1f} s (target < 25 s)")


if __name__ == "__main__":
    main()
