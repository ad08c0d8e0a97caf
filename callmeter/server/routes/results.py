"""Run results, served from the ``analysis`` functions (no SQL here): overview, summary,
outcomes, per group, per endpoint, time series, worst endpoints, generator health, RFC 6076
KPIs, the R budget, one endpoint's SIP trace and series, two runs compared, export as CSV or
Parquet.

Each request reads through its own cursor of the store (a DuckDB connection is not for
concurrent use; ``Store.cursor()`` writes pending rows first, so a live run shows every second
received). DataFrames become lists of records; NaN becomes null.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
import pandas as pd
from fastapi import APIRouter, Query, Response

import analysis
from callmeter.server.access import Action
from callmeter.server.context import Caller, Platform
from callmeter.server.deps import CallerDep, PlatformDep, envelope
from callmeter.server.errors import InvalidInput, NotFound
from callmeter.server.payloads import Envelope

__all__ = ["frame_records", "router"]

router = APIRouter(tags=["results"])

Records = list[dict[str, Any]]
Direction = Literal["send", "receive"]
StoreTable = Literal["runs", "endpoints", "endpoint_events", "metrics", "sip_trace", "shard_health"]
DerivedTable = Literal["overview", "outcomes", "groups", "per_endpoint"]
MetricKey = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]

_DERIVED: dict[str, Callable[[duckdb.DuckDBPyConnection, str], pd.DataFrame]] = {
    "overview": analysis.run_overview,
    "outcomes": analysis.outcomes,
    "groups": analysis.per_group,
    "per_endpoint": analysis.per_endpoint,
}
_MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def frame_records(frame: pd.DataFrame) -> Records:
    """JSON-ready records: timestamps as ISO 8601, NaN and NaT as null."""
    records: Records = json.loads(frame.to_json(orient="records", date_format="iso"))
    return records


def _read(
    platform: Platform,
    caller: Caller,
    run_id: str,
    query: Callable[[duckdb.DuckDBPyConnection], Any],
    action: Action = Action.READ,
) -> Any:
    """``query(con)`` on a fresh cursor, once the caller may see the run; analysis errors as
    404 (unknown run) and 400 (bad metric, direction...)."""
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "run", run_id, action)
    with closing(platform.store.cursor()) as con:
        try:
            return query(con)
        except KeyError as error:
            raise NotFound(str(error).strip("'\"")) from None
        except (ValueError, duckdb.BinderException) as error:
            raise InvalidInput(str(error)) from None


def _records(platform: Platform, caller: Caller, run_id: str, query: Callable[..., Any]) -> Records:
    return frame_records(_read(platform, caller, run_id, query))


@router.get("/runs/{run_id}/overview", response_model=Envelope[Records])
def overview(run_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[Records]:
    """One record: status and times, calls attempted and successful, success rate, one count
    per outcome, MOS / jitter / loss / RTT averages, setup time and post-dial delay
    percentiles."""
    return envelope(_records(platform, caller, run_id, lambda c: analysis.run_overview(c, run_id)))


@router.get("/runs/{run_id}/summary", response_model=Envelope[dict[str, Any]])
def summary(run_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[dict[str, Any]]:
    """The run in one object (``analysis.run_summary``): what a CI gate checks."""
    found: dict[str, Any] = _read(
        platform, caller, run_id, lambda c: analysis.run_summary(c, run_id)
    )
    return envelope(found)


@router.get("/runs/{run_id}/outcomes", response_model=Envelope[Records])
def outcomes(run_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[Records]:
    """Endpoints per outcome."""
    return envelope(_records(platform, caller, run_id, lambda c: analysis.outcomes(c, run_id)))


@router.get("/runs/{run_id}/groups", response_model=Envelope[Records])
def per_group(run_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[Records]:
    """The overview's figures per group."""
    return envelope(_records(platform, caller, run_id, lambda c: analysis.per_group(c, run_id)))


@router.get("/runs/{run_id}/endpoints", response_model=Envelope[Records])
def per_endpoint(run_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[Records]:
    """One record per endpoint: placement, phase, outcome, call timing, media quality."""
    return envelope(_records(platform, caller, run_id, lambda c: analysis.per_endpoint(c, run_id)))


@router.get("/runs/{run_id}/timeseries", response_model=Envelope[Records])
def timeseries(
    run_id: str,
    platform: PlatformDep,
    caller: CallerDep,
    metric: Annotated[list[str], Query(max_length=20, description="catalog keys")] = ["mos"],  # noqa: B006
    by: Literal["group", "endpoint", "run"] = "group",
    direction: Direction | None = None,
    agg: Literal["avg", "sum", "min", "max"] = "avg",
) -> Envelope[Records]:
    """Per run second: ``agg`` of each metric by group, endpoint or for the run, per direction."""

    def query(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
        return analysis.timeseries(con, run_id, list(metric), by=by, direction=direction, agg=agg)

    return envelope(_records(platform, caller, run_id, query), metrics=list(metric))


@router.get("/runs/{run_id}/worst-endpoints", response_model=Envelope[Records])
def worst_endpoints(
    run_id: str,
    platform: PlatformDep,
    caller: CallerDep,
    by: MetricKey = "mos",
    n: Annotated[int, Query(ge=1, le=1000)] = 10,
    direction: Literal["send", "receive", "call"] | None = None,
) -> Envelope[Records]:
    """The ``n`` endpoints worst by one metric."""

    def query(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
        return analysis.worst_endpoints(con, run_id, n=n, by=by, direction=direction)

    return envelope(_records(platform, caller, run_id, query))


@router.get("/runs/{run_id}/generator-health", response_model=Envelope[Records])
def generator_health(run_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[Records]:
    """Per shard: event-loop lag and send lateness, and whether the generator was overloaded."""
    query = lambda c: analysis.generator_health(c, run_id)  # noqa: E731
    return envelope(_records(platform, caller, run_id, query))


@router.get("/runs/{run_id}/kpis", response_model=Envelope[Records])
def kpis(run_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[Records]:
    """The RFC 6076 metrics (SER, SEER, ISA, SCR, RRD, SRD, SDD, SDT), one record each."""
    return envelope(_records(platform, caller, run_id, lambda c: analysis.kpis(c, run_id)))


@router.get("/runs/{run_id}/r-budget", response_model=Envelope[Records])
def r_budget(
    run_id: str,
    platform: PlatformDep,
    caller: CallerDep,
    endpoint_id: Annotated[int | None, Query(ge=0)] = None,
    direction: Direction = "receive",
) -> Envelope[Records]:
    """The E-model's R split into its terms (why MOS dropped), for the run or one endpoint."""

    def query(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
        return analysis.r_budget(con, run_id, endpoint_id, direction)

    return envelope(_records(platform, caller, run_id, query))


@router.get("/runs/{run_id}/endpoints/{endpoint_id}/sip-trace", response_model=Envelope[Records])
def sip_trace(
    run_id: str, endpoint_id: int, platform: PlatformDep, caller: CallerDep
) -> Envelope[Records]:
    """Every SIP message an endpoint sent and received, in order."""
    query = lambda c: analysis.sip_trace(c, run_id, endpoint_id)  # noqa: E731
    return envelope(_records(platform, caller, run_id, query))


@router.get("/runs/{run_id}/endpoints/{endpoint_id}/timeseries", response_model=Envelope[Records])
def endpoint_timeseries(
    run_id: str,
    endpoint_id: int,
    platform: PlatformDep,
    caller: CallerDep,
    metric: Annotated[list[str], Query(max_length=40, description="catalog keys")] = ["mos"],  # noqa: B006
    direction: Direction | None = None,
) -> Envelope[Records]:
    """One endpoint's per-second rows, send and receive apart."""

    def query(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
        return analysis.endpoint_timeseries(con, run_id, endpoint_id, list(metric), direction)

    return envelope(_records(platform, caller, run_id, query), metrics=list(metric))


@router.get("/runs/{run_id}/compare/{other_run_id}", response_model=Envelope[Records])
def compare(
    run_id: str, other_run_id: str, platform: PlatformDep, caller: CallerDep
) -> Envelope[Records]:
    """The two runs' overviews, one record each; ``meta.delta`` holds other minus this for
    every numeric column."""
    first = _records(platform, caller, run_id, lambda c: analysis.run_overview(c, run_id))
    second = _records(
        platform, caller, other_run_id, lambda c: analysis.run_overview(c, other_run_id)
    )
    a, b = first[0], second[0]
    delta = {
        key: b[key] - a[key]
        for key in a
        if isinstance(a[key], int | float)
        and not isinstance(a[key], bool)
        and isinstance(b.get(key), int | float)
    }
    return envelope([a, b], delta=delta)


@router.get("/runs/{run_id}/compare/{other_run_id}/metrics", response_model=Envelope[Records])
def compare_metrics(
    run_id: str,
    other_run_id: str,
    platform: PlatformDep,
    caller: CallerDep,
    alpha: Annotated[float, Query(gt=0, lt=1)] = 0.05,
) -> Envelope[Records]:
    """Per metric: both runs' values, the difference (other minus this) and whether it is
    beyond run-to-run noise (``analysis.compare``: Welch's t-test over per-endpoint means)."""
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "run", other_run_id, Action.READ)
    query = lambda c: analysis.compare(c, run_id, other_run_id, alpha=alpha)  # noqa: E731
    return envelope(_records(platform, caller, run_id, query), alpha=alpha)


@router.get(
    "/runs/{run_id}/export",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}},
)
def export(
    run_id: str,
    platform: PlatformDep,
    caller: CallerDep,
    table: StoreTable | DerivedTable = "per_endpoint",
    format: Literal["csv", "parquet"] = "csv",
) -> Response:
    """One table of the run as CSV or Parquet: a stored table (every row of the run) or a
    derived one (overview, outcomes, groups, per_endpoint)."""

    def query(con: duckdb.DuckDBPyConnection) -> bytes:
        with tempfile.TemporaryDirectory(prefix="callmeter-export-") as folder:
            path = Path(folder) / f"export.{format}"
            if table in _DERIVED:
                frame = _DERIVED[table](con, run_id)
                if format == "csv":
                    frame.to_csv(path, index=False)
                else:
                    frame.to_parquet(path, index=False)
            else:
                analysis.export(con, run_id, table, path, format)
            return path.read_bytes()

    data: bytes = _read(platform, caller, run_id, query, Action.EXPORT)
    filename = f"{run_id}-{table}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(data, media_type=_MEDIA_TYPES[format], headers=headers)
