"""A run's results: overview cards, outcomes, per group, RFC 6076 KPIs, the generator's health,
an endpoint's drill-down (send/receive series, call timing, SIP ladder, R budget) and export."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

import analysis
from dashboard import api, charts

DRILL_METRICS = ("mos", "jitter_ms", "loss_percent", "bitrate_bps", "rtt_ms")
EXPORT_TABLES = (
    "per_endpoint",
    "overview",
    "outcomes",
    "groups",
    "metrics",
    "endpoints",
    "endpoint_events",
    "sip_trace",
    "shard_health",
    "runs",
)


def number(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{unit}"


def overview_cards(row: Mapping[Any, Any]) -> None:
    cards = st.columns([1.5, 1, 1, 1, 1, 1])
    cards[0].metric("Status", str(row.get("status")))
    rate = row.get("success_rate")
    cards[1].metric(
        "Success rate",
        "-" if rate is None else f"{100 * rate:.1f} %",
        help="successful calls / attempted calls (callers)",
    )
    cards[2].metric(
        "Calls",
        f"{row.get('calls_successful', 0)} / {row.get('calls_attempted', 0)}",
        help="successful / attempted",
    )
    cards[3].metric("MOS (avg)", number(row.get("mos_avg")), help=f"p5 {number(row.get('mos_p5'))}")
    cards[4].metric("Jitter (avg)", number(row.get("jitter_ms_avg"), " ms", 1))
    cards[5].metric("Loss (avg)", number(row.get("loss_percent_avg"), " %"))
    more = st.columns([1.5, 1, 1, 1, 1, 1])
    more[0].metric("RTT (avg)", number(row.get("rtt_ms_avg"), " ms", 1))
    more[1].metric("Setup p50", number(row.get("setup_time_ms_p50"), " ms", 0))
    more[2].metric("Setup p95", number(row.get("setup_time_ms_p95"), " ms", 0))
    more[3].metric("Post-dial delay p50", number(row.get("post_dial_delay_ms_p50"), " ms", 0))
    more[4].metric("Endpoints", str(row.get("endpoints_reported", 0)))
    more[5].metric("Duration", number(row.get("duration_s"), " s", 0))


def drill_down(run_id: str, endpoints: pd.DataFrame) -> None:
    """One endpoint: call timing, its send and receive series, SIP ladder and R budget."""
    labels = {
        int(r["endpoint_id"]): f"{r['endpoint_id']} · {r['username']} · {r['group_name']} · "
        f"{r['role']} · {r['outcome'] or 'UNDECIDED'}"
        for r in endpoints.to_dict("records")
    }
    endpoint_id = st.selectbox(
        "Endpoint", list(labels), format_func=labels.__getitem__, key="res_endpoint"
    )
    if endpoint_id is None:
        return
    row = endpoints[endpoints["endpoint_id"] == endpoint_id].iloc[0].to_dict()
    st.markdown(
        f"#### Endpoint {endpoint_id}: {row['username']} ({row['role']}, {row['group_name']})"
    )
    timing = st.columns(6)
    timing[0].metric(
        "Outcome", str(row.get("outcome") or "UNDECIDED"), help=str(row.get("outcome_reason") or "")
    )
    timing[1].metric("Final status", number(row.get("final_status_code"), digits=0))
    timing[2].metric("Post-dial delay", number(row.get("post_dial_delay_ms"), " ms", 0))
    timing[3].metric("Setup time", number(row.get("setup_time_ms"), " ms", 0))
    timing[4].metric("Call duration", number(row.get("call_duration_s"), " s", 1))
    timing[5].metric("MOS (avg)", number(row.get("mos_avg")))
    series = api.attempt(api.client().endpoint_timeseries, run_id, endpoint_id, list(DRILL_METRICS))
    if series is not None and not series.empty:
        columns = st.columns(2)
        for index, metric in enumerate(DRILL_METRICS):
            figure = charts.series_figure(series, metric, title=f"{metric}: send and receive")
            columns[index % 2].plotly_chart(figure, width="stretch", key=f"res_series_{metric}")
    else:
        st.caption("No media rows for this endpoint.")
    trace = api.attempt(api.client().sip_trace, run_id, endpoint_id)
    st.markdown("##### SIP ladder")
    if trace is None or trace.empty:
        st.caption("No SIP message traced for this endpoint.")
    else:
        ladder = analysis.ladder(trace, f"{row['username']} (endpoint {endpoint_id})")
        st.plotly_chart(charts.ladder_figure(ladder), width="stretch", key="res_ladder")
        with st.expander(f"The {len(trace)} SIP messages"):
            for message in trace.to_dict("records"):
                arrow = "→" if message["direction"] == "out" else "←"
                st.markdown(
                    f"**{message['seq']}** `{message['t_ms']:.1f} ms` {arrow} "
                    f"{message['peer']}: {message['first_line']}"
                )
                st.code(str(message["message"]).replace("\r\n", "\n"), language="http")
    budget = api.attempt(api.client().r_budget, run_id, endpoint_id)
    if budget is not None and budget["contribution"].notna().any():
        st.plotly_chart(charts.r_budget_figure(budget), width="stretch", key="res_endpoint_budget")


st.title("Results")
project = api.require_project()
client = api.client()
runs = api.attempt(client.runs, project.project_id) or []
if not runs:
    st.info("No run yet: run a test from the test builder.")
    st.stop()
run_id = api.run_picker("Run", "res_run", runs, api.selected_run())
assert run_id is not None
api.select_run(run_id)
overview = api.attempt(client.overview, run_id)
if overview is None or overview.empty:
    st.stop()
overview_cards(overview.iloc[0].to_dict())

left, right = st.columns(2)
outcomes = api.attempt(client.outcomes, run_id)
if outcomes is not None:
    left.plotly_chart(charts.outcome_figure(outcomes), width="stretch", key="res_outcomes")
groups = api.attempt(client.per_group, run_id)
with right:
    st.markdown("##### Per group")
    if groups is not None and not groups.empty:
        shown = [
            "group_name",
            "endpoints_reported",
            "calls_attempted",
            "calls_successful",
            "success_rate",
            "mos_avg",
            "jitter_ms_avg",
            "loss_percent_avg",
            "setup_time_ms_p50",
            "setup_time_ms_p95",
        ]
        st.dataframe(groups[[c for c in shown if c in groups]], hide_index=True, width="stretch")

endpoints_tab, kpi_tab, budget_tab, generator_tab, export_tab = st.tabs(
    ["Endpoints", "KPIs (RFC 6076)", "R budget", "Generator", "Export"]
)
with endpoints_tab:
    endpoints = api.attempt(client.per_endpoint, run_id)
    if endpoints is None or endpoints.empty:
        st.caption("No endpoint has reported yet.")
    else:
        st.dataframe(endpoints, hide_index=True, width="stretch", height=260)
        drill_down(run_id, endpoints)
with kpi_tab:
    kpis = api.attempt(client.kpis, run_id)
    if kpis is not None:
        st.dataframe(
            kpis[
                [
                    "kpi",
                    "name",
                    "section",
                    "value",
                    "unit",
                    "numerator",
                    "denominator",
                    "count",
                    "p50",
                    "p95",
                    "max",
                    "source",
                ]
            ],
            hide_index=True,
            width="stretch",
        )
        st.caption(
            "RFC 6076 end-to-end SIP metrics, over the callers' initial INVITEs; the "
            "analysis.kpis docstring says what each counts and what our data cannot "
            "give."
        )
with budget_tab:
    budget = api.attempt(client.r_budget, run_id)
    if budget is not None and budget["contribution"].notna().any():
        st.plotly_chart(charts.r_budget_figure(budget), width="stretch", key="res_budget")
        st.dataframe(budget, hide_index=True, width="stretch")
    else:
        st.caption("No R budget: no media was measured.")
with generator_tab:
    health = api.attempt(client.generator_health, run_id)
    if health is not None and not health.empty:
        if health["generator_overloaded"].any():
            st.warning(
                "The load generator itself was the bottleneck on some shards: the "
                "quality figures may be the generator's, not the network's."
            )
        st.dataframe(health, hide_index=True, width="stretch")
    else:
        st.caption("No generator health reported.")
with export_tab:
    table = st.selectbox("Table", EXPORT_TABLES, key="res_export_table")
    fmt = st.radio("Format", ("csv", "parquet"), horizontal=True, key="res_export_format")
    if st.button("Prepare the download", key="res_export"):
        data = api.attempt(client.export, run_id, table, fmt)
        if data is not None:
            st.download_button(
                f"Download {table}.{fmt} ({len(data):,} bytes)",
                data,
                file_name=f"{run_id}-{table}.{fmt}",
                key="res_download",
                on_click="ignore",
            )
