"""Authenticated REGISTER/s and proxied calls/s: our registrar and Kamailio, loaded by SIPp.

    python benchmarks/registrar_sipp.py [--duration 10] [--only ours|kamailio]

Each server runs in its own process on a free loopback port: ours is ``callmeter.registrar
.serve`` (uvloop when installed), Kamailio 5.6 the harness's registrar + record-routing proxy
with digest auth against sqlite (``tests/peers.py``), both with the same two accounts.
SIPp loads them with the scenarios the interop tests use:

- REGISTER: ``register_auth.xml`` (REGISTER, 401, REGISTER with credentials, 200) for one
  AOR, each registration a new Call-ID;
- calls: ``uac_auth.xml`` (INVITE, 407, ACK, INVITE with credentials, 180, 200, ACK, BYE,
  200, all through the proxy) to a registered SIPp UAS that echoes Record-Route.

For each the rate climbs a ladder; a step is clean when every registration or call of
``--duration`` seconds succeeded at 90 % of the offered rate or more (SIPp slows down rather
than fail when the server lags), and is tried twice before it counts as failed (the VM stalls
now and then, PEERS.md). The figure is the highest clean step, with the server's CPU (user +
system of its whole process group, from /proc) per operation at that step. SIPp's UAC and
UAS share the machine's two cores with the server, for both servers alike. A benchmark, not
a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callmeter.registrar import Account, read_credentials
from tests.peers import Kamailio, PeerError, PeerProcess, Sipp, free_port, wait_until

REGISTER_LADDER = [500, 1000, 2000, 3000, 4000, 6000, 8000]
CALL_LADDER = [100, 250, 500, 750, 1000, 1500, 2000, 3000]
TICKS = os.sysconf("SC_CLK_TCK")


class OurRegistrar(PeerProcess):
    """``callmeter.registrar.serve`` in its own interpreter, two ephemeral accounts."""

    name = "callmeter-registrar"

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.credentials = workdir / "accounts.csv"
        code = (
            os.environ.get("REGISTRAR_PRELUDE", "") + "\n"
            "from callmeter.registrar import serve\nfrom callmeter.transport import run\n"
            f"run(serve('127.0.0.1', {port}, 'udp', 2, {str(self.credentials)!r}))\n"
        )
        env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        super().__init__([sys.executable, "-c", code], workdir, env)
        wait_until(self.credentials.exists, 15, what="the registrar's credentials file")

    @property
    def accounts(self) -> list[Account]:
        return read_credentials(self.credentials)


def cpu_seconds(group: int) -> float:
    """User + system CPU time of every process in a process group (Kamailio forks workers;
    each peer leads its own group), from /proc."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS


Step = tuple[int, int, float, float]  # ok, failed, achieved per second, server CPU s each


def ladder(name: str, steps: list[int], attempt: Callable[[int], Step]) -> str:
    """Climb until a step fails twice; the best clean step as a result line. Clean: nothing
    failed and at least 90 % of the offered rate achieved (SIPp slows down rather than fail
    when the server lags)."""
    best = "none clean"
    for rate in steps:
        for trial in (1, 2):
            ok, failed, achieved, cpu = attempt(rate)
            print(f"  {name}: {rate:>5}/s offered, {achieved:>7,.0f}/s achieved, {ok} ok, "
                  f"{failed} failed, {cpu * 1e6:,.0f} us server CPU each", flush=True)  # fmt: skip
            if failed == 0 and achieved >= 0.9 * rate:
                best = f"{rate:>5}/s clean ({achieved:,.0f} achieved), {cpu * 1e6:,.0f} us CPU each"
                break
            if trial == 2:
                return best
    return best


def run_sipp(server_pid: int, sipp: Sipp, total: int, duration: float) -> Step:
    start_cpu, started = cpu_seconds(server_pid), time.monotonic()
    with sipp:
        try:
            sipp.wait(duration * 3 + 30)
        except PeerError:
            pass  # calls still hanging: they count as failed
        elapsed = time.monotonic() - started
        ok, failed = sipp.counter("SuccessfulCall"), sipp.counter("FailedCall")
    failed = max(failed, total - ok)
    return ok, failed, ok / elapsed, (cpu_seconds(server_pid) - start_cpu) / max(ok, 1)


def registers(target: str, pid: int, account: Account, rate: int, duration: float) -> Step:
    total = int(rate * duration)
    sipp = Sipp.scenario(
        "register_auth.xml", target, calls=total, service=account.username,
        credentials=(account.username, account.password), keys={"expires": "3600"},
        extra=["-r", str(rate)],
    )  # fmt: skip
    return run_sipp(pid, sipp, total, duration)


def calls(target: str, pid: int, caller: Account, callee: Account, uas_port: int, rate: int,
          duration: float) -> Step:  # fmt: skip
    total = int(rate * duration)
    sipp = Sipp.call_with_auth(
        target, caller=caller.username, password=caller.password, callee=callee.username,
        calls=total, rate=rate,
    )  # fmt: skip
    return run_sipp(pid, sipp, total, duration)


def bench(name: str, target: str, pid: int, accounts: list[Account], duration: float) -> list[str]:
    caller, callee = accounts
    results = [ladder(f"{name} REGISTER", REGISTER_LADDER,
                      lambda r: registers(target, pid, caller, r, duration))]  # fmt: skip
    with Sipp.register(target, user=callee.username, password=callee.password) as reg:
        uas_port = reg.port
        assert reg.wait(30) == 0, reg.log()
    with Sipp.uas(record_route=True, port=uas_port):
        time.sleep(0.5)
        call = lambda r: calls(target, pid, caller, callee, uas_port, r, duration)  # noqa: E731
        results.append(ladder(f"{name} calls", CALL_LADDER, call))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--only", choices=("ours", "kamailio"))
    args = parser.parse_args()
    summary: dict[str, list[str]] = {}
    accounts: list[Account] = []
    if args.only != "kamailio":
        port = free_port("udp")
        with OurRegistrar(port, Path(tempfile.mkdtemp(prefix="callmeter-registrar-"))) as ours:
            accounts = ours.accounts
            summary["callmeter"] = bench("ours", f"127.0.0.1:{port}", ours.pid, accounts,
                                         args.duration)  # fmt: skip
    if args.only != "ours":
        accounts = accounts or [Account("alice", "alice-secret", "127.0.0.1"),
                                Account("bob", "bob-secret", "127.0.0.1")]  # fmt: skip
        with Kamailio.start({a.username: a.password for a in accounts}) as kamailio:
            summary["kamailio"] = bench("kamailio", kamailio.address, kamailio.pid, accounts,
                                        args.duration)  # fmt: skip
    print()
    for name, (register_line, call_line) in summary.items():
        print(f"{name:<10} REGISTER {register_line}")
        print(f"{'':<10} calls    {call_line}")


if __name__ == "__main__":
    main()
