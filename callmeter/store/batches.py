"""Arrow batches of results, built where they are measured (the shards) and appended by the one
writer (``callmeter.store.writer``). Pure functions of their arguments: no duckdb, no clock.

Theory of operation
-------------------
A shard collects plain dicts (metric rows from ``MediaSession.snapshot``, endpoint placement
and outcome, lifecycle records, SIP messages, its own health) and once a second turns them
into one :class:`ShardBatch`: up to five ``pyarrow.Table`` whose columns are exactly the
store's (``callmeter.store.schema``), ``run_id`` included. Arrow crosses process boundaries
cheaply and the writer appends it without touching a row.

Row dicts name columns; a missing key is a null, an unknown key is a ``ValueError`` naming it
(a typo must not silently drop a metric). Times (``ts``, ``at``) are float epoch seconds (UTC)
and become ``TIMESTAMP`` microseconds. A float for an integer column (a mean frame size) is
rounded, as the catalog says. Phases, outcomes, roles and event kinds are checked against
``callmeter.lifecycle``. Builders go column by column (``Table.from_pylist`` took three times
as long here); ``benchmarks/store_write.py`` measures them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from callmeter.lifecycle import Outcome, Phase
from callmeter.metrics import keys
from callmeter.store.schema import (
    ENDPOINT_COLUMNS,
    EVENT_COLUMNS,
    HEALTH_COLUMNS,
    METRIC_COLUMNS,
    TRACE_COLUMNS,
    Columns,
)

__all__ = [
    "ENDPOINTS_SCHEMA",
    "EVENTS_SCHEMA",
    "HEALTH_SCHEMA",
    "METRICS_SCHEMA",
    "TRACE_SCHEMA",
    "CollectedRows",
    "ShardBatch",
    "endpoints_table",
    "events_table",
    "health_table",
    "metrics_table",
    "shard_batch",
    "sip_summary",
    "trace_table",
]

Row = Mapping[str, Any]

_ARROW_TYPES: Final[Mapping[str, Any]] = {
    "VARCHAR": pa.string(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "TIMESTAMP": pa.timestamp("us"),
}


def _schema(columns: Columns) -> Any:
    return pa.schema([pa.field(name, _ARROW_TYPES[kind]) for name, kind in columns])


METRICS_SCHEMA: Final = _schema(METRIC_COLUMNS)
ENDPOINTS_SCHEMA: Final = _schema(ENDPOINT_COLUMNS)
EVENTS_SCHEMA: Final = _schema(EVENT_COLUMNS)
TRACE_SCHEMA: Final = _schema(TRACE_COLUMNS)
HEALTH_SCHEMA: Final = _schema(HEALTH_COLUMNS)

_METRIC_FIXED: Final = frozenset({"endpoint_id", "ts", "t_s", "second", "direction", "interval_s"})
_METRIC_ALLOWED: Final[Mapping[str, frozenset[str]]] = {
    direction: _METRIC_FIXED | frozenset(keys(direction)) for direction in ("send", "receive")
}


def _array(values: list[Any], kind: Any) -> Any:
    if kind == pa.timestamp("us"):  # float epoch seconds
        seconds = pa.array(values, pa.float64())
        return pc.round(pc.multiply(seconds, 1e6)).cast(pa.int64()).cast(kind)
    if pa.types.is_integer(kind):  # pa.array(floats, int64) would truncate, not round
        as_float = pa.array(values, pa.float64())  # exact for counts below 2**53
        return pc.round(as_float).cast(kind)  # a mean count: rounded (half to even)
    return pa.array(values, kind)


def _table(schema: Any, run_id: str, rows: Sequence[Row], required: Iterable[str] = ()) -> pa.Table:
    columns = [pa.array([run_id] * len(rows), pa.string())]
    for name, kind in zip(schema.names[1:], schema.types[1:], strict=True):
        try:
            columns.append(_array([row.get(name) for row in rows], kind))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"column {name!r}: {error}") from None
    table = pa.Table.from_arrays(columns, schema=schema)
    missing = [name for name in required if table.column(name).null_count]
    if missing:
        raise ValueError(f"rows without {', '.join(missing)}")
    return table


def _refuse_unknown(rows: Sequence[Row], allowed: Iterable[str], what: str) -> None:
    unknown = set().union(*rows) - set(allowed)
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(sorted(unknown))}")


def _refuse_values(table: pa.Table, column: str, allowed: frozenset[str]) -> None:
    values = set(pc.unique(table.column(column)).to_pylist()) - allowed - {None}
    if values:
        raise ValueError(f"{column} must be one of {sorted(allowed)}, not {sorted(values)}")


def metrics_table(run_id: str, rows: Sequence[Row]) -> pa.Table:
    """Metric rows: ``endpoint_id``, ``ts`` (float epoch s), ``t_s``, ``second``, ``direction``
    (``send``/``receive``), ``interval_s`` and catalog keys of that direction."""
    by_direction: dict[str, list[Row]] = {"send": [], "receive": []}
    for row in rows:
        direction = row.get("direction")
        if direction not in by_direction:
            raise ValueError(f"direction must be 'send' or 'receive', not {direction!r}")
        by_direction[direction].append(row)
    for direction, selected in by_direction.items():
        _refuse_unknown(selected, _METRIC_ALLOWED[direction], f"{direction} metric")
    return _table(METRICS_SCHEMA, run_id, rows, ("endpoint_id", "ts", "second"))


def endpoints_table(run_id: str, rows: Sequence[Row]) -> pa.Table:
    """Endpoint rows keyed by ``endpoint_id``: placement, phase, outcome, call timing (any
    subset). Rows for one endpoint are merged in order, a later non-null value winning."""
    _refuse_unknown(rows, ENDPOINTS_SCHEMA.names[1:], "endpoint")
    merged: dict[Any, dict[str, Any]] = {}
    for row in rows:
        known = {name: value for name, value in row.items() if value is not None}
        merged.setdefault(row.get("endpoint_id"), {}).update(known)
    table = _table(ENDPOINTS_SCHEMA, run_id, list(merged.values()), ("endpoint_id",))
    for column, allowed in (("phase", _PHASES), ("outcome", _OUTCOMES), ("role", _ROLES)):
        _refuse_values(table, column, allowed)
    return table


_EVENT_KINDS: Final = frozenset({"phase", "outcome"})
_PHASES: Final = frozenset(str(phase) for phase in Phase)
_OUTCOMES: Final = frozenset(str(outcome) for outcome in Outcome)
_ROLES: Final = frozenset({"caller", "callee", "receiver"})


def events_table(run_id: str, rows: Sequence[Row]) -> pa.Table:
    """Lifecycle events: ``endpoint_id``, ``at`` (float epoch s), ``kind`` (``phase`` with
    ``phase``/``previous``, or ``outcome`` with ``outcome``/``reason``/``status``)."""
    _refuse_unknown(rows, EVENTS_SCHEMA.names[1:], "event")
    table = _table(EVENTS_SCHEMA, run_id, rows, ("endpoint_id", "at", "kind"))
    for column, allowed in (("kind", _EVENT_KINDS), ("phase", _PHASES), ("previous", _PHASES),
                            ("outcome", _OUTCOMES)):  # fmt: skip
        _refuse_values(table, column, allowed)
    return table


_CALL_ID: Final = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.I | re.M)
_CSEQ: Final = re.compile(rb"^cseq[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.I | re.M)


def sip_summary(message: bytes) -> tuple[str, str | None, str | None]:
    """``(first line, Call-ID, CSeq)`` of a SIP message, found without parsing it (RFC 3261
    7.3.3 compact ``i`` included); None for a header that is missing."""
    end = message.find(b"\n")
    first = message if end < 0 else message[:end]
    head_end = message.find(b"\r\n\r\n")
    head = message if head_end < 0 else message[:head_end]
    call_id, cseq = _CALL_ID.search(head), _CSEQ.search(head)
    return (
        first.rstrip(b"\r").decode("latin-1"),
        None if call_id is None else call_id.group(1).decode("latin-1"),
        None if cseq is None else cseq.group(1).decode("latin-1"),
    )


def _peer(peer: Any) -> str | None:
    if peer is None or isinstance(peer, str):
        return peer
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_TRACE_INPUT: Final = frozenset({"endpoint_id", "at", "direction", "peer", "message"})
_TRACE_DIRECTIONS: Final = frozenset({"in", "out"})


def trace_table(run_id: str, rows: Sequence[Row]) -> pa.Table:
    """SIP trace rows: ``endpoint_id``, ``at`` (float epoch s), ``direction`` (``in``/``out``),
    ``peer`` (``"host:port"`` or a ``(host, port)`` address) and ``message`` (bytes)."""
    _refuse_unknown(rows, _TRACE_INPUT, "trace")
    full: list[dict[str, Any]] = []
    for row in rows:
        raw = row.get("message") or b""
        message = raw.encode("latin-1") if isinstance(raw, str) else bytes(raw)
        first_line, call_id, cseq = sip_summary(message)
        full.append({**row, "peer": _peer(row.get("peer")), "message": message.decode("latin-1"),
                     "first_line": first_line, "call_id": call_id, "cseq": cseq})  # fmt: skip
    table = _table(TRACE_SCHEMA, run_id, full, ("endpoint_id", "at", "direction"))
    _refuse_values(table, "direction", _TRACE_DIRECTIONS)
    return table


def health_table(run_id: str, rows: Sequence[Row]) -> pa.Table:
    """Shard health rows: ``shard_id``, ``ts`` (float epoch s), ``endpoints_active``,
    ``loop_lag_ms_max``, ``loop_lag_ms_p99``, ``send_lateness_ms_p99``, ``send_lateness_ms_max``,
    ``cpu_percent``, ``node_id``, ``host``, ``pid``."""
    _refuse_unknown(rows, HEALTH_SCHEMA.names[1:], "shard health")
    return _table(HEALTH_SCHEMA, run_id, rows, ("shard_id", "ts"))


@dataclass(frozen=True, slots=True)
class ShardBatch:
    """What one shard sends the writer at once (normally each second). ``seq`` counts the
    shard's batches from 0: the writer drops a ``(run_id, shard_id, seq)`` it has already
    appended, so a retried delivery is harmless."""

    run_id: str
    shard_id: int
    seq: int
    metrics: pa.Table | None = None
    endpoints: pa.Table | None = None
    events: pa.Table | None = None
    trace: pa.Table | None = None
    health: pa.Table | None = None

    def tables(self) -> dict[str, pa.Table]:
        """The tables present, keyed by their store table name."""
        named = {
            "metrics": self.metrics,
            "endpoints": self.endpoints,
            "endpoint_events": self.events,
            "sip_trace": self.trace,
            "shard_health": self.health,
        }
        return {name: table for name, table in named.items() if table is not None}

    def rows(self) -> int:
        """Rows over all tables."""
        return sum(table.num_rows for table in self.tables().values())


class CollectedRows(Protocol):
    """What a shard collects between two batches (``callmeter.shard.ShardRows``)."""

    @property
    def endpoints(self) -> Sequence[Row]: ...
    @property
    def events(self) -> Sequence[Row]: ...
    @property
    def metrics(self) -> Sequence[Row]: ...
    @property
    def trace(self) -> Sequence[Row]: ...
    @property
    def health(self) -> Sequence[Row]: ...


def shard_batch(run_id: str, shard_id: int, seq: int, rows: CollectedRows | None) -> ShardBatch:
    """The batch of a shard's collected rows; an empty list gives no table."""
    if rows is None:
        return ShardBatch(run_id, shard_id, seq)
    return ShardBatch(
        run_id,
        shard_id,
        seq,
        metrics=metrics_table(run_id, rows.metrics) if rows.metrics else None,
        endpoints=endpoints_table(run_id, rows.endpoints) if rows.endpoints else None,
        events=events_table(run_id, rows.events) if rows.events else None,
        trace=trace_table(run_id, rows.trace) if rows.trace else None,
        health=health_table(run_id, rows.health) if rows.health else None,
    )
