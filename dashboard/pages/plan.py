"""The organization's plan and limits, and the named plans."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import api

LIMITS = (
    ("concurrent_endpoints", "Concurrent endpoints"),
    ("max_test_duration_s", "Longest test (s)"),
    ("probe_count", "Probes"),
    ("worker_capacity", "Worker capacity"),
    ("concurrent_runs", "Concurrent runs"),
)

st.title("Plan & limits")
organization = api.organization()
if organization is None:
    st.stop()
client = api.client()
plan = api.attempt(client.plan, organization.organization_id)
if plan is not None:
    st.subheader(f"{organization.name}: plan {plan.plan!r}")
    cards = st.columns(len(LIMITS))
    for column, (key, title) in zip(cards, LIMITS, strict=True):
        column.metric(title, f"{getattr(plan, key):,}")
plans = api.attempt(client.plans) or []
if plans:
    st.subheader("Plans")
    st.dataframe(pd.DataFrame([p.model_dump() for p in plans]), hide_index=True, width="stretch")
if plan is not None and organization.role == "Owner":
    with st.expander("Change the plan (Owner)"):
        with st.form("plan_change"):
            names = [p.plan for p in plans] or [plan.plan]
            chosen = st.selectbox(
                "Plan",
                names,
                index=names.index(plan.plan) if plan.plan in names else 0,
                key="plan_name",
            )
            if st.form_submit_button("Apply"):
                changed = api.attempt(client.update_plan, organization.organization_id, plan=chosen)
                if changed is not None:
                    st.rerun()
