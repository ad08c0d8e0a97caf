"""Two runs side by side: overview figures, each metric with both values, the difference and
whether it is beyond run-to-run noise, and MOS per second of both."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import streamlit as st

from dashboard import api, charts

CARDS = (
    ("success_rate", "Success rate", 100.0, " %"),
    ("mos_avg", "MOS", 1.0, ""),
    ("jitter_ms_avg", "Jitter", 1.0, " ms"),
    ("loss_percent_avg", "Loss", 1.0, " %"),
    ("rtt_ms_avg", "RTT", 1.0, " ms"),
    ("setup_time_ms_p50", "Setup p50", 1.0, " ms"),
)
VERDICT_ICONS = {
    "better": "🟢 better",
    "worse": "🔴 worse",
    "within noise": "⚪ within noise",
    "not enough data": "… not enough data",
}


def value(row: Mapping[Any, Any], key: str, scale: float) -> float | None:
    found = row.get(key)
    if found is None or (isinstance(found, float) and math.isnan(found)):
        return None
    return float(found) * scale


st.title("Compare runs")
project = api.require_project()
client = api.client()
runs = api.attempt(client.runs, project.project_id) or []
if len(runs) < 2:
    st.info("Two runs are needed to compare: run a test twice.")
    st.stop()
left, right = st.columns(2)
with left:
    run_a = api.run_picker("A (baseline)", "cmp_a", runs, runs[1].run_id)
with right:
    run_b = api.run_picker(
        "B (compared with A)", "cmp_b", runs, api.selected_run() or runs[0].run_id
    )
assert run_a is not None and run_b is not None
if run_a == run_b:
    st.warning("Pick two different runs.")
    st.stop()

both = api.attempt(client.compare, run_a, run_b)
if both is not None and len(both) == 2:
    a, b = both.iloc[0].to_dict(), both.iloc[1].to_dict()
    cards = st.columns(len(CARDS))
    for column, (key, title, scale, unit) in zip(cards, CARDS, strict=True):
        va, vb = value(a, key, scale), value(b, key, scale)
        column.metric(
            f"{title} (B)",
            "-" if vb is None else f"{vb:.2f}{unit}",
            delta=None if va is None or vb is None else f"{vb - va:+.2f}{unit} vs A",
            delta_color="inverse" if key not in ("success_rate", "mos_avg") else "normal",
        )

st.subheader("Per metric")
alpha = st.select_slider(
    "Significance level", options=(0.01, 0.05, 0.1), value=0.05, key="cmp_alpha"
)
metrics = api.attempt(client.compare_metrics, run_a, run_b, alpha)
if metrics is not None and not metrics.empty:
    shown = metrics.assign(verdict=metrics["verdict"].map(VERDICT_ICONS).fillna(metrics["verdict"]))
    st.dataframe(
        shown[
            [
                "metric",
                "direction",
                "unit",
                "a",
                "b",
                "difference",
                "relative_change",
                "p_value",
                "verdict",
                "a_n",
                "b_n",
                "method",
            ]
        ],
        hide_index=True,
        width="stretch",
    )
    st.caption(
        "Beyond noise: Welch's t-test over per-endpoint means (the success rate: a "
        "two-proportion z-test), p below the significance level. Several metrics are "
        "tested at once: read a lone significant one with care."
    )

series = [
    (label, frame)
    for label, run_id in (("A", run_a), ("B", run_b))
    if (frame := api.attempt(client.timeseries, run_id, ["mos", "jitter_ms"], by="run")) is not None
]
if series:
    columns = st.columns(2)
    for column, metric in zip(columns, ("mos", "jitter_ms"), strict=True):
        column.plotly_chart(
            charts.compare_figure(series, metric), width="stretch", key=f"cmp_{metric}"
        )
