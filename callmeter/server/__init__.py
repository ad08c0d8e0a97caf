"""The platform server (``callmeter serve``): organizations, roles, projects, the REST API
under ``/api/v1``, the run queue, plan limits and workers.

``create_app(store, launcher, workers)`` builds the FastAPI app over an open store;
``serve(db_path, ...)`` opens the store and serves it with uvicorn. The Ray side plugs in
through two protocols: :class:`RunLauncher` (start, stop, active runs) and
:class:`WorkerSource` (the workers and their capacity).

Names load on first use, so that ``callmeter.client`` (which shares the payload models) does
not import FastAPI, DuckDB or the analysis functions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callmeter.server.app import API_PREFIX, OwnerAccount, bootstrap_owner, create_app, serve
    from callmeter.server.queue import Backoff, RunLauncher, RunQueue
    from callmeter.server.workers import WorkerInfo, WorkerSource, WorkerStatus

__all__ = [
    "API_PREFIX",
    "Backoff",
    "OwnerAccount",
    "RunLauncher",
    "RunQueue",
    "WorkerInfo",
    "WorkerSource",
    "WorkerStatus",
    "bootstrap_owner",
    "create_app",
    "serve",
]

_HOMES = {
    "API_PREFIX": "app",
    "OwnerAccount": "app",
    "bootstrap_owner": "app",
    "create_app": "app",
    "serve": "app",
    "Backoff": "queue",
    "RunLauncher": "queue",
    "RunQueue": "queue",
    "WorkerInfo": "workers",
    "WorkerSource": "workers",
    "WorkerStatus": "workers",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"callmeter.server.{home}"), name)
