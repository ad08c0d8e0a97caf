"""Queries over stored runs: plain functions ``f(con, run_id, ...) -> DataFrame``.

Every value reaches SQL as a bound parameter; the only text put into SQL is a column name that
was first checked against the metric catalog or a fixed list.

Definitions used throughout
---------------------------
Attempted call
    A caller endpoint whose outcome is one a call decides: SUCCESS, COMPLETED_WITH_WARNINGS,
    CALL_FAILED, NEGOTIATION_FAILED, TIMEOUT or TEARDOWN_ERROR. Not attempts: callers that
    failed to register (no INVITE was sent), callers with OSERROR (the generator's own
    failure, never blamed on the system under test: it shows in the outcome counts and in
    :func:`generator_health`) and callers still undecided (a run in progress).
Successful call
    An attempted call whose outcome is SUCCESS or COMPLETED_WITH_WARNINGS (answered and
    ended with a 2xx to the BYE; the warning is about media).
Success rate
    successful calls / attempted calls, 0..1; NaN when nothing was attempted.
Quality averages
    Over endpoint-seconds, i.e. over ``metrics`` rows where the value is known: MOS, jitter
    and loss in the ``receive`` direction (what our endpoints measured); RTT in either
    direction (``send`` rows carry the RFC 3550 LSR/DLSR RTT, ``receive`` rows the RFC 3611 one).
Call timing percentiles
    Over the callers' one-shot values (``setup_time_ms``, ``post_dial_delay_ms``), interpolated
    (``quantile_cont``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Final, Literal

import duckdb
import pandas as pd

from callmeter.lifecycle import Outcome
from callmeter.metrics import column_types, keys
from callmeter.store.schema import CALL_KEYS, TABLES

__all__ = [
    "CALL_OUTCOMES",
    "LATENESS_P99_LIMIT_MS",
    "LOOP_LAG_P99_LIMIT_MS",
    "LOWER_IS_WORSE",
    "SUCCESS_OUTCOMES",
    "export",
    "generator_health",
    "outcomes",
    "per_endpoint",
    "per_group",
    "percentiles",
    "run_overview",
    "run_summary",
    "runs",
    "timeseries",
    "worst_endpoints",
]

SUCCESS_OUTCOMES: Final = (Outcome.SUCCESS, Outcome.COMPLETED_WITH_WARNINGS)
CALL_OUTCOMES: Final = (
    *SUCCESS_OUTCOMES,
    Outcome.CALL_FAILED,
    Outcome.NEGOTIATION_FAILED,
    Outcome.TIMEOUT,
    Outcome.TEARDOWN_ERROR,
)
# The generator, not the system under test, is the bottleneck beyond these (DESIGN.md).
LOOP_LAG_P99_LIMIT_MS: Final = 50.0
LATENESS_P99_LIMIT_MS: Final = 20.0
# Keys where a low value is the bad one (worst_endpoints); for every other key, high is bad.
LOWER_IS_WORSE: Final = frozenset(
    {"mos", "r_factor", "r_ro", "bitrate_bps", "wire_bitrate_bps", "packet_rate_pps",
     "frame_rate_fps"}
)  # fmt: skip
PERCENTILES: Final = (1, 5, 25, 50, 75, 95, 99)
UNDECIDED: Final = "UNDECIDED"

_TYPES: Final = column_types()
_METRIC_KEYS: Final = frozenset(keys("send")) | frozenset(keys("receive"))
_DIRECTION_KEYS: Final = {d: frozenset(keys(d)) for d in ("send", "receive")}
_NUMERIC: Final = frozenset(key for key, kind in _TYPES.items() if kind != "VARCHAR")
_AGGREGATES: Final = {"avg": "avg", "sum": "sum", "min": "min", "max": "max"}
_OUTCOME_LIST: Final = "[" + ", ".join(f"'{o}'" for o in Outcome) + "]"

Direction = Literal["send", "receive"]


def _sql_list(values: tuple[Outcome, ...]) -> str:
    """A SQL list of enum values (constants of this module, never user input)."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


_ATTEMPTED: Final = f"role = 'caller' AND outcome IN {_sql_list(CALL_OUTCOMES)}"
_SUCCESSFUL: Final = f"role = 'caller' AND outcome IN {_sql_list(SUCCESS_OUTCOMES)}"


def _df(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    return con.execute(sql, params).df()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _timing(key: str, ps: tuple[int, ...] = (50, 95, 99)) -> str:
    return ", ".join(
        f"quantile_cont({key}, {p / 100}) FILTER (WHERE role = 'caller') AS {key}_p{p}" for p in ps
    )


def _call_stats_sql(key: str) -> str:
    """Endpoint and call statistics per ``key``: a column of ``endpoints``, or ``'*'`` for the
    whole run (no GROUP BY: one row even before any endpoint reported)."""
    counts = ", ".join(f"count(*) FILTER (WHERE outcome = '{o}') AS {o}" for o in Outcome)
    return f"""
        SELECT {key} AS _key, count(*) AS endpoints_reported,
            count(*) FILTER (WHERE role = 'caller') AS callers,
            count(*) FILTER (WHERE {_ATTEMPTED}) AS calls_attempted,
            count(*) FILTER (WHERE {_SUCCESSFUL}) AS calls_successful,
            calls_successful / nullif(calls_attempted, 0) AS success_rate,
            {counts}, count(*) FILTER (WHERE outcome IS NULL) AS {UNDECIDED},
            {_timing("setup_time_ms")}, {_timing("post_dial_delay_ms")}
        FROM endpoints WHERE run_id = $run_id {"" if key == "'*'" else "GROUP BY _key"}"""


def _quality_sql(key: str, join: bool) -> str:
    source = (
        "metrics m JOIN endpoints e ON e.run_id = m.run_id AND e.endpoint_id = m.endpoint_id"
        if join
        else "metrics m"
    )
    receive = "FILTER (WHERE m.direction = 'receive')"
    return f"""
        SELECT {key} AS _key, avg(m.mos) {receive} AS mos_avg,
            quantile_cont(m.mos, 0.05) {receive} AS mos_p5,
            avg(m.jitter_ms) {receive} AS jitter_ms_avg,
            avg(m.loss_percent) {receive} AS loss_percent_avg,
            avg(m.rtt_ms) AS rtt_ms_avg
        FROM {source} WHERE m.run_id = $run_id {"GROUP BY _key" if join else ""}"""


def _stats(con: duckdb.DuckDBPyConnection, run_id: str, by_group: bool) -> pd.DataFrame:
    calls = _call_stats_sql("group_name" if by_group else "'*'")
    quality = _quality_sql("e.group_name" if by_group else "'*'", join=by_group)
    sql = f"""
        WITH calls AS ({calls}), quality AS ({quality})
        SELECT coalesce(calls._key, quality._key) AS group_name,
            calls.* EXCLUDE (_key), quality.* EXCLUDE (_key)
        FROM calls FULL OUTER JOIN quality ON calls._key IS NOT DISTINCT FROM quality._key
        ORDER BY group_name"""
    return _df(con, sql, {"run_id": run_id})


def runs(
    con: duckdb.DuckDBPyConnection,
    *,
    organization_id: str | None = None,
    project_id: str | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Stored runs, newest first, optionally only those of an organization, project or status.
    ``success_rate`` comes from the stored summary (NaN until the run has one)."""
    sql = """
        SELECT run_id, test_name, status, reason, created_at, started_at, ended_at,
            date_diff('millisecond', started_at, ended_at) / 1000.0 AS duration_s,
            endpoints, success_threshold,
            TRY_CAST(json_extract_string(summary, '$.success_rate') AS DOUBLE) AS success_rate,
            organization_id, project_id, test_id, triggered_by
        FROM runs
        WHERE ($organization_id IS NULL OR organization_id = $organization_id)
          AND ($project_id IS NULL OR project_id = $project_id)
          AND ($status IS NULL OR status = $status)
        ORDER BY created_at DESC, run_id LIMIT $limit"""
    params = {"organization_id": organization_id, "project_id": project_id, "status": status,
              "limit": limit}  # fmt: skip
    return _df(con, sql, params)


def run_overview(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """One row: the run (status, times, planned endpoints, success threshold), its calls
    (callers, attempted, successful, success rate; see the module docstring), one count
    column per outcome plus UNDECIDED, quality averages (``mos_avg``, ``mos_p5``,
    ``jitter_ms_avg``, ``loss_percent_avg``, ``rtt_ms_avg``) and call timing percentiles
    (``setup_time_ms_p50/p95/p99``, ``post_dial_delay_ms_p50/p95/p99``). KeyError for an
    unknown run."""
    run = _df(
        con,
        "SELECT run_id, test_name, status, reason, created_at, started_at, ended_at,"
        " date_diff('millisecond', started_at, ended_at) / 1000.0 AS duration_s,"
        " endpoints, success_threshold FROM runs WHERE run_id = $run_id",
        {"run_id": run_id},
    )
    if run.empty:
        raise KeyError(f"no run {run_id!r}")
    stats = _stats(con, run_id, by_group=False).drop(columns="group_name")
    return pd.concat([run, stats], axis=1)


def outcomes(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """Endpoints per outcome, every outcome listed in order (0 when none) and UNDECIDED last
    when some are: ``outcome``, ``endpoints``, ``callers``, ``share`` (of all endpoints)."""
    sql = f"""
        WITH names AS (SELECT unnest({_OUTCOME_LIST} || ['{UNDECIDED}']) AS outcome,
                              generate_subscripts({_OUTCOME_LIST} || ['{UNDECIDED}'], 1) AS i),
             counted AS (
                SELECT coalesce(outcome, '{UNDECIDED}') AS outcome, count(*) AS endpoints,
                       count(*) FILTER (WHERE role = 'caller') AS callers
                FROM endpoints WHERE run_id = $run_id GROUP BY 1)
        SELECT names.outcome, coalesce(endpoints, 0) AS endpoints,
               coalesce(callers, 0) AS callers,
               coalesce(endpoints, 0) / nullif(sum(coalesce(endpoints, 0)) OVER (), 0) AS share
        FROM names LEFT JOIN counted USING (outcome)
        WHERE names.outcome <> '{UNDECIDED}' OR endpoints > 0
        ORDER BY names.i"""
    return _df(con, sql, {"run_id": run_id})


def per_group(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """One row per group: the columns of :func:`run_overview` from ``endpoints_reported`` on."""
    frame = _stats(con, run_id, by_group=True)
    return frame[["group_name", *[c for c in frame.columns if c != "group_name"]]]


def per_endpoint(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """One row per endpoint: placement, phase, outcome, call timing, and its media: seconds
    measured, MOS avg/min, jitter avg/max and loss avg (receive), RTT avg, packets sent,
    received and lost."""
    sql = """
        WITH media AS (
            SELECT endpoint_id,
                count(*) FILTER (WHERE direction = 'receive') AS seconds,
                avg(mos) FILTER (WHERE direction = 'receive') AS mos_avg,
                min(mos) FILTER (WHERE direction = 'receive') AS mos_min,
                avg(jitter_ms) FILTER (WHERE direction = 'receive') AS jitter_ms_avg,
                max(jitter_ms) FILTER (WHERE direction = 'receive') AS jitter_ms_max,
                avg(loss_percent) FILTER (WHERE direction = 'receive') AS loss_percent_avg,
                avg(rtt_ms) AS rtt_ms_avg,
                sum(packets) FILTER (WHERE direction = 'send') AS packets_sent,
                sum(packets) FILTER (WHERE direction = 'receive') AS packets_received,
                sum(packets_lost) FILTER (WHERE direction = 'receive') AS packets_lost
            FROM metrics WHERE run_id = $run_id GROUP BY endpoint_id)
        SELECT e.endpoint_id, group_name, username, role, callee, shard_id, node_id, host, phase,
            outcome, outcome_reason, outcome_status, call_result, final_status_code,
            setup_time_ms, post_dial_delay_ms, call_duration_s, coalesce(seconds, 0) AS seconds,
            mos_avg, mos_min, jitter_ms_avg, jitter_ms_max, loss_percent_avg, rtt_ms_avg,
            packets_sent, packets_received, packets_lost
        FROM endpoints e LEFT JOIN media USING (endpoint_id)
        WHERE e.run_id = $run_id ORDER BY e.endpoint_id"""
    return _df(con, sql, {"run_id": run_id})


def _check_metrics(metrics: list[str], direction: str | None) -> None:
    unknown = [m for m in metrics if m not in _METRIC_KEYS]
    if unknown:
        raise ValueError(f"not per-second metrics of the catalog: {', '.join(unknown)}")
    text = [m for m in metrics if m not in _NUMERIC]
    if text:
        raise ValueError(f"not numeric: {', '.join(text)}")
    if direction is not None:
        if direction not in _DIRECTION_KEYS:
            raise ValueError(f"direction must be 'send' or 'receive', not {direction!r}")
        missing = [m for m in metrics if m not in _DIRECTION_KEYS[direction]]
        if missing:
            raise ValueError(f"no {direction} values for: {', '.join(missing)}")


_BY: Final = {"group": "e.group_name", "endpoint": "m.endpoint_id", "run": None}


def timeseries(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    metrics: list[str],
    by: Literal["group", "endpoint", "run"] = "group",
    direction: Direction | None = None,
    agg: Literal["avg", "sum", "min", "max"] = "avg",
) -> pd.DataFrame:
    """Per run second (``run_second`` = floor of ``t_s``), ``by`` key (``group_name``,
    ``endpoint_id`` or nothing) and ``direction``: ``agg`` of each metric (catalog keys;
    ``ValueError`` for others). Sorted by second, key, direction."""
    _check_metrics(metrics, direction)
    if by not in _BY or agg not in _AGGREGATES:
        raise ValueError(f"by must be one of {list(_BY)} and agg one of {list(_AGGREGATES)}")
    key = _BY[by]
    values = ", ".join(f"{_AGGREGATES[agg]}(m.{_quote(m)}) AS {_quote(m)}" for m in metrics)
    key_select = "" if key is None else f"{key},"
    sql = f"""
        SELECT floor(m.t_s)::BIGINT AS run_second, {key_select} m.direction, {values}
        FROM metrics m LEFT JOIN endpoints e
            ON e.run_id = m.run_id AND e.endpoint_id = m.endpoint_id
        WHERE m.run_id = $run_id AND ($direction IS NULL OR m.direction = $direction)
        GROUP BY ALL ORDER BY ALL"""
    return _df(con, sql, {"run_id": run_id, "direction": direction})


def percentiles(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    metric: str,
    direction: str | None = None,
    role: str | None = None,
) -> pd.DataFrame:
    """Distribution of one metric, one row per direction: ``count``, ``avg``, ``min``,
    ``p1`` ... ``p99`` (interpolated), ``max``; only endpoints of ``role`` when given. A
    per-second metric is read from ``metrics`` (``send``/``receive``), a one-shot call value
    from ``endpoints`` (direction ``call``); ``time_to_first_media_ms`` exists in both."""
    if metric not in _NUMERIC or (metric not in _METRIC_KEYS and metric not in CALL_KEYS):
        raise ValueError(f"{metric!r} is not a numeric metric of the catalog")
    column = _quote(metric)

    def stats(table: str) -> str:
        value = f"{table}.{column}"
        return ", ".join(
            [f"count({value}) AS count", f"avg({value}) AS avg", f"min({value}) AS min"]
            + [f"quantile_cont({value}, {p / 100}) AS p{p}" for p in PERCENTILES]
            + [f"max({value}) AS max"]
        )

    role_filter = "($role IS NULL OR e.role = $role)"
    parts = []
    if metric in _METRIC_KEYS and direction != "call":
        parts.append(
            f"SELECT m.direction, {stats('m')} FROM metrics m LEFT JOIN endpoints e"
            " ON e.run_id = m.run_id AND e.endpoint_id = m.endpoint_id"
            f" WHERE m.run_id = $run_id AND m.{column} IS NOT NULL AND {role_filter}"
            " AND ($direction IS NULL OR m.direction = $direction) GROUP BY m.direction"
        )
    if metric in CALL_KEYS and direction in (None, "call"):
        parts.append(
            f"SELECT 'call' AS direction, {stats('e')} FROM endpoints e WHERE e.run_id = $run_id"
            f" AND e.{column} IS NOT NULL AND {role_filter} HAVING count(*) > 0"
        )
    if not parts:
        raise ValueError(f"{metric!r} has no values in direction {direction!r}")
    sql = f"SELECT $metric AS metric, * FROM ({' UNION ALL '.join(parts)}) ORDER BY direction"
    params: dict[str, Any] = {"run_id": run_id, "metric": metric, "role": role}
    if any("$direction" in part for part in parts):
        params["direction"] = direction
    return _df(con, sql, params)


def worst_endpoints(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    n: int = 10,
    by: str = "mos",
    direction: str | None = None,
) -> pd.DataFrame:
    """The ``n`` endpoints worst by ``by``: a per-second metric averaged over the endpoint's
    rows in ``direction`` (default ``receive`` when the key has one, else ``send``), or a
    one-shot call value (direction ``call``). Worst is lowest for ``LOWER_IS_WORSE`` keys
    (MOS, R), highest otherwise; endpoints without the value are not ranked. Columns:
    ``endpoint_id``, ``group_name``, ``username``, ``role``, ``outcome``, ``metric``,
    ``direction``, ``value``, ``seconds``, ``mos_avg``, ``jitter_ms_avg``,
    ``loss_percent_avg`` (receive)."""
    column = _quote(by)
    if by in _METRIC_KEYS and by in _NUMERIC and direction != "call":
        side = direction or ("receive" if by in _DIRECTION_KEYS["receive"] else "send")
        _check_metrics([by], side)
        value = (
            f"(SELECT avg(m.{column}) FROM metrics m WHERE m.run_id = e.run_id"
            " AND m.endpoint_id = e.endpoint_id AND m.direction = $direction)"
        )
    elif by in CALL_KEYS and by in _NUMERIC and direction in (None, "call"):
        side, value = "call", f"e.{column}"
    else:
        raise ValueError(f"{by!r} is not a numeric metric of the catalog (or not in {direction})")
    sql = f"""
        WITH media AS (
            SELECT endpoint_id, count(*) FILTER (WHERE direction = 'receive') AS seconds,
                avg(mos) FILTER (WHERE direction = 'receive') AS mos_avg,
                avg(jitter_ms) FILTER (WHERE direction = 'receive') AS jitter_ms_avg,
                avg(loss_percent) FILTER (WHERE direction = 'receive') AS loss_percent_avg
            FROM metrics WHERE run_id = $run_id GROUP BY endpoint_id),
        ranked AS (
            SELECT e.endpoint_id, e.group_name, e.username, e.role, e.outcome,
                $metric AS metric, $direction AS direction, {value} AS value,
                coalesce(seconds, 0) AS seconds, mos_avg, jitter_ms_avg, loss_percent_avg
            FROM endpoints e LEFT JOIN media USING (endpoint_id) WHERE e.run_id = $run_id)
        SELECT * FROM ranked WHERE value IS NOT NULL
        ORDER BY value {"ASC" if by in LOWER_IS_WORSE else "DESC"}, endpoint_id LIMIT $n"""
    params = {"run_id": run_id, "metric": by, "direction": side, "n": n}
    return _df(con, sql, params)


def generator_health(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """Per shard: where it ran, seconds reported, ``endpoints_active_max``,
    ``loop_lag_ms_max`` (worst), ``loop_lag_ms_p99`` and ``send_lateness_ms_p99`` (99th
    percentile of the per-second p99s), ``send_lateness_ms_max``, ``cpu_percent_avg/max``, and
    ``generator_overloaded``: loop lag p99 over ``LOOP_LAG_P99_LIMIT_MS`` or send lateness p99
    over ``LATENESS_P99_LIMIT_MS``, i.e. the generator, not the system under test, was the
    bottleneck."""
    sql = """
        SELECT shard_id, any_value(node_id) AS node_id, any_value(host) AS host,
            any_value(pid) AS pid, count(*) AS seconds,
            max(endpoints_active) AS endpoints_active_max,
            max(loop_lag_ms_max) AS loop_lag_ms_max,
            quantile_cont(loop_lag_ms_p99, 0.99) AS loop_lag_ms_p99,
            quantile_cont(send_lateness_ms_p99, 0.99) AS send_lateness_ms_p99,
            max(send_lateness_ms_max) AS send_lateness_ms_max,
            avg(cpu_percent) AS cpu_percent_avg, max(cpu_percent) AS cpu_percent_max,
            coalesce(quantile_cont(loop_lag_ms_p99, 0.99) > $lag_limit, false)
                OR coalesce(quantile_cont(send_lateness_ms_p99, 0.99) > $late_limit, false)
                AS generator_overloaded
        FROM shard_health WHERE run_id = $run_id GROUP BY shard_id ORDER BY shard_id"""
    params = {"run_id": run_id, "lag_limit": LOOP_LAG_P99_LIMIT_MS,
              "late_limit": LATENESS_P99_LIMIT_MS}  # fmt: skip
    return _df(con, sql, params)


def _plain(value: Any) -> Any:
    """A JSON-ready Python value: numpy scalars unwrapped, NaN/NaT as None, times as ISO."""
    if value is None or value is pd.NaT:
        return None
    if hasattr(value, "isoformat"):
        return None if pd.isna(value) else value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_summary(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """The run in one JSON-ready dict (NaN as None): ``run_id``, ``test_name``, ``status``,
    ``reason``, ``started_at``, ``ended_at``, ``duration_s``, ``endpoints``,
    ``success_threshold``, ``calls_attempted``, ``calls_successful``, ``success_rate``
    (0..1), ``mos_avg``, ``mos_p5``, ``jitter_ms_avg``, ``loss_pct_avg``, ``rtt_ms_avg``,
    ``setup_ms_p50/p95/p99``, ``pdd_ms_p50/p95/p99``, ``outcomes`` {outcome: count, only
    those that occurred, UNDECIDED included} and ``generator`` {``overloaded``,
    ``loop_lag_ms_max``, ``lateness_ms_p99``, ``shards``, ``overloaded_shards``}."""
    row = run_overview(con, run_id).iloc[0]
    names = {
        "run_id": "run_id", "test_name": "test_name", "status": "status", "reason": "reason",
        "started_at": "started_at", "ended_at": "ended_at", "duration_s": "duration_s",
        "endpoints": "endpoints", "success_threshold": "success_threshold",
        "calls_attempted": "calls_attempted", "calls_successful": "calls_successful",
        "success_rate": "success_rate", "mos_avg": "mos_avg", "mos_p5": "mos_p5",
        "jitter_ms_avg": "jitter_ms_avg", "loss_pct_avg": "loss_percent_avg",
        "rtt_ms_avg": "rtt_ms_avg",
        **{f"setup_ms_p{p}": f"setup_time_ms_p{p}" for p in (50, 95, 99)},
        **{f"pdd_ms_p{p}": f"post_dial_delay_ms_p{p}" for p in (50, 95, 99)},
    }  # fmt: skip
    summary = {name: _plain(row[column]) for name, column in names.items()}
    counts = outcomes(con, run_id)
    summary["outcomes"] = {
        str(outcome): int(count)
        for outcome, count in zip(counts["outcome"], counts["endpoints"], strict=True)
        if count
    }
    health = generator_health(con, run_id)
    summary["generator"] = {
        "overloaded": bool(health["generator_overloaded"].any()),
        "loop_lag_ms_max": _plain(health["loop_lag_ms_max"].max()),
        "lateness_ms_p99": _plain(health["send_lateness_ms_p99"].max()),
        "shards": len(health),
        "overloaded_shards": [
            int(s) for s in health.loc[health["generator_overloaded"], "shard_id"]
        ],
    }
    return summary


_EXPORT_FORMATS: Final = ("csv", "parquet")


def export(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    table: str,
    path: str | Path,
    fmt: Literal["csv", "parquet"] = "csv",
) -> int:
    """Write one table's rows of a run to ``path`` as CSV (with header) or Parquet; return the
    number of rows written."""
    if table not in TABLES:
        raise ValueError(f"table must be one of {sorted(TABLES)}, not {table!r}")
    if fmt not in _EXPORT_FORMATS:
        raise ValueError(f"fmt must be one of {list(_EXPORT_FORMATS)}, not {fmt!r}")
    con.complete()  # DuckDB 2.0 runs no relation while an execute() result is half read
    relation = con.sql(f"SELECT * FROM {table} WHERE run_id = $run_id", params={"run_id": run_id})
    if fmt == "csv":
        relation.write_csv(str(path), header=True)
    else:
        relation.write_parquet(str(path))
    [(count,)] = con.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", [run_id]).fetchall()
    return int(count)
