"""The platform's tables, beside the store's result tables in the same database.

``migrate(db)`` brings a database to ``SCHEMA_VERSION`` step by step; every step is a list of
statements applied in one transaction and recorded in ``platform_schema``. Times are epoch
seconds (DOUBLE, UTC). There are no foreign keys: DuckDB refuses to delete a referenced row
even in the same transaction, so the repositories delete children explicitly.

The store owns ``runs`` (status, reason, organization and project of each run) and the result
tables; the platform adds ``run_queue`` for what the queue needs on top (attempts, next retry,
placement), keyed by the same ``run_id``.
"""

from __future__ import annotations

from collections.abc import Sequence

from callmeter.server.db import Database

__all__ = ["SCHEMA_VERSION", "migrate"]

_V1: Sequence[str] = (
    """CREATE TABLE users (
        user_id VARCHAR PRIMARY KEY,
        email VARCHAR NOT NULL UNIQUE,
        name VARCHAR NOT NULL,
        password_hash VARCHAR NOT NULL,
        created_at DOUBLE NOT NULL
    )""",
    """CREATE TABLE sessions (
        token_hash VARCHAR PRIMARY KEY,
        user_id VARCHAR NOT NULL,
        created_at DOUBLE NOT NULL,
        expires_at DOUBLE NOT NULL
    )""",
    """CREATE TABLE organizations (
        organization_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        created_at DOUBLE NOT NULL
    )""",
    """CREATE TABLE organization_plans (
        organization_id VARCHAR PRIMARY KEY,
        plan VARCHAR NOT NULL,
        concurrent_endpoints INTEGER NOT NULL,
        max_test_duration_s INTEGER NOT NULL,
        probe_count INTEGER NOT NULL,
        worker_capacity INTEGER NOT NULL,
        concurrent_runs INTEGER NOT NULL
    )""",
    """CREATE TABLE memberships (
        organization_id VARCHAR NOT NULL,
        user_id VARCHAR NOT NULL,
        role VARCHAR NOT NULL,
        all_projects BOOLEAN NOT NULL,
        created_at DOUBLE NOT NULL,
        PRIMARY KEY (organization_id, user_id)
    )""",
    """CREATE TABLE project_grants (
        organization_id VARCHAR NOT NULL,
        user_id VARCHAR NOT NULL,
        project_id VARCHAR NOT NULL,
        role_override VARCHAR,
        PRIMARY KEY (user_id, project_id)
    )""",
    """CREATE TABLE api_keys (
        api_key_id VARCHAR PRIMARY KEY,
        organization_id VARCHAR NOT NULL,
        user_id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        prefix VARCHAR NOT NULL,
        key_hash VARCHAR NOT NULL UNIQUE,
        created_at DOUBLE NOT NULL,
        last_used_at DOUBLE,
        revoked_at DOUBLE
    )""",
    """CREATE TABLE invitations (
        invitation_id VARCHAR PRIMARY KEY,
        organization_id VARCHAR NOT NULL,
        token_hash VARCHAR NOT NULL UNIQUE,
        email VARCHAR,
        role VARCHAR NOT NULL,
        all_projects BOOLEAN NOT NULL,
        projects_json VARCHAR NOT NULL,
        created_by VARCHAR NOT NULL,
        created_at DOUBLE NOT NULL,
        expires_at DOUBLE NOT NULL,
        accepted_at DOUBLE,
        accepted_by VARCHAR
    )""",
    """CREATE TABLE projects (
        project_id VARCHAR PRIMARY KEY,
        organization_id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        slug VARCHAR NOT NULL,
        description VARCHAR NOT NULL,
        created_at DOUBLE NOT NULL,
        UNIQUE (organization_id, slug)
    )""",
    """CREATE TABLE registrars (
        registrar_id VARCHAR PRIMARY KEY,
        organization_id VARCHAR NOT NULL,
        project_id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        domain VARCHAR NOT NULL,
        port INTEGER,
        transport VARCHAR NOT NULL,
        outbound_proxy VARCHAR,
        tls_verify BOOLEAN NOT NULL,
        created_at DOUBLE NOT NULL,
        UNIQUE (project_id, name)
    )""",
    """CREATE TABLE sip_accounts (
        sip_account_id VARCHAR PRIMARY KEY,
        organization_id VARCHAR NOT NULL,
        project_id VARCHAR NOT NULL,
        registrar_id VARCHAR NOT NULL,
        username VARCHAR NOT NULL,
        password VARCHAR NOT NULL,
        realm VARCHAR,
        created_at DOUBLE NOT NULL,
        UNIQUE (registrar_id, username)
    )""",
    """CREATE TABLE media_files (
        media_file_id VARCHAR PRIMARY KEY,
        organization_id VARCHAR NOT NULL,
        project_id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        content_type VARCHAR NOT NULL,
        size_bytes BIGINT NOT NULL,
        sha256 VARCHAR NOT NULL,
        data BLOB NOT NULL,
        created_at DOUBLE NOT NULL,
        UNIQUE (project_id, name)
    )""",
    """CREATE TABLE tests (
        test_id VARCHAR PRIMARY KEY,
        organization_id VARCHAR NOT NULL,
        project_id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        description VARCHAR NOT NULL,
        definition_json VARCHAR NOT NULL,
        created_at DOUBLE NOT NULL,
        updated_at DOUBLE NOT NULL,
        UNIQUE (project_id, name)
    )""",
    "CREATE SEQUENCE run_queue_seq",
    """CREATE TABLE run_queue (
        run_id VARCHAR PRIMARY KEY,
        seq BIGINT NOT NULL DEFAULT nextval('run_queue_seq'),
        organization_id VARCHAR NOT NULL,
        project_id VARCHAR NOT NULL,
        test_id VARCHAR,
        definition_json VARCHAR NOT NULL,
        endpoints INTEGER NOT NULL,
        duration_s DOUBLE NOT NULL,
        demands_json VARCHAR NOT NULL,
        allocation_json VARCHAR,
        shared_endpoints INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at DOUBLE NOT NULL,
        enqueued_at DOUBLE NOT NULL,
        started_at DOUBLE,
        finished_at DOUBLE
    )""",
)

_STEPS: Sequence[Sequence[str]] = (_V1,)
SCHEMA_VERSION = len(_STEPS)


def migrate(db: Database) -> int:
    """Create or upgrade the platform tables; returns the version the database is at."""
    with db.transaction() as tx:
        tx.run("CREATE TABLE IF NOT EXISTS platform_schema (version INTEGER NOT NULL)")
        current = tx.scalar("SELECT max(version) FROM platform_schema") or 0
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with db.transaction() as tx:
            for statement in _STEPS[version - 1]:
                tx.run(statement)
            tx.run("INSERT INTO platform_schema VALUES (?)", [version])
    return SCHEMA_VERSION
