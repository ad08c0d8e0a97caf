"""In-process stand-ins for the Ray side, for tests and for a server with no cluster.

:class:`FakeLauncher` records starts and stops and keeps runs active until told they ended;
:class:`StaticWorkers` reports a fixed, editable list of workers and counts the endpoints the
fake launcher holds on them. :class:`NoLauncher` refuses every run with a clear reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callmeter.models import Test
from callmeter.server.workers import WorkerInfo, WorkerStatus

if TYPE_CHECKING:
    from httpx import Response

    from callmeter.server.context import Platform

Headers = dict[str, str]

__all__ = ["FakeClock", "FakeLauncher", "Harness", "NoLauncher", "StaticWorkers"]


class NoLauncher:
    """A launcher for a server started without a cluster: every run fails at once."""

    def start(self, run_id: str, test: Test) -> None:
        raise RuntimeError("this server has no launcher (start it with a Ray address)")

    def stop(self, run_id: str) -> None:
        return None

    def active(self) -> dict[str, int]:
        return {}


class FakeLauncher:
    """Runs that do nothing and stay active until :meth:`finish` (or a stop, by default)."""

    def __init__(
        self,
        *,
        stop_ends_run: bool = True,
        on_finish: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.started: dict[str, Test] = {}
        self.stopped: list[str] = []
        self.refuse: str | None = None  # set to make start() raise with this message
        self._active: dict[str, int] = {}
        self._stop_ends_run = stop_ends_run
        self._on_finish = on_finish
        self._lock = threading.Lock()

    def start(self, run_id: str, test: Test) -> None:
        if self.refuse is not None:
            raise RuntimeError(self.refuse)
        with self._lock:
            self.started[run_id] = test
            self._active[run_id] = test.total_endpoints

    def stop(self, run_id: str) -> None:
        with self._lock:
            self.stopped.append(run_id)
            if self._stop_ends_run:
                self._active.pop(run_id, None)

    def active(self) -> dict[str, int]:
        with self._lock:
            return dict(self._active)

    def finish(self, run_id: str, ok: bool = True) -> None:
        """End a run; ``on_finish(run_id, ok)`` lets a test write the final status first."""
        if self._on_finish is not None:
            self._on_finish(run_id, ok)
        with self._lock:
            self._active.pop(run_id, None)


class StaticWorkers:
    """A fixed set of workers; ``allocated`` as given (the queue also counts its own)."""

    def __init__(self, workers: list[WorkerInfo] | None = None) -> None:
        self._workers = list(workers or [])
        self._lock = threading.Lock()

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            return list(self._workers)

    def set(self, workers: list[WorkerInfo]) -> None:
        with self._lock:
            self._workers = list(workers)

    def update(self, name: str, **changes: object) -> None:
        with self._lock:
            self._workers = [
                replace(w, **changes) if w.name == name else w  # type: ignore[arg-type]
                for w in self._workers
            ]


class FakeClock:
    """A settable clock (epoch seconds) for the queue's backoff and the workers' heartbeats."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    """A real app over a real store file, driven in-process: users, logins and JSON calls.

    The queue does not run in a thread: call :meth:`tick`. Used by the server tests and
    handy for the UI's tests."""

    OWNER_EMAIL = "owner@example.com"
    PASSWORD = "correct horse battery"

    def __init__(
        self,
        path: str | Path,
        *,
        launcher: FakeLauncher | None = None,
        workers: StaticWorkers | None = None,
        clock: FakeClock | None = None,
        store: Any = None,
    ) -> None:
        from fastapi.testclient import TestClient

        from callmeter.server.app import bootstrap_owner, create_app
        from callmeter.store import Store

        self.path = Path(path)
        self.clock = clock or FakeClock()
        self.launcher = launcher or FakeLauncher()
        self.workers = (
            workers
            if workers is not None
            else StaticWorkers(
                [WorkerInfo("w1", "local", 1_000, 0, WorkerStatus.ONLINE, self.clock.now)]
            )
        )
        self.store = store if store is not None else Store(self.path)
        self.app = create_app(
            self.store, self.launcher, self.workers, clock=self.clock, run_queue_thread=False,
            public_url="http://testserver",
        )  # fmt: skip
        self.platform: Platform = self.app.state.platform
        self.http = TestClient(self.app, raise_server_exceptions=False)
        bootstrap_owner(self.platform.db, self.OWNER_EMAIL, self.PASSWORD, clock=self.clock)
        self.owner = self.login(self.OWNER_EMAIL)
        self.org = self.ok("GET", "/organizations", self.owner)[0]["organization_id"]
        self._users = 0

    def close(self) -> None:
        self.http.close()
        # the probe scheduler is left as it is: tests close it themselves, or leave it
        # hanging on purpose to play a crash (tests/test_probes_scheduler.py)
        self.platform.queue.close()
        self.store.close()

    # -- HTTP ------------------------------------------------------------------------------------
    def call(self, method: str, path: str, headers: Headers | None = None, **kw: Any) -> Response:
        response: Response = self.http.request(method, f"/api/v1{path}", headers=headers, **kw)
        return response

    def ok(self, method: str, path: str, headers: Headers | None = None, **kw: Any) -> Any:
        response = self.call(method, path, headers, **kw)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json()["data"] if response.content else None

    def login(self, email: str, password: str | None = None) -> Headers:
        data = self.ok(
            "POST", "/auth/login", json={"email": email, "password": password or self.PASSWORD}
        )
        return {"Authorization": f"Bearer {data['token']}"}

    def add_member(
        self,
        role: str,
        *,
        organization_id: str | None = None,
        inviter: Headers | None = None,
        all_projects: bool = True,
        projects: Sequence[tuple[str, str | None]] = (),
    ) -> tuple[str, Headers]:
        """A new user joining by invitation with ``role``; returns (user_id, headers)."""
        organization_id = organization_id or self.org
        self._users += 1
        email = f"user{self._users}-{role.lower()}@example.com"
        invitation = self.ok(
            "POST",
            f"/organizations/{organization_id}/invitations",
            inviter or self.owner,
            json={
                "email": email,
                "role": role,
                "all_projects": all_projects,
                "projects": [{"project_id": p, "role": r} for p, r in projects],
            },
        )
        self.ok("POST", "/invitations/accept", json={"token": invitation["token"],
                                                     "password": self.PASSWORD})  # fmt: skip
        headers = self.login(email)
        return self.ok("GET", "/me", headers)["user_id"], headers

    def new_user(self) -> tuple[str, Headers]:
        """A user in no organization; returns (user_id, headers)."""
        from callmeter.server import repo_people
        from callmeter.server.auth import hash_password

        self._users += 1
        email = f"user{self._users}@example.org"
        with self.platform.db.transaction() as tx:
            user = repo_people.create_user(
                tx, email, "", hash_password(self.PASSWORD), self.clock.now
            )
        return user.user_id, self.login(email)

    def new_organization(self, name: str = "Other") -> tuple[str, Headers]:
        """A second organization with its own Owner (a new user); returns (id, owner headers)."""
        _, headers = self.new_user()
        organization = self.ok("POST", "/organizations", headers, json={"name": name})
        return organization["organization_id"], headers

    def tick(self) -> None:
        self.platform.queue.tick()
