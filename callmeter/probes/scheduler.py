"""The probe scheduler: which probe runs when, one execution at a time per probe, and what
becomes of each execution (evaluation, health, webhooks).

Theory of operation
-------------------
It lives in ``callmeter serve`` beside the run queue and keeps its whole state in the database,
so a restart loses nothing and doubles nothing:

- a probe's ``next_run_at`` is its next *slot*; slots are ``interval_min`` apart, counted from
  the first one (the probe's creation, or its resumption);
- :meth:`ProbeScheduler.tick` claims every due slot in one transaction: it inserts a PENDING
  execution for the slot and moves ``next_run_at`` to the first slot after *now*. Slots missed
  while the server was down (or the probe busy) collapse into that one execution, which
  records how many it stands for (``missed_slots``): one catch-up, never a burst. A probe that
  already has a PENDING execution gets no second one;
- the same tick starts PENDING executions, oldest first, of probes with no RUNNING one (and
  none in flight in this process): never the same probe twice at once. A Tester's trigger adds
  a PENDING execution (or returns the one already waiting);
- an execution runs on a worker thread through the :class:`~.executor.ProbeExecutor`, then is
  evaluated (:func:`~.evaluation.evaluate`, with the thresholds it started with). One
  transaction records the verdict, moves the probe's health and, when the health changed,
  queues one signed webhook delivery per enabled webhook (:mod:`.webhooks`). Writing is a
  compare-and-set on (RUNNING, run_id): a worker of a previous life can never overwrite;
- on start-up :meth:`ProbeScheduler.recover` puts executions left RUNNING back to PENDING (the
  slot is run again; its partial run is marked FAILED in the store), except one interrupted
  twice already, which becomes INTERRUPTED. A graceful :meth:`close` stops running calls and
  puts them back to PENDING the same way.

Time comes from ``clock`` (epoch seconds): tests drive it, so a 5-minute interval takes no
time at all.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callmeter.probes import repo
from callmeter.probes.evaluation import Evaluation, evaluate
from callmeter.probes.executor import Measurement, ProbeExecutor, ProbeJob, build_test
from callmeter.probes.models import ExecutionStatus, ProbeConfig
from callmeter.probes.webhooks import ChangeContext, WebhookDispatcher, enqueue_status_changed
from callmeter.server.db import Database, Row, new_id
from callmeter.server.errors import ApiError

__all__ = ["MAX_ATTEMPTS", "RESTART_REASON", "ProbeScheduler"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # an execution interrupted by a stop this often is given up
RESTART_REASON = "the server stopped during the call; it runs again"


@dataclass(slots=True)
class _InFlight:
    probe_id: str
    stop: threading.Event
    future: concurrent.futures.Future[None] | None = None


class ProbeScheduler:
    """Schedules, runs and evaluates probe executions; see the module docstring."""

    def __init__(
        self,
        db: Database,
        executor: ProbeExecutor,
        *,
        store: Any = None,
        dispatcher: WebhookDispatcher | None = None,
        clock: Callable[[], float] = time.time,
        media_dir: Path = Path("/nonexistent-media"),
        api_url: str = "http://127.0.0.1:8080/api/v1",
        max_workers: int = 4,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.executor = executor  # replaceable (tests)
        self.webhooks = dispatcher if dispatcher is not None else WebhookDispatcher(db, clock=clock)
        self._db = db
        self._store = store
        self._clock = clock
        self._media_dir = media_dir
        self._api_url = api_url.rstrip("/")
        self._max_workers = max_workers
        self._poll_interval_s = poll_interval_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers, "probe")
        self._lock = threading.RLock()  # one scheduling pass at a time
        self._inflight: dict[str, _InFlight] = {}  # execution_id -> its worker
        self._idle = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # -- entry points ---------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """After a restart: executions left RUNNING run again (or are given up after
        ``MAX_ATTEMPTS``); their partial runs become FAILED. Returns the executions touched."""
        now = self._clock()
        runs: list[str] = []
        with self._lock, self._db.transaction() as tx:
            left = repo.executions_in(tx, ExecutionStatus.RUNNING)
            for row in left:
                if int(row["attempts"]) >= MAX_ATTEMPTS:
                    reason = f"interrupted {row['attempts']} times by server stops; given up"
                    repo.mark_interrupted(tx, row["execution_id"], reason, now)
                else:
                    repo.requeue(tx, row["execution_id"], RESTART_REASON)
                if row["run_id"]:
                    runs.append(row["run_id"])
        for run_id in runs:
            self._fail_run(run_id, RESTART_REASON)
        return [row["execution_id"] for row in left]

    def tick(self) -> list[str]:
        """One pass: claim due slots, start what may start. Returns the executions started."""
        if self._closing.is_set():
            return []
        with self._lock:
            now = self._clock()
            with self._db.transaction() as tx:
                repo.purge_orphans(tx)
                for row in repo.due_probes(tx, now):
                    self._claim_slot(tx, row, now)
                startable = repo.startable_executions(tx)
            started: list[str] = []
            with self._idle:  # workers remove themselves under this lock
                flying = dict(self._inflight)
            busy = {flight.probe_id for flight in flying.values()}
            for row in startable:
                if len(flying) + len(started) >= self._max_workers:
                    break
                if row["probe_id"] in busy or row["execution_id"] in flying:
                    continue
                busy.add(row["probe_id"])
                self._start(row, now)
                started.append(row["execution_id"])
            return started

    def trigger(self, probe_id: str) -> str:
        """Run a probe now: a PENDING execution (the one already waiting, if any)."""
        with self._lock:
            with self._db.transaction() as tx:
                waiting = repo.open_execution(tx, probe_id, ExecutionStatus.PENDING)
                if waiting is not None:
                    execution_id = str(waiting["execution_id"])
                else:
                    execution_id = repo.insert_execution(
                        tx, probe_id, "manual", None, 0, self._clock()
                    )
        self.wake()
        return execution_id

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Block until no execution is in flight in this process; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def run_pending(self, timeout_s: float = 120.0) -> int:
        """Tick and wait until nothing more starts (tests, with a driven clock); returns how
        many executions ran."""
        ran = 0
        deadline = time.monotonic() + timeout_s
        while True:
            started = self.tick()
            if not started and not self._inflight:
                return ran
            ran += len(started)
            if not self.wait_idle(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"probe executions still running after {timeout_s:g} s")

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # -- background threads ----------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        """Run :meth:`tick` in a daemon thread, and the webhook dispatcher, until :meth:`close`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="probe-scheduler", daemon=True)
            self._thread.start()
        self.webhooks.start()

    def close(self, timeout_s: float = 90.0) -> None:
        """Stop: running calls are asked to end and go back to PENDING (run after restart)."""
        self._closing.set()
        self._wake.set()
        with self._idle:
            for flight in self._inflight.values():
                flight.stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if not self.wait_idle(timeout_s):
            log.warning("%d probe execution(s) did not stop in time", len(self._inflight))
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.webhooks.close()

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                self.tick()
            except Exception:  # the scheduler must outlive one bad pass; the next one retries
                log.exception("probe scheduler pass failed")
            self._wake.wait(self._poll_interval_s)
            self._wake.clear()

    # -- the pass ---------------------------------------------------------------------------------
    def _claim_slot(self, tx: Any, row: Row, now: float) -> None:
        config = ProbeConfig.model_validate_json(row["config_json"])
        slot = float(row["next_run_at"])
        interval = config.interval_s
        missed = max(0, math.floor((now - slot) / interval))
        repo.set_next_run(tx, row["probe_id"], slot + (missed + 1) * interval)
        if repo.open_execution(tx, row["probe_id"], ExecutionStatus.PENDING) is not None:
            return  # one waiting execution is enough: this slot folds into it
        repo.insert_execution(tx, row["probe_id"], "schedule", slot, missed, now)

    def _start(self, row: Row, now: float) -> None:
        execution_id = str(row["execution_id"])
        probe_id = str(row["probe_id"])
        problem: str | None = None
        with self._db.transaction() as tx:
            config = repo.probe_config(tx, probe_id)
            owner = repo.owner_of(tx, "probe", probe_id)
            run_id = new_id("run")
            try:
                test = build_test(tx, self._media_dir, owner.project_id, config)
            except (ApiError, ValueError) as error:
                problem = f"the probe's call cannot be built: {getattr(error, 'message', error)}"
            repo.mark_running(tx, execution_id, run_id, now)
        if problem is not None:
            self._finish(execution_id, run_id, config, Measurement({}, problem), stored=False)
            return
        job = ProbeJob(execution_id, run_id, probe_id, config.name, owner.organization_id,
                       owner.project_id, test)  # fmt: skip
        flight = _InFlight(probe_id, job.stop)
        with self._idle:
            self._inflight[execution_id] = flight
        try:
            flight.future = self._pool.submit(self._execute, job, config)
        except RuntimeError:  # closing meanwhile: the execution waits for the next start
            with self._idle:
                self._inflight.pop(execution_id, None)
                self._idle.notify_all()
            with self._db.transaction() as tx:
                repo.requeue(tx, execution_id, RESTART_REASON)

    def _execute(self, job: ProbeJob, config: ProbeConfig) -> None:
        try:
            try:
                measurement = self.executor.execute(job)
            except Exception as error:
                log.exception("probe %s: execution %s failed", job.probe_id, job.execution_id)
                measurement = Measurement({}, f"the probe call failed: {error}")
            if job.stop.is_set():  # stopped by close(): the slot runs again after restart
                with self._db.transaction() as tx:
                    if self._still_running(tx, job.execution_id, job.run_id):
                        repo.requeue(tx, job.execution_id, RESTART_REASON)
                return
            self._finish(job.execution_id, job.run_id, config, measurement)
        finally:
            with self._idle:
                self._inflight.pop(job.execution_id, None)
                self._idle.notify_all()
            self.wake()

    @staticmethod
    def _still_running(tx: Any, execution_id: str, run_id: str) -> bool:
        row = tx.one(
            "SELECT status, run_id FROM probe_executions WHERE execution_id = ?", [execution_id]
        )
        return row is not None and row["status"] == "RUNNING" and row["run_id"] == run_id

    def _finish(
        self,
        execution_id: str,
        run_id: str,
        config: ProbeConfig,
        measurement: Measurement,
        *,
        stored: bool = True,
    ) -> Evaluation | None:
        """Record the verdict (``stored``: the run exists in the store, else forget its id)."""
        evaluation = evaluate(measurement.values, config.thresholds, failure=measurement.failure)
        now = self._clock()
        changed = False
        with self._db.transaction() as tx:
            if not self._still_running(tx, execution_id, run_id):
                log.warning("execution %s was taken over meanwhile; result dropped", execution_id)
                return None
            previous, current = repo.finish_execution(
                tx, execution_id, evaluation, measurement.values, now, run_stored=stored
            )
            if previous != current:
                changed = True
                context = self._context(tx, execution_id, run_id if stored else None)
                enqueue_status_changed(tx, context, previous, current, evaluation.breaches, now)
        if changed:
            self.webhooks.wake()
        return evaluation

    def _context(self, tx: Any, execution_id: str, run_id: str | None) -> ChangeContext:
        row = tx.one(
            "SELECT e.probe_id, p.name AS probe_name, e.project_id, j.name AS project_name "
            "FROM probe_executions e JOIN probes p USING (probe_id) "
            "LEFT JOIN projects j ON j.project_id = e.project_id WHERE e.execution_id = ?",
            [execution_id],
        )
        assert row is not None
        return ChangeContext(
            probe_id=row["probe_id"], probe_name=row["probe_name"], project_id=row["project_id"],
            project_name=row["project_name"] or "", execution_id=execution_id, run_id=run_id,
            execution_url=f"{self._api_url}/probe-executions/{execution_id}",
        )  # fmt: skip

    def _fail_run(self, run_id: str, reason: str) -> None:
        if self._store is None:
            return
        try:
            self._store.set_status(run_id, "FAILED", reason)
        except (KeyError, ValueError):  # never stored, or already ended: nothing to correct
            pass
