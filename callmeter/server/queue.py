"""The run queue: which waiting run starts now, and what becomes of the ones that ended.

Theory of operation
-------------------
A run's status lives in the store's ``runs`` row (:class:`RunStatuses`); the queue's own
bookkeeping lives in ``run_queue`` (:mod:`callmeter.server.repo_runs`). The states::

    PENDING --enqueue--> QUEUED --tick: fits--> RUNNING --ended--> COMPLETED | FAILED
                           |  ^                   |
           tick: no room   v  | tick: fits        +--stop--> STOPPING --ended--> COMPLETED
                     CANNOT_RUN_FOR_NOW
    QUEUED / CANNOT_RUN_FOR_NOW --stop--> FAILED ("cancelled before it started")

:meth:`RunQueue.tick` is one scheduling pass, called by the background thread every
``poll_interval_s``, after every enqueue and stop, and directly by tests:

1. *reap*: an active run the launcher no longer reports has ended. When the runner left it
   RUNNING it becomes FAILED (it ended without a result), STOPPING becomes COMPLETED. Every
   waiting run is made due at once: capacity was freed.
2. *start*: each due waiting run, first come first, is checked against the plan's room
   (concurrent runs, concurrent endpoints, shared worker capacity) and the free worker
   capacity where its groups are placed. It starts (RUNNING, ``launcher.start``) or goes to
   CANNOT_RUN_FOR_NOW with the reason and its next attempt after an exponential backoff.
   A run that cannot start does not block smaller runs behind it.

Hard limits (a test larger than the plan allows at all, too long, not enough SIP accounts)
are refused when the run is triggered (:mod:`callmeter.server.runs`), never queued.

On start-up :meth:`RunQueue.recover` fails the runs the previous process left RUNNING or
STOPPING (nothing drives them any more; what they stored is kept) and keeps waiting runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from callmeter.models import Test
from callmeter.server import repo_people, repo_runs
from callmeter.server.db import Database
from callmeter.server.errors import Conflict, NotFound
from callmeter.server.repo_runs import QueuedRun
from callmeter.server.workers import WorkerSource, fit
from callmeter.store.schema import RunStatus

__all__ = [
    "ACTIVE",
    "FINISHED",
    "WAITING",
    "Backoff",
    "RunLauncher",
    "RunQueue",
    "RunStatuses",
]

log = logging.getLogger(__name__)


WAITING = frozenset({RunStatus.PENDING, RunStatus.QUEUED, RunStatus.CANNOT_RUN_FOR_NOW})
ACTIVE = frozenset({RunStatus.RUNNING, RunStatus.STOPPING})
FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED})

RESTART_REASON = "the server stopped while the run was in progress; what it measured before is kept"


class RunLauncher(Protocol):
    """Executes runs (on Ray, in production). Every method returns at once."""

    def start(self, run_id: str, test: Test) -> None:
        """Start the run in the background; it writes its results and final status to the
        store. Raise to refuse (the run becomes FAILED with the message)."""

    def stop(self, run_id: str) -> None:
        """Ask the run to stop soon, keeping what it measured."""

    def active(self) -> dict[str, int]:
        """run_id -> endpoints in use, for every run started and not yet ended."""


class RunStatuses(Protocol):
    """The store's view of run statuses."""

    def status_of(self, run_id: str) -> str | None: ...

    def set_status(self, run_id: str, status: str, reason: str | None) -> None:
        """Set the status; a run already COMPLETED or FAILED keeps its final status."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before the n-th retry of a run that could not start: ``initial_s * factor**(n-1)``
    up to ``max_s``."""

    initial_s: float = 5.0
    factor: float = 2.0
    max_s: float = 300.0

    def delay_s(self, attempts: int) -> float:
        return min(self.max_s, self.initial_s * self.factor ** max(0, attempts - 1))


BuildTest = Callable[[QueuedRun], Test]


class RunQueue:
    """Starts waiting runs when they fit, retries the others, reaps ended runs."""

    def __init__(
        self,
        db: Database,
        statuses: RunStatuses,
        launcher: RunLauncher,
        workers: WorkerSource,
        build_test: BuildTest,
        *,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._db = db
        self._statuses = statuses
        self._launcher = launcher
        self._workers = workers
        self._build_test = build_test
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._poll_interval_s = poll_interval_s
        self._lock = threading.RLock()  # one pass at a time
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # -- entry points ---------------------------------------------------------------------------
    def enqueue(self, run: QueuedRun) -> None:
        """Add a run (its store row exists, PENDING); it is QUEUED and considered at once."""
        with self._lock:
            with self._db.transaction() as tx:
                repo_runs.insert_queued(tx, run)
            self._statuses.set_status(run.run_id, RunStatus.QUEUED, "waiting for its turn")
        self.wake()

    def stop(self, run_id: str, by: str) -> str:
        """Stop a run; returns its new status. Conflict when it already ended."""
        with self._lock:
            status = self._statuses.status_of(run_id)
            if status is None:
                raise NotFound.of("run", run_id)
            if status in FINISHED:
                raise Conflict(f"run {run_id} already ended ({status})")
            if status == RunStatus.STOPPING:
                return status
            if status in WAITING:
                with self._db.transaction() as tx:
                    repo_runs.mark_finished(tx, run_id, self._clock())
                self._statuses.set_status(
                    run_id, RunStatus.FAILED, f"cancelled by {by} before it started"
                )
                return RunStatus.FAILED
            self._statuses.set_status(run_id, RunStatus.STOPPING, f"stop requested by {by}")
            self._launcher.stop(run_id)
            return RunStatus.STOPPING

    def recover(self) -> list[str]:
        """After a restart: fail the runs left active, keep the waiting ones. Returns the ids
        of the runs failed."""
        failed: list[str] = []
        with self._lock:
            with self._db.transaction() as tx:
                active = repo_runs.active_runs(tx)
                for run in active:
                    repo_runs.mark_finished(tx, run.run_id, self._clock())
                waiting = repo_runs.waiting_runs(tx)
            for run in active:
                if self._statuses.status_of(run.run_id) in ACTIVE:
                    self._statuses.set_status(run.run_id, RunStatus.FAILED, RESTART_REASON)
                    failed.append(run.run_id)
            for run in waiting:
                if self._statuses.status_of(run.run_id) == RunStatus.PENDING:
                    self._statuses.set_status(run.run_id, RunStatus.QUEUED, "waiting for its turn")
        return failed

    def tick(self) -> None:
        """One scheduling pass: reap ended runs, then start what fits."""
        with self._lock:
            now = self._clock()
            if self._reap(now):
                with self._db.transaction() as tx:
                    repo_runs.retry_now(tx, now)
            with self._db.transaction() as tx:
                due = [r for r in repo_runs.waiting_runs(tx) if r.next_attempt_at <= now]
            for run in due:
                self._try_start(run, now)

    # -- background thread -----------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        """Run :meth:`tick` in a daemon thread until :meth:`close`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="run-queue", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                self.tick()
            except Exception:  # the queue must outlive one bad pass; the next one retries
                log.exception("run queue pass failed")
            self._wake.wait(self._poll_interval_s)
            self._wake.clear()

    # -- the pass ----------------------------------------------------------------------------------
    def _reap(self, now: float) -> bool:
        running = self._launcher.active()
        with self._db.transaction() as tx:
            ended = [r for r in repo_runs.active_runs(tx) if r.run_id not in running]
            for run in ended:
                repo_runs.mark_finished(tx, run.run_id, now)
        for run in ended:
            status = self._statuses.status_of(run.run_id)
            if status == RunStatus.RUNNING:
                reason = "the run ended without reporting a result"
                self._statuses.set_status(run.run_id, RunStatus.FAILED, reason)
            elif status == RunStatus.STOPPING:
                reason = "stopped on request; what was measured until then is kept"
                self._statuses.set_status(run.run_id, RunStatus.COMPLETED, reason)
        return bool(ended)

    def _try_start(self, run: QueuedRun, now: float) -> None:
        reason, allocation, shared = self._room_for(run, now)
        if reason is not None:
            attempts = run.attempts + 1
            with self._db.transaction() as tx:
                repo_runs.mark_deferred(
                    tx, run.run_id, attempts, now + self._backoff.delay_s(attempts)
                )
            self._statuses.set_status(run.run_id, RunStatus.CANNOT_RUN_FOR_NOW, reason)
            return
        try:
            test = self._build_test(run)
        except Exception as error:  # the test no longer validates (accounts deleted...)
            self._finish(run.run_id, now, f"cannot start: {error}")
            return
        with self._db.transaction() as tx:
            repo_runs.mark_started(tx, run.run_id, now, allocation, shared)
        where = ", ".join(f"{name} ({n})" for name, n in sorted(allocation.items()))
        self._statuses.set_status(run.run_id, RunStatus.RUNNING, f"running on {where}")
        try:
            self._launcher.start(run.run_id, test)
        except Exception as error:
            log.exception("launcher refused run %s", run.run_id)
            self._finish(run.run_id, now, f"the launcher refused the run: {error}")

    def _finish(self, run_id: str, now: float, reason: str) -> None:
        with self._db.transaction() as tx:
            repo_runs.mark_finished(tx, run_id, now)
        self._statuses.set_status(run_id, RunStatus.FAILED, reason)

    def _room_for(self, run: QueuedRun, now: float) -> tuple[str | None, Mapping[str, int], int]:
        """(reason, allocation, endpoints on shared workers); reason None when it fits."""
        with self._db.transaction() as tx:
            plan = repo_people.get_plan(tx, run.organization_id)
            everyone = repo_runs.active_runs(tx)
        mine = [r for r in everyone if r.organization_id == run.organization_id]
        if len(mine) >= plan.concurrent_runs:
            return (
                f"plan {plan.plan}: {len(mine)} of {plan.concurrent_runs} concurrent runs "
                "already running",
                {},
                0,
            )
        in_use = sum(r.endpoints for r in mine)
        if in_use + run.endpoints > plan.concurrent_endpoints:
            return (
                f"plan {plan.plan}: {in_use} of {plan.concurrent_endpoints} concurrent endpoints "
                f"in use, this run needs {run.endpoints}",
                {},
                0,
            )
        reserved: dict[str, int] = {}
        for active in everyone:
            for name, count in active.allocation.items():
                reserved[name] = reserved.get(name, 0) + count
        workers = self._workers.workers()
        result = fit(
            run.demands, workers, organization_id=run.organization_id, now=now, reserved=reserved
        )
        if result.allocation is None:
            return result.reason, {}, 0
        shared_names = {w.name for w in workers if w.organization_id is None}
        shared = sum(n for name, n in result.allocation.items() if name in shared_names)
        shared_in_use = sum(r.shared_endpoints for r in mine)
        if shared and shared_in_use + shared > plan.worker_capacity:
            return (
                f"plan {plan.plan}: {shared_in_use} of {plan.worker_capacity} endpoints on shared "
                f"workers in use, this run needs {shared}",
                {},
                0,
            )
        return None, result.allocation, shared
