"""Workers and regions: status, capacity and what is allocated now."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import api

st.title("Workers & regions")
organization = api.organization()
if organization is None:
    st.stop()
workers = api.attempt(api.client().workers, organization.organization_id) or []
if not workers:
    st.info(
        "No worker is connected: start `callmeter serve` with a Ray cluster, or join a "
        "machine with `callmeter worker join`."
    )
    st.stop()
frame = pd.DataFrame([w.model_dump() for w in workers])
frame["free"] = (frame["capacity"] - frame["allocated"]).clip(lower=0)
regions = frame.groupby("region", as_index=False).agg(
    workers=("name", "count"),
    online=("status", lambda s: int((s == "ONLINE").sum())),
    capacity=("capacity", "sum"),
    allocated=("allocated", "sum"),
)
regions["utilisation_percent"] = (
    100.0 * regions["allocated"] / regions["capacity"].where(regions["capacity"] > 0)
)
cards = st.columns(4)
cards[0].metric("Workers", len(frame))
cards[1].metric("Online", int((frame["status"] == "ONLINE").sum()))
cards[2].metric("Capacity (endpoints)", int(frame["capacity"].sum()))
cards[3].metric("Allocated", int(frame["allocated"].sum()))
st.subheader("Regions")
st.dataframe(regions, hide_index=True, width="stretch")
figure = px.bar(
    frame,
    x="name",
    y=["allocated", "free"],
    color_discrete_sequence=["#d62728", "#2ca02c"],
    title="Endpoints per worker: allocated and free",
    facet_col="region",
)
st.plotly_chart(figure, width="stretch", key="workers_bars")
st.subheader("Workers")
st.dataframe(frame, hide_index=True, width="stretch")
