"""The notebooks run top to bottom against a results database (DESIGN.md: notebooks are
executed in tests).

``seed_demo_run`` writes a synthetic but realistic run through the same path a run takes
(shard rows -> ``shard_batch`` -> ``Store.append``, once per second per shard). It is the one
place to swap for a real small run.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from callmeter.store import Store, shard_batch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "explore_run.ipynb"
COMPARE_NOTEBOOK = ROOT / "notebooks" / "compare_runs.ipynb"
T0 = 1_700_000_000.0
Row = dict[str, Any]


def _metric_rows(endpoint_id: int, second: int, rng: random.Random, lossy: bool) -> list[Row]:
    loss = rng.uniform(2.0, 6.0) if lossy else rng.uniform(0.0, 0.5)
    at = T0 + 3 + second
    base = {
        "endpoint_id": endpoint_id,
        "ts": at,
        "t_s": at - T0,
        "second": second,
        "interval_s": 1.0,
        "packets": 50,
        "payload_bytes": 8000,
    }
    receive = {
        **base,
        "direction": "receive",
        "packets_expected": 50,
        "packets_lost": round(loss / 2),
        "loss_percent": loss,
        "jitter_ms": rng.uniform(0.5, 3.0),
        "bitrate_bps": 64000.0,
        "mos": 4.4 - loss * 0.15 - rng.uniform(0.0, 0.1),
    }
    send = {
        **base,
        "direction": "send",
        "rtt_ms": rng.uniform(1.0, 4.0),
        "mos": 4.3,
        "jitter_ms": rng.uniform(0.5, 2.0),
        "loss_percent": 0.0,
        "send_lateness_p99_ms": rng.uniform(0.1, 1.0),
    }
    return [receive, send]


def _placement(endpoint_id: int, shard_id: int) -> Row:
    caller = endpoint_id < 6
    return {
        "endpoint_id": endpoint_id,
        "group_name": "callers" if caller else "callees",
        "username": f"user{endpoint_id}",
        "role": "caller" if caller else "callee",
        "callee": f"sip:user{endpoint_id + 6}@127.0.0.1" if caller else None,
        "shard_id": shard_id,
        "node_id": "node-a",
        "host": "127.0.0.1",
        "pid": 4000 + shard_id,
        "phase": "INITIALIZING",
    }


def _final(endpoint_id: int, seconds: int, rng: random.Random) -> tuple[Row, Row]:
    caller, rejected, silent = endpoint_id < 6, endpoint_id == 5, endpoint_id in (4, 10)
    outcome = "CALL_FAILED" if rejected else "COMPLETED_WITH_WARNINGS" if silent else "SUCCESS"
    status = 486 if rejected else 200
    row = {
        "endpoint_id": endpoint_id,
        "phase": "CLOSED",
        "outcome": outcome,
        "outcome_reason": "Busy Here" if rejected else "ended by caller BYE",
        "outcome_status": status,
        "final_status_code": status,
        "call_result": "REJECTED" if rejected else "SUCCESS",
        "call_duration_s": None if rejected else float(seconds),
    }
    if caller:
        row |= {
            "time_to_100_ms": rng.uniform(1, 3),
            "post_dial_delay_ms": rng.uniform(20, 60),
            "setup_time_ms": None if rejected else rng.uniform(80, 400),
        }
    event = {
        "endpoint_id": endpoint_id,
        "at": T0 + 4 + seconds,
        "kind": "outcome",
        "outcome": outcome,
        "reason": row["outcome_reason"],
        "status": status,
    }
    return row, event


def _health(shard_id: int, seq: int, rng: random.Random) -> Row:
    return {
        "shard_id": shard_id,
        "ts": T0 + seq,
        "endpoints_active": 6,
        "loop_lag_ms_max": rng.uniform(1, 8),
        "loop_lag_ms_p99": rng.uniform(1, 5),
        "send_lateness_ms_p99": rng.uniform(0.2, 2),
        "send_lateness_ms_max": 3.0,
        "cpu_percent": rng.uniform(5, 20),
        "node_id": "node-a",
        "host": "127.0.0.1",
        "pid": 4000 + shard_id,
    }


def seed_demo_run(store: Store, run_id: str = "demo-run", seconds: int = 10) -> str:
    """A 12-endpoint run of two groups on two shards: callers 0..5 call callees 6..11; caller 5
    is rejected (486), callers 4 and callee 10 get no media (COMPLETED_WITH_WARNINGS), callee
    11 sees 2-6 % loss. One batch per shard and second, as the driver collects them."""
    rng = random.Random(run_id)
    store.create_run(run_id, "demo", '{"name": "demo"}', 12, 0.9)
    store.set_status(run_id, "RUNNING")
    for shard_id, ids in ((0, range(0, 6)), (1, range(6, 12))):
        for seq in range(seconds + 2):
            rows = SimpleNamespace(endpoints=[], events=[], metrics=[], trace=[], health=[])
            for e in ids:
                if seq == 0:
                    rows.endpoints.append(_placement(e, shard_id))
                    rows.events.append(
                        {
                            "endpoint_id": e,
                            "at": T0 + 1,
                            "kind": "phase",
                            "phase": "REGISTERED",
                            "previous": "INITIALIZING",
                        }
                    )
                elif seq <= seconds and e not in (4, 5, 10):
                    rows.metrics.extend(_metric_rows(e, seq, rng, lossy=e == 11))
                elif seq == seconds + 1:
                    row, event = _final(e, seconds, rng)
                    rows.endpoints.append(row)
                    rows.events.append(event)
            rows.health.append(_health(shard_id, seq, rng))
            store.append(shard_batch(run_id, shard_id, seq, rows))
    store.set_status(run_id, "COMPLETED")
    return run_id


@pytest.fixture
def results_db(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "results.duckdb"
    with Store(path) as store:
        older = seed_demo_run(store, "older-run", seconds=3)
        seed_demo_run(store, "newer-run")
    return path, older


def test_the_seeded_run_reads_as_designed(results_db: tuple[Path, str]) -> None:
    import analysis

    path, _ = results_db
    with Store.open_readonly(path) as store:
        summary = analysis.run_summary(store.connection, "newer-run")
    assert summary["success_rate"] == pytest.approx(5 / 6)
    assert summary["outcomes"] == {"SUCCESS": 9, "COMPLETED_WITH_WARNINGS": 2, "CALL_FAILED": 1}
    assert 3.0 < summary["mos_avg"] < 4.4 and summary["generator"]["overloaded"] is False


def test_explore_run_executes_against_a_seeded_database(
    results_db: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, older = results_db
    monkeypatch.setenv("CALLMETER_DB", str(path))
    monkeypatch.setenv("CALLMETER_RUN_ID", older)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    texts = [
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    ]
    assert any(f"run {older} (2 runs in {path})" in text for text in texts)
    assert any("'success_rate': 0.8" in text for text in texts)  # the older run's summary
    figures = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "application/vnd.plotly.v1+json" in output.get("data", {})
    ]
    assert len(figures) == 3  # MOS, jitter and loss per second


def _execute(path: Path) -> tuple[list[str], int]:
    """Run a notebook top to bottom; its text outputs and how many plotly figures it drew."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    outputs = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    ]
    texts = [o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs]
    figures = sum("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
    return texts, figures


def test_compare_runs_executes_against_a_seeded_database(
    results_db: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, older = results_db
    monkeypatch.setenv("CALLMETER_DB", str(path))
    monkeypatch.delenv("CALLMETER_RUN_A", raising=False)
    monkeypatch.delenv("CALLMETER_RUN_B", raising=False)
    texts, figures = _execute(COMPARE_NOTEBOOK)
    assert any(f"compare B = newer-run against A = {older} (2 runs in {path})" in t for t in texts)
    # Same population, different seeds: MOS is within noise, and every row says so.
    assert any("mos  receive: A" in t and "within noise" in t for t in texts)
    assert any("SER" in t and "Session Establishment Ratio" in t for t in texts)
    assert figures == 2  # MOS and jitter per second, both runs


def test_explore_run_executes_against_a_real_small_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notebook on what a real run stores: a planned shard (real SIP with digest auth
    through the built-in registrar, RTP both ways) collected once a second into the store."""
    from callmeter.transport import run
    from tests.test_shard import run_shard, small_test

    test = small_test(call_duration_s=2)
    _, collected = run(run_shard(test))
    path = tmp_path / "real.duckdb"
    with Store(path) as store:
        store.create_run("real-run", test.name, test.model_dump_json(), 4, 0.99)
        store.set_status("real-run", "RUNNING")
        for seq, rows in enumerate(collected):
            store.append(shard_batch("real-run", rows.shard_id, seq, rows))
        store.set_status("real-run", "COMPLETED")
    monkeypatch.setenv("CALLMETER_DB", str(path))
    monkeypatch.delenv("CALLMETER_RUN_ID", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    texts = [
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    ]
    assert any("run real-run (1 runs in" in text for text in texts)
    assert any("'success_rate': 1.0" in text for text in texts)
