"""``Client``: the Python client of the platform's REST API (``callmeter serve``).

Typed results: resources come back as the API's pydantic models
(:mod:`callmeter.server.payloads`), results as pandas DataFrames. Lists are fetched page by
page until complete. Every error the API answers raises :class:`ApiError` with its status,
code and message.

Credentials: ``Client.from_environment()`` takes ``CALLMETER_URL`` and ``CALLMETER_TOKEN`` (a
session token or an API key, ``cmk_...``: what CI uses), else the file ``callmeter login``
wrote (``~/.config/callmeter/credentials.json``, mode 0600).

A CI gate: :func:`check_thresholds` compares a run summary with ``--fail-under mos=4.0``
style limits and says which are missed.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
import pandas as pd
from pydantic import BaseModel

from callmeter.server.payloads import (
    ApiKeyCreated,
    ImportResult,
    MediaFileOut,
    OrganizationOut,
    ProjectOut,
    RegistrarOut,
    RunOut,
    SessionOut,
    SipAccountOut,
    TestOut,
    UserOut,
    WorkerOut,
)

__all__ = [
    "FINAL_STATUSES",
    "ApiError",
    "Client",
    "Threshold",
    "check_thresholds",
    "credentials_path",
]

M = TypeVar("M", bound=BaseModel)

API = "/api/v1"
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED"})
URL_ENV = "CALLMETER_URL"
TOKEN_ENV = "CALLMETER_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8080"
PAGE = 500


class ApiError(Exception):
    """An error answered by the API (or a server that is not one)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "callmeter" / "credentials.json"


class Client:
    """A session with one server. ``http`` may be any ``httpx.Client`` (tests pass the app's
    TestClient); otherwise one is made for ``base_url``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        http: httpx.Client | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(
            base_url=self.base_url, timeout=timeout_s
        )  # fmt: skip

    @classmethod
    def from_environment(cls, *, base_url: str | None = None) -> Client:
        """``CALLMETER_URL``/``CALLMETER_TOKEN``, else the saved login, else no token."""
        token = os.environ.get(TOKEN_ENV)
        url = base_url or os.environ.get(URL_ENV)
        path = credentials_path()
        if token is None and path.exists():
            saved = json.loads(path.read_text())
            if url is None or url.rstrip("/") == saved.get("url"):
                url, token = saved.get("url"), saved.get("token")
        return cls(url or DEFAULT_URL, token)

    def save_credentials(self, path: Path | None = None) -> Path:
        """Write URL and token for later commands (readable by this user only)."""
        path = path or credentials_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({"url": self.base_url, "token": self.token}, file)
        return path

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        response = self._http.request(method, f"{self.base_url}{API}{path}", headers=headers, **kw)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise ApiError(response.status_code, error["code"], error["message"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(response.status_code, "http_error", response.text[:500]) from None
        return response

    def _data(self, method: str, path: str, **kw: Any) -> Any:
        response = self.request(method, path, **kw)
        return response.json()["data"] if response.content else None

    def _one(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        return model.model_validate(self._data(method, path, **kw))

    def _pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        offset = 0
        while True:
            query = {**(params or {}), "limit": PAGE, "offset": offset}
            body = self.request("GET", path, params=query).json()
            yield from body["data"]
            offset += len(body["data"])
            if not body["data"] or offset >= body["meta"]["page"]["total"]:
                return

    def _list(self, model: type[M], path: str, params: Mapping[str, Any] | None = None) -> list[M]:
        return [model.model_validate(item) for item in self._pages(path, params)]

    def _frame(self, path: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        return pd.DataFrame.from_records(self._data("GET", path, params=params))

    # -- people -------------------------------------------------------------------------------
    def login(self, email: str, password: str) -> SessionOut:
        """Log in; later requests carry the session token."""
        session = self._one(SessionOut, "POST", "/auth/login",
                            json={"email": email, "password": password})  # fmt: skip
        self.token = session.token
        return session

    def logout(self) -> None:
        self.request("POST", "/auth/logout")
        self.token = None

    def me(self) -> UserOut:
        return self._one(UserOut, "GET", "/me")

    def organizations(self) -> list[OrganizationOut]:
        return self._list(OrganizationOut, "/organizations")

    def create_api_key(self, organization_id: str, name: str) -> ApiKeyCreated:
        """A new API key; ``.key`` is shown only now."""
        return self._one(ApiKeyCreated, "POST", f"/organizations/{organization_id}/api-keys",
                         json={"name": name})  # fmt: skip

    def workers(self, organization_id: str) -> list[WorkerOut]:
        return self._list(WorkerOut, f"/organizations/{organization_id}/workers")

    # -- resources ----------------------------------------------------------------------------
    def projects(self, organization_id: str) -> list[ProjectOut]:
        return self._list(ProjectOut, f"/organizations/{organization_id}/projects")

    def create_project(self, organization_id: str, name: str, description: str = "") -> ProjectOut:
        return self._one(ProjectOut, "POST", f"/organizations/{organization_id}/projects",
                         json={"name": name, "description": description})  # fmt: skip

    def registrars(self, project_id: str) -> list[RegistrarOut]:
        return self._list(RegistrarOut, f"/projects/{project_id}/registrars")

    def create_registrar(
        self, project_id: str, name: str, domain: str, **fields: Any
    ) -> RegistrarOut:
        return self._one(RegistrarOut, "POST", f"/projects/{project_id}/registrars",
                         json={"name": name, "domain": domain, **fields})  # fmt: skip

    def import_accounts(self, registrar_id: str, csv_text: str) -> ImportResult:
        """Bulk import ``username,password[,realm]`` lines (with that header)."""
        path = f"/registrars/{registrar_id}/accounts/import"
        headers = {"content-type": "text/csv"}
        return self._one(ImportResult, "POST", path, content=csv_text.encode(), headers=headers)

    def accounts(self, registrar_id: str) -> list[SipAccountOut]:
        return self._list(SipAccountOut, f"/registrars/{registrar_id}/accounts")

    def upload_media(
        self, project_id: str, path: str | Path, name: str | None = None
    ) -> MediaFileOut:
        path = Path(path)
        with path.open("rb") as file:
            return self._one(MediaFileOut, "POST", f"/projects/{project_id}/media-files",
                             files={"file": (path.name, file)},
                             data={"name": name} if name else None)  # fmt: skip

    def tests(self, project_id: str, name: str | None = None) -> list[TestOut]:
        params = {"name": name} if name is not None else None
        return self._list(TestOut, f"/projects/{project_id}/tests", params)

    def create_test(
        self, project_id: str, name: str, definition: Mapping[str, Any], description: str = ""
    ) -> TestOut:
        body = {"name": name, "definition": dict(definition), "description": description}
        return self._one(TestOut, "POST", f"/projects/{project_id}/tests", json=body)

    def find_test(self, name: str, project: str | None = None) -> TestOut:
        """The test called ``name`` in ``project`` (id or slug), or in any project the caller
        sees when it is the only one so named. ``LookupError`` says what was found."""
        found: list[tuple[ProjectOut, TestOut]] = []
        for organization in self.organizations():
            for candidate in self.projects(organization.organization_id):
                if project is not None and project not in (candidate.project_id, candidate.slug):
                    continue
                found += [(candidate, t) for t in self.tests(candidate.project_id, name)]
        if len(found) == 1:
            return found[0][1]
        if not found:
            where = f"project {project}" if project else "any project you can see"
            raise LookupError(f"no test named {name!r} in {where}")
        places = ", ".join(p.slug for p, _ in found)
        raise LookupError(
            f"{len(found)} tests are named {name!r} (projects {places}): give --project"
        )

    # -- runs ---------------------------------------------------------------------------------
    def run_test(self, test_id: str) -> RunOut:
        """Trigger a run (QUEUED; it starts when there is room)."""
        return self._one(RunOut, "POST", f"/tests/{test_id}/runs")

    def run(self, run_id: str) -> RunOut:
        return self._one(RunOut, "GET", f"/runs/{run_id}")

    def runs(self, project_id: str, *, status: str | None = None) -> list[RunOut]:
        params = {"status": status} if status is not None else None
        return self._list(RunOut, f"/projects/{project_id}/runs", params)

    def stop_run(self, run_id: str) -> RunOut:
        return self._one(RunOut, "POST", f"/runs/{run_id}/stop")

    def wait(self, run_id: str, *, timeout_s: float = 3600.0, poll_s: float = 2.0) -> RunOut:
        """Poll until the run is COMPLETED or FAILED; ``TimeoutError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.run(run_id)
            if run.status in FINAL_STATUSES:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} is still {run.status} after {timeout_s:g} s")
            time.sleep(poll_s)

    # -- results ------------------------------------------------------------------------------
    def overview(self, run_id: str) -> pd.DataFrame:
        return self._frame(f"/runs/{run_id}/overview")

    def summary(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._data("GET", f"/runs/{run_id}/summary")
        return found

    def outcomes(self, run_id: str) -> pd.DataFrame:
        return self._frame(f"/runs/{run_id}/outcomes")

    def per_group(self, run_id: str) -> pd.DataFrame:
        return self._frame(f"/runs/{run_id}/groups")

    def per_endpoint(self, run_id: str) -> pd.DataFrame:
        return self._frame(f"/runs/{run_id}/endpoints")

    def timeseries(
        self,
        run_id: str,
        metrics: Sequence[str] = ("mos",),
        *,
        by: Literal["group", "endpoint", "run"] = "group",
        direction: Literal["send", "receive"] | None = None,
        agg: Literal["avg", "sum", "min", "max"] = "avg",
    ) -> pd.DataFrame:
        params: dict[str, Any] = {"metric": list(metrics), "by": by, "agg": agg}
        if direction is not None:
            params["direction"] = direction
        return self._frame(f"/runs/{run_id}/timeseries", params)

    def worst_endpoints(self, run_id: str, by: str = "mos", n: int = 10) -> pd.DataFrame:
        return self._frame(f"/runs/{run_id}/worst-endpoints", {"by": by, "n": n})

    def compare(self, run_id: str, other_run_id: str) -> pd.DataFrame:
        return self._frame(f"/runs/{run_id}/compare/{other_run_id}")

    def export(
        self, run_id: str, table: str = "per_endpoint", format: Literal["csv", "parquet"] = "csv"
    ) -> bytes:
        """One table of the run as CSV or Parquet bytes."""
        params = {"table": table, "format": format}
        return self.request("GET", f"/runs/{run_id}/export", params=params).content

    def export_frame(self, run_id: str, table: str = "metrics") -> pd.DataFrame:
        """One table of the run as a DataFrame (fetched as Parquet)."""
        return pd.read_parquet(io.BytesIO(self.export(run_id, table, "parquet")))


# The CI gate ---------------------------------------------------------------------------------

_ALIASES = {"mos": "mos_avg", "jitter": "jitter_ms_avg", "jitter_ms": "jitter_ms_avg",
            "loss": "loss_pct_avg", "rtt": "rtt_ms_avg", "rtt_ms": "rtt_ms_avg",
            "success": "success_rate"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Threshold:
    """``KEY=VALUE``: a run summary value that must be at least (``under``: fail under) or at
    most (``over``: fail over) ``value``. Keys are summary keys or short names (mos, jitter,
    loss, rtt, success)."""

    key: str
    value: float
    kind: Literal["under", "over"] = "under"

    @classmethod
    def parse(cls, text: str, kind: Literal["under", "over"] = "under") -> Threshold:
        key, sep, value = text.partition("=")
        try:
            return cls(key.strip(), float(value), kind) if sep and key.strip() else _bad(text)
        except ValueError:
            return _bad(text)

    @property
    def summary_key(self) -> str:
        return _ALIASES.get(self.key, self.key)


def _bad(text: str) -> Threshold:
    raise ValueError(f"expected KEY=NUMBER such as mos=4.0, got {text!r}")


def check_thresholds(summary: Mapping[str, Any], thresholds: Sequence[Threshold]) -> list[str]:
    """What the run misses, one line per threshold (empty: it passes). A value the run does
    not have (no media, unknown key) misses its threshold."""
    missed = []
    for threshold in thresholds:
        key = threshold.summary_key
        value = summary.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            known = ", ".join(k for k, v in summary.items() if isinstance(v, int | float))
            missed.append(f"{threshold.key}: no value in this run (numeric keys: {known})")
        elif threshold.kind == "under" and value < threshold.value:
            missed.append(f"{threshold.key}: {value:g} is under {threshold.value:g}")
        elif threshold.kind == "over" and value > threshold.value:
            missed.append(f"{threshold.key}: {value:g} is over {threshold.value:g}")
    return missed
