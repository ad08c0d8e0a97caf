"""Status pages: public pages over some of the project's probes, at ``/status/<slug>`` on the
server (no login, plain HTML). Create one, choose its components and their public names, and
open the public page."""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from callmeter.probes.models import ProbeOut, StatusPageOut
from dashboard import api

NEW = "__new__"
PICK_NEXT = "sp_pick_next"  # the page to show after a rerun (a widget's key cannot be set)
HEALTH_ICONS = {"HEALTHY": "🟢", "DEGRADED": "🟡", "UNHEALTHY": "🔴", "UNKNOWN": "⚪"}


def suggested_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64] or "status"


def component_table(probes: list[ProbeOut], page: StatusPageOut | None) -> pd.DataFrame:
    """One row per probe of the project: shown on the page or not, and its public name."""
    chosen = {c.probe_id: c.display_name for c in page.components} if page else {}
    order = [c.probe_id for c in page.components] if page else []
    ranked = sorted(probes, key=lambda p: order.index(p.probe_id) if p.probe_id in order else 999)
    return pd.DataFrame(
        [
            {
                "show": p.probe_id in chosen,
                "public name": chosen.get(p.probe_id, p.name),
                "probe": p.name,
                "health": f"{HEALTH_ICONS[p.health]} {p.health}",
                "probe_id": p.probe_id,
            }
            for p in ranked
        ]
    )


def components_from(table: pd.DataFrame) -> list[dict[str, str]]:
    return [
        {"probe_id": str(row["probe_id"]), "display_name": str(row["public name"]).strip()}
        for row in table.to_dict("records")
        if row["show"] and str(row["public name"]).strip()
    ]


def page_form(project_id: str, probes: list[ProbeOut], page: StatusPageOut | None) -> None:
    client = api.client()
    prefix = f"sp_{page.status_page_id if page else 'new'}"
    with st.form(f"{prefix}_form"):
        name = st.text_input("Name", value=page.name if page else "", key=f"{prefix}_name")
        slug = st.text_input(
            "Address: /status/<slug> (3 to 64 of a-z, 0-9 and -)",
            value=page.slug if page else "",
            key=f"{prefix}_slug",
            placeholder="acme-voice",
        )
        description = st.text_area(
            "Description (public)", value=page.description if page else "", key=f"{prefix}_desc"
        )
        st.markdown(
            "**Components**: tick the probes to show. Only the public name, the health, the "
            "uptime history and the incidents are published."
        )
        table = st.data_editor(
            component_table(probes, page),
            key=f"{prefix}_components",
            hide_index=True,
            disabled=["probe", "health", "probe_id"],
            column_order=["show", "public name", "probe", "health"],
            width="stretch",
        )
        submitted = st.form_submit_button("Save status page" if page else "Create status page")
    if not submitted:
        return
    fields = {
        "name": name.strip(),
        "slug": slug.strip() or suggested_slug(name),
        "description": description.strip(),
        "components": components_from(table),
    }
    if page is None:
        made = api.attempt(client.create_status_page, project_id, **fields)
        if made is not None:
            st.session_state[PICK_NEXT] = made.status_page_id
            st.rerun()
    elif api.attempt(client.update_status_page, page.status_page_id, **fields) is not None:
        st.success("Saved.")
        st.rerun()


st.title("Status pages")
project = api.require_project()
client = api.client()
pages = api.attempt(client.status_pages, project.project_id) or []
probes = api.attempt(client.probes, project.project_id) or []
st.caption(
    "A status page is public (no login): the overall state, each component's state, 90 days "
    "of uptime, the SLA uptime and the incidents. Nothing else of the project is shown."
)
if pages:
    st.dataframe(
        pd.DataFrame(
            [{"name": p.name, "public page": p.url, "components": len(p.components)} for p in pages]
        ),
        hide_index=True,
        width="stretch",
        column_config={"public page": st.column_config.LinkColumn("public page")},
    )
if not probes:
    st.info("Status pages show probes: create a probe first (Monitoring: Probes).")
if PICK_NEXT in st.session_state:
    st.session_state["sp_pick"] = st.session_state.pop(PICK_NEXT)
options = [p.status_page_id for p in pages] + [NEW]
titles = {p.status_page_id: p.name for p in pages} | {NEW: "+ New status page"}
picked = st.selectbox("Status page", options, format_func=titles.__getitem__, key="sp_pick")
if picked == NEW or picked is None:
    st.subheader("New status page")
    page_form(project.project_id, probes, None)
    st.stop()
page = next(p for p in pages if p.status_page_id == picked)
st.link_button("Open the public page", page.url, icon=":material/open_in_new:")
page_form(project.project_id, probes, page)
if st.button("Delete this status page", key="sp_delete"):
    if api.done(client.delete_status_page, page.status_page_id):
        st.session_state[PICK_NEXT] = None
        st.rerun()
