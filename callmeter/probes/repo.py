"""Storage of probes, their executions, webhooks, deliveries and status pages: plain functions
over a :class:`~callmeter.server.db.Tx`. Permissions are checked by the routes first.

Webhook secrets are stored as generated (the server signs with them) and leave this module
only through :func:`webhook_secret` (the dispatcher) and the creation that shows them once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from callmeter.probes.evaluation import Evaluation
from callmeter.probes.models import (
    AttemptOut,
    BreachOut,
    ComponentIn,
    ComponentOut,
    DeliveryOut,
    ExecutionOut,
    ExecutionStatus,
    Health,
    ProbeConfig,
    ProbeOut,
    StatusPageOut,
    WebhookOut,
)
from callmeter.server.db import Row, Tx, new_id
from callmeter.server.errors import Conflict, InvalidInput, NotFound
from callmeter.server.repo_resources import Owner

__all__ = [
    "KINDS",
    "count_probes",
    "create_probe",
    "create_status_page",
    "create_webhook",
    "delete_probe",
    "delete_status_page",
    "delete_webhook",
    "due_deliveries",
    "due_probes",
    "executions_in",
    "finish_execution",
    "get_execution",
    "get_probe",
    "get_status_page",
    "get_webhook",
    "health_history",
    "insert_delivery",
    "insert_execution",
    "list_deliveries",
    "list_executions",
    "list_probes",
    "list_status_pages",
    "list_webhooks",
    "mark_interrupted",
    "mark_running",
    "open_execution",
    "owner_of",
    "probe_config",
    "purge_orphans",
    "record_attempt",
    "requeue",
    "set_next_run",
    "startable_executions",
    "status_page_by_slug",
    "update_probe",
    "update_status_page",
    "update_webhook",
    "webhook_secret",
]

# kind -> (table, id column): the API's words for the probe resources.
KINDS: Mapping[str, tuple[str, str]] = {
    "probe": ("probes", "probe_id"),
    "probe execution": ("probe_executions", "execution_id"),
    "webhook": ("probe_webhooks", "webhook_id"),
    "status page": ("status_pages", "status_page_id"),
}


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def owner_of(tx: Tx, kind: str, resource_id: str) -> Owner:
    """The organization and project of a probe resource; 404 when there is none (or its
    project was deleted: its probes go with it at the scheduler's next pass)."""
    table, column = KINDS[kind]
    row = tx.one(
        f"SELECT organization_id, project_id FROM {table} WHERE {column} = ? "
        "AND project_id IN (SELECT project_id FROM projects)",
        [resource_id],
    )
    if row is None:
        raise NotFound.of(kind, resource_id)
    return Owner(row["organization_id"], row["project_id"])


# Probes --------------------------------------------------------------------------------------


def _probe(row: Row) -> ProbeOut:
    config = json.loads(row["config_json"])
    return ProbeOut.model_validate(
        {
            **config,
            "probe_id": row["probe_id"],
            "project_id": row["project_id"],
            "health": row["health"],
            "health_since": _utc(row["health_since"]),
            "last_execution_id": row["last_execution_id"],
            "last_execution_at": _utc(row["last_execution_at"]),
            "next_run_at": _utc(row["next_run_at"]),
            "created_at": _at(row["created_at"]),
            "updated_at": _at(row["updated_at"]),
        }
    )


def _unique_name(tx: Tx, project_id: str, name: str, skip_id: str | None = None) -> None:
    found = tx.scalar(
        "SELECT probe_id FROM probes WHERE project_id = ? AND name = ?", [project_id, name]
    )
    if found is not None and found != skip_id:
        raise Conflict(f"name: {name!r} is already taken by another probe of this project")


def count_probes(tx: Tx, organization_id: str) -> int:
    return int(tx.scalar("SELECT count(*) FROM probes WHERE organization_id = ?",
                         [organization_id]))  # fmt: skip


def create_probe(tx: Tx, owner: Owner, config: ProbeConfig, now: float) -> ProbeOut:
    """A new probe, health UNKNOWN (no data yet); an enabled one is due at once."""
    _unique_name(tx, owner.project_id, config.name)
    probe_id = new_id("prb")
    tx.run(
        "INSERT INTO probes VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)",
        [
            probe_id, owner.organization_id, owner.project_id, config.name,
            config.model_dump_json(), config.enabled, Health.UNKNOWN, now,
            now if config.enabled else None, now, now,
        ],
    )  # fmt: skip
    return get_probe(tx, probe_id)


def get_probe(tx: Tx, probe_id: str) -> ProbeOut:
    row = tx.one("SELECT * FROM probes WHERE probe_id = ?", [probe_id])
    if row is None:
        raise NotFound.of("probe", probe_id)
    return _probe(row)


def probe_config(tx: Tx, probe_id: str) -> ProbeConfig:
    row = tx.one("SELECT config_json FROM probes WHERE probe_id = ?", [probe_id])
    if row is None:
        raise NotFound.of("probe", probe_id)
    return ProbeConfig.model_validate_json(row["config_json"])


def list_probes(tx: Tx, project_id: str) -> list[ProbeOut]:
    rows = tx.all(
        "SELECT * FROM probes WHERE project_id = ? ORDER BY created_at, rowid", [project_id]
    )
    return [_probe(row) for row in rows]


def update_probe(tx: Tx, probe_id: str, config: ProbeConfig, now: float) -> ProbeOut:
    """Store the new configuration. Pausing clears the next run; resuming makes the probe due
    at once; a new interval counts from the last execution (due at once when already past)."""
    row = tx.one("SELECT * FROM probes WHERE probe_id = ?", [probe_id])
    if row is None:
        raise NotFound.of("probe", probe_id)
    _unique_name(tx, row["project_id"], config.name, skip_id=probe_id)
    before = ProbeConfig.model_validate_json(row["config_json"])
    next_run_at = row["next_run_at"]
    if not config.enabled:
        next_run_at = None
    elif not before.enabled:
        next_run_at = now
    elif config.interval_min != before.interval_min:
        last = row["last_execution_at"]
        next_run_at = now if last is None else last + config.interval_s
    tx.run(
        "UPDATE probes SET name = ?, config_json = ?, enabled = ?, next_run_at = ?, "
        "updated_at = ? WHERE probe_id = ?",
        [config.name, config.model_dump_json(), config.enabled, next_run_at, now, probe_id],
    )
    return get_probe(tx, probe_id)


def _delete_deliveries(tx: Tx, where: str, params: Sequence[Any]) -> None:
    tx.run(
        "DELETE FROM probe_webhook_attempts WHERE delivery_id IN "
        f"(SELECT delivery_id FROM probe_webhook_deliveries WHERE {where})",
        params,
    )
    tx.run(f"DELETE FROM probe_webhook_deliveries WHERE {where}", params)


def delete_probe(tx: Tx, probe_id: str) -> None:
    """Delete a probe, its executions, webhooks and deliveries, and its place on status pages
    (the runs of its executions stay in the store, as a test's runs do)."""
    if tx.scalar("SELECT count(*) FROM probes WHERE probe_id = ?", [probe_id]) == 0:
        raise NotFound.of("probe", probe_id)
    _delete_deliveries(tx, "probe_id = ?", [probe_id])
    for table in ("probe_webhooks", "probe_executions", "probes"):
        tx.run(f"DELETE FROM {table} WHERE probe_id = ?", [probe_id])
    pages = tx.all(
        "SELECT DISTINCT status_page_id FROM status_page_components WHERE probe_id = ?",
        [probe_id],
    )
    for page in pages:
        kept = [
            (r["probe_id"], r["display_name"])
            for r in _component_rows(tx, page["status_page_id"])
            if r["probe_id"] != probe_id
        ]
        _write_components(tx, page["status_page_id"], kept)


def purge_orphans(tx: Tx) -> int:
    """Delete the probes and status pages of projects that no longer exist; how many."""
    orphans = tx.all(
        "SELECT probe_id FROM probes WHERE project_id NOT IN (SELECT project_id FROM projects)"
    )
    for row in orphans:
        delete_probe(tx, row["probe_id"])
    pages = tx.all(
        "SELECT status_page_id FROM status_pages "
        "WHERE project_id NOT IN (SELECT project_id FROM projects)"
    )
    for row in pages:
        delete_status_page(tx, row["status_page_id"])
    return len(orphans) + len(pages)


# Executions ----------------------------------------------------------------------------------


def _floats(text: str | None) -> dict[str, float | None]:
    values: dict[str, float | None] = json.loads(text) if text else {}
    return values


def _execution(row: Row) -> ExecutionOut:
    health, previous = row["health"], row["previous_health"]
    return ExecutionOut(
        execution_id=row["execution_id"],
        probe_id=row["probe_id"],
        trigger=row["trigger"],
        status=ExecutionStatus(row["status"]),
        scheduled_for=_utc(row["scheduled_for"]),
        missed_slots=int(row["missed_slots"]),
        attempts=int(row["attempts"]),
        run_id=row["run_id"],
        created_at=_at(row["created_at"]),
        started_at=_utc(row["started_at"]),
        finished_at=_utc(row["finished_at"]),
        health=None if health is None else Health(health),
        previous_health=None if previous is None else Health(previous),
        measurements=_floats(row["measurements_json"]),
        breaches=[BreachOut.model_validate(b) for b in json.loads(row["breaches_json"] or "[]")],
        reason=row["reason"],
    )


def get_execution(tx: Tx, execution_id: str) -> ExecutionOut:
    row = tx.one("SELECT * FROM probe_executions WHERE execution_id = ?", [execution_id])
    if row is None:
        raise NotFound.of("probe execution", execution_id)
    return _execution(row)


def list_executions(
    tx: Tx,
    probe_id: str,
    *,
    health: str | None = None,
    since: float | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[ExecutionOut], int]:
    """A page of a probe's executions, newest first, and how many match in all."""
    where = " WHERE probe_id = ?"
    params: list[Any] = [probe_id]
    if health is not None:
        where += " AND health = ?"
        params.append(health)
    if since is not None:
        where += " AND created_at >= ?"
        params.append(since)
    total = int(tx.scalar(f"SELECT count(*) FROM probe_executions{where}", params))
    rows = tx.all(
        f"SELECT * FROM probe_executions{where} ORDER BY seq DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return [_execution(row) for row in rows], total


def insert_execution(
    tx: Tx, probe_id: str, trigger: str, scheduled_for: float | None, missed: int, now: float
) -> str:
    owner = owner_of(tx, "probe", probe_id)
    execution_id = new_id("exe")
    tx.run(
        "INSERT INTO probe_executions (execution_id, probe_id, organization_id, project_id, "
        "trigger, status, scheduled_for, missed_slots, attempts, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
        [execution_id, probe_id, owner.organization_id, owner.project_id, trigger,
         ExecutionStatus.PENDING, scheduled_for, missed, now],
    )  # fmt: skip
    return execution_id


def open_execution(tx: Tx, probe_id: str, status: ExecutionStatus) -> Row | None:
    """The probe's execution in ``status`` (PENDING or RUNNING), if any."""
    return tx.one(
        "SELECT * FROM probe_executions WHERE probe_id = ? AND status = ? ORDER BY seq LIMIT 1",
        [probe_id, status],
    )


def due_probes(tx: Tx, now: float) -> list[Row]:
    """Enabled probes whose next run is due, in live projects, earliest first."""
    return tx.all(
        "SELECT probe_id, next_run_at, config_json FROM probes WHERE enabled "
        "AND next_run_at IS NOT NULL AND next_run_at <= ? "
        "AND project_id IN (SELECT project_id FROM projects) ORDER BY next_run_at, probe_id",
        [now],
    )


def set_next_run(tx: Tx, probe_id: str, next_run_at: float) -> None:
    tx.run("UPDATE probes SET next_run_at = ? WHERE probe_id = ?", [next_run_at, probe_id])


def startable_executions(tx: Tx) -> list[Row]:
    """PENDING executions of probes with none RUNNING, oldest first (one per probe)."""
    return tx.all(
        "SELECT e.* FROM probe_executions e WHERE e.status = 'PENDING' "
        "AND NOT EXISTS (SELECT 1 FROM probe_executions r WHERE r.probe_id = e.probe_id "
        "AND r.status = 'RUNNING') "
        "AND e.seq = (SELECT min(p.seq) FROM probe_executions p WHERE p.probe_id = e.probe_id "
        "AND p.status = 'PENDING') ORDER BY e.seq"
    )


def executions_in(tx: Tx, status: ExecutionStatus) -> list[Row]:
    return tx.all("SELECT * FROM probe_executions WHERE status = ? ORDER BY seq", [status])


def mark_running(tx: Tx, execution_id: str, run_id: str, now: float) -> None:
    tx.run(
        "UPDATE probe_executions SET status = 'RUNNING', run_id = ?, started_at = ?, "
        "attempts = attempts + 1 WHERE execution_id = ?",
        [run_id, now, execution_id],
    )


def requeue(tx: Tx, execution_id: str, reason: str) -> None:
    """Back to PENDING (its slot is not lost): the server stopped while it ran."""
    tx.run(
        "UPDATE probe_executions SET status = 'PENDING', reason = ?, started_at = NULL "
        "WHERE execution_id = ?",
        [reason, execution_id],
    )


def mark_interrupted(tx: Tx, execution_id: str, reason: str, now: float) -> None:
    tx.run(
        "UPDATE probe_executions SET status = 'INTERRUPTED', reason = ?, finished_at = ? "
        "WHERE execution_id = ?",
        [reason, now, execution_id],
    )


def finish_execution(
    tx: Tx,
    execution_id: str,
    evaluation: Evaluation,
    measurements: Mapping[str, float | None],
    now: float,
    *,
    run_stored: bool = True,
) -> tuple[Health, Health]:
    """Record the evaluation and move the probe's health; returns (previous, current).
    ``run_stored=False``: the call never started, so the execution keeps no run id."""
    row = tx.one("SELECT probe_id FROM probe_executions WHERE execution_id = ?", [execution_id])
    if row is None:
        raise NotFound.of("probe execution", execution_id)
    probe_id = row["probe_id"]
    previous = Health(tx.scalar("SELECT health FROM probes WHERE probe_id = ?", [probe_id]))
    current = evaluation.health
    clean = {k: (v if v is None or math.isfinite(v) else None) for k, v in measurements.items()}
    tx.run(
        "UPDATE probe_executions SET status = 'DONE', finished_at = ?, health = ?, "
        "previous_health = ?, measurements_json = ?, breaches_json = ?, reason = ?, "
        "run_id = CASE WHEN ? THEN run_id END WHERE execution_id = ?",
        [now, current, previous, json.dumps(clean),
         json.dumps([b.as_dict() for b in evaluation.breaches]), evaluation.reason,
         run_stored, execution_id],
    )  # fmt: skip
    tx.run(
        "UPDATE probes SET health = ?, last_execution_id = ?, last_execution_at = ?, "
        "health_since = CASE WHEN health = ? THEN health_since ELSE ? END WHERE probe_id = ?",
        [current, execution_id, now, current, now, probe_id],
    )
    return previous, current


def health_history(tx: Tx, probe_ids: Sequence[str], since: float) -> list[Row]:
    """(probe_id, at, health) of evaluated executions since ``since``, oldest first."""
    if not probe_ids:
        return []
    marks = ", ".join("?" for _ in probe_ids)
    return tx.all(
        "SELECT probe_id, finished_at AS at, health FROM probe_executions "
        f"WHERE status = 'DONE' AND probe_id IN ({marks}) AND finished_at >= ? "
        "ORDER BY finished_at, seq",
        [*probe_ids, since],
    )


# Webhooks ------------------------------------------------------------------------------------


def _webhook(row: Row) -> WebhookOut:
    return WebhookOut(
        webhook_id=row["webhook_id"],
        probe_id=row["probe_id"],
        url=row["url"],
        description=row["description"],
        enabled=bool(row["enabled"]),
        secret_hint=f"…{row['secret'][-4:]}",
        created_at=_at(row["created_at"]),
    )


def create_webhook(
    tx: Tx, probe_id: str, url: str, description: str, enabled: bool, secret: str, now: float
) -> WebhookOut:
    owner = owner_of(tx, "probe", probe_id)
    webhook_id = new_id("whk")
    tx.run(
        "INSERT INTO probe_webhooks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [webhook_id, probe_id, owner.organization_id, owner.project_id, url, description,
         secret, enabled, now],
    )  # fmt: skip
    return get_webhook(tx, webhook_id)


def get_webhook(tx: Tx, webhook_id: str) -> WebhookOut:
    row = tx.one("SELECT * FROM probe_webhooks WHERE webhook_id = ?", [webhook_id])
    if row is None:
        raise NotFound.of("webhook", webhook_id)
    return _webhook(row)


def list_webhooks(tx: Tx, probe_id: str, *, enabled_only: bool = False) -> list[WebhookOut]:
    rows = tx.all(
        "SELECT * FROM probe_webhooks WHERE probe_id = ? AND (enabled OR NOT ?) "
        "ORDER BY created_at, rowid",
        [probe_id, enabled_only],
    )
    return [_webhook(row) for row in rows]


def update_webhook(tx: Tx, webhook_id: str, changes: Mapping[str, Any]) -> WebhookOut:
    get_webhook(tx, webhook_id)
    for column in ("url", "description", "enabled", "secret"):
        if column in changes and changes[column] is not None:
            tx.run(
                f"UPDATE probe_webhooks SET {column} = ? WHERE webhook_id = ?",
                [changes[column], webhook_id],
            )
    return get_webhook(tx, webhook_id)


def delete_webhook(tx: Tx, webhook_id: str) -> None:
    get_webhook(tx, webhook_id)
    _delete_deliveries(tx, "webhook_id = ?", [webhook_id])
    tx.run("DELETE FROM probe_webhooks WHERE webhook_id = ?", [webhook_id])


def webhook_secret(tx: Tx, webhook_id: str) -> str | None:
    """The signing secret: for the dispatcher only."""
    value = tx.scalar("SELECT secret FROM probe_webhooks WHERE webhook_id = ?", [webhook_id])
    return None if value is None else str(value)


def insert_delivery(
    tx: Tx,
    webhook: WebhookOut,
    event: str,
    event_id: str,
    execution_id: str | None,
    body: str,
    now: float,
) -> str:
    delivery_id = new_id("dlv")
    tx.run(
        "INSERT INTO probe_webhook_deliveries (delivery_id, webhook_id, probe_id, event, "
        "event_id, execution_id, body, status, attempts, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'PENDING', 0, ?, ?)",
        [delivery_id, webhook.webhook_id, webhook.probe_id, event, event_id, execution_id,
         body, now, now],
    )  # fmt: skip
    return delivery_id


def due_deliveries(tx: Tx, now: float) -> list[Row]:
    """PENDING deliveries whose next attempt is due, with the URL, oldest first."""
    return tx.all(
        "SELECT d.delivery_id, d.webhook_id, d.event, d.body, d.attempts, w.url "
        "FROM probe_webhook_deliveries d JOIN probe_webhooks w USING (webhook_id) "
        "WHERE d.status = 'PENDING' AND d.next_attempt_at <= ? ORDER BY d.seq",
        [now],
    )


def record_attempt(
    tx: Tx,
    delivery_id: str,
    attempt: int,
    at: float,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    *,
    delivered: bool,
    next_attempt_at: float | None,
) -> None:
    """Log an attempt; the delivery becomes DELIVERED, stays PENDING until
    ``next_attempt_at``, or (None) FAILED for good."""
    tx.run(
        "INSERT INTO probe_webhook_attempts VALUES (?, ?, ?, ?, ?, ?)",
        [delivery_id, attempt, at, status_code, error, duration_ms],
    )
    status = "DELIVERED" if delivered else ("PENDING" if next_attempt_at is not None else "FAILED")
    tx.run(
        "UPDATE probe_webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, "
        "last_status_code = ?, last_error = ?, delivered_at = ? WHERE delivery_id = ?",
        [status, attempt, None if delivered else next_attempt_at, status_code, error,
         at if delivered else None, delivery_id],
    )  # fmt: skip


def _attempt(row: Row) -> AttemptOut:
    return AttemptOut(
        attempt=row["attempt"],
        at=_at(row["attempted_at"]),
        status_code=row["status_code"],
        error=row["error"],
        duration_ms=row["duration_ms"],
    )


def _delivery(row: Row, log: list[AttemptOut]) -> DeliveryOut:
    return DeliveryOut(
        delivery_id=row["delivery_id"],
        webhook_id=row["webhook_id"],
        event=row["event"],
        event_id=row["event_id"],
        execution_id=row["execution_id"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=_utc(row["next_attempt_at"]),
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=_at(row["created_at"]),
        delivered_at=_utc(row["delivered_at"]),
        body=json.loads(row["body"]),
        log=log,
    )


def list_deliveries(
    tx: Tx, webhook_id: str, *, limit: int = 100, offset: int = 0
) -> tuple[list[DeliveryOut], int]:
    """A page of a webhook's deliveries, newest first, each with its attempts."""
    total = int(tx.scalar("SELECT count(*) FROM probe_webhook_deliveries WHERE webhook_id = ?",
                          [webhook_id]))  # fmt: skip
    rows = tx.all(
        "SELECT * FROM probe_webhook_deliveries WHERE webhook_id = ? ORDER BY seq DESC "
        "LIMIT ? OFFSET ?",
        [webhook_id, limit, offset],
    )
    log: dict[str, list[AttemptOut]] = {row["delivery_id"]: [] for row in rows}
    if log:
        marks = ", ".join("?" for _ in log)
        attempts = tx.all(
            f"SELECT * FROM probe_webhook_attempts WHERE delivery_id IN ({marks}) "
            "ORDER BY delivery_id, attempt",
            list(log),
        )
        for attempt in attempts:
            log[attempt["delivery_id"]].append(_attempt(attempt))
    return [_delivery(row, log[row["delivery_id"]]) for row in rows], total


# Status pages --------------------------------------------------------------------------------


def _component_rows(tx: Tx, status_page_id: str) -> list[Row]:
    return tx.all(
        "SELECT probe_id, display_name FROM status_page_components WHERE status_page_id = ? "
        "ORDER BY position",
        [status_page_id],
    )


def _write_components(tx: Tx, status_page_id: str, components: Iterable[tuple[str, str]]) -> None:
    tx.run("DELETE FROM status_page_components WHERE status_page_id = ?", [status_page_id])
    for position, (probe_id, display_name) in enumerate(components):
        tx.run(
            "INSERT INTO status_page_components VALUES (?, ?, ?, ?)",
            [status_page_id, position, probe_id, display_name],
        )


def _resolve_components(
    tx: Tx, project_id: str, components: Sequence[ComponentIn]
) -> list[tuple[str, str]]:
    """(probe_id, display name) per component; a probe of another project is a 400."""
    resolved: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, component in enumerate(components):
        row = tx.one(
            "SELECT name FROM probes WHERE probe_id = ? AND project_id = ?",
            [component.probe_id, project_id],
        )
        if row is None:
            raise InvalidInput(
                f"components[{index}].probe_id: no probe {component.probe_id!r} in this project"
            )
        if component.probe_id in seen:
            raise InvalidInput(f"components[{index}].probe_id: listed twice")
        seen.add(component.probe_id)
        resolved.append((component.probe_id, component.display_name or row["name"]))
    return resolved


def _unique_slug(tx: Tx, slug: str, skip_id: str | None = None) -> None:
    found = tx.scalar("SELECT status_page_id FROM status_pages WHERE slug = ?", [slug])
    if found is not None and found != skip_id:
        raise Conflict(f"slug: {slug!r} is already taken by another status page")


def _status_page(tx: Tx, row: Row, public_url: str) -> StatusPageOut:
    components = [
        ComponentOut(probe_id=c["probe_id"], display_name=c["display_name"])
        for c in _component_rows(tx, row["status_page_id"])
    ]
    return StatusPageOut(
        status_page_id=row["status_page_id"], project_id=row["project_id"], name=row["name"],
        slug=row["slug"], description=row["description"], components=components,
        url=f"{public_url}/status/{row['slug']}", created_at=_at(row["created_at"]),
        updated_at=_at(row["updated_at"]),
    )  # fmt: skip


def create_status_page(
    tx: Tx,
    owner: Owner,
    name: str,
    slug: str,
    description: str,
    components: Sequence[ComponentIn],
    now: float,
    public_url: str,
) -> StatusPageOut:
    _unique_slug(tx, slug)
    resolved = _resolve_components(tx, owner.project_id, components)
    page_id = new_id("stp")
    tx.run(
        "INSERT INTO status_pages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [page_id, owner.organization_id, owner.project_id, slug, name, description, now, now],
    )
    _write_components(tx, page_id, resolved)
    return get_status_page(tx, page_id, public_url)


def get_status_page(tx: Tx, status_page_id: str, public_url: str) -> StatusPageOut:
    row = tx.one("SELECT * FROM status_pages WHERE status_page_id = ?", [status_page_id])
    if row is None:
        raise NotFound.of("status page", status_page_id)
    return _status_page(tx, row, public_url)


def status_page_by_slug(tx: Tx, slug: str, public_url: str) -> StatusPageOut | None:
    row = tx.one(
        "SELECT * FROM status_pages WHERE slug = ? "
        "AND project_id IN (SELECT project_id FROM projects)",
        [slug],
    )
    return None if row is None else _status_page(tx, row, public_url)


def list_status_pages(tx: Tx, project_id: str, public_url: str) -> list[StatusPageOut]:
    rows = tx.all(
        "SELECT * FROM status_pages WHERE project_id = ? ORDER BY created_at, rowid",
        [project_id],
    )
    return [_status_page(tx, row, public_url) for row in rows]


def update_status_page(
    tx: Tx, status_page_id: str, changes: Mapping[str, Any], now: float, public_url: str
) -> StatusPageOut:
    current = get_status_page(tx, status_page_id, public_url)
    if changes.get("slug") is not None:
        _unique_slug(tx, changes["slug"], skip_id=status_page_id)
    for column in ("name", "slug", "description"):
        if changes.get(column) is not None:
            tx.run(
                f"UPDATE status_pages SET {column} = ? WHERE status_page_id = ?",
                [changes[column], status_page_id],
            )
    if changes.get("components") is not None:
        components = [ComponentIn.model_validate(c) for c in changes["components"]]
        resolved = _resolve_components(tx, current.project_id, components)
        _write_components(tx, status_page_id, resolved)
    tx.run("UPDATE status_pages SET updated_at = ? WHERE status_page_id = ?",
           [now, status_page_id])  # fmt: skip
    return get_status_page(tx, status_page_id, public_url)


def delete_status_page(tx: Tx, status_page_id: str) -> None:
    tx.run("DELETE FROM status_page_components WHERE status_page_id = ?", [status_page_id])
    tx.run("DELETE FROM status_pages WHERE status_page_id = ?", [status_page_id])
