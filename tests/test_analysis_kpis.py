"""RFC 6076 KPIs of a run (``analysis.kpis``): each ratio and delay worked out by hand on a
seeded run, and the status codes each ratio counts."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import analysis
from callmeter.store import Store, shard_batch
from tests.test_analysis_trace import seed_call_run


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "kpis.duckdb") as opened:
        seed_call_run(opened, "r1", seconds=4)
        yield opened


def _by_kpi(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    frame = analysis.kpis(store.cursor(), run_id)
    return {row["kpi"]: row for row in frame.to_dict("records")}


def test_the_kpis_of_one_answered_and_one_busy_call(store: Store) -> None:
    frame = analysis.kpis(store.cursor(), "r1")
    assert list(frame.columns) == list(analysis.KPI_COLUMNS)
    assert list(frame["kpi"]) == list(analysis.KPI_NAMES)
    kpi = {row["kpi"]: row for row in frame.to_dict("records")}
    # Two INVITEs, none redirected: one 200, one 486.
    assert (kpi["SER"]["numerator"], kpi["SER"]["denominator"], kpi["SER"]["value"]) == (1, 2, 50.0)
    assert kpi["SEER"]["value"] == 100.0  # 486 Busy Here: the callee was reached and decided
    assert kpi["ISA"]["value"] == 0.0
    assert kpi["SCR"]["value"] == 50.0
    # Every endpoint: REGISTER at 0, 401 at 2 ms, REGISTER again, 200 at 10 ms.
    assert kpi["RRD"]["count"] == 4 and kpi["RRD"]["mean"] == pytest.approx(10.0)
    assert kpi["SRD"]["count"] == 1 and kpi["SRD"]["value"] == pytest.approx(40.0)  # the 180
    assert kpi["SRD_FAILED"]["count"] == 1 and kpi["SRD_FAILED"]["value"] == pytest.approx(30.0)
    assert kpi["SDD"]["count"] == 1 and kpi["SDD"]["value"] == 5.0  # the caller sent the BYE
    assert kpi["SDT"]["count"] == 1 and kpi["SDT"]["value"] == 4.0
    assert kpi["SDT"]["unit"] == "s" and kpi["SER"]["unit"] == "%"
    assert kpi["SER"]["section"] == "4.6" and kpi["RRD"]["section"] == "4.1"


def test_an_unknown_run_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError, match="no run 'nope'"):
        analysis.kpis(store.cursor(), "nope")


def test_a_run_without_calls_has_no_ratios(store: Store) -> None:
    store.create_run("empty", "calls", {"name": "calls"}, 0, 0.9)
    kpi = _by_kpi(store, "empty")
    assert math.isnan(kpi["SER"]["value"]) and kpi["SER"]["denominator"] == 0
    assert kpi["SDT"]["count"] == 0 and math.isnan(kpi["SDT"]["value"])


def _callers(store: Store, run_id: str, finals: list[tuple[str, int | None]]) -> None:
    """One caller per (outcome, final status), nothing else."""
    store.create_run(run_id, "codes", {"name": "codes"}, len(finals), 0.9)
    rows = SimpleNamespace(
        endpoints=[
            {
                "endpoint_id": i,
                "group_name": "callers",
                "role": "caller",
                "phase": "CLOSED",
                "outcome": outcome,
                "final_status_code": status,
                "setup_time_ms": 100.0 if status == 200 else None,
            }
            for i, (outcome, status) in enumerate(finals)
        ],
        events=[],
        metrics=[],
        trace=[],
        health=[],
    )
    store.append(shard_batch(run_id, 0, 0, rows))  # type: ignore[arg-type]


def test_each_ratio_counts_the_status_codes_rfc_6076_names(store: Store) -> None:
    _callers(
        store,
        "codes",
        [
            ("SUCCESS", 200),
            ("TEARDOWN_ERROR", 200),
            ("CALL_FAILED", 302),
            ("CALL_FAILED", 486),
            ("CALL_FAILED", 603),
            ("CALL_FAILED", 503),
            ("TIMEOUT", 408),
            ("TIMEOUT", None),
            ("CALL_FAILED", 404),
            ("NEGOTIATION_FAILED", 488),
            ("REGISTRATION_FAILED", None),
            ("OSERROR", None),  # no INVITE of the system under test
        ],
    )
    kpi = _by_kpi(store, "codes")
    # 10 INVITEs, one redirected (302): SER over 9.
    assert (kpi["SER"]["numerator"], kpi["SER"]["denominator"]) == (2, 9)
    assert (kpi["SEER"]["numerator"], kpi["SEER"]["denominator"]) == (4, 9)  # 200 200 486 603
    assert (kpi["ISA"]["numerator"], kpi["ISA"]["denominator"]) == (3, 10)  # 503 408 timeout
    assert (kpi["SCR"]["numerator"], kpi["SCR"]["denominator"]) == (1, 10)
    assert kpi["ISA"]["value"] == pytest.approx(30.0)
    assert kpi["SRD"]["count"] == 2  # the two answered calls (no 18x: the 2xx counts)
    assert kpi["RRD"]["count"] == 0  # nothing traced, no registration_time_ms


def test_kpis_are_exported_from_analysis() -> None:
    assert {"kpis", "compare", "sip_trace", "ladder", "r_budget"} <= set(analysis.__all__)
    assert all(hasattr(analysis, name) for name in analysis.__all__)
