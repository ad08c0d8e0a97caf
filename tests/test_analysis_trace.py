"""One endpoint up close (``analysis.trace``): its SIP trace in order, the ladder diagram drawn
from it, its own per-second series.

``seed_call_run`` writes a small run the way the shards do (rows -> ``shard_batch`` ->
``Store.append``): four endpoints, one call answered and ended normally, one rejected with 486,
with their SIP traces (REGISTER challenged then accepted, INVITE, 100, 180, 200, ACK, BYE...)
and per-second metrics with the R budget. The KPI, comparison and dashboard tests use it too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

import analysis
from callmeter.store import Store, shard_batch

T0 = 1_700_000_000.0
PROXY = "127.0.0.1:5060"
Row = dict[str, Any]


def sip(first_line: str, call_id: str, cseq: str) -> bytes:
    return (
        f"{first_line}\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK1\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _registration(endpoint_id: int, at: float) -> list[Row]:
    reg = f"reg-{endpoint_id}"
    uri = "REGISTER sip:127.0.0.1 SIP/2.0"
    return [
        {
            "endpoint_id": endpoint_id,
            "at": at,
            "direction": "out",
            "peer": PROXY,
            "message": sip(uri, reg, "1 REGISTER"),
        },
        {
            "endpoint_id": endpoint_id,
            "at": at + 0.002,
            "direction": "in",
            "peer": PROXY,
            "message": sip("SIP/2.0 401 Unauthorized", reg, "1 REGISTER"),
        },
        {
            "endpoint_id": endpoint_id,
            "at": at + 0.003,
            "direction": "out",
            "peer": PROXY,
            "message": sip(uri, reg, "2 REGISTER"),
        },
        {
            "endpoint_id": endpoint_id,
            "at": at + 0.010,
            "direction": "in",
            "peer": PROXY,
            "message": sip("SIP/2.0 200 OK", reg, "2 REGISTER"),
        },
    ]


def _answered_call(caller: int, at: float, seconds: int) -> list[Row]:
    call = f"call-{caller}"
    steps = [
        (0.000, "out", "INVITE sip:u1@127.0.0.1 SIP/2.0", "1 INVITE"),
        (0.001, "in", "SIP/2.0 100 Trying", "1 INVITE"),
        (0.040, "in", "SIP/2.0 180 Ringing", "1 INVITE"),
        (0.120, "in", "SIP/2.0 200 OK", "1 INVITE"),
        (0.121, "out", "ACK sip:u1@127.0.0.1 SIP/2.0", "1 ACK"),
        (0.120 + seconds, "out", "BYE sip:u1@127.0.0.1 SIP/2.0", "2 BYE"),
        (0.125 + seconds, "in", "SIP/2.0 200 OK", "2 BYE"),
    ]
    return [
        {
            "endpoint_id": caller,
            "at": at + dt,
            "direction": d,
            "peer": PROXY,
            "message": sip(line, call, cseq),
        }
        for dt, d, line, cseq in steps
    ]


def _rejected_call(caller: int, at: float) -> list[Row]:
    call = f"call-{caller}"
    steps = [
        (0.000, "out", "INVITE sip:u3@127.0.0.1 SIP/2.0", "1 INVITE"),
        (0.001, "in", "SIP/2.0 100 Trying", "1 INVITE"),
        (0.030, "in", "SIP/2.0 486 Busy Here", "1 INVITE"),
        (0.031, "out", "ACK sip:u3@127.0.0.1 SIP/2.0", "1 ACK"),
    ]
    return [
        {
            "endpoint_id": caller,
            "at": at + dt,
            "direction": d,
            "peer": PROXY,
            "message": sip(line, call, cseq),
        }
        for dt, d, line, cseq in steps
    ]


def _metrics(endpoint_id: int, second: int, mos: float, loss: float) -> list[Row]:
    at = T0 + 2 + second
    base = {
        "endpoint_id": endpoint_id,
        "ts": at,
        "t_s": at - T0,
        "second": second,
        "interval_s": 1.0,
        "packets": 50,
        "payload_bytes": 8000,
        "bitrate_bps": 64000.0,
    }
    r_loss = 10.0 * loss
    r = 93.2 - 1.4 - 0.5 - 0.0 - r_loss
    receive = {
        **base,
        "direction": "receive",
        "mos": mos,
        "jitter_ms": 1.0 + second % 3,
        "loss_percent": loss,
        "packets_lost": round(loss / 2),
        "r_factor": r,
        "r_scale_max": 100.0,
        "r_ro": 93.2,
        "r_simultaneous_is": 1.4,
        "r_delay_id": 0.5,
        "r_codec_ie": 0.0,
        "r_loss_ie": r_loss,
    }
    send = {
        **base,
        "direction": "send",
        "mos": 4.4,
        "rtt_ms": 2.0,
        "jitter_ms": 0.5,
        "loss_percent": 0.0,
    }
    return [receive, send]


def _placement(endpoint_id: int) -> Row:
    caller = endpoint_id in (0, 2)
    return {
        "endpoint_id": endpoint_id,
        "group_name": "callers" if caller else "callees",
        "username": f"u{endpoint_id}",
        "role": "caller" if caller else "callee",
        "callee": f"sip:u{endpoint_id + 1}@127.0.0.1" if caller else None,
        "shard_id": 0,
        "node_id": "node-a",
        "host": "127.0.0.1",
        "pid": 4242,
        "phase": "INITIALIZING",
    }


def _final(endpoint_id: int, seconds: int) -> Row:
    if endpoint_id == 2:
        return {
            "endpoint_id": 2,
            "phase": "CLOSED",
            "outcome": "CALL_FAILED",
            "outcome_reason": "Busy Here",
            "outcome_status": 486,
            "final_status_code": 486,
            "call_result": "REJECTED",
            "time_to_100_ms": 1.0,
            "post_dial_delay_ms": None,
        }
    row: Row = {
        "endpoint_id": endpoint_id,
        "phase": "CLOSED",
        "outcome": "SUCCESS",
        "outcome_status": 200,
        "final_status_code": 200,
        "call_result": "SUCCESS",
        "call_duration_s": float(seconds),
    }
    if endpoint_id == 0:
        row |= {
            "outcome_reason": "ended by local BYE",
            "time_to_100_ms": 1.0,
            "time_to_180_ms": 40.0,
            "post_dial_delay_ms": 40.0,
            "setup_time_ms": 120.0,
            "disconnect_delay_ms": 5.0,
        }
    else:
        row |= {"outcome_reason": "ended by remote BYE", "disconnect_delay_ms": 0.1}
    return row


def seed_call_run(
    store: Store,
    run_id: str,
    *,
    mos: float = 4.3,
    loss: float = 0.0,
    seconds: int = 4,
    create: bool = True,
    finish: bool = True,
) -> str:
    """Caller 0 calls callee 1 (answered, ``seconds`` of media at ``mos``/``loss``, caller
    hangs up); caller 2 calls callee 3 and gets 486 Busy Here. Every endpoint registers
    through a 401 challenge. ``create`` False: the run row exists already (the platform made
    it); ``finish`` False leaves the run RUNNING."""
    if create:
        store.create_run(run_id, "calls", {"name": "calls"}, 4, 0.9)
        store.set_status(run_id, "RUNNING")
    first = SimpleNamespace(
        endpoints=[_placement(e) for e in range(4)],
        events=[
            {
                "endpoint_id": e,
                "at": T0 + 0.1,
                "kind": "phase",
                "phase": "REGISTERED",
                "previous": "INITIALIZING",
            }
            for e in range(4)
        ],
        metrics=[],
        trace=[r for e in range(4) for r in _registration(e, T0 + 0.05 * e)]
        + _answered_call(0, T0 + 1, seconds)
        + _rejected_call(2, T0 + 1),
        health=[
            {
                "shard_id": 0,
                "ts": T0,
                "endpoints_active": 4,
                "loop_lag_ms_max": 1.0,
                "loop_lag_ms_p99": 0.5,
                "send_lateness_ms_p99": 0.2,
            }
        ],
    )
    store.append(shard_batch(run_id, 0, 0, first))  # type: ignore[arg-type]
    for second in range(1, seconds + 1):
        rows = SimpleNamespace(
            endpoints=[],
            events=[],
            trace=[],
            health=[],
            metrics=[r for e in (0, 1) for r in _metrics(e, second, mos, loss)],
        )
        store.append(shard_batch(run_id, 0, second, rows))  # type: ignore[arg-type]
    if finish:
        last = SimpleNamespace(
            endpoints=[_final(e, seconds) for e in range(4)],
            events=[
                {
                    "endpoint_id": e,
                    "at": T0 + 3 + seconds,
                    "kind": "outcome",
                    "outcome": _final(e, seconds)["outcome"],
                }
                for e in range(4)
            ],
            metrics=[],
            trace=[],
            health=[],
        )
        store.append(shard_batch(run_id, 0, seconds + 1, last))  # type: ignore[arg-type]
        store.set_status(run_id, "COMPLETED", "all calls ended")
    return run_id


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "trace.duckdb") as opened:
        seed_call_run(opened, "r1")
        yield opened


def test_the_trace_is_in_order_with_methods_and_statuses(store: Store) -> None:
    trace = analysis.sip_trace(store.cursor(), "r1", 0)
    assert list(trace.columns) == list(analysis.TRACE_COLUMNS)
    assert list(trace["seq"]) == list(range(11))
    assert list(trace["first_line"].str.split(" ").str[:2].str.join(" "))[:6] == [
        "REGISTER sip:127.0.0.1",
        "SIP/2.0 401",
        "REGISTER sip:127.0.0.1",
        "SIP/2.0 200",
        "INVITE sip:u1@127.0.0.1",
        "SIP/2.0 100",
    ]
    assert list(trace["method"]) == ["REGISTER"] * 4 + ["INVITE"] * 4 + ["ACK", "BYE", "BYE"]
    assert trace["status_code"].tolist()[:4] == [pd.NA, 401, pd.NA, 200]
    assert trace.loc[0, "t_ms"] == 0.0
    assert trace.loc[3, "t_ms"] == pytest.approx(10.0)
    assert set(trace["kind"]) == {"request", "response"}
    assert trace.loc[4, "call_id"] == "call-0" and trace.loc[4, "cseq"] == "1 INVITE"
    assert trace.loc[4, "message"].startswith("INVITE sip:u1@127.0.0.1 SIP/2.0\r\nVia:")


def test_an_unknown_run_or_endpoint_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError, match="no run 'nope'"):
        analysis.sip_trace(store.cursor(), "nope", 0)
    with pytest.raises(KeyError, match="run 'r1' has no endpoint 9"):
        analysis.sip_trace(store.cursor(), "r1", 9)


def test_the_ladder_has_the_endpoint_and_its_peer_and_one_arrow_per_message(
    store: Store,
) -> None:
    trace = analysis.sip_trace(store.cursor(), "r1", 2)
    diagram = analysis.ladder(trace, "u2")
    assert diagram.participants == ("u2", PROXY)
    assert len(diagram) == 8
    arrows = diagram.arrows
    assert list(arrows.columns) == list(analysis.LADDER_COLUMNS)
    assert list(arrows["label"])[4:] == ["INVITE", "100 Trying", "486 Busy Here", "ACK"]
    assert list(zip(arrows["source"], arrows["target"], strict=True))[4:6] == [
        ("u2", PROXY),
        (PROXY, "u2"),
    ]
    assert list(arrows["source_index"])[4:6] == [0, 1]


def test_the_ladder_of_api_records_matches_the_one_from_the_database(store: Store) -> None:
    """Over the API the trace arrives as JSON records: same ladder."""
    trace = analysis.sip_trace(store.cursor(), "r1", 0)
    records = pd.DataFrame.from_records(
        json.loads(trace.to_json(orient="records", date_format="iso"))
    )
    assert analysis.ladder(records).arrows.equals(analysis.ladder(trace).arrows)


def test_an_empty_trace_gives_an_empty_ladder() -> None:
    diagram = analysis.ladder(pd.DataFrame(columns=list(analysis.TRACE_COLUMNS)), "e")
    assert diagram.participants == ("e",) and diagram.arrows.empty


def test_a_message_without_a_peer_goes_to_an_unknown_peer() -> None:
    frame = pd.DataFrame.from_records(
        [
            {
                "seq": 0,
                "t_ms": 0.0,
                "direction": "in",
                "peer": None,
                "kind": "request",
                "method": "OPTIONS",
                "status_code": None,
                "first_line": "OPTIONS sip:x SIP/2.0",
                "call_id": "c",
                "cseq": "1 OPTIONS",
            },
        ]
    )
    diagram = analysis.ladder(frame, "e")
    assert diagram.participants == ("e", "(unknown peer)")
    assert diagram.arrows.loc[0, "source"] == "(unknown peer)"


def test_one_endpoints_series_keeps_send_and_receive_apart(store: Store) -> None:
    series = analysis.endpoint_timeseries(store.cursor(), "r1", 0, ["mos", "jitter_ms"])
    assert len(series) == 8
    assert list(series["direction"][:2]) == ["receive", "send"]
    assert set(series.loc[series["direction"] == "send", "mos"]) == {4.4}
    assert list(series.loc[series["direction"] == "receive", "run_second"]) == [3, 4, 5, 6]
    only = analysis.endpoint_timeseries(store.cursor(), "r1", 0, ["mos"], direction="receive")
    assert len(only) == 4
    with pytest.raises(ValueError, match="not per-second metrics"):
        analysis.endpoint_timeseries(store.cursor(), "r1", 0, ["nope"])
    assert analysis.endpoint_timeseries(store.cursor(), "r1", 2, ["mos"]).empty


def test_the_r_budget_adds_up_to_r(store: Store) -> None:
    budget = analysis.r_budget(store.cursor(), "r1", 0)
    assert list(budget["term"]) == [
        "r_ro",
        "r_simultaneous_is",
        "r_delay_id",
        "r_codec_ie",
        "r_loss_ie",
        "r_factor",
    ]
    parts = budget["contribution"].iloc[:-1].sum()
    assert math.isclose(parts, budget["contribution"].iloc[-1])
    assert set(budget["seconds"]) == {4} and set(budget["r_scale_max"]) == {100.0}
    none = analysis.r_budget(store.cursor(), "r1", 2)
    assert none["value"].isna().all() and set(none["seconds"]) == {0}
