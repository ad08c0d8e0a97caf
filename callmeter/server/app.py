"""The platform server: the FastAPI app over one store, the run queue, and ``serve``.

One process owns the database (DESIGN.md "One owner for the database"): :func:`create_app`
takes the open :class:`~callmeter.store.Store`, adds the platform tables to the same database
(:func:`callmeter.server.schema.migrate`), recovers the queue after a restart (runs left
RUNNING become FAILED with the reason; queued runs stay queued) and mounts the API under
``/api/v1``. The queue's background thread runs while the app is being served (its lifespan).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import duckdb
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from callmeter import __version__
from callmeter.probes.executor import ProbeExecutor, RayProbeExecutor
from callmeter.probes.scheduler import ProbeScheduler
from callmeter.probes.schema import migrate as migrate_probes
from callmeter.server import repo_people
from callmeter.server.auth import hash_password
from callmeter.server.context import Platform
from callmeter.server.db import Database
from callmeter.server.errors import ApiError
from callmeter.server.plans import DEFAULT_PLAN, PLANS
from callmeter.server.queue import Backoff, RunLauncher, RunQueue
from callmeter.server.routes import organizations, people, probes, projects, results, status, tests
from callmeter.server.runs import StoreStatuses, test_builder
from callmeter.server.schema import migrate
from callmeter.server.testing import NoLauncher, StaticWorkers
from callmeter.server.workers import WorkerSource

if TYPE_CHECKING:
    from callmeter.store import Store

__all__ = ["API_PREFIX", "OwnerAccount", "bootstrap_owner", "create_app", "serve"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
DEFAULT_PORT = 8080
OWNER_EMAIL_ENV = "CALLMETER_OWNER_EMAIL"
OWNER_PASSWORD_ENV = "CALLMETER_OWNER_PASSWORD"

_STATUS_CODES = {
    400: "invalid_input",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
}


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts[1:] if parts[:1] == ["body"] and len(parts) > 1 else parts)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
        return _error(error.status, error.code, error.message, **headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{_field(e['loc'])}: {e['msg']}" for e in error.errors()]
        return _error(422, "unprocessable", "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(error.status_code, "error")
        return _error(error.status_code, code, str(error.detail))

    @app.exception_handler(duckdb.ConstraintException)
    async def constraint(request: Request, error: duckdb.ConstraintException) -> JSONResponse:
        return _error(409, "conflict", "the request clashes with a change made meanwhile")

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", "internal error; the server log has the details")


def create_app(
    store: Store,
    launcher: RunLauncher | None = None,
    workers: WorkerSource | None = None,
    *,
    clock: Callable[[], float] = time.time,
    media_dir: str | Path | None = None,
    public_url: str = f"http://127.0.0.1:{DEFAULT_PORT}",
    run_queue_thread: bool = True,
    backoff: Backoff | None = None,
    poll_interval_s: float = 1.0,
    probe_executor: ProbeExecutor | None = None,
) -> FastAPI:
    """The API over ``store`` (open, owned by this process).

    ``launcher`` executes runs (default: none, every run fails with a clear reason);
    ``workers`` reports the workers (default: none). ``run_queue_thread=False`` leaves the
    queue to explicit ``app.state.platform.queue.tick()`` calls (tests), and the probe
    scheduler (``app.state.probes``, executing on Ray unless ``probe_executor`` is given) to
    explicit ``tick()`` / ``run_pending()`` calls."""
    db = Database(store.cursor(), threading.RLock())
    migrate(db)
    migrate_probes(db)
    launcher = launcher if launcher is not None else NoLauncher()
    workers = workers if workers is not None else StaticWorkers()
    if media_dir is None:
        media_dir = Path(f"{store.path}.media") if store.path != ":memory:" else None
    media_path = (
        Path(media_dir)
        if media_dir is not None
        else Path(os.environ.get("TMPDIR", "/tmp"), f"callmeter-media-{os.getpid()}")
    )
    queue = RunQueue(
        db,
        StoreStatuses(store, db),
        launcher,
        workers,
        test_builder(db, media_path),
        clock=clock,
        backoff=backoff,
        poll_interval_s=poll_interval_s,
    )
    failed = queue.recover()
    if failed:
        log.warning("%d run(s) were in progress when the server stopped: now FAILED", len(failed))
    platform = Platform(
        db=db,
        store=store,
        queue=queue,
        workers=workers,
        clock=clock,
        media_dir=media_path,
        public_url=public_url.rstrip("/"),
    )

    probe_scheduler = ProbeScheduler(
        db, probe_executor if probe_executor is not None else RayProbeExecutor(store),
        store=store, clock=clock, media_dir=media_path,
        api_url=f"{platform.public_url}{API_PREFIX}",
    )  # fmt: skip
    probe_scheduler.recover()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_queue_thread:
            queue.start()
            probe_scheduler.start()
        try:
            yield
        finally:  # both join threads (a run may take seconds to stop): off the event loop
            await asyncio.to_thread(probe_scheduler.close)
            await asyncio.to_thread(queue.close)

    app = FastAPI(
        title="callmeter",
        version=__version__,
        description="SIP stress testing and VoIP quality monitoring: the platform API.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.platform = platform
    app.state.probes = probe_scheduler
    _install_error_handlers(app)
    for module in (people, organizations, projects, tests, results, probes, status):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(status.public_router)  # /status/<slug>: public HTML
    return app


class OwnerAccount(NamedTuple):
    email: str
    password: str | None  # the generated password; None when it was given
    created: bool


def bootstrap_owner(
    db: Database,
    email: str | None = None,
    password: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> OwnerAccount | None:
    """On a database with no user: create the first user, Owner of a "Default" organization.

    ``email``/``password`` default to ``CALLMETER_OWNER_EMAIL`` / ``CALLMETER_OWNER_PASSWORD``,
    then to ``owner@localhost`` and a generated password (returned, to be shown once)."""
    email = email or os.environ.get(OWNER_EMAIL_ENV) or "owner@localhost"
    given = password or os.environ.get(OWNER_PASSWORD_ENV)
    with db.transaction() as tx:
        if tx.scalar("SELECT count(*) FROM users"):
            return None
        generated = None if given else secrets.token_urlsafe(12)
        secret = given or generated
        assert secret is not None
        now = clock()
        user = repo_people.create_user(tx, email, "Owner", hash_password(secret), now)
        repo_people.create_organization(tx, "Default", user.user_id, PLANS[DEFAULT_PLAN], now)
    return OwnerAccount(email=user.email, password=generated, created=True)


class _Server(uvicorn.Server):
    """uvicorn, minus re-raising SIGINT/SIGTERM when it has shut down: the server still has
    work after the app stops (runs to stop, a local Ray to leave), on the main thread."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _EXIT_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve(
    db_path: str | Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    launcher: RunLauncher | None = None,
    workers: WorkerSource | None = None,
    *,
    owner_email: str | None = None,
    owner_password: str | None = None,
    public_url: str | None = None,
    announce: Callable[[str], None] = print,
    launcher_factory: Callable[[Store], tuple[RunLauncher, WorkerSource]] | None = None,
) -> None:
    """Open the database, create the first Owner if there is none, and serve until Ctrl-C.
    ``launcher_factory`` builds the launcher and workers once the store is open (the Ray
    launcher writes into it); it wins over ``launcher`` and ``workers``."""
    from callmeter.store import Store

    with Store(db_path) as store:
        if launcher_factory is not None:
            launcher, workers = launcher_factory(store)
        url = public_url or f"http://{host}:{port}"
        app = create_app(store, launcher, workers, public_url=url)
        platform: Platform = app.state.platform
        owner = bootstrap_owner(platform.db, owner_email, owner_password)
        if owner is not None:
            shown = owner.password if owner.password is not None else "(the one you gave)"
            announce(
                f"created the Owner account {owner.email} with password {shown}\n"
                f"log in: callmeter login --server {url} --email {owner.email}"
            )
        announce(f"callmeter {__version__} serving {db_path} on {url}{API_PREFIX}")
        server = _Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
        try:
            server.run()
        finally:
            close = getattr(launcher, "close", None)
            if close is not None:  # the Ray launcher: stop runs (kept), leave (a local) Ray
                close()
