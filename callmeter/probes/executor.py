"""One probe execution: the probe as a one-caller :class:`~callmeter.models.Test`, run like
any run (metrics, endpoint events and SIP trace in the store, under the execution's
``run_id``), then measured from the store.

The test has one group ``probe`` of one endpoint (the caller, with the probe's registrar,
account, codec, placement and impairment) calling either the probe's URI or a second group
``answer`` of one endpoint that answers (same registrar and placement). :func:`measure` reads
back what the probe judges, per metric the worst of the endpoints' receive directions (a
one-way problem shows whichever way it is), so a second answering endpoint watches both
directions and an echo URI the round trip.

:class:`ProbeExecutor` is the seam: :class:`RayProbeExecutor` runs the call on Ray with
:func:`actors.driver.run_test` (imported when the first execution runs: only ``actors``
imports ray); tests inject executors that answer at once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from callmeter.models import Test
from callmeter.probes.models import EndpointTarget, ProbeConfig, UriTarget

if TYPE_CHECKING:
    import duckdb

    from callmeter.server.db import Tx

__all__ = [
    "INTERRUPTED_REASON",
    "Measurement",
    "ProbeExecutor",
    "ProbeJob",
    "RayProbeExecutor",
    "build_test",
    "call_name",
    "measure",
    "probe_definition",
]

INTERRUPTED_REASON = "the server stopped during the probe call; the probe runs it again"
CALLER_GROUP = "probe"
ANSWER_GROUP = "answer"
GOOD_OUTCOMES = frozenset({"SUCCESS", "COMPLETED_WITH_WARNINGS"})


@dataclass(frozen=True, slots=True)
class ProbeJob:
    """What an executor runs: the test of one execution, the run to store it as, and who owns
    it (the run carries the organization and project, so the results API serves it)."""

    execution_id: str
    run_id: str
    probe_id: str
    probe_name: str
    organization_id: str
    project_id: str
    test: Test
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class Measurement:
    """What an execution measured: catalog key -> value (None: not measured), and why the call
    failed when it did (None when it succeeded)."""

    values: Mapping[str, float | None]
    failure: str | None = None


class ProbeExecutor(Protocol):
    """Runs one probe call to the end (blocking; called from a worker thread). It stores
    the call as run ``job.run_id`` when it can; ``job.stop`` asks it to end early."""

    def execute(self, job: ProbeJob) -> Measurement: ...


def probe_definition(config: ProbeConfig) -> dict[str, Any]:
    """The probe as a stored test definition (registrars named, as the platform keeps them)."""
    caller: dict[str, Any] = {
        "name": CALLER_GROUP,
        "endpoints": 1,
        "registrar": config.registrar,
        "codecs": [config.codec],
    }
    if config.account is not None:
        caller["accounts"] = [config.account]
    if config.placement is not None:
        caller["placement"] = config.placement.model_dump(exclude_none=True)
    if config.impairment is not None:
        caller["impairment"] = config.impairment.model_dump()
    groups = [caller]
    if isinstance(config.target, UriTarget):
        caller["target"] = {"uri": config.target.uri}
    else:
        caller["target"] = {"group": ANSWER_GROUP}
        answer: dict[str, Any] = {
            key: caller[key] for key in ("registrar", "codecs", "placement") if key in caller
        }
        answer.update(name=ANSWER_GROUP, endpoints=1)
        if isinstance(config.target, EndpointTarget) and config.target.account is not None:
            answer["accounts"] = [config.target.account]
        groups.append(answer)
    return {
        "description": f"probe {config.name}",
        "call_duration_s": config.call_duration_s,
        "buildup_s": 0,
        "groups": groups,
        "success": {"min_success_rate": 1.0},
    }


def call_name(config: ProbeConfig) -> str:
    return f"probe: {config.name}"[:200]


def build_test(
    tx: Tx, media_dir: Path, project_id: str, config: ProbeConfig, *, for_run: bool = True
) -> Test:
    """The validated test of a probe, with the project registrar's accounts (``for_run``) or
    placeholders (when saving); ``InvalidInput`` naming the field when it cannot be built."""
    from callmeter.server.runs import load_test

    return load_test(
        tx, media_dir, project_id, call_name(config), probe_definition(config), for_run=for_run
    )


_QUALITY_SQL = """
    WITH per_endpoint AS (
        SELECT endpoint_id, avg(mos) AS mos, avg(r_factor) AS r_factor,
            avg(jitter_ms) AS jitter_ms,
            greatest(0.0, 100.0 * sum(packets_lost) / nullif(sum(packets_expected), 0))
                AS loss_percent
        FROM metrics WHERE run_id = $run_id AND direction = 'receive' GROUP BY endpoint_id)
    SELECT min(mos), min(r_factor), max(jitter_ms), max(loss_percent),
        (SELECT avg(rtt_ms) FROM metrics WHERE run_id = $run_id)
    FROM per_endpoint"""
_CALLER_SQL = """
    SELECT outcome, outcome_reason, outcome_status, setup_time_ms, post_dial_delay_ms
    FROM endpoints WHERE run_id = $run_id AND role = 'caller' ORDER BY endpoint_id LIMIT 1"""


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def measure(con: duckdb.DuckDBPyConnection, run_id: str) -> Measurement:
    """The probe's metrics of a stored run, and the caller's failure if its call failed."""
    quality = con.execute(_QUALITY_SQL, {"run_id": run_id}).fetchone() or (None,) * 5
    caller = con.execute(_CALLER_SQL, {"run_id": run_id}).fetchone()
    keys = ("mos", "r_factor", "jitter_ms", "loss_percent", "rtt_ms")
    values: dict[str, float | None] = {k: _number(v) for k, v in zip(keys, quality, strict=True)}
    values["setup_time_ms"] = values["post_dial_delay_ms"] = None
    failure: str | None
    if caller is None:
        row = con.execute("SELECT status, reason FROM runs WHERE run_id = ?", [run_id]).fetchone()
        why = f": {row[1]}" if row is not None and row[1] else ""
        failure = f"the probe call never started{why}"
    else:
        outcome, reason, status, setup_ms, pdd_ms = caller
        values["setup_time_ms"], values["post_dial_delay_ms"] = _number(setup_ms), _number(pdd_ms)
        failure = None
        if outcome not in GOOD_OUTCOMES:
            failure = f"the call ended {outcome or 'undecided'}"
            failure += f" ({status})" if status else ""
            failure += f": {reason}" if reason else ""
    return Measurement(values, failure)


class RayProbeExecutor:
    """Runs probe calls on Ray (joining ``address``, the cluster ``serve`` already uses, or a
    private local Ray) and stores them in ``store``."""

    def __init__(self, store: Any, *, address: str | None = None) -> None:
        self._store = store
        self._address = address

    def execute(self, job: ProbeJob) -> Measurement:
        from actors.driver import StopRequest, run_test  # only actors imports ray
        from callmeter.server.runs import redacted

        self._store.create_run(
            job.run_id, job.test.name, redacted(job.test), job.test.total_endpoints,
            job.test.success.min_success_rate, organization_id=job.organization_id,
            project_id=job.project_id, triggered_by=f"probe {job.probe_name}",
        )  # fmt: skip
        stop, done = StopRequest(), threading.Event()

        def relay() -> None:  # the scheduler's stop becomes a failing stop of the run
            while not done.wait(0.2):
                if job.stop.is_set():
                    stop.fail(INTERRUPTED_REASON)
                    return

        relay_thread = threading.Thread(target=relay, name=f"stop-{job.run_id}", daemon=True)
        relay_thread.start()
        try:
            run_test(job.test, self._store, address=self._address, run_id=job.run_id, stop=stop)
        finally:
            done.set()
            relay_thread.join()
        with closing(self._store.cursor()) as con:
            return measure(con, job.run_id)
