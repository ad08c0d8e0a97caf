"""The dashboard's charts (plotly), each built from a DataFrame the client returned.

Kept apart from the pages so that a page reads like a description of the UI, and so that each
figure can be tested without Streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pandas as pd
import plotly.graph_objects as go

from analysis.trace import Ladder
from callmeter.lifecycle import Outcome, Phase

__all__ = [
    "DIRECTION_COLORS",
    "OUTCOME_COLORS",
    "compare_figure",
    "is_failure",
    "ladder_figure",
    "outcome_figure",
    "phase_figure",
    "r_budget_figure",
    "series_figure",
]

DIRECTION_COLORS: Final = {"receive": "#1f77b4", "send": "#ff7f0e"}
OUTCOME_COLORS: Final = {
    "SUCCESS": "#2ca02c",
    "COMPLETED_WITH_WARNINGS": "#bcbd22",
    "REGISTRATION_FAILED": "#9467bd",
    "CALL_FAILED": "#d62728",
    "NEGOTIATION_FAILED": "#e377c2",
    "TIMEOUT": "#ff7f0e",
    "OSERROR": "#7f7f7f",
    "TEARDOWN_ERROR": "#8c564b",
    "UNDECIDED": "#c7c7c7",
}
_LAYOUT: Final[dict[str, Any]] = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 300}


def series_figure(
    frame: pd.DataFrame,
    metric: str,
    *,
    title: str | None = None,
    x: str = "run_second",
    split: str = "direction",
) -> go.Figure:
    """One line per value of ``split`` (direction by default), ``metric`` against ``x``."""
    figure = go.Figure()
    if not frame.empty and metric in frame:
        keys = frame[split].dropna().unique() if split in frame else [None]
        for key in keys:
            part = frame if key is None else frame[frame[split] == key]
            color = DIRECTION_COLORS.get(str(key)) if split == "direction" else None
            figure.add_scatter(
                x=part[x],
                y=part[metric],
                mode="lines+markers",
                name=str(key or metric),
                line={"color": color} if color else None,
            )
    figure.update_layout(title=title or metric, xaxis_title="second of the run", **_LAYOUT)
    return figure


def outcome_figure(outcomes: pd.DataFrame) -> go.Figure:
    """Endpoints per outcome, every outcome listed (the ``analysis.outcomes`` frame)."""
    figure = go.Figure()
    if not outcomes.empty:
        figure.add_bar(
            x=outcomes["outcome"],
            y=outcomes["endpoints"],
            marker_color=[OUTCOME_COLORS.get(str(o), "#999") for o in outcomes["outcome"]],
            text=outcomes["endpoints"],
            textposition="auto",
        )
    figure.update_layout(title="Outcomes", yaxis_title="endpoints", **_LAYOUT)
    return figure


def phase_figure(endpoints: pd.DataFrame) -> go.Figure:
    """Endpoints per phase, in the phases' order (from the per-endpoint frame)."""
    phases = [str(p) for p in Phase]
    counts = (
        endpoints["phase"].value_counts().reindex(phases, fill_value=0)
        if not endpoints.empty and "phase" in endpoints
        else pd.Series(0, index=phases)
    )
    figure = go.Figure(
        go.Bar(x=list(counts.index), y=list(counts.values), text=list(counts.values))
    )
    figure.update_layout(title="Endpoints per phase", yaxis_title="endpoints", **_LAYOUT)
    return figure


def ladder_figure(ladder: Ladder, *, max_arrows: int = 200) -> go.Figure:
    """The SIP ladder: one vertical line per participant, one arrow per message from sender to
    receiver, time going down; each arrow says what it carries and when (ms)."""
    arrows = ladder.arrows.head(max_arrows)
    count = len(arrows)
    height = max(240, 36 * count + 90)
    figure = go.Figure()
    for index in range(len(ladder.participants)):
        figure.add_scatter(
            x=[index, index],
            y=[0.5, -count - 0.5],
            mode="lines",
            hoverinfo="skip",
            line={"color": "#888", "width": 2},
            showlegend=False,
        )
    annotations: list[dict[str, Any]] = []
    for row, arrow in enumerate(arrows.to_dict("records")):
        y = -row - 0.5
        response = arrow["kind"] == "response"
        color = "#2ca02c" if response and str(arrow["label"]).startswith("2") else "#1f77b4"
        if response and (arrow["status_code"] or 0) >= 300:
            color = "#d62728"
        annotations.append(
            {
                "x": arrow["target_index"],
                "y": y,
                "ax": arrow["source_index"],
                "ay": y,
                "xref": "x",
                "yref": "y",
                "axref": "x",
                "ayref": "y",
                "showarrow": True,
                "arrowhead": 2,
                "arrowsize": 1.2,
                "arrowwidth": 1.5,
                "arrowcolor": color,
                "text": "",
            }
        )
        middle = (arrow["source_index"] + arrow["target_index"]) / 2
        annotations.append(
            {
                "x": middle,
                "y": y + 0.28,
                "xref": "x",
                "yref": "y",
                "showarrow": False,
                "text": str(arrow["label"]),
                "font": {"size": 12, "color": color},
            }
        )
        t_ms = arrow["t_ms"]
        annotations.append(
            {
                "x": -0.35,
                "y": y,
                "xref": "x",
                "yref": "y",
                "showarrow": False,
                "xanchor": "right",
                "text": "" if pd.isna(t_ms) else f"{t_ms:.1f} ms",
                "font": {"size": 10, "color": "#666"},
            }
        )
    last = max(len(ladder.participants) - 1, 1)
    figure.update_layout(
        annotations=annotations,
        height=height,
        showlegend=False,
        plot_bgcolor="white",
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        xaxis={
            "tickvals": list(range(len(ladder.participants))),
            "ticktext": list(ladder.participants),
            "side": "top",
            "range": [-0.9, last + 0.4],
            "showgrid": False,
            "zeroline": False,
        },
        yaxis={"visible": False, "range": [-count - 0.6, 0.6]},
        title="SIP ladder"
        if count == len(ladder.arrows)
        else f"SIP ladder (first {count} of {len(ladder.arrows)} messages)",
    )
    return figure


def r_budget_figure(budget: pd.DataFrame) -> go.Figure:
    """The R budget as a waterfall: Ro, minus each impairment, down to R."""
    figure = go.Figure()
    known = budget.dropna(subset=["contribution"]) if not budget.empty else budget
    if not known.empty:
        total = known["term"] == "r_factor"
        figure.add_waterfall(
            x=list(known["label"]),
            y=list(known["contribution"]),
            measure=["total" if t else "relative" for t in total],
            text=[
                f"{v:+.1f}" if not t else f"{v:.1f}"
                for v, t in zip(known["contribution"], total, strict=True)
            ],
            textposition="outside",
        )
    figure.update_layout(
        title="R budget (ITU-T G.107): why MOS dropped", yaxis_title="R", **_LAYOUT
    )
    return figure


def compare_figure(series: Sequence[tuple[str, pd.DataFrame]], metric: str) -> go.Figure:
    """One line per run: ``metric`` per second of the run (receive direction rows)."""
    figure = go.Figure()
    for name, frame in series:
        if frame.empty or metric not in frame:
            continue
        part = frame[frame["direction"] == "receive"] if "direction" in frame else frame
        figure.add_scatter(x=part["run_second"], y=part[metric], mode="lines+markers", name=name)
    figure.update_layout(
        title=f"{metric} per second (receive)", xaxis_title="second of the run", **_LAYOUT
    )
    return figure


def is_failure(outcome: object) -> bool:
    """Whether an endpoint's outcome is a failure worth listing (not a success, decided)."""
    return isinstance(outcome, str) and outcome not in (
        Outcome.SUCCESS,
        Outcome.COMPLETED_WITH_WARNINGS,
    )
