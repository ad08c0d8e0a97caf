"""The shard (callmeter.shard) without Ray: a planned test on one loop against the built-in
registrar, collected as the actor collects it, with exact counts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from callmeter.models import parse_test
from callmeter.planner import RegistrarEndpoint, RunPlan, plan
from callmeter.registrar import RunningRegistrar
from callmeter.shard import Shard, ShardRows
from callmeter.transport import run


def small_test(**extra: Any) -> Any:
    data: dict[str, Any] = {
        "name": "shard",
        "call_duration_s": 3,
        "buildup_s": 0.4,
        "groups": [
            {"name": "callers", "endpoints": 2, "target": {"group": "callees"}},
            {"name": "callees", "endpoints": 2},
        ],
    }
    data.update(extra)
    return parse_test(data)


async def planned(registrar: RunningRegistrar, test: Any) -> RunPlan:
    host, port = registrar.address
    from callmeter.models import SipAccount

    accounts = tuple(SipAccount(username=a.username, password=a.password)
                     for a in registrar.accounts)  # fmt: skip
    endpoint = RegistrarEndpoint("builtin", host, host, port, "udp", accounts)
    return plan(test, {"builtin": endpoint})


async def run_shard(
    test: Any, *, stop_after_s: float | None = None
) -> tuple[Shard, list[ShardRows]]:
    async with RunningRegistrar(accounts=sum(g.endpoints for g in test.groups)) as registrar:
        run_plan = await planned(registrar, test)
        shard = Shard(run_plan.shards[0], epoch=time.time() + 0.2)
        collected: list[ShardRows] = []
        task = asyncio.ensure_future(shard.run())
        started = time.monotonic()
        while not task.done():
            await asyncio.wait({task}, timeout=1.0)
            collected.append(shard.collect())
            if stop_after_s is not None and time.monotonic() - started > stop_after_s:
                shard.stop()
                stop_after_s = None
        await task
        collected.append(shard.collect())
        return shard, collected


def rows_of(collected: list[ShardRows], kind: str) -> list[dict[str, Any]]:
    return [row for rows in collected for row in getattr(rows, kind)]


def _media_port_test(choice: str) -> Any:
    return small_test(
        call_duration_s=2,
        groups=[
            {"name": "callers", "endpoints": 3, "target": {"group": "callees"},
             "media_port": choice},
            {"name": "callees", "endpoints": 3, "media_port": choice},
        ],
    )  # fmt: skip


@pytest.mark.parametrize("choice", ["auto", "per_call"])
def test_calls_between_our_endpoints_share_the_shards_port_unless_told_not_to(
    choice: str,
) -> None:
    shard, collected = run(run_shard(_media_port_test(choice)))
    final = [r for r in rows_of(collected, "endpoints") if "outcome" in r]
    assert {r["outcome"] for r in final} == {"SUCCESS"} and len(final) == 6
    received = [r for r in rows_of(collected, "metrics") if r["direction"] == "receive"]
    assert len(received) == 6 * 2
    assert all(r["packets"] >= 45 and r["packets_lost"] == 0 for r in received)
    # A stream crossed over to another call would be late nearly whole (seen when it happened:
    # 50 of 50 a second); a loop busy setting up calls may make a packet or two late.
    assert all(r["packets_late_discarded"] <= r["packets"] // 10 for r in received)
    port = shard.media_port
    if choice == "per_call":
        assert port is None
        return
    assert port is not None and port.stats.malformed == port.stats.handler_errors == 0
    # what arrives after a call released its channel: the peer's last RTCP (BYE) at most
    assert port.stats.unmatched <= 6
    assert port.rtp.stats.packets_received >= 6 * 2 * 45


def test_a_planned_shard_runs_calls_and_reports_everything_once() -> None:
    shard, collected = run(run_shard(small_test()))
    endpoints = rows_of(collected, "endpoints")
    placed = [r for r in endpoints if "group_name" in r]
    final = {r["endpoint_id"]: r for r in endpoints if "outcome" in r}
    assert sorted(r["endpoint_id"] for r in placed) == [0, 1, 2, 3]  # placement once each
    assert {r["role"] for r in placed} == {"caller", "callee"}
    assert sorted(final) == [0, 1, 2, 3]
    assert {r["outcome"] for r in final.values()} == {"SUCCESS"}
    assert {r["phase"] for r in final.values()} == {"CLOSED"}
    callers = [r for r in final.values() if r["endpoint_id"] in (0, 1)]
    assert all(r["setup_time_ms"] is not None and r["setup_time_ms"] > 0 for r in callers)
    # 3 s calls: exactly 3 rows per endpoint and direction, seconds 1..3
    metrics = rows_of(collected, "metrics")
    assert len(metrics) == 4 * 3 * 2
    for endpoint_id in range(4):
        for direction in ("send", "receive"):
            mine = [r for r in metrics if r["endpoint_id"] == endpoint_id]
            seconds = sorted(r["second"] for r in mine if r["direction"] == direction)
            assert seconds == [1, 2, 3]
    received = [r for r in metrics if r["direction"] == "receive"]
    assert all(r["packets_lost"] == 0 for r in received)
    assert min(r["mos"] for r in received if r["mos"] is not None) > 4.0
    assert all(r["ts"] > 1e9 and r["t_s"] >= 0 for r in metrics)  # wall time and run offset
    # events: every endpoint went INITIALIZING -> ... -> CLOSED, one outcome each
    events = rows_of(collected, "events")
    for endpoint_id in range(4):
        mine = [e for e in events if e["endpoint_id"] == endpoint_id]
        phases = [e["phase"] for e in mine if e["kind"] == "phase"]
        assert phases[0] == "REGISTERED" and phases[-1] == "CLOSED" and "INCALL" in phases
        assert [e["outcome"] for e in mine if e["kind"] == "outcome"] == ["SUCCESS"]
    # the SIP trace: REGISTER, INVITE, BYE of every caller, both directions
    trace = rows_of(collected, "trace")
    first_lines = {bytes(t["message"]).split(b"\r\n", 1)[0].split(b" ")[0] for t in trace}
    assert {b"REGISTER", b"INVITE", b"ACK", b"BYE", b"SIP/2.0"} <= first_lines
    assert {t["direction"] for t in trace} == {"in", "out"}
    health = rows_of(collected, "health")
    assert len(health) == len(collected) and all(h["loop_lag_ms_max"] >= 0 for h in health)
    assert shard.done


def test_stop_hangs_up_calls_under_way_and_skips_calls_not_dialed() -> None:
    test = small_test(call_duration_s=30, buildup_s=0)
    _, collected = run(run_shard(test, stop_after_s=3.0))
    final = {r["endpoint_id"]: r for r in rows_of(collected, "endpoints") if "outcome" in r}
    assert {r["outcome"] for r in final.values()} == {"SUCCESS"}  # hung up cleanly
    metrics = rows_of(collected, "metrics")
    assert 0 < len(metrics) < 4 * 10 * 2  # measured until the stop, not 30 s


def test_an_unreachable_registrar_fails_registration_not_the_shard() -> None:
    async def scenario() -> list[ShardRows]:
        test = small_test()
        from callmeter.models import SipAccount

        accounts = tuple(SipAccount(username=f"u{i}", password="p") for i in range(4))
        # a closed TCP port: the connection is refused at once
        endpoint = RegistrarEndpoint("builtin", "127.0.0.1", "127.0.0.1", 9, "tcp", accounts)
        shard = Shard(plan(test, {"builtin": endpoint}).shards[0], epoch=time.time())
        await shard.run()
        return [shard.collect()]

    collected = run(scenario())
    final = [r for r in rows_of(collected, "endpoints") if "outcome" in r]
    assert len(final) == 4
    assert {r["outcome"] for r in final} == {"REGISTRATION_FAILED"}
