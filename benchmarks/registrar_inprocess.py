"""REGISTER/s and proxied calls/s of the built-in registrar core, in process, no sockets.

    python benchmarks/registrar_inprocess.py                 # 2,000 phones, 1,000 calls
    python benchmarks/registrar_inprocess.py --phones 4000 --no-auth

Two steps. First real ``UserAgent`` cores talk to a ``Registrar`` core through an in-memory
switch that delivers every datagram at once (no loss, no delay), and every datagram the
registrar receives is recorded with its source and ``now``. Then the recording is replayed
into a fresh registrar built with the same seeds and nonce secret (so it issues the same
nonces and branches and every credential still verifies) and only that replay is timed: the
figures are the registrar's own cost, without the user agents' work or their objects in the
garbage collector's way. Reported per operation:

- initial REGISTER (REGISTER, 401, REGISTER with credentials, 200): two requests;
- refresh REGISTER (pre-authorized with the next nc): one request;
- proxied call, answered at once: INVITE, 407, ACK, INVITE with credentials, 100 both ways,
  200, ACK, BYE, 200: eight messages in, seven out.

Each figure is the best of ``--repeat`` replays, so a VM stall does not count. Kamailio 5.6
measured on this kind of machine (PEERS.md): 8,000 authenticated REGISTER/s at 51 % CPU and
3,000 proxied calls/s at 68 % of one worker, over real sockets; those include the kernel's
socket work that this benchmark leaves out, so compare orders of magnitude only. This is a
benchmark, not a test: it prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callmeter.registrar import Registrar, RegistrarConfig
from callmeter.sip.core import Address, SansIOCore
from callmeter.sip.events import CallAnswered, CallEnded, Registered
from callmeter.sip.useragent import UserAgent, UserAgentConfig

REGISTRAR: Address = ("127.0.0.1", 5060)
SECRET = b"benchmark nonce secret, 32 bytes"
PHASES = ("initial REGISTER (401 + 200)", "refresh REGISTER (pre-authorized)", "proxied call")
Recording = list[tuple[bytes, Address, float]]


def new_registrar(phones: int, auth: bool) -> Registrar:
    config = RegistrarConfig(
        domain="127.0.0.1", authenticate_register=auth, authenticate_requests=auth
    )
    registrar = Registrar(config, local_addr=REGISTRAR, rng=random.Random(1), nonce_secret=SECRET)
    registrar.accounts.provision(phones, random.Random(2), "127.0.0.1")
    return registrar


class Switch:
    """Delivers every queued datagram at once and records what the registrar receives."""

    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar
        self.cores: dict[Address, SansIOCore] = {REGISTRAR: registrar}
        self.queue: deque[tuple[bytes, Address, Address]] = deque()
        self.recording: Recording = []

    def send_from(self, core: UserAgent) -> None:
        for data, dst in core.datagrams_to_send():
            self.queue.append((data, core.local_addr, dst))
        self.pump()

    def pump(self) -> None:
        while self.queue:
            data, src, dst = self.queue.popleft()
            now = time.perf_counter()
            core = self.cores[dst]
            if core is self.registrar:
                self.recording.append((data, src, now))
            core.receive_datagram(data, src, now)
            self.queue.extend((d, dst, to) for d, to in core.datagrams_to_send())


def record(phones: int, auth: bool) -> list[Recording]:
    """Run the workload with real user agents; the registrar's inputs, one list per phase."""
    registrar = new_registrar(phones, auth)
    switch = Switch(registrar)
    agents = []
    for index, account in enumerate(registrar.accounts):
        config = UserAgentConfig(
            username=account.username, domain=account.domain, proxy=REGISTRAR,
            password=account.password,
        )  # fmt: skip
        ua = UserAgent(config, ("127.0.0.1", 20000 + index), rng=random.Random(index))
        switch.cores[ua.local_addr] = ua
        agents.append(ua)
    phases = []
    for _ in range(2):  # initial registration, then a pre-authorized refresh
        for ua in agents:
            ua.register(time.perf_counter())
            switch.send_from(ua)
        assert count(agents, Registered) == len(agents), "every phone must register"
        phases.append(switch.recording)
        switch.recording = []
    calls = []
    for caller, callee in zip(agents[0::2], agents[1::2], strict=False):
        calls.append((caller, caller.invite(callee.config.aor, time.perf_counter())))
        switch.send_from(caller)
    assert count(agents, CallAnswered) == 2 * len(calls), "every call must be answered"
    for caller, call_id in calls:
        caller.hangup(call_id, time.perf_counter())
        switch.send_from(caller)
    assert count(agents, CallEnded) == 2 * len(calls), "every call must end"
    phases.append(switch.recording)
    return phases


def count(agents: list[UserAgent], kind: type) -> int:
    seen = 0
    for ua in agents:
        while (event := ua.next_event()) is not None:
            seen += isinstance(event, kind)
    return seen


def replay(phones: int, auth: bool, phases: list[Recording]) -> list[float]:
    """Seconds the registrar spends on each phase, fed the recorded datagrams."""
    registrar = new_registrar(phones, auth)
    gc.collect()  # the recording run's user agents must not be collected on our time
    clock, spent = time.perf_counter, []
    for recording in phases:
        start = clock()
        for data, src, now in recording:
            registrar.receive_datagram(data, src, now)
            registrar.datagrams_to_send()
        spent.append(clock() - start)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phones", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-auth", action="store_true", help="authentication off")
    args = parser.parse_args()
    auth = not args.no_auth
    phases = record(args.phones, auth)
    best = [float("inf")] * len(phases)
    for _ in range(args.repeat):
        spent = replay(args.phones, auth, phases)
        best = [min(a, b) for a, b in zip(best, spent, strict=True)]
    operations = (args.phones, args.phones, args.phones // 2)
    print(f"built-in registrar core, {args.phones} phones, digest auth {'on' if auth else 'off'},"
          f" best of {args.repeat} replays")  # fmt: skip
    print(f"{'operation':<36}{'messages in':>12}{'us each':>10}{'per second':>12}")
    for name, seconds, n, recording in zip(PHASES, best, operations, phases, strict=True):
        per = seconds / n
        print(f"{name:<36}{len(recording) / n:>12.1f}{per * 1e6:>10.1f}{1 / per:>12,.0f}")
    print("Kamailio 5.6 (PEERS.md, real sockets): 8,000 REGISTER/s at 51 % CPU, "
          "3,000 calls/s at 68 %")  # fmt: skip


if __name__ == "__main__":
    main()
