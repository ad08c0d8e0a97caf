"""Platform storage of the run queue (``run_queue``): what the queue needs beyond the store's
``runs`` row (which holds the status and its reason). A row is *waiting* until
``started_at`` is set, *active* until ``finished_at`` is set, then done."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from callmeter.server.db import Row, Tx
from callmeter.server.payloads import RunOut
from callmeter.server.workers import Demand

__all__ = [
    "QueuedRun",
    "active_runs",
    "get_queued",
    "get_run",
    "insert_queued",
    "list_runs",
    "mark_deferred",
    "mark_finished",
    "mark_started",
    "retry_now",
    "run_status",
    "waiting_runs",
]


@dataclass(frozen=True, slots=True)
class QueuedRun:
    run_id: str
    organization_id: str
    project_id: str
    test_id: str | None
    definition: Mapping[str, Any]  # as stored, plus its name: no SIP passwords
    endpoints: int
    duration_s: float
    demands: tuple[Demand, ...]
    attempts: int = 0
    next_attempt_at: float = 0.0
    enqueued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    allocation: Mapping[str, int] = field(default_factory=dict)
    shared_endpoints: int = 0


def _queued(row: Row) -> QueuedRun:
    return QueuedRun(
        run_id=row["run_id"],
        organization_id=row["organization_id"],
        project_id=row["project_id"],
        test_id=row["test_id"],
        definition=json.loads(row["definition_json"]),
        endpoints=int(row["endpoints"]),
        duration_s=float(row["duration_s"]),
        demands=tuple(
            Demand(d[0], d[1], None if d[2] is None else tuple(d[2]))
            for d in json.loads(row["demands_json"])
        ),
        attempts=int(row["attempts"]),
        next_attempt_at=float(row["next_attempt_at"]),
        enqueued_at=float(row["enqueued_at"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        allocation=json.loads(row["allocation_json"] or "{}"),
        shared_endpoints=int(row["shared_endpoints"]),
    )


def insert_queued(tx: Tx, run: QueuedRun) -> None:
    tx.run(
        "INSERT INTO run_queue (run_id, organization_id, project_id, test_id, definition_json, "
        "endpoints, duration_s, demands_json, allocation_json, shared_endpoints, attempts, "
        "next_attempt_at, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, 0, ?, ?)",
        [
            run.run_id,
            run.organization_id,
            run.project_id,
            run.test_id,
            json.dumps(run.definition),
            run.endpoints,
            run.duration_s,
            json.dumps([list(d) for d in run.demands]),
            run.next_attempt_at,
            run.enqueued_at,
        ],
    )


def get_queued(tx: Tx, run_id: str) -> QueuedRun | None:
    row = tx.one("SELECT * FROM run_queue WHERE run_id = ?", [run_id])
    return None if row is None else _queued(row)


def waiting_runs(tx: Tx) -> list[QueuedRun]:
    """Runs not started nor cancelled, first come first."""
    rows = tx.all(
        "SELECT * FROM run_queue WHERE started_at IS NULL AND finished_at IS NULL ORDER BY seq"
    )
    return [_queued(row) for row in rows]


def active_runs(tx: Tx, organization_id: str | None = None) -> list[QueuedRun]:
    """Runs started and not finished (RUNNING or STOPPING), of one organization if given."""
    sql = "SELECT * FROM run_queue WHERE started_at IS NOT NULL AND finished_at IS NULL"
    params: list[Any] = []
    if organization_id is not None:
        sql += " AND organization_id = ?"
        params.append(organization_id)
    return [_queued(row) for row in tx.all(sql + " ORDER BY seq", params)]


def mark_started(
    tx: Tx, run_id: str, now: float, allocation: Mapping[str, int], shared_endpoints: int
) -> None:
    tx.run(
        "UPDATE run_queue SET started_at = ?, allocation_json = ?, shared_endpoints = ?, "
        "attempts = attempts + 1 WHERE run_id = ?",
        [now, json.dumps(dict(allocation)), shared_endpoints, run_id],
    )


def mark_deferred(tx: Tx, run_id: str, attempts: int, next_attempt_at: float) -> None:
    tx.run(
        "UPDATE run_queue SET attempts = ?, next_attempt_at = ? WHERE run_id = ?",
        [attempts, next_attempt_at, run_id],
    )


def mark_finished(tx: Tx, run_id: str, now: float) -> None:
    tx.run(
        "UPDATE run_queue SET finished_at = coalesce(finished_at, ?) WHERE run_id = ?",
        [now, run_id],
    )


def retry_now(tx: Tx, now: float) -> None:
    """Make every waiting run due (capacity was freed)."""
    tx.run(
        "UPDATE run_queue SET next_attempt_at = ? WHERE started_at IS NULL "
        "AND finished_at IS NULL AND next_attempt_at > ?",
        [now, now],
    )


# Runs as the API lists them: the store's row joined with the queue's -----------------------

_RUN_SELECT = (
    "SELECT r.run_id, r.project_id, r.test_id, r.test_name, r.status, r.reason, r.endpoints, "
    "r.triggered_by, r.created_at, r.started_at, r.ended_at, "
    "coalesce(q.attempts, 0) AS attempts, "
    "CASE WHEN q.started_at IS NULL AND q.finished_at IS NULL THEN q.next_attempt_at END "
    "AS next_attempt_at "
    "FROM runs r LEFT JOIN run_queue q USING (run_id)"
)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _run(row: Row) -> RunOut:
    next_at = row["next_attempt_at"]
    return RunOut(
        run_id=row["run_id"],
        project_id=row["project_id"],
        test_id=row["test_id"],
        test_name=row["test_name"] or "",
        status=row["status"],
        reason=row["reason"],
        endpoints=int(row["endpoints"] or 0),
        triggered_by=row["triggered_by"],
        attempts=int(row["attempts"]),
        next_attempt_at=None if next_at is None else datetime.fromtimestamp(next_at, UTC),
        created_at=_aware(row["created_at"]),
        started_at=_aware(row["started_at"]),
        finished_at=_aware(row["ended_at"]),
    )


def get_run(tx: Tx, run_id: str) -> RunOut | None:
    row = tx.one(f"{_RUN_SELECT} WHERE r.run_id = ?", [run_id])
    return None if row is None else _run(row)


def list_runs(
    tx: Tx,
    project_id: str,
    *,
    test_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[RunOut], int]:
    """A page of a project's runs, newest first, and how many there are in all."""
    where = " WHERE r.project_id = ?"
    params: list[Any] = [project_id]
    if test_id is not None:
        where += " AND r.test_id = ?"
        params.append(test_id)
    if status is not None:
        where += " AND r.status = ?"
        params.append(status)
    total = int(tx.scalar(f"SELECT count(*) FROM runs r{where}", params))
    rows = tx.all(
        f"{_RUN_SELECT}{where} ORDER BY r.created_at DESC, r.run_id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return [_run(row) for row in rows], total


def run_status(tx: Tx, run_id: str) -> str | None:
    value = tx.scalar("SELECT status FROM runs WHERE run_id = ?", [run_id])
    return None if value is None else str(value)
