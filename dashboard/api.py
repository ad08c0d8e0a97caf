"""The session's link to the platform: one :class:`~callmeter.client.Client` per browser
session, the logged-in user, and the organization, project and run being looked at.

Everything lives in ``st.session_state`` under ``cm_*`` keys, so each browser session has its
own token and selection and nothing is written to disk. ``CALLMETER_URL`` names the server.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import streamlit as st

from callmeter.client import DEFAULT_URL, URL_ENV, ApiError, Client
from callmeter.server.payloads import OrganizationOut, ProjectOut, RunOut

__all__ = [
    "ApiError",
    "attempt",
    "client",
    "elapsed_s",
    "logged_in",
    "login",
    "logout",
    "organization",
    "organizations",
    "project",
    "projects",
    "run_label",
    "run_picker",
    "select_run",
    "selected_run",
    "server_url",
]

T = TypeVar("T")

TOKEN, EMAIL, CLIENT = "cm_token", "cm_email", "cm_client"
ORGANIZATION, PROJECT, RUN = "cm_organization", "cm_project", "cm_run"


def server_url() -> str:
    url = st.session_state.get("cm_url") or os.environ.get(URL_ENV) or DEFAULT_URL
    return str(url).rstrip("/")


def client() -> Client:
    """This session's client (made on first use), carrying its token."""
    found = st.session_state.get(CLIENT)
    if not isinstance(found, Client) or found.base_url != server_url():
        found = Client(server_url(), timeout_s=30.0)
        st.session_state[CLIENT] = found
    found.token = st.session_state.get(TOKEN)
    return found


def logged_in() -> bool:
    return bool(st.session_state.get(TOKEN))


def login(email: str, password: str) -> None:
    """Log in (ApiError when refused) and pick the first organization and project."""
    session = client().login(email, password)
    st.session_state[TOKEN] = session.token
    st.session_state[EMAIL] = session.user.email
    for key in (ORGANIZATION, PROJECT, RUN):
        st.session_state.pop(key, None)


def logout() -> None:
    if logged_in():
        try:
            client().logout()
        except ApiError:
            pass  # an expired session is logged out already
    for key in [k for k in st.session_state if str(k).startswith("cm_") and k != "cm_url"]:
        del st.session_state[key]


def attempt(action: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``action(...)``, or None with the API's message shown when it answers an error."""
    try:
        return action(*args, **kwargs)
    except ApiError as error:
        _show(error)
        return None


def done(action: Callable[..., object], *args: Any, **kwargs: Any) -> bool:
    """Whether ``action(...)`` succeeded, for actions that answer nothing (a delete): with
    :func:`attempt` a refused one would also give None, and a rerun would hide its message."""
    try:
        action(*args, **kwargs)
    except ApiError as error:
        _show(error)
        return False
    return True


def _show(error: ApiError) -> None:
    if error.status == 401:
        st.session_state.pop(TOKEN, None)
        st.error("Your session has ended: log in again.")
    else:
        st.error(error.message)


def _pick(key: str, options: list[Any], attribute: str) -> Any:
    wanted = st.session_state.get(key)
    for option in options:
        if getattr(option, attribute) == wanted:
            return option
    if options:
        st.session_state[key] = getattr(options[0], attribute)
        return options[0]
    st.session_state.pop(key, None)
    return None


def organizations() -> list[OrganizationOut]:
    return attempt(client().organizations) or []


def organization() -> OrganizationOut | None:
    """The organization being looked at (the first one until another is chosen)."""
    return _pick(ORGANIZATION, organizations(), "organization_id")  # type: ignore[no-any-return]


def projects(organization_id: str) -> list[ProjectOut]:
    return attempt(client().projects, organization_id) or []


def project() -> ProjectOut | None:
    """The project being looked at, in the current organization."""
    chosen = organization()
    if chosen is None:
        return None
    return _pick(PROJECT, projects(chosen.organization_id), "project_id")  # type: ignore[no-any-return]


def require_project() -> ProjectOut:
    """The project being looked at; without one, a hint to create it and the page stops."""
    chosen = project()
    if chosen is None:
        st.info("Create a project first (sidebar: New project).")
        st.stop()
    assert chosen is not None  # st.stop() does not return
    return chosen


def select_run(run_id: str | None) -> None:
    if run_id is None:
        st.session_state.pop(RUN, None)
    else:
        st.session_state[RUN] = run_id


def selected_run() -> str | None:
    found = st.session_state.get(RUN)
    return str(found) if found else None


def elapsed_s(run: RunOut) -> float | None:
    """Seconds the run has been going (or went), None before it started."""
    if run.started_at is None:
        return None
    start = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=UTC)
    end = run.finished_at or datetime.now(UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    return (end - start).total_seconds()


def run_label(run: RunOut, *, status: bool = True) -> str:
    """How a run is named in pickers: test, status (unless the page shows it live), when."""
    when = run.created_at.strftime("%Y-%m-%d %H:%M:%S") if run.created_at else "?"
    state = f" · {run.status}" if status else ""
    return f"{run.test_name}{state} · {when} · {run.run_id}"


def run_picker(
    label: str, key: str, runs: list[RunOut], default: str | None = None, *, status: bool = True
) -> str | None:
    """A select box over ``runs`` (newest first); returns the chosen run id."""
    if not runs:
        return None
    ids = [r.run_id for r in runs]
    labels = {r.run_id: run_label(r, status=status) for r in runs}
    index = ids.index(default) if default in ids else 0
    chosen = st.selectbox(label, ids, index=index, format_func=labels.__getitem__, key=key)
    return str(chosen) if chosen is not None else None
