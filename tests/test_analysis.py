"""analysis: every query on a small run whose answers are worked out by hand below."""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

import analysis
from callmeter.store import (
    ShardBatch,
    Store,
    endpoints_table,
    events_table,
    health_table,
    metrics_table,
)
from tests.test_sans_io import imported_modules

RUN = "run-a"
T0 = 1_700_000_000.0
# Group "a": callers. 1, 2, 3 succeeded (2 with warnings), 4 was rejected: 3 of 4 attempted
# calls succeeded. 7 never registered and 8 hit an OS error: no attempt. 9 is still going.
CALLERS = {
    1: "SUCCESS",
    2: "COMPLETED_WITH_WARNINGS",
    3: "SUCCESS",
    4: "CALL_FAILED",
    7: "REGISTRATION_FAILED",
    8: "OSERROR",
    9: None,
}
# Group "b": callees (their setup time is not a caller's: never in the percentiles).
CALLEES = {5: "SUCCESS", 6: "TIMEOUT"}
SETUP_MS = {1: 100.0, 2: 200.0, 3: 300.0, 5: 999.0}
PDD_MS = {1: 10.0, 2: 20.0, 3: 30.0, 4: 40.0}
# Receive MOS per second (None: no MOS that second); send rows carry MOS 1.0 (never counted).
MOS = {1: [4.0, 4.2], 2: [3.0, None], 3: [4.4, 4.4], 5: [1.0, 2.0]}


def seed(store: Store, run_id: str = RUN) -> str:
    store.create_run(
        run_id,
        "hand-made",
        '{"name": "hand-made"}',
        9,
        0.9,
        organization_id="org-1",
        project_id="prj-1",
    )
    store.set_status(run_id, "RUNNING")
    placement = [
        {
            "endpoint_id": e,
            "group_name": "a" if e in CALLERS else "b",
            "role": "caller" if e in CALLERS else "callee",
            "username": f"u{e}",
            "shard_id": 0 if e < 5 else 1,
            "node_id": "node-1",
            "host": "h",
            "pid": 100 + e,
            "phase": "INITIALIZING",
        }
        for e in [*CALLERS, *CALLEES]
    ]
    final = [
        {
            "endpoint_id": e,
            "phase": "CLOSED",
            "outcome": outcome,
            "setup_time_ms": SETUP_MS.get(e),
            "post_dial_delay_ms": PDD_MS.get(e),
        }
        for e, outcome in {**CALLERS, **CALLEES}.items()
        if outcome
    ]
    metrics = []
    for e, values in MOS.items():
        for second, mos in enumerate(values, start=1):
            base = {
                "endpoint_id": e,
                "ts": T0 + second,
                "t_s": second + 0.5,
                "second": second,
                "interval_s": 1.0,
            }
            metrics.append(
                {
                    **base,
                    "direction": "receive",
                    "mos": mos,
                    "jitter_ms": float(e),
                    "loss_percent": float(second),
                    "packets": 50,
                    "packets_lost": second - 1,
                }
            )
            metrics.append(
                {**base, "direction": "send", "mos": 1.0, "rtt_ms": 10.0 * e, "packets": 49}
            )
    health = [
        {
            "shard_id": shard,
            "ts": T0 + second,
            "endpoints_active": 4 - second,
            "loop_lag_ms_max": 10.0 + 100 * shard + second,
            "loop_lag_ms_p99": 5.0 if shard == 0 else 80.0,
            "send_lateness_ms_p99": 1.0 + shard,
            "send_lateness_ms_max": 2.0,
            "cpu_percent": 30.0 + second,
            "node_id": "node-1",
            "host": "h",
            "pid": 10 + shard,
        }
        for shard in (0, 1)
        for second in (1, 2)
    ]
    events = [
        {
            "endpoint_id": 1,
            "at": T0,
            "kind": "phase",
            "phase": "REGISTERED",
            "previous": "INITIALIZING",
        }
    ]
    store.append(ShardBatch(run_id, 0, 0, endpoints=endpoints_table(run_id, placement)))
    store.append(
        ShardBatch(
            run_id,
            0,
            1,
            metrics=metrics_table(run_id, metrics),
            endpoints=endpoints_table(run_id, final),
            events=events_table(run_id, events),
            health=health_table(run_id, health),
        )
    )
    store.set_status(run_id, "COMPLETED")
    return run_id


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    with Store(":memory:") as store:
        seed(store)
        store.create_run("run-empty", "nothing yet", "{}", 5, 0.5, organization_id="org-2")
        yield store.connection


def test_runs_lists_newest_first_and_filters_by_bound_values(
    con: duckdb.DuckDBPyConnection,
) -> None:
    listed = analysis.runs(con)
    assert list(listed["run_id"]) == ["run-empty", RUN]
    assert list(analysis.runs(con, organization_id="org-1")["run_id"]) == [RUN]
    assert list(analysis.runs(con, status="COMPLETED", limit=5)["run_id"]) == [RUN]
    assert analysis.runs(con, organization_id="' OR 1=1 --").empty
    assert listed.set_index("run_id").loc[RUN, "duration_s"] >= 0


def test_run_overview_counts_calls_by_the_documented_definition(
    con: duckdb.DuckDBPyConnection,
) -> None:
    row = analysis.run_overview(con, RUN).iloc[0]
    assert (row["status"], row["endpoints"], row["endpoints_reported"]) == ("COMPLETED", 9, 9)
    assert (row["callers"], row["calls_attempted"], row["calls_successful"]) == (7, 4, 3)
    assert row["success_rate"] == 0.75
    outcome_counts = {
        o: int(row[o])
        for o in (
            "SUCCESS",
            "COMPLETED_WITH_WARNINGS",
            "CALL_FAILED",
            "REGISTRATION_FAILED",
            "OSERROR",
            "TIMEOUT",
            "NEGOTIATION_FAILED",
            "TEARDOWN_ERROR",
            "UNDECIDED",
        )
    }
    assert outcome_counts == {
        "SUCCESS": 3,
        "COMPLETED_WITH_WARNINGS": 1,
        "CALL_FAILED": 1,
        "REGISTRATION_FAILED": 1,
        "OSERROR": 1,
        "TIMEOUT": 1,
        "NEGOTIATION_FAILED": 0,
        "TEARDOWN_ERROR": 0,
        "UNDECIDED": 1,
    }
    # receive MOS 4.0 4.2 3.0 4.4 4.4 1.0 2.0: mean 23/7; p5 at rank 0.3 between 1.0 and 2.0
    assert row["mos_avg"] == pytest.approx(23.0 / 7)
    assert row["mos_p5"] == pytest.approx(1.3)
    assert row["jitter_ms_avg"] == pytest.approx((1 + 1 + 2 + 2 + 3 + 3 + 5 + 5) / 8)
    assert row["loss_percent_avg"] == pytest.approx(1.5)
    assert row["rtt_ms_avg"] == pytest.approx((10 + 20 + 30 + 50) / 4)  # send rows, per second
    # callers' setup times 100 200 300 (callee 5's 999 excluded); PDD 10 20 30 40
    setup = [row[f"setup_time_ms_p{p}"] for p in (50, 95, 99)]
    assert setup == pytest.approx([200.0, 290.0, 298.0])
    pdd = [row[f"post_dial_delay_ms_p{p}"] for p in (50, 95, 99)]
    assert pdd == pytest.approx([25.0, 38.5, 39.7])


def test_run_overview_of_a_run_without_endpoints_and_of_no_run(
    con: duckdb.DuckDBPyConnection,
) -> None:
    row = analysis.run_overview(con, "run-empty").iloc[0]
    assert row["status"] == "PENDING" and row["endpoints"] == 5
    assert pd.isna(row["success_rate"]) and pd.isna(row["mos_avg"])
    with pytest.raises(KeyError, match="no run 'missing'"):
        analysis.run_overview(con, "missing")


def test_outcomes_lists_every_outcome_and_the_undecided(con: duckdb.DuckDBPyConnection) -> None:
    frame = analysis.outcomes(con, RUN)
    assert list(frame["outcome"]) == [
        "SUCCESS",
        "COMPLETED_WITH_WARNINGS",
        "REGISTRATION_FAILED",
        "CALL_FAILED",
        "NEGOTIATION_FAILED",
        "TIMEOUT",
        "OSERROR",
        "TEARDOWN_ERROR",
        "UNDECIDED",
    ]
    assert list(frame["endpoints"]) == [3, 1, 1, 1, 0, 1, 1, 0, 1]
    assert list(frame["callers"]) == [2, 1, 1, 1, 0, 0, 1, 0, 1]
    assert frame["share"].sum() == pytest.approx(1.0)
    assert frame.iloc[0]["share"] == pytest.approx(3 / 9)
    assert "UNDECIDED" not in set(analysis.outcomes(con, "run-empty")["outcome"])


def test_per_group_splits_calls_and_quality(con: duckdb.DuckDBPyConnection) -> None:
    frame = analysis.per_group(con, RUN).set_index("group_name")
    assert list(frame.index) == ["a", "b"]
    a, b = frame.loc["a"], frame.loc["b"]
    assert (a["calls_attempted"], a["calls_successful"], a["success_rate"]) == (4, 3, 0.75)
    assert (b["callers"], b["calls_attempted"]) == (0, 0) and pd.isna(b["success_rate"])
    assert a["mos_avg"] == pytest.approx((4.0 + 4.2 + 3.0 + 4.4 + 4.4) / 5)
    assert b["mos_avg"] == pytest.approx(1.5) and b["TIMEOUT"] == 1
    assert a["setup_time_ms_p50"] == 200.0 and pd.isna(b["setup_time_ms_p50"])


def test_per_endpoint_joins_media_to_each_endpoint(con: duckdb.DuckDBPyConnection) -> None:
    frame = analysis.per_endpoint(con, RUN).set_index("endpoint_id")
    assert list(frame.index) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    one = frame.loc[1]
    assert (one["seconds"], one["mos_min"], one["packets_sent"], one["packets_received"]) == (
        2,
        4.0,
        98,
        100,
    )
    assert one["mos_avg"] == pytest.approx(4.1) and one["packets_lost"] == 1
    assert (one["setup_time_ms"], one["outcome"], one["pid"] if "pid" in frame else 101) == (
        100.0,
        "SUCCESS",
        101,
    )
    assert frame.loc[4, "seconds"] == 0 and pd.isna(frame.loc[4, "mos_avg"])
    assert pd.isna(frame.loc[9, "outcome"])


def test_timeseries_per_second_group_and_direction(con: duckdb.DuckDBPyConnection) -> None:
    frame = analysis.timeseries(con, RUN, ["mos", "jitter_ms"], direction="receive")
    got = {(r.run_second, r.group_name): (r.mos, r.jitter_ms) for r in frame.itertuples()}
    assert got == {
        (1, "a"): (pytest.approx(3.8), 2.0),
        (2, "a"): (pytest.approx(4.3), 2.0),
        (1, "b"): (1.0, 5.0),
        (2, "b"): (2.0, 5.0),
    }
    both = analysis.timeseries(con, RUN, ["mos"])
    assert set(both["direction"]) == {"send", "receive"} and len(both) == 8
    run = analysis.timeseries(con, RUN, ["packets"], by="run", direction="send", agg="sum")
    assert list(run.columns) == ["run_second", "direction", "packets"]
    assert list(run["packets"]) == [4 * 49, 4 * 49]
    per_endpoint = analysis.timeseries(con, RUN, ["mos"], by="endpoint", direction="receive")
    assert len(per_endpoint) == 8 and "endpoint_id" in per_endpoint


@pytest.mark.parametrize(
    ("metrics", "direction", "message"),
    [
        (["mos", "m0s"], None, "not per-second metrics of the catalog: m0s"),
        (["setup_time_ms"], None, "not per-second metrics of the catalog: setup_time_ms"),
        (["packets_expected"], "send", "no send values for: packets_expected"),
        (["mos"], "up", "direction must be 'send' or 'receive', not 'up'"),
        (['mos") FROM runs; --'], None, "not per-second metrics of the catalog"),
    ],
)
def test_timeseries_refuses_what_is_not_a_catalog_metric(
    con: duckdb.DuckDBPyConnection, metrics: list[str], direction: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        analysis.timeseries(con, RUN, metrics, direction=direction)


def test_percentiles_per_direction_and_of_call_values(con: duckdb.DuckDBPyConnection) -> None:
    mos = analysis.percentiles(con, RUN, "mos").set_index("direction")
    assert list(mos.index) == ["receive", "send"]
    receive = mos.loc["receive"]
    assert (receive["count"], receive["min"], receive["p50"], receive["max"]) == (7, 1.0, 4.0, 4.4)
    assert receive["p5"] == pytest.approx(1.3)
    setup = analysis.percentiles(con, RUN, "setup_time_ms", role="caller").iloc[0]
    assert (setup["direction"], setup["count"], setup["p50"], setup["max"]) == (
        "call",
        3,
        200.0,
        300.0,
    )
    assert analysis.percentiles(con, RUN, "setup_time_ms").iloc[0]["max"] == 999.0
    with pytest.raises(ValueError, match="'call_result' is not a numeric metric"):
        analysis.percentiles(con, RUN, "call_result")


def test_worst_endpoints_ranks_low_mos_and_high_jitter_first(
    con: duckdb.DuckDBPyConnection,
) -> None:
    by_mos = analysis.worst_endpoints(con, RUN, n=3)
    assert list(by_mos["endpoint_id"]) == [5, 2, 1]
    assert list(by_mos["value"]) == pytest.approx([1.5, 3.0, 4.1])
    assert set(by_mos["direction"]) == {"receive"}
    by_jitter = analysis.worst_endpoints(con, RUN, n=2, by="jitter_ms")
    assert list(by_jitter["endpoint_id"]) == [5, 3]
    assert analysis.worst_endpoints(con, RUN, by="rtt_ms").empty  # receive: no RFC 3611 RTT
    by_rtt = analysis.worst_endpoints(con, RUN, n=1, by="rtt_ms", direction="send")
    assert (by_rtt.iloc[0]["endpoint_id"], by_rtt.iloc[0]["value"]) == (5, 50.0)
    by_setup = analysis.worst_endpoints(con, RUN, n=10, by="setup_time_ms")
    assert list(by_setup["endpoint_id"]) == [5, 3, 2, 1]  # unranked: no setup time
    with pytest.raises(ValueError, match="'nope' is not a numeric metric"):
        analysis.worst_endpoints(con, RUN, by="nope")


def test_generator_health_flags_the_overloaded_shard(con: duckdb.DuckDBPyConnection) -> None:
    frame = analysis.generator_health(con, RUN).set_index("shard_id")
    assert list(frame["generator_overloaded"]) == [False, True]  # loop lag p99 80 ms > 50
    assert list(frame["loop_lag_ms_max"]) == [12.0, 112.0]
    assert list(frame["send_lateness_ms_p99"]) == [1.0, 2.0]
    assert list(frame["endpoints_active_max"]) == [3, 3]
    assert frame.loc[0, "cpu_percent_avg"] == 31.5 and frame.loc[1, "pid"] == 11
    assert analysis.LOOP_LAG_P99_LIMIT_MS == 50.0 and analysis.LATENESS_P99_LIMIT_MS == 20.0


def test_run_summary_is_json_ready_with_the_agreed_keys(con: duckdb.DuckDBPyConnection) -> None:
    summary = analysis.run_summary(con, RUN)
    json.dumps(summary, allow_nan=False)
    assert (summary["run_id"], summary["status"], summary["endpoints"]) == (RUN, "COMPLETED", 9)
    assert summary["success_rate"] == 0.75
    assert summary["mos_avg"] == pytest.approx(23.0 / 7) and summary["mos_p5"] == pytest.approx(1.3)
    assert summary["loss_pct_avg"] == 1.5 and summary["rtt_ms_avg"] == 27.5
    assert [summary[f"setup_ms_p{p}"] for p in (50, 95, 99)] == pytest.approx([200, 290, 298])
    assert [summary[f"pdd_ms_p{p}"] for p in (50, 95, 99)] == pytest.approx([25, 38.5, 39.7])
    assert summary["outcomes"] == {
        "SUCCESS": 3,
        "COMPLETED_WITH_WARNINGS": 1,
        "REGISTRATION_FAILED": 1,
        "CALL_FAILED": 1,
        "TIMEOUT": 1,
        "OSERROR": 1,
        "UNDECIDED": 1,
    }
    assert summary["generator"] == {
        "overloaded": True,
        "loop_lag_ms_max": 112.0,
        "lateness_ms_p99": 2.0,
        "shards": 2,
        "overloaded_shards": [1],
    }
    assert isinstance(summary["started_at"], str)


def test_run_summary_of_an_empty_run_has_none_not_nan(con: duckdb.DuckDBPyConnection) -> None:
    summary = analysis.run_summary(con, "run-empty")
    json.dumps(summary, allow_nan=False)
    assert summary["success_rate"] is None and summary["mos_avg"] is None
    assert summary["outcomes"] == {}
    assert summary["generator"] == {
        "overloaded": False,
        "loop_lag_ms_max": None,
        "lateness_ms_p99": None,
        "shards": 0,
        "overloaded_shards": [],
    }


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_the_rows_of_one_run(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, fmt: Any
) -> None:
    path = tmp_path / f"metrics.{fmt}"
    assert analysis.export(con, RUN, "metrics", path, fmt=fmt) == 16  # 4 endpoints x 2 s x 2
    frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    assert len(frame) == 16 and set(frame["run_id"]) == {RUN}
    assert "mos" in frame.columns
    assert analysis.export(con, "run-empty", "endpoints", tmp_path / "e.csv") == 0
    with pytest.raises(ValueError, match="table must be one of"):
        analysis.export(con, RUN, "runs; DROP TABLE runs", path)


def test_analysis_imports_neither_streamlit_nor_ray() -> None:
    for path in Path(analysis.__file__).parent.glob("*.py"):
        assert imported_modules(path) & {"streamlit", "ray", "actors"} == set(), path


def test_every_query_binds_values_rather_than_formatting_them() -> None:
    """A value in an f-string of SQL would show up as a formatted name that is not a
    module constant or a checked identifier; this keeps the rule visible in review."""
    source = Path(sys.modules["analysis.runs"].__file__ or "").read_text()
    tree = ast.parse(source)
    formatted: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(p.value for p in node.values if isinstance(p, ast.Constant))
            if not any(word in text for word in ("SELECT", "FROM", "WHERE", "FILTER")):
                continue  # an error message, not SQL
            for part in node.values:
                if isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name):
                    formatted.add(part.value.id)
    user_values = {
        "run_id",
        "organization_id",
        "project_id",
        "status",
        "limit",
        "n",
        "role",
        "direction",
        "path",
    }
    assert formatted & user_values == set()
