"""The organization's members and their roles, invitations, and API keys (for CI)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from callmeter.server.payloads import RoleName
from dashboard import api

ROLES = [r.value for r in RoleName]

st.title("Members & API keys")
organization = api.organization()
if organization is None:
    st.stop()
org_id = organization.organization_id
client = api.client()

st.subheader("Members")
members = api.attempt(client.members, org_id) or []
if members:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "email": m.email,
                    "name": m.name,
                    "role": m.role.value,
                    "all projects": m.all_projects,
                    "projects": ", ".join(f"{p.project_id}:{p.role or '-'}" for p in m.projects),
                }
                for m in members
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    emails = {m.user_id: m.email for m in members}
    a, b, c = st.columns([3, 2, 1])
    user_id = a.selectbox("Member", list(emails), format_func=emails.__getitem__, key="mem_pick")
    role = b.selectbox("Role", ROLES, key="mem_role")
    if c.button("Set role", key="mem_set") and user_id:
        if api.attempt(client.update_member, org_id, user_id, role=role) is not None:
            st.rerun()

st.subheader("Invitations")
with st.form("inv_new"):
    a, b = st.columns([3, 2])
    email = a.text_input("Email (empty: anyone with the link)", key="inv_email")
    invite_role = b.selectbox("Role", ROLES[:-1], key="inv_role")
    if st.form_submit_button("Invite"):
        made = api.attempt(client.invite, org_id, email.strip() or None, invite_role)
        if made is not None:
            st.success("Invitation created: send this link (shown only now).")
            st.code(made.link)
invitations = api.attempt(client.invitations, org_id) or []
if invitations:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "email": i.email,
                    "role": i.role.value,
                    "expires": i.expires_at,
                    "accepted": i.accepted_at,
                }
                for i in invitations
            ]
        ),
        hide_index=True,
        width="stretch",
    )

st.subheader("API keys")
st.caption("For CI: `CALLMETER_TOKEN=cmk_... callmeter tests run NAME --fail-under mos=4.0`.")
with st.form("key_new"):
    key_name = st.text_input("Name", key="key_name", placeholder="ci")
    if st.form_submit_button("Create API key") and key_name.strip():
        created = api.attempt(client.create_api_key, org_id, key_name.strip())
        if created is not None:
            st.success("API key created: copy it now, it is shown only once.")
            st.code(created.key)
keys = api.attempt(client.api_keys, org_id) or []
if keys:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "name": k.name,
                    "prefix": k.prefix,
                    "created": k.created_at,
                    "last used": k.last_used_at,
                    "revoked": k.revoked_at,
                }
                for k in keys
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    live_keys = {k.api_key_id: f"{k.name} ({k.prefix}…)" for k in keys if k.revoked_at is None}
    if live_keys:
        a, b = st.columns([3, 1])
        doomed = a.selectbox(
            "API key", list(live_keys), format_func=live_keys.__getitem__, key="key_pick"
        )
        if b.button("Revoke", key="key_revoke") and doomed:
            if api.attempt(client.revoke_api_key, org_id, doomed) is not None:
                st.rerun()
