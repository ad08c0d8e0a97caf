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

from callmeter.probes.models import (
    DeliveryOut,
    ExecutionOut,
    ProbeOut,
    StatusPageOut,
    WebhookCreated,
    WebhookOut,
)
from callmeter.server.payloads import (
    ApiKeyCreated,
    ApiKeyOut,
    ImportResult,
    InvitationCreated,
    InvitationOut,
    MediaFileOut,
    MemberOut,
    OrganizationOut,
    PlanLimits,
    ProjectOut,
    RegistrarOut,
    RegistrationCheckOut,
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

    def api_keys(self, organization_id: str) -> list[ApiKeyOut]:
        return self._list(ApiKeyOut, f"/organizations/{organization_id}/api-keys")

    def revoke_api_key(self, organization_id: str, api_key_id: str) -> ApiKeyOut:
        path = f"/organizations/{organization_id}/api-keys/{api_key_id}"
        return self._one(ApiKeyOut, "DELETE", path)

    def create_organization(self, name: str) -> OrganizationOut:
        return self._one(OrganizationOut, "POST", "/organizations", json={"name": name})

    def members(self, organization_id: str) -> list[MemberOut]:
        return self._list(MemberOut, f"/organizations/{organization_id}/members")

    def update_member(self, organization_id: str, user_id: str, **changes: Any) -> MemberOut:
        """Change ``role``, ``all_projects`` or ``projects`` (``[{project_id, role}]``)."""
        path = f"/organizations/{organization_id}/members/{user_id}"
        return self._one(MemberOut, "PATCH", path, json=changes)

    def remove_member(self, organization_id: str, user_id: str) -> None:
        self.request("DELETE", f"/organizations/{organization_id}/members/{user_id}")

    def invitations(self, organization_id: str) -> list[InvitationOut]:
        return self._list(InvitationOut, f"/organizations/{organization_id}/invitations")

    def invite(
        self, organization_id: str, email: str | None, role: str = "Viewer", **fields: Any
    ) -> InvitationCreated:
        """A new invitation; ``.token`` and ``.link`` are shown only now."""
        body = {"email": email, "role": role, **fields}
        return self._one(InvitationCreated, "POST",
                         f"/organizations/{organization_id}/invitations", json=body)  # fmt: skip

    def delete_invitation(self, organization_id: str, invitation_id: str) -> None:
        self.request("DELETE", f"/organizations/{organization_id}/invitations/{invitation_id}")

    def plans(self) -> list[PlanLimits]:
        return self._list(PlanLimits, "/plans")

    def plan(self, organization_id: str) -> PlanLimits:
        return self._one(PlanLimits, "GET", f"/organizations/{organization_id}/plan")

    def update_plan(self, organization_id: str, **changes: Any) -> PlanLimits:
        path = f"/organizations/{organization_id}/plan"
        return self._one(PlanLimits, "PATCH", path, json=changes)

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

    def delete_registrar(self, registrar_id: str) -> None:
        self.request("DELETE", f"/registrars/{registrar_id}")

    def create_account(
        self, registrar_id: str, username: str, password: str, realm: str | None = None
    ) -> SipAccountOut:
        """Add an account (or set the password and realm of an existing username)."""
        body = {"username": username, "password": password, "realm": realm}
        return self._one(SipAccountOut, "POST", f"/registrars/{registrar_id}/accounts",
                         json=body)  # fmt: skip

    def delete_account(self, sip_account_id: str) -> None:
        self.request("DELETE", f"/sip-accounts/{sip_account_id}")

    def import_accounts(self, registrar_id: str, csv_text: str) -> ImportResult:
        """Bulk import ``username,password[,realm]`` lines (with that header)."""
        path = f"/registrars/{registrar_id}/accounts/import"
        headers = {"content-type": "text/csv"}
        return self._one(ImportResult, "POST", path, content=csv_text.encode(), headers=headers)

    def accounts(self, registrar_id: str) -> list[SipAccountOut]:
        return self._list(SipAccountOut, f"/registrars/{registrar_id}/accounts")

    def test_registration(self, registrar_id: str, username: str) -> RegistrationCheckOut:
        """Have the server register ``username`` at the registrar for real, then unregister:
        ``ok``, the final ``status`` and ``reason``, ``elapsed_ms`` and the message ladder
        (``trace``). A refusal is ``ok=False``, not an error."""
        path = f"/registrars/{registrar_id}/test-registration"
        return self._one(RegistrationCheckOut, "POST", path, json={"username": username})

    def upload_media(
        self, project_id: str, path: str | Path, name: str | None = None
    ) -> MediaFileOut:
        path = Path(path)
        with path.open("rb") as file:
            return self.upload_media_bytes(project_id, path.name, file.read(), name)

    def upload_media_bytes(
        self, project_id: str, filename: str, data: bytes, name: str | None = None
    ) -> MediaFileOut:
        """Upload a media file from memory (a browser upload)."""
        return self._one(MediaFileOut, "POST", f"/projects/{project_id}/media-files",
                         files={"file": (filename, data)},
                         data={"name": name} if name else None)  # fmt: skip

    def media_files(self, project_id: str) -> list[MediaFileOut]:
        return self._list(MediaFileOut, f"/projects/{project_id}/media-files")

    def delete_media(self, media_file_id: str) -> None:
        self.request("DELETE", f"/media-files/{media_file_id}")

    def tests(self, project_id: str, name: str | None = None) -> list[TestOut]:
        params = {"name": name} if name is not None else None
        return self._list(TestOut, f"/projects/{project_id}/tests", params)

    def create_test(
        self, project_id: str, name: str, definition: Mapping[str, Any], description: str = ""
    ) -> TestOut:
        body = {"name": name, "definition": dict(definition), "description": description}
        return self._one(TestOut, "POST", f"/projects/{project_id}/tests", json=body)

    def test(self, test_id: str) -> TestOut:
        return self._one(TestOut, "GET", f"/tests/{test_id}")

    def update_test(self, test_id: str, **changes: Any) -> TestOut:
        """Change ``name``, ``description`` or ``definition`` (validated like a new test)."""
        return self._one(TestOut, "PATCH", f"/tests/{test_id}", json=changes)

    def delete_test(self, test_id: str) -> None:
        self.request("DELETE", f"/tests/{test_id}")

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

    def generator_health(self, run_id: str) -> pd.DataFrame:
        return self._frame(f"/runs/{run_id}/generator-health")

    def kpis(self, run_id: str) -> pd.DataFrame:
        """RFC 6076 KPIs, one row each (``analysis.kpis``)."""
        return self._frame(f"/runs/{run_id}/kpis")

    def r_budget(
        self,
        run_id: str,
        endpoint_id: int | None = None,
        direction: Literal["send", "receive"] = "receive",
    ) -> pd.DataFrame:
        """The R budget of the run or of one endpoint (``analysis.r_budget``)."""
        params: dict[str, Any] = {"direction": direction}
        if endpoint_id is not None:
            params["endpoint_id"] = endpoint_id
        return self._frame(f"/runs/{run_id}/r-budget", params)

    def sip_trace(self, run_id: str, endpoint_id: int) -> pd.DataFrame:
        """Every SIP message of one endpoint, in order (``analysis.sip_trace``)."""
        return self._frame(f"/runs/{run_id}/endpoints/{endpoint_id}/sip-trace")

    def endpoint_timeseries(
        self,
        run_id: str,
        endpoint_id: int,
        metrics: Sequence[str] = ("mos",),
        direction: Literal["send", "receive"] | None = None,
    ) -> pd.DataFrame:
        """One endpoint's per-second rows, send and receive apart."""
        params: dict[str, Any] = {"metric": list(metrics)}
        if direction is not None:
            params["direction"] = direction
        return self._frame(f"/runs/{run_id}/endpoints/{endpoint_id}/timeseries", params)

    def compare(self, run_id: str, other_run_id: str) -> pd.DataFrame:
        """The two runs' overviews, one row each."""
        return self._frame(f"/runs/{run_id}/compare/{other_run_id}")

    def compare_metrics(self, run_id: str, other_run_id: str, alpha: float = 0.05) -> pd.DataFrame:
        """Per metric: both values, the difference (other minus this) and whether it is beyond
        run-to-run noise (``analysis.compare``)."""
        return self._frame(f"/runs/{run_id}/compare/{other_run_id}/metrics", {"alpha": alpha})

    def export(
        self, run_id: str, table: str = "per_endpoint", format: Literal["csv", "parquet"] = "csv"
    ) -> bytes:
        """One table of the run as CSV or Parquet bytes."""
        params = {"table": table, "format": format}
        return self.request("GET", f"/runs/{run_id}/export", params=params).content

    def export_frame(self, run_id: str, table: str = "metrics") -> pd.DataFrame:
        """One table of the run as a DataFrame (fetched as Parquet)."""
        return pd.read_parquet(io.BytesIO(self.export(run_id, table, "parquet")))

    # -- probes, webhooks, status pages ---------------------------------------------------------
    def probes(self, project_id: str) -> list[ProbeOut]:
        """The project's probes, each with its current health."""
        return self._list(ProbeOut, f"/projects/{project_id}/probes")

    def probe(self, probe_id: str) -> ProbeOut:
        return self._one(ProbeOut, "GET", f"/probes/{probe_id}")

    def create_probe(self, project_id: str, name: str, **config: Any) -> ProbeOut:
        """A new probe: ``registrar``, ``account``, ``target``, ``codec``, ``call_duration_s``,
        ``interval_min``, ``placement``, ``thresholds``... (``callmeter.probes.models``)."""
        return self._one(ProbeOut, "POST", f"/projects/{project_id}/probes",
                         json={"name": name, **config})  # fmt: skip

    def update_probe(self, probe_id: str, **changes: Any) -> ProbeOut:
        """Change some fields (``enabled=False`` pauses the probe)."""
        return self._one(ProbeOut, "PATCH", f"/probes/{probe_id}", json=changes)

    def delete_probe(self, probe_id: str) -> None:
        self.request("DELETE", f"/probes/{probe_id}")

    def trigger_probe(self, probe_id: str) -> ExecutionOut:
        """Run the probe now; the execution is PENDING until it starts."""
        return self._one(ExecutionOut, "POST", f"/probes/{probe_id}/trigger")

    def probe_executions(
        self,
        probe_id: str,
        *,
        health: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[ExecutionOut]:
        """The probe's executions, newest first: the latest ``limit`` (at most 1000), or all."""
        params: dict[str, Any] = {}
        if health is not None:
            params["health"] = health
        if since is not None:
            params["since"] = since
        path = f"/probes/{probe_id}/executions"
        if limit is None:
            return self._list(ExecutionOut, path, params)
        found = self._data("GET", path, params={**params, "limit": limit})
        return [ExecutionOut.model_validate(item) for item in found]

    def probe_execution(self, execution_id: str) -> ExecutionOut:
        return self._one(ExecutionOut, "GET", f"/probe-executions/{execution_id}")

    def webhooks(self, probe_id: str) -> list[WebhookOut]:
        return self._list(WebhookOut, f"/probes/{probe_id}/webhooks")

    def create_webhook(
        self, probe_id: str, url: str, description: str = "", enabled: bool = True
    ) -> WebhookCreated:
        """A new webhook; ``.secret`` (to verify signatures) is shown only now."""
        body = {"url": url, "description": description, "enabled": enabled}
        return self._one(WebhookCreated, "POST", f"/probes/{probe_id}/webhooks", json=body)

    def update_webhook(self, webhook_id: str, **changes: Any) -> WebhookOut:
        """Change ``url``, ``description`` or ``enabled``."""
        return self._one(WebhookOut, "PATCH", f"/webhooks/{webhook_id}", json=changes)

    def delete_webhook(self, webhook_id: str) -> None:
        self.request("DELETE", f"/webhooks/{webhook_id}")

    def rotate_webhook_secret(self, webhook_id: str) -> WebhookCreated:
        """A new signing secret, shown only now."""
        return self._one(WebhookCreated, "POST", f"/webhooks/{webhook_id}/rotate-secret")

    def send_test_webhook(self, webhook_id: str) -> DeliveryOut:
        """Queue a signed ``webhook.test`` event to the webhook."""
        return self._one(DeliveryOut, "POST", f"/webhooks/{webhook_id}/test")

    def webhook_deliveries(self, webhook_id: str, *, limit: int = 100) -> list[DeliveryOut]:
        """The latest deliveries (at most 1000), newest first, each with its attempts."""
        found = self._data("GET", f"/webhooks/{webhook_id}/deliveries", params={"limit": limit})
        return [DeliveryOut.model_validate(item) for item in found]

    def status_pages(self, project_id: str) -> list[StatusPageOut]:
        return self._list(StatusPageOut, f"/projects/{project_id}/status-pages")

    def create_status_page(
        self,
        project_id: str,
        name: str,
        slug: str,
        description: str = "",
        components: Sequence[Mapping[str, Any]] = (),
    ) -> StatusPageOut:
        """A public page at ``/status/<slug>``; ``components``: ``{probe_id, display_name}``."""
        body = {"name": name, "slug": slug, "description": description,
                "components": [dict(c) for c in components]}  # fmt: skip
        return self._one(StatusPageOut, "POST", f"/projects/{project_id}/status-pages", json=body)

    def update_status_page(self, status_page_id: str, **changes: Any) -> StatusPageOut:
        """Change ``name``, ``slug``, ``description`` or ``components`` (the list replaces all)."""
        return self._one(StatusPageOut, "PATCH", f"/status-pages/{status_page_id}", json=changes)

    def delete_status_page(self, status_page_id: str) -> None:
        self.request("DELETE", f"/status-pages/{status_page_id}")


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
