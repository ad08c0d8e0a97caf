"""The one writer: the only object that opens the results database for writing (DESIGN.md "One
owner for the database").

Theory of operation
-------------------
A :class:`Store` owns one DuckDB connection, migrated on open, and a lock: its methods may be
called from several threads (one per shard stream) and run one at a time. Arrow tables are
appended by registering them and ``INSERT ... BY NAME SELECT``: no Python loop over rows.

Metric rows are coalesced. DuckDB's cost per INSERT is large for a 100-column table, and an
INSERT of whole row groups (``ROW_GROUP_ROWS``) is written straight to the file while smaller
ones go through the WAL and are written again at the checkpoint (measured here, full-width
rows: 1,000-row INSERTs reach about a fifth of the rows/s of one big INSERT; see
``benchmarks/store_write.py``). So :meth:`Store.append` buffers metrics tables and inserts
them as one contiguous table once ``flush_rows`` rows are pending (whole row groups; the rest
waits) or the oldest has waited ``flush_delay_s`` (checked at each append). Every other
write, ``flush()``, ``connection``, ``cursor()`` and ``close()`` write the pending rows
first, so a reader through them never misses one and a failed or stopped run keeps all it
sent. What can be lost is only what a crash of the writer process itself catches in the
buffer (at most ``flush_rows`` rows or ``flush_delay_s``). ``flush_rows=0`` commits every
append at once. Endpoints, events, SIP trace and shard health (small, and read live) are
written at once, one transaction per batch.

Endpoint rows arrive in parts (placement first, outcome and call timing later): they are
upserted so that a later part never erases a known value: a null keeps the stored value, the
phase only moves forward, and the outcome is set once (with its reason and status), exactly as
the endpoint's lifecycle decides them.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from callmeter.lifecycle import Outcome, Phase, call_result
from callmeter.store.batches import METRICS_SCHEMA, ShardBatch
from callmeter.store.schema import ENDPOINT_COLUMNS, RunStatus, check, migrate, utc_now

__all__ = ["FLUSH_DELAY_S", "FLUSH_ROWS", "ROW_GROUP_ROWS", "ReadOnlyStoreError", "Store"]

ROW_GROUP_ROWS: Final = 122_880  # DuckDB's row group size
FLUSH_ROWS: Final = ROW_GROUP_ROWS
FLUSH_DELAY_S: Final = 2.0
_TERMINAL: Final = frozenset({RunStatus.COMPLETED, RunStatus.FAILED})
_PHASES: Final = ", ".join(f"'{phase}'" for phase in Phase)
_PLATFORM_IDS: Final = ("organization_id", "project_id", "test_id", "triggered_by")


class ReadOnlyStoreError(PermissionError):
    """A write on a store opened with :meth:`Store.open_readonly`."""


def _endpoint_set(column: str) -> str:
    """How an upsert merges one endpoint column (see the module docstring)."""
    new, old = f'excluded."{column}"', f'endpoints."{column}"'
    if column == "phase":
        return (
            f"phase = CASE WHEN {old} IS NULL OR list_position([{_PHASES}], {new})"
            f" >= list_position([{_PHASES}], {old}) THEN coalesce({new}, {old}) ELSE {old} END"
        )
    if column == "outcome":
        return f"outcome = coalesce({old}, {new})"
    if column in ("outcome_reason", "outcome_status"):
        keep_with_outcome = f"CASE WHEN endpoints.outcome IS NULL THEN coalesce({new}, {old})"
        return f'"{column}" = {keep_with_outcome} ELSE {old} END'
    return f'"{column}" = coalesce({new}, {old})'


_ENDPOINT_NAMES: Final = [name for name, _ in ENDPOINT_COLUMNS]
_ENDPOINT_LIST: Final = ", ".join(f'"{name}"' for name in _ENDPOINT_NAMES)
_UPSERT_ENDPOINTS: Final = (
    f"INSERT INTO endpoints ({_ENDPOINT_LIST}) SELECT {_ENDPOINT_LIST} FROM _batch"
    " ON CONFLICT (run_id, endpoint_id) DO UPDATE SET "
    + ", ".join(_endpoint_set(name) for name in _ENDPOINT_NAMES[2:])
)


def _json_ready(value: Any) -> Any:
    """NaN and infinities become None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


class Store:
    """The results database, open for writing; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        *,
        flush_rows: int = FLUSH_ROWS,
        flush_delay_s: float = FLUSH_DELAY_S,
        _read_only: bool = False,
    ) -> None:
        self.path = str(path)
        self.read_only = _read_only
        self.flush_rows = flush_rows
        self.flush_delay_s = flush_delay_s
        self._lock = threading.RLock()
        self._con = duckdb.connect(self.path, read_only=_read_only)
        self._con.execute("SET TimeZone = 'UTC'")
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_since = 0.0
        self._seen: dict[tuple[str, int], set[int]] = {}
        self._closed = False
        try:
            if _read_only:
                check(self._con)
            else:
                migrate(self._con)
        except BaseException:
            self._con.close()
            raise

    @classmethod
    def open_readonly(cls, path: str | Path) -> Store:
        """Open an existing database read-only (notebooks); only when no writer holds it."""
        return cls(path, _read_only=True)

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Write pending rows and close the connection (idempotent)."""
        with self._lock:
            if self._closed:
                return
            try:
                if not self.read_only:
                    self._flush()
            finally:
                self._closed = True
                self._con.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The connection, pending rows written: for reads from the thread that owns the store.
        Another thread reads through its own :meth:`cursor`."""
        self.flush()
        return self._con

    @property
    def lock(self) -> threading.RLock:
        """The lock every method holds: share it to run other statements on ``connection``
        from several threads (re-entrant, so a holder may still call the store)."""
        return self._lock

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the same database, pending rows written: one per reading
        thread (a DuckDB connection is not for concurrent use)."""
        with self._lock:
            if not self.read_only:
                self._flush()
            return self._con.cursor()

    # -- runs ---------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self._closed:
            raise RuntimeError(f"the store {self.path} is closed")
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.path} is open read-only")

    def create_run(
        self,
        run_id: str,
        test_name: str,
        test_json: str | Mapping[str, Any],
        endpoints: int,
        success_threshold: float,
        status: RunStatus | str = RunStatus.PENDING,
        **platform_ids: str | None,
    ) -> None:
        """Record a new run; ``platform_ids``: organization_id, project_id, test_id,
        triggered_by. ``ValueError`` for a run_id already stored or an unknown id name."""
        unknown = set(platform_ids) - set(_PLATFORM_IDS)
        if unknown:
            raise ValueError(f"unknown run fields: {', '.join(sorted(unknown))}")
        status = RunStatus(status)
        test = test_json if isinstance(test_json, str) else json.dumps(_json_ready(test_json))
        ids = [platform_ids.get(name) for name in _PLATFORM_IDS]
        with self._lock:
            self._writable()
            try:
                self._con.execute(
                    "INSERT INTO runs (run_id, test_name, test, status, created_at, endpoints,"
                    " success_threshold, organization_id, project_id, test_id, triggered_by)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        run_id,
                        test_name,
                        test,
                        str(status),
                        utc_now(),
                        endpoints,
                        success_threshold,
                        *ids,
                    ],
                )
            except duckdb.ConstraintException:
                raise ValueError(f"run {run_id!r} already exists") from None
            if status is RunStatus.RUNNING:
                self._con.execute(
                    "UPDATE runs SET started_at = created_at WHERE run_id = ?", [run_id]
                )

    def has_run(self, run_id: str) -> bool:
        with self._lock:
            rows = self._con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchall()
            return bool(rows)

    def set_status(self, run_id: str, status: RunStatus | str, reason: str | None = None) -> None:
        """Set a run's status and the reason for it (None clears the previous reason). RUNNING
        stamps ``started_at`` (the first time); COMPLETED and FAILED stamp ``ended_at`` and are
        final (``ValueError`` to leave them; setting the same one again is a no-op)."""
        status = RunStatus(status)
        with self._lock:
            self._writable()
            self._flush()
            rows = self._con.execute(
                "SELECT status FROM runs WHERE run_id = ?", [run_id]
            ).fetchall()
            if not rows:
                raise KeyError(f"no run {run_id!r}")
            [(current,)] = rows
            if current in _TERMINAL and status != current:
                raise ValueError(f"run {run_id!r} is {current}: it cannot become {status}")
            now = utc_now()
            self._con.execute(
                "UPDATE runs SET status = ?, reason = ?,"
                " started_at = CASE WHEN ? THEN coalesce(started_at, ?) ELSE started_at END,"
                " ended_at = CASE WHEN ? THEN coalesce(ended_at, ?) ELSE ended_at END"
                " WHERE run_id = ?",
                [
                    str(status),
                    reason,
                    status is RunStatus.RUNNING,
                    now,
                    status in _TERMINAL,
                    now,
                    run_id,
                ],
            )
            if status in _TERMINAL:
                self._seen = {key: s for key, s in self._seen.items() if key[0] != run_id}

    def set_summary(self, run_id: str, summary: Mapping[str, Any]) -> None:
        """Store a run's summary (``analysis.run_summary``) as JSON; NaN becomes null."""
        text = json.dumps(_json_ready(summary), allow_nan=False)
        with self._lock:
            self._writable()
            self._flush()
            self._con.execute("UPDATE runs SET summary = ? WHERE run_id = ?", [text, run_id])

    # -- batches ------------------------------------------------------------------------------
    def append(self, batch: ShardBatch) -> int:
        """Append a shard's batch; return its rows (0 for a batch already appended)."""
        tables = batch.tables()
        with self._lock:
            self._writable()
            seen = self._seen.setdefault((batch.run_id, batch.shard_id), set())
            if batch.seq in seen:
                return 0
            metrics = tables.pop("metrics", None)
            if metrics is not None and not metrics.schema.equals(METRICS_SCHEMA):
                raise ValueError("a metrics table must have METRICS_SCHEMA: use metrics_table")
            if tables:
                self._in_transaction(lambda: self._insert_small(tables))
            seen.add(batch.seq)
            if metrics is not None and metrics.num_rows:
                self._buffer(metrics)
            return batch.rows()

    def flush(self) -> int:
        """Write the pending metric rows now; return how many."""
        with self._lock:
            return 0 if self.read_only else self._flush()

    def _buffer(self, metrics: pa.Table) -> None:
        now = time.monotonic()
        if not self._pending:
            self._pending_since = now
        self._pending.append(metrics)
        self._pending_rows += metrics.num_rows
        if self._pending_rows >= self.flush_rows:
            self._flush(whole_row_groups=True)
        elif now - self._pending_since >= self.flush_delay_s:
            self._flush()

    def _flush(self, *, whole_row_groups: bool = False) -> int:
        """Insert the pending metric rows (one INSERT, one transaction); with
        ``whole_row_groups``, only whole row groups, keeping the rest pending."""
        if not self._pending:
            return 0
        # One contiguous table: DuckDB appends many small Arrow chunks much more slowly.
        table = pa.concat_tables(self._pending).combine_chunks()
        rows = table.num_rows
        keep = rows % ROW_GROUP_ROWS if whole_row_groups and rows >= ROW_GROUP_ROWS else 0
        self._insert("metrics", table.slice(0, rows - keep))  # raises: rows stay pending
        self._pending = [table.slice(rows - keep)] if keep else []
        self._pending_rows = keep
        self._pending_since = time.monotonic()
        return int(rows - keep)

    def _in_transaction(self, work: Any) -> None:
        self._con.execute("BEGIN TRANSACTION")
        try:
            work()
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    def _register(self, table: pa.Table) -> None:
        # A result left half-read on the shared connection (fetchone) makes DuckDB 2.0 refuse
        # to register; run it to its end first.
        self._con.complete()
        self._con.register("_batch", table)

    def _insert(self, name: str, table: pa.Table) -> None:
        self._register(table)
        try:
            self._con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _batch")
        finally:
            self._con.unregister("_batch")

    def _insert_small(self, tables: Mapping[str, pa.Table]) -> None:
        for name, table in tables.items():
            if name != "endpoints":
                self._insert(name, table)
                continue
            ids = table.column("endpoint_id")
            if pc.count_distinct(ids).as_py() != len(ids):
                raise ValueError("endpoints table repeats an endpoint_id: use endpoints_table")
            self._register(table)
            try:
                self._con.execute(_UPSERT_ENDPOINTS)
            finally:
                self._con.unregister("_batch")

    # -- endpoints ----------------------------------------------------------------------------
    def mark_endpoints(
        self, run_id: str, endpoint_ids: Iterable[int], outcome: Outcome | str, reason: str
    ) -> int:
        """Decide the endpoints still undecided (a shard died: ``Outcome.OSERROR``): set their
        outcome, reason and call result, close them, and record the events. Endpoints with
        an outcome keep it. Return how many were decided here."""
        outcome = Outcome(outcome)
        wanted = sorted(set(endpoint_ids))
        with self._lock:
            self._writable()
            self._flush()
            decided = {
                row[0]
                for row in self._con.execute(
                    "SELECT endpoint_id FROM endpoints WHERE run_id = ? AND outcome IS NOT NULL"
                    " AND list_contains(?, endpoint_id)",
                    [run_id, wanted],
                ).fetchall()
            }
            todo = [endpoint_id for endpoint_id in wanted if endpoint_id not in decided]
            if todo:
                self._in_transaction(lambda: self._decide(run_id, todo, outcome, reason))
            return len(todo)

    def _decide(self, run_id: str, ids: list[int], outcome: Outcome, reason: str) -> None:
        now = utc_now()
        self._con.execute(
            'INSERT INTO endpoint_events (run_id, endpoint_id, "at", kind, phase, previous)'
            " SELECT ?, id, ?, 'phase', 'CLOSED', e.phase FROM unnest(?::INTEGER[]) AS t(id)"
            " LEFT JOIN endpoints e ON e.run_id = ? AND e.endpoint_id = t.id"
            " WHERE e.phase IS DISTINCT FROM 'CLOSED'",
            [run_id, now, ids, run_id],
        )
        self._con.execute(
            'INSERT INTO endpoint_events (run_id, endpoint_id, "at", kind, outcome, reason)'
            " SELECT ?, id, ?, 'outcome', ?, ? FROM unnest(?::INTEGER[]) AS t(id)",
            [run_id, now, str(outcome), reason, ids],
        )
        result = call_result(outcome)
        self._con.execute(
            "INSERT INTO endpoints (run_id, endpoint_id, phase, outcome, outcome_reason,"
            " call_result) SELECT ?, id, 'CLOSED', ?, ?, ? FROM unnest(?::INTEGER[]) AS t(id)"
            " ON CONFLICT (run_id, endpoint_id) DO UPDATE SET phase = 'CLOSED',"
            " outcome = excluded.outcome, outcome_reason = excluded.outcome_reason,"
            " call_result = coalesce(endpoints.call_result, excluded.call_result)",
            [run_id, str(outcome), reason, result, ids],
        )
