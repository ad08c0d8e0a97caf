"""A run as it happens: status, endpoints per phase, MOS / jitter / loss / bitrate per second,
failures as they happen, and the stop button. The live part is a fragment that reruns itself
every two seconds while the run is active: no page reload."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from callmeter.client import FINAL_STATUSES
from dashboard import api, charts

REFRESH_S = 2.0
LIVE_METRICS = ("mos", "jitter_ms", "loss_percent", "bitrate_bps")
TITLES = {
    "mos": "MOS",
    "jitter_ms": "Jitter (ms)",
    "loss_percent": "Loss (%)",
    "bitrate_bps": "Bitrate (bit/s)",
}

st.title("Live run")
project = api.require_project()
client = api.client()
runs = api.attempt(client.runs, project.project_id) or []
if not runs:
    st.info("No run yet: run a test from the test builder.")
    st.stop()
run_id = api.run_picker("Run", "live_run", runs, api.selected_run(), status=False)
api.select_run(run_id)
assert run_id is not None
first = api.attempt(client.run, run_id)
active = first is not None and first.status not in FINAL_STATUSES


@st.fragment(run_every=REFRESH_S if active else None)
def live(run_id: str) -> None:
    run = api.attempt(client.run, run_id)
    if run is None:
        return
    head = st.columns([2, 2, 1, 1])
    head[0].markdown(f"### {run.test_name}  \n`{run.run_id}`")
    head[1].metric("Status", run.status)
    head[2].metric("Endpoints", run.endpoints)
    elapsed = api.elapsed_s(run)
    head[3].metric("Running for", "-" if elapsed is None else f"{elapsed:.0f} s")
    if run.reason:
        st.caption(run.reason)
    if run.status not in FINAL_STATUSES:
        if st.button("⏹ Stop the run", key="live_stop", type="secondary"):
            stopped = api.attempt(client.stop_run, run_id)
            if stopped is not None:
                st.toast(f"Stopping {run_id}: {stopped.status}")
    elif active:  # it ended while we watched: redraw once, without the timer
        st.rerun()
    else:
        st.success(f"The run is {run.status}.")
        st.page_link("pages/results.py", label="See the results", icon="📊")

    endpoints = api.attempt(client.per_endpoint, run_id)
    endpoints = endpoints if endpoints is not None else pd.DataFrame()
    left, right = st.columns(2)
    left.plotly_chart(charts.phase_figure(endpoints), width="stretch", key="live_phases")
    outcomes = api.attempt(client.outcomes, run_id)
    if outcomes is not None:
        right.plotly_chart(charts.outcome_figure(outcomes), width="stretch", key="live_outcomes")
    series = api.attempt(client.timeseries, run_id, list(LIVE_METRICS), by="run")
    if series is not None:
        columns = st.columns(2)
        for index, metric in enumerate(LIVE_METRICS):
            figure = charts.series_figure(series, metric, title=TITLES[metric])
            columns[index % 2].plotly_chart(figure, width="stretch", key=f"live_{metric}")
    st.subheader("Failures")
    failed = (
        endpoints[endpoints["outcome"].map(charts.is_failure)]
        if not endpoints.empty and "outcome" in endpoints
        else pd.DataFrame()
    )
    if failed.empty:
        st.caption("No failure so far.")
    else:
        shown = [
            "endpoint_id",
            "group_name",
            "username",
            "role",
            "phase",
            "outcome",
            "outcome_reason",
            "outcome_status",
        ]
        st.dataframe(failed[[c for c in shown if c in failed]], hide_index=True, width="stretch")


live(run_id)
