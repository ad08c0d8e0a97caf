"""Turning stored tests into runs: validation with the project's resources, the hard plan
limits checked when a run is triggered, and the store adapter the queue reports through.

A test's definition refers to project registrars and media files by name
(:mod:`callmeter.server.testdefs`). :func:`load_test` fills them in and validates; the queue
calls it again when the run starts (through :func:`test_builder`), so a run always uses the
accounts as they are at start and SIP passwords are stored in one place only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from callmeter.models import Test
from callmeter.server import repo_people, repo_resources, repo_runs
from callmeter.server.context import Caller, Platform
from callmeter.server.db import Database, Tx, new_id
from callmeter.server.errors import PlanLimitExceeded
from callmeter.server.payloads import RunOut
from callmeter.server.plans import PlanLimits
from callmeter.server.repo_runs import QueuedRun
from callmeter.server.testdefs import ProjectRegistrar, resolve, validate
from callmeter.server.workers import Demand

__all__ = [
    "StoreStatuses",
    "check_plan",
    "demands_of",
    "load_test",
    "redacted",
    "test_builder",
    "trigger",
]

log = logging.getLogger(__name__)


class StoreStatuses:
    """:class:`~callmeter.server.queue.RunStatuses` over the store."""

    def __init__(self, store: Any, db: Database) -> None:
        self._store = store
        self._db = db

    def status_of(self, run_id: str) -> str | None:
        with self._db.transaction() as tx:
            return repo_runs.run_status(tx, run_id)

    def set_status(self, run_id: str, status: str, reason: str | None) -> None:
        try:
            self._store.set_status(run_id, status, reason)
        except ValueError:  # already COMPLETED or FAILED: the runner's word is final
            log.info("run %s already ended; not setting %s", run_id, status)


def _media_path(tx: Tx, media_dir: Path, project_id: str, name: str) -> Path | None:
    media_file_id = tx.scalar(
        "SELECT media_file_id FROM media_files WHERE project_id = ? AND name = ?",
        [project_id, name],
    )
    if media_file_id is None:
        return None
    return repo_resources.materialize_media(tx, media_dir, media_file_id)


def load_test(
    tx: Tx,
    media_dir: Path,
    project_id: str,
    name: str,
    definition: Mapping[str, Any],
    *,
    for_run: bool,
) -> Test:
    """Validate a stored definition with the project's registrars, accounts and media."""

    def registrar(registrar_name: str) -> ProjectRegistrar | None:
        found = repo_resources.registrar_by_name(tx, project_id, registrar_name)
        if found is None:
            return None
        return ProjectRegistrar(
            domain=found.domain,
            port=found.port,
            transport=found.transport.value,
            outbound_proxy=found.outbound_proxy,
            accounts=repo_resources.accounts_for_run(tx, found.registrar_id),
        )

    data = resolve(
        definition,
        name=name,
        registrars=registrar,
        media_path=lambda media: _media_path(tx, media_dir, project_id, media),
        for_run=for_run,
    )
    return validate(data)


def demands_of(test: Test) -> tuple[Demand, ...]:
    demands = []
    for group in test.groups:
        placement = group.placement
        if placement is None:
            demands.append(Demand(group.endpoints))
        elif placement.workers is not None:
            demands.append(Demand(group.endpoints, None, tuple(placement.workers)))
        else:
            demands.append(Demand(group.endpoints, placement.region))
    return tuple(demands)


def duration_s(test: Test) -> float:
    return test.buildup_s + test.call_duration_s


def check_plan(plan: PlanLimits, test: Test) -> None:
    """Refuse a test the plan can never run, whatever else is running."""
    if plan.concurrent_runs < 1:
        raise PlanLimitExceeded(f"plan {plan.plan} allows no test runs")
    if test.total_endpoints > plan.concurrent_endpoints:
        raise PlanLimitExceeded(
            f"endpoints: the test needs {test.total_endpoints} endpoints; plan {plan.plan} "
            f"allows {plan.concurrent_endpoints} concurrent endpoints"
        )
    if duration_s(test) > plan.max_test_duration_s:
        raise PlanLimitExceeded(
            f"call_duration_s: the test takes {duration_s(test):g} s (buildup_s + "
            f"call_duration_s); plan {plan.plan} allows {plan.max_test_duration_s} s"
        )


def redacted(test: Test) -> dict[str, Any]:
    """The test as JSON for the store, SIP passwords masked (they are never served)."""
    data = test.model_dump(mode="json")
    for registrar in data.get("registrars", {}).values():
        for account in registrar.get("accounts", []):
            account["password"] = "***"
    return data


def trigger(
    platform: Platform, caller: Caller, test_id: str, owner: repo_resources.Owner
) -> RunOut:
    """Create a run of a stored test and queue it (the caller's access is already checked)."""
    now = platform.clock()
    with platform.db.transaction() as tx:
        stored = repo_resources.get_test(tx, test_id)
        test = load_test(
            tx, platform.media_dir, owner.project_id, stored.name, stored.definition,
            for_run=True,
        )  # fmt: skip
        check_plan(repo_people.get_plan(tx, owner.organization_id), test)
    run_id = new_id("run")
    platform.store.create_run(
        run_id,
        stored.name,
        redacted(test),
        test.total_endpoints,
        test.success.min_success_rate,
        organization_id=owner.organization_id,
        project_id=owner.project_id,
        test_id=test_id,
        triggered_by=caller.label,
    )
    platform.queue.enqueue(
        QueuedRun(
            run_id=run_id,
            organization_id=owner.organization_id,
            project_id=owner.project_id,
            test_id=test_id,
            definition={**stored.definition, "name": stored.name},
            endpoints=test.total_endpoints,
            duration_s=duration_s(test),
            demands=demands_of(test),
            next_attempt_at=now,
            enqueued_at=now,
        )
    )
    with platform.db.transaction() as tx:
        run = repo_runs.get_run(tx, run_id)
    assert run is not None
    return run


def test_builder(db: Database, media_dir: Path) -> Callable[[QueuedRun], Test]:
    """What the queue calls to get the :class:`Test` of a run about to start."""

    def build(run: QueuedRun) -> Test:
        with db.transaction() as tx:
            name = str(run.definition.get("name", run.run_id))
            return load_test(tx, media_dir, run.project_id, name, run.definition, for_run=True)

    return build


test_builder.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
