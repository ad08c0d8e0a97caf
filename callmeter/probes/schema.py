"""The probes' tables, beside the store's and the platform's in the same database.

``migrate(db)`` brings the database to ``SCHEMA_VERSION`` step by step, recorded in
``probe_schema`` (the store keeps ``schema_version``, the platform ``platform_schema``). Times
are epoch seconds (DOUBLE, UTC), as in the platform's tables. No foreign keys and no unique
indexes besides primary keys: DuckDB refuses some updates of indexed rows inside a
transaction, so uniqueness (probe names, status page slugs) is checked by :mod:`repo` under
the database lock.

An execution's results (metrics, endpoint events, SIP trace) live in the store, as a run: the
execution row keeps its ``run_id`` and the evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

from callmeter.server.db import Database

__all__ = ["SCHEMA_VERSION", "TABLES", "migrate"]

TABLES = (
    "probes",
    "probe_executions",
    "probe_webhooks",
    "probe_webhook_deliveries",
    "probe_webhook_attempts",
    "status_pages",
    "status_page_components",
)

_V1: Sequence[str] = (
    """CREATE TABLE probes (
        probe_id VARCHAR PRIMARY KEY,
        organization_id VARCHAR NOT NULL,
        project_id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        config_json VARCHAR NOT NULL,
        enabled BOOLEAN NOT NULL,
        health VARCHAR NOT NULL,
        health_since DOUBLE,
        last_execution_id VARCHAR,
        last_execution_at DOUBLE,
        next_run_at DOUBLE,
        created_at DOUBLE NOT NULL,
        updated_at DOUBLE NOT NULL
    )""",
    "CREATE SEQUENCE probe_executions_seq",
    """CREATE TABLE probe_executions (
        execution_id VARCHAR PRIMARY KEY,
        seq BIGINT NOT NULL DEFAULT nextval('probe_executions_seq'),
        probe_id VARCHAR NOT NULL,
        organization_id VARCHAR NOT NULL,
        project_id VARCHAR NOT NULL,
        trigger VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        scheduled_for DOUBLE,
        missed_slots INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        run_id VARCHAR,
        created_at DOUBLE NOT NULL,
        started_at DOUBLE,
        finished_at DOUBLE,
        health VARCHAR,
        previous_health VARCHAR,
        measurements_json VARCHAR,
        breaches_json VARCHAR,
        reason VARCHAR
    )""",
    """CREATE TABLE probe_webhooks (
        webhook_id VARCHAR PRIMARY KEY,
        probe_id VARCHAR NOT NULL,
        organization_id VARCHAR NOT NULL,
        project_id VARCHAR NOT NULL,
        url VARCHAR NOT NULL,
        description VARCHAR NOT NULL,
        secret VARCHAR NOT NULL,
        enabled BOOLEAN NOT NULL,
        created_at DOUBLE NOT NULL
    )""",
    "CREATE SEQUENCE probe_webhook_deliveries_seq",
    """CREATE TABLE probe_webhook_deliveries (
        delivery_id VARCHAR PRIMARY KEY,
        seq BIGINT NOT NULL DEFAULT nextval('probe_webhook_deliveries_seq'),
        webhook_id VARCHAR NOT NULL,
        probe_id VARCHAR NOT NULL,
        event VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        execution_id VARCHAR,
        body VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at DOUBLE,
        last_status_code INTEGER,
        last_error VARCHAR,
        created_at DOUBLE NOT NULL,
        delivered_at DOUBLE
    )""",
    """CREATE TABLE probe_webhook_attempts (
        delivery_id VARCHAR NOT NULL,
        attempt INTEGER NOT NULL,
        attempted_at DOUBLE NOT NULL,
        status_code INTEGER,
        error VARCHAR,
        duration_ms DOUBLE NOT NULL,
        PRIMARY KEY (delivery_id, attempt)
    )""",
    """CREATE TABLE status_pages (
        status_page_id VARCHAR PRIMARY KEY,
        organization_id VARCHAR NOT NULL,
        project_id VARCHAR NOT NULL,
        slug VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        description VARCHAR NOT NULL,
        created_at DOUBLE NOT NULL,
        updated_at DOUBLE NOT NULL
    )""",
    """CREATE TABLE status_page_components (
        status_page_id VARCHAR NOT NULL,
        position INTEGER NOT NULL,
        probe_id VARCHAR NOT NULL,
        display_name VARCHAR NOT NULL,
        PRIMARY KEY (status_page_id, position)
    )""",
)

_STEPS: Sequence[Sequence[str]] = (_V1,)
SCHEMA_VERSION = len(_STEPS)


def migrate(db: Database) -> int:
    """Create or upgrade the probe tables; returns the version the database is at."""
    with db.transaction() as tx:
        tx.run("CREATE TABLE IF NOT EXISTS probe_schema (version INTEGER NOT NULL)")
        current = tx.scalar("SELECT max(version) FROM probe_schema") or 0
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"the probe tables are at version {current}, newer than this callmeter "
            f"({SCHEMA_VERSION}): upgrade callmeter"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with db.transaction() as tx:
            for statement in _STEPS[version - 1]:
                tx.run(statement)
            tx.run("INSERT INTO probe_schema VALUES (?)", [version])
    return SCHEMA_VERSION
