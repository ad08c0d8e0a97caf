"""The results database's schema, generated from the metric catalog, and its migrations.

Theory of operation
-------------------
Six tables hold a run: ``runs`` (one row per run), ``endpoints`` (one row per endpoint:
placement, final phase and outcome, and one column per one-shot call key of the catalog),
``endpoint_events`` (every phase change and outcome), ``metrics`` (one row per endpoint,
second and direction, one column per ``send``/``receive`` key of the catalog), ``sip_trace``
and ``shard_health`` (the generator's own health, per shard and second). Column lists are
plain tuples of ``(name, DuckDB type)`` so that ``callmeter.store.batches`` builds its Arrow
schemas from the same source without importing duckdb (it runs in the shard processes).

Timestamps are ``TIMESTAMP`` in UTC (naive); the writer's connection runs with
``TimeZone = 'UTC'``.

Versions. ``schema_version`` records every migration applied. ``MIGRATIONS`` maps a version
to the step that brings the database from the version before it; ``migrate`` applies the
missing steps in order, each in its own transaction, and refuses a database written by a newer
callmeter (``SchemaVersionError``). New catalog keys need no version: ``migrate`` adds every
catalog column a table lacks (additive, idempotent). Removing or renaming a key is a
migration step.

Indexes. The append-only tables get an index on ``(run_id, endpoint_id)`` (endpoint
drill-down); run-wide scans are pruned by DuckDB's per-row-group min/max, since rows arrive
run by run. Measured here: the index costs nothing visible on 1k-row appends.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from callmeter.metrics import catalog, column_types

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "CALL_KEYS",
    "ENDPOINT_COLUMNS",
    "EVENT_COLUMNS",
    "HEALTH_COLUMNS",
    "METRIC_COLUMNS",
    "METRIC_KEYS",
    "MIGRATIONS",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "TABLES",
    "TRACE_COLUMNS",
    "RunStatus",
    "SchemaVersionError",
    "check",
    "migrate",
    "schema_version",
    "utc_now",
]

SCHEMA_VERSION: Final = 1

Columns = tuple[tuple[str, str], ...]


class RunStatus(enum.StrEnum):
    """A test run's status (DESIGN.md "Test run")."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANNOT_RUN_FOR_NOW = "CANNOT_RUN_FOR_NOW"


class SchemaVersionError(RuntimeError):
    """The database's schema version is not one this callmeter can use."""


_TYPES: Final[Mapping[str, str]] = column_types()
# The one-shot values of a call (call timing). The catalog's per-second ``call`` gauges
# (event_loop_lag_*) are the shard's, not an endpoint's: they live in shard_health.
CALL_KEYS: Final[tuple[str, ...]] = tuple(
    dict.fromkeys(m.key for m in catalog() if m.direction == "call" and m.kind == "one_shot")
)
METRIC_KEYS: Final[tuple[str, ...]] = tuple(
    dict.fromkeys(m.key for m in catalog() if m.direction in ("send", "receive"))
)

RUN_COLUMNS: Final[Columns] = (
    ("run_id", "VARCHAR"),
    ("test_name", "VARCHAR"),
    ("test", "VARCHAR"),  # JSON text of the test model
    ("status", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("created_at", "TIMESTAMP"),
    ("started_at", "TIMESTAMP"),
    ("ended_at", "TIMESTAMP"),
    ("endpoints", "INTEGER"),
    ("success_threshold", "DOUBLE"),
    ("summary", "VARCHAR"),  # JSON text of analysis.run_summary
    ("organization_id", "VARCHAR"),
    ("project_id", "VARCHAR"),
    ("test_id", "VARCHAR"),
    ("triggered_by", "VARCHAR"),
)
ENDPOINT_COLUMNS: Final[Columns] = (
    ("run_id", "VARCHAR"),
    ("endpoint_id", "INTEGER"),
    ("group_name", "VARCHAR"),
    ("username", "VARCHAR"),
    ("role", "VARCHAR"),  # caller, callee or receiver
    ("callee", "VARCHAR"),
    ("shard_id", "INTEGER"),
    ("node_id", "VARCHAR"),
    ("host", "VARCHAR"),
    ("pid", "INTEGER"),
    ("phase", "VARCHAR"),
    ("outcome", "VARCHAR"),
    ("outcome_reason", "VARCHAR"),
    ("outcome_status", "INTEGER"),
    *((key, _TYPES[key]) for key in CALL_KEYS),
)
EVENT_COLUMNS: Final[Columns] = (
    ("run_id", "VARCHAR"),
    ("endpoint_id", "INTEGER"),
    ("at", "TIMESTAMP"),
    ("kind", "VARCHAR"),  # phase or outcome
    ("phase", "VARCHAR"),
    ("previous", "VARCHAR"),
    ("outcome", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("status", "INTEGER"),
)
METRIC_COLUMNS: Final[Columns] = (
    ("run_id", "VARCHAR"),
    ("endpoint_id", "INTEGER"),
    ("ts", "TIMESTAMP"),  # wall time of the row
    ("t_s", "DOUBLE"),  # seconds since the run started
    ("second", "INTEGER"),  # 1-based index of the row within the call's media
    ("direction", "VARCHAR"),  # send or receive
    ("interval_s", "DOUBLE"),
    *((key, _TYPES[key]) for key in METRIC_KEYS),
)
TRACE_COLUMNS: Final[Columns] = (
    ("run_id", "VARCHAR"),
    ("endpoint_id", "INTEGER"),
    ("at", "TIMESTAMP"),
    ("direction", "VARCHAR"),  # in or out
    ("peer", "VARCHAR"),  # host:port
    ("first_line", "VARCHAR"),
    ("call_id", "VARCHAR"),
    ("cseq", "VARCHAR"),
    ("message", "VARCHAR"),  # the whole message, decoded latin-1
)
HEALTH_COLUMNS: Final[Columns] = (
    ("run_id", "VARCHAR"),
    ("shard_id", "INTEGER"),
    ("ts", "TIMESTAMP"),
    ("endpoints_active", "INTEGER"),
    ("loop_lag_ms_max", "DOUBLE"),
    ("loop_lag_ms_p99", "DOUBLE"),
    ("send_lateness_ms_p99", "DOUBLE"),
    ("send_lateness_ms_max", "DOUBLE"),
    ("cpu_percent", "DOUBLE"),
    ("node_id", "VARCHAR"),
    ("host", "VARCHAR"),
    ("pid", "INTEGER"),
)
TABLES: Final[Mapping[str, Columns]] = {
    "runs": RUN_COLUMNS,
    "endpoints": ENDPOINT_COLUMNS,
    "endpoint_events": EVENT_COLUMNS,
    "metrics": METRIC_COLUMNS,
    "sip_trace": TRACE_COLUMNS,
    "shard_health": HEALTH_COLUMNS,
}
_PRIMARY_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "runs": ("run_id",),
    "endpoints": ("run_id", "endpoint_id"),
}
_INDEXES: Final[Mapping[str, tuple[str, ...]]] = {
    "endpoint_events": ("run_id", "endpoint_id"),
    "metrics": ("run_id", "endpoint_id"),
    "sip_trace": ("run_id", "endpoint_id"),
    "shard_health": ("run_id", "shard_id"),
}
# Catalog-generated columns a later catalog may add to (see ``_add_catalog_columns``).
_CATALOG_COLUMNS: Final[Mapping[str, Columns]] = {
    "endpoints": ENDPOINT_COLUMNS,
    "metrics": METRIC_COLUMNS,
}


def _create_table(name: str, columns: Columns) -> str:
    lines = [f'"{column}" {kind}' for column, kind in columns]
    key = _PRIMARY_KEYS.get(name)
    if key:
        lines.append(f"PRIMARY KEY ({', '.join(key)})")
    return f"CREATE TABLE {name} (\n  " + ",\n  ".join(lines) + "\n)"


def _v1(con: duckdb.DuckDBPyConnection) -> None:
    # A later version that changes one of these tables must freeze its version-1 columns here.
    for name in ("runs", "endpoints", "endpoint_events", "metrics", "sip_trace", "shard_health"):
        con.execute(_create_table(name, TABLES[name]))
    for name, columns in _INDEXES.items():
        con.execute(f"CREATE INDEX {name}_by_{'_'.join(columns)} ON {name} ({', '.join(columns)})")
    con.execute("CREATE INDEX runs_by_created_at ON runs (created_at)")


MIGRATIONS: Final[Mapping[int, Callable[[duckdb.DuckDBPyConnection], None]]] = {1: _v1}


def utc_now() -> datetime.datetime:
    """Now as a naive UTC datetime, the form TIMESTAMP columns hold."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The version recorded in the database, 0 for a fresh one."""
    # fetchall, never fetchone: DuckDB 2.0 keeps a partly read result open on the connection,
    # and registering an Arrow table or running a relation then fails.
    [(tables,)] = con.execute(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_name = 'schema_version' AND table_schema = current_schema()"
    ).fetchall()
    if tables == 0:
        return 0
    [(version,)] = con.execute("SELECT max(version) FROM schema_version").fetchall()
    return 0 if version is None else int(version)


def _refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database has schema version {version}, newer than this callmeter's "
            f"{SCHEMA_VERSION}: open it with a newer callmeter"
        )


def _add_catalog_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Add the columns of catalog keys a table lacks; return them as ``table.column``."""
    added: list[str] = []
    for table, columns in _CATALOG_COLUMNS.items():
        rows = con.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = ? AND table_schema = current_schema()",
            [table],
        ).fetchall()
        present = {row[0] for row in rows}
        for column, kind in columns:
            if column not in present:
                con.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {kind}')
                added.append(f"{table}.{column}")
    return added


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Create or upgrade the schema; return the version the database started at.

    Idempotent. Each step runs in its own transaction with its ``schema_version`` row, so a
    failed step leaves the database at the previous version. Raises ``SchemaVersionError``
    for a database newer than ``SCHEMA_VERSION``.
    """
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version"
        " (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"
    )
    start = schema_version(con)
    _refuse_newer(start)
    for version in range(start + 1, SCHEMA_VERSION + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            MIGRATIONS[version](con)
            con.execute("INSERT INTO schema_version VALUES (?, ?)", [version, utc_now()])
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    _add_catalog_columns(con)
    return start


def check(con: duckdb.DuckDBPyConnection) -> int:
    """Check a database opened read-only: its version must be exactly ``SCHEMA_VERSION``
    (an older one needs ``migrate``, which needs write access). Return the version."""
    version = schema_version(con)
    _refuse_newer(version)
    if version < SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database has schema version {version}, older than this callmeter's "
            f"{SCHEMA_VERSION}: open it once read-write (Store) to migrate it"
        )
    return version
