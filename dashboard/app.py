"""callmeter's web UI: ``streamlit run dashboard/app.py`` (the server: ``CALLMETER_URL``).

Logged out, the app is the log-in page. Logged in, the sidebar switches organization and
project and ``st.navigation`` lists the pages; each page is a thin script in ``pages/`` that
calls the client (``dashboard.api``) and draws with ``dashboard.charts``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ there
    sys.path.insert(0, str(ROOT))

from dashboard import api  # noqa: E402

st.set_page_config(page_title="callmeter", page_icon=":material/call:", layout="wide")

PAGES = Path(__file__).parent / "pages"


def page(
    name: str, title: str, icon: str, *, default: bool = False, url_path: str | None = None
) -> st.Page:
    path = PAGES / f"{name}.py"
    return st.Page(path, title=title, icon=icon, url_path=url_path or name, default=default)


def sidebar() -> None:
    """Who is logged in, and the organization and project every page works in."""
    with st.sidebar:
        st.caption(f"{st.session_state.get(api.EMAIL, '')} · {api.server_url()}")
        organizations = api.organizations()
        if organizations:
            names = {o.organization_id: f"{o.name} ({o.role})" for o in organizations}
            current = api.organization()
            ids = list(names)
            chosen = st.selectbox(
                "Organization",
                ids,
                index=ids.index(current.organization_id) if current else 0,
                format_func=names.__getitem__,
                key="sb_organization",
            )
            if chosen != st.session_state.get(api.ORGANIZATION):
                st.session_state[api.ORGANIZATION] = chosen
                st.session_state.pop(api.PROJECT, None)
                st.session_state.pop(api.RUN, None)
            projects = api.projects(str(chosen))
            if projects:
                current_project = api.project()
                project_ids = [p.project_id for p in projects]
                titles = {p.project_id: p.name for p in projects}
                picked = st.selectbox(
                    "Project",
                    project_ids,
                    format_func=titles.__getitem__,
                    key="sb_project",
                    index=project_ids.index(current_project.project_id) if current_project else 0,
                )
                if picked != st.session_state.get(api.PROJECT):
                    st.session_state[api.PROJECT] = picked
                    st.session_state.pop(api.RUN, None)
            with st.popover("New project"):
                name = st.text_input("Name", key="sb_new_project")
                if st.button("Create project", key="sb_create_project") and name.strip():
                    made = api.attempt(api.client().create_project, str(chosen), name.strip())
                    if made is not None:
                        st.session_state[api.PROJECT] = made.project_id
                        st.rerun()
        if st.button("Log out", key="sb_logout"):
            api.logout()
            st.rerun()


if not api.logged_in():
    # The log-in page stands where the test builder will be (same URL path, so the same page
    # hash): once logged in, the rerun lands on the builder rather than on "page not found".
    login = page("login", "Log in", ":material/login:", default=True, url_path="tests")
    navigation = st.navigation([login], position="hidden")
else:
    sidebar()
    navigation = st.navigation(
        {
            "Tests": [
                page("tests", "Test builder", ":material/science:", default=True),
                page("live", "Live run", ":material/monitoring:"),
                page("results", "Results", ":material/bar_chart:"),
                page("compare", "Compare runs", ":material/compare_arrows:"),
            ],
            "Project": [
                page("registrars", "Registrars & accounts", ":material/call:"),
                page("media", "Media files", ":material/music_note:"),
            ],
            "Monitoring": [
                page("probes", "Probes", ":material/health_and_safety:"),
                page("status_pages", "Status pages", ":material/traffic:"),
            ],
            "Organization": [
                page("workers", "Workers & regions", ":material/dns:"),
                page("members", "Members & API keys", ":material/group:"),
                page("plan", "Plan & limits", ":material/receipt_long:"),
            ],
        }
    )
# Widgets not drawn in a run lose their state: keep the test builder's across pages.
for key in [k for k in st.session_state if str(k).startswith("b_")]:
    st.session_state[key] = st.session_state[key]
navigation.run()
