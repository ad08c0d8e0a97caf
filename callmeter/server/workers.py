"""Workers as the platform sees them, and whether a run fits on them.

A worker is a Ray node that runs endpoints (DESIGN.md). The server learns about workers from
a :class:`WorkerSource` (the Ray implementation lives in ``actors/``; tests use a fake). A
worker that is ONLINE by its source but has sent no heartbeat for ``HEARTBEAT_TIMEOUT_S`` is
shown and treated as OFFLINE; DRAINING workers finish what they run and take nothing new.

:func:`fit` places a run's endpoint demands (per group: anywhere, a region, or named
workers) on the free capacity of ONLINE workers, most constrained demands first, filling the
workers of the caller's own organization before shared ones. It answers either the endpoints
per worker or a reason naming what is short.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = [
    "HEARTBEAT_TIMEOUT_S",
    "Demand",
    "FitResult",
    "WorkerInfo",
    "WorkerSource",
    "WorkerStatus",
    "effective_status",
    "fit",
    "visible_to",
]

HEARTBEAT_TIMEOUT_S = 60.0


class WorkerStatus(enum.StrEnum):
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"
    DRAINING = "DRAINING"


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker as its source reports it.

    ``allocated`` counts the endpoints placed on it now; ``organization_id`` is None for a
    shared (cloud) worker and the owning organization for an on-premise one."""

    name: str
    region: str
    capacity: int
    allocated: int
    status: WorkerStatus
    last_heartbeat: float | None
    organization_id: str | None = None


class WorkerSource(Protocol):
    """Where the server learns which workers exist (Ray nodes, in production)."""

    def workers(self) -> list[WorkerInfo]: ...


def effective_status(worker: WorkerInfo, now: float) -> WorkerStatus:
    """The status to show and schedule by: ONLINE without a recent heartbeat is OFFLINE."""
    if worker.status is WorkerStatus.ONLINE and (
        worker.last_heartbeat is None or now - worker.last_heartbeat > HEARTBEAT_TIMEOUT_S
    ):
        return WorkerStatus.OFFLINE
    return worker.status


def visible_to(worker: WorkerInfo, organization_id: str) -> bool:
    """Shared workers are visible to every organization, on-premise ones to their owner."""
    return worker.organization_id is None or worker.organization_id == organization_id


class Demand(NamedTuple):
    """Endpoints one group needs: anywhere (both None), in ``region``, or on ``workers``."""

    endpoints: int
    region: str | None = None
    workers: tuple[str, ...] | None = None

    def describe(self) -> str:
        """`` on workers a, b``, `` in region eu`` or nothing (anywhere)."""
        if self.workers is not None:
            return f" on workers {', '.join(self.workers)}"
        return f" in region {self.region}" if self.region is not None else ""

    def accepts(self, worker: WorkerInfo) -> bool:
        if self.workers is not None:
            return worker.name in self.workers
        return self.region is None or worker.region == self.region


class FitResult(NamedTuple):
    """Endpoints per worker name when the run fits, else the reason it does not."""

    allocation: dict[str, int] | None
    reason: str | None


def _specificity(demand: Demand) -> int:
    return 0 if demand.workers is not None else 1 if demand.region is not None else 2


def fit(
    demands: Sequence[Demand],
    workers: Iterable[WorkerInfo],
    *,
    organization_id: str,
    now: float,
    reserved: Mapping[str, int] | None = None,
) -> FitResult:
    """Place ``demands`` on the free capacity of the ONLINE workers ``organization_id`` may use.

    Free capacity is ``capacity - max(allocated, reserved[name])``: ``reserved`` holds what the
    queue itself placed there, which the worker source may not report yet."""
    reserved = reserved or {}
    usable = [
        w
        for w in workers
        if visible_to(w, organization_id) and effective_status(w, now) is WorkerStatus.ONLINE
    ]
    # Own (on-premise) workers first, then by name for a stable, testable order.
    usable.sort(key=lambda w: (w.organization_id is None, w.name))
    free = {w.name: max(0, w.capacity - max(w.allocated, reserved.get(w.name, 0))) for w in usable}
    allocation: dict[str, int] = {}
    for demand in sorted(_merged(demands), key=_specificity):
        needed = demand.endpoints
        matching = [w for w in usable if demand.accepts(w)]
        for worker in matching:
            take = min(needed, free[worker.name])
            if take:
                free[worker.name] -= take
                allocation[worker.name] = allocation.get(worker.name, 0) + take
                needed -= take
            if not needed:
                break
        if needed:
            return FitResult(None, _short(demand, needed, matching))
    return FitResult(allocation, None)


def _merged(demands: Sequence[Demand]) -> list[Demand]:
    """One demand per placement: groups placed alike add up (and are reported together)."""
    totals: dict[tuple[str | None, tuple[str, ...] | None], int] = {}
    for demand in demands:
        key = (demand.region, demand.workers)
        totals[key] = totals.get(key, 0) + demand.endpoints
    return [Demand(n, region, workers) for (region, workers), n in totals.items()]


def _short(demand: Demand, missing: int, matching: Sequence[WorkerInfo]) -> str:
    where = demand.describe()
    if not matching:
        return f"no online worker{where} (needs {demand.endpoints} endpoints)"
    return (
        f"not enough free worker capacity{where}: {demand.endpoints} endpoints needed, "
        f"{demand.endpoints - missing} free"
    )
