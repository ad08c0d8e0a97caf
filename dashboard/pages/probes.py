"""Probes: the list with current health, a probe's execution history with its metrics charted
against the thresholds, the probe editor, and its webhooks with their delivery log."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from callmeter.probes.models import (
    DEFAULT_THRESHOLDS,
    INTERVALS_MIN,
    PROBE_METRICS,
    ExecutionOut,
    ProbeOut,
    UriTarget,
)
from dashboard import api

CODECS = ("PCMU", "PCMA", "G722", "opus")
HEALTH_ICONS = {"HEALTHY": "🟢", "DEGRADED": "🟡", "UNHEALTHY": "🔴", "UNKNOWN": "⚪"}
HEALTH_COLORS = {
    "HEALTHY": "#2e9e5b",
    "DEGRADED": "#e0a800",
    "UNHEALTHY": "#d6453d",
    "UNKNOWN": "#8a94a6",
}
NEW = "__new__"
PLACEMENTS = ("anywhere", "region", "workers")
PICK_NEXT = "pr_pick_next"  # the probe to show after a rerun (a widget's key cannot be set)


def health_label(health: str) -> str:
    return f"{HEALTH_ICONS.get(health, '')} {health}"


def target_label(probe: ProbeOut) -> str:
    if isinstance(probe.target, UriTarget):
        return probe.target.uri
    return "answering endpoint" + (f" ({probe.target.account})" if probe.target.account else "")


def probe_rows(probes: list[ProbeOut]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "health": health_label(p.health),
                "name": p.name,
                "every": f"{p.interval_min} min",
                "registrar": p.registrar,
                "target": target_label(p),
                "last run": p.last_execution_at,
                "next run": p.next_run_at if p.enabled else "paused",
            }
            for p in probes
        ]
    )


def execution_rows(executions: list[ExecutionOut]) -> pd.DataFrame:
    rows = []
    for e in executions:
        breached = ", ".join(f"{b.label} {b.value:.4g} {b.unit} ({b.level})" for b in e.breaches)
        rows.append(
            {
                "when": e.finished_at or e.created_at,
                "health": health_label(e.health or ""),
                "status": e.status,
                "trigger": e.trigger,
                "breached": breached,
                "reason": e.reason or "",
                **{k: v for k, v in e.measurements.items()},
                "run": e.run_id,
            }
        )
    return pd.DataFrame(rows)


def metric_figure(probe: ProbeOut, executions: list[ExecutionOut], key: str) -> go.Figure:
    """One metric over time, points coloured by health, the thresholds as dashed lines."""
    metric = PROBE_METRICS[key]
    done = sorted(
        (e for e in executions if e.finished_at is not None and e.health is not None),
        key=lambda e: e.finished_at or e.created_at,
    )
    points = [(e.finished_at, e.measurements.get(key), str(e.health)) for e in done]
    points = [(t, v, h) for t, v, h in points if v is not None and math.isfinite(v)]
    figure = go.Figure()
    if points:
        figure.add_scatter(
            x=[t for t, _, _ in points],
            y=[v for _, v, _ in points],
            mode="lines+markers",
            line={"color": "#8a94a6", "width": 1},
            name=metric.label,
            marker={"color": [HEALTH_COLORS[h] for _, _, h in points], "size": 7},
        )
    threshold = probe.thresholds.get(key)
    for level, color in (("warning", "#e0a800"), ("critical", "#d6453d")):
        value = getattr(threshold, level) if threshold is not None else None
        if value is not None:
            figure.add_hline(
                y=value, line_dash="dash", line_color=color, annotation_text=f"{level} {value:g}"
            )
    figure.update_layout(
        title=f"{metric.label} ({metric.unit})",
        height=260,
        showlegend=False,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return figure


def placement_fields(probe: ProbeOut | None) -> tuple[str, str]:
    placement = probe.placement if probe is not None else None
    if placement is None:
        return "anywhere", ""
    if placement.workers:
        return "workers", ", ".join(placement.workers)
    return "region", placement.region or ""


def placement_of(kind: str, value: str) -> dict[str, Any] | None:
    if kind == "region":
        return {"region": value.strip()}
    if kind == "workers":
        return {"workers": [w.strip() for w in value.split(",") if w.strip()]}
    return None


def threshold_table(probe: ProbeOut | None) -> pd.DataFrame:
    current = probe.thresholds if probe is not None else None
    rows = []
    for key, metric in PROBE_METRICS.items():
        level = DEFAULT_THRESHOLDS.get(key) if current is None else current.get(key)
        rows.append(
            {
                "metric": key,
                "label": metric.label,
                "unit": metric.unit,
                "worse when": "lower" if metric.lower_is_worse else "higher",
                "warning": None if level is None else level.warning,
                "critical": None if level is None else level.critical,
            }
        )
    return pd.DataFrame(rows)


def thresholds_from(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for row in table.to_dict("records"):
        levels = {
            level: float(row[level])
            for level in ("warning", "critical")
            if row.get(level) is not None and not pd.isna(row[level])
        }
        if levels:
            found[str(row["metric"])] = levels
    return found


def probe_form(project_id: str, probe: ProbeOut | None) -> None:
    """The editor: a new probe (``probe`` None) or changes to one."""
    client = api.client()
    registrars = api.attempt(client.registrars, project_id) or []
    names = ["builtin", *(r.name for r in registrars)]
    prefix = f"pr_{probe.probe_id if probe else 'new'}"
    registrar = st.selectbox(
        "Registrar",
        names,
        key=f"{prefix}_registrar",
        index=names.index(probe.registrar) if probe and probe.registrar in names else 0,
        help="builtin: callmeter's own registrar, no SIP infrastructure needed",
    )
    accounts: list[str] = []
    if registrar != "builtin":
        chosen = next(r for r in registrars if r.name == registrar)
        accounts = [a.username for a in api.attempt(client.accounts, chosen.registrar_id) or []]
    with st.form(f"{prefix}_form"):
        name = st.text_input("Name", value=probe.name if probe else "", key=f"{prefix}_name")
        description = st.text_input(
            "Description", value=probe.description if probe else "", key=f"{prefix}_description"
        )
        account = None
        if accounts:
            current = probe.account if probe and probe.account in accounts else accounts[0]
            account = st.selectbox(
                "Caller account", accounts, index=accounts.index(current), key=f"{prefix}_account"
            )
        elif registrar != "builtin":
            st.warning(f"Registrar {registrar} has no SIP account yet.")
        kinds = {"endpoint": "A second endpoint that answers", "uri": "An external SIP URI"}
        current_kind = probe.target.kind if probe else "endpoint"
        kind = st.radio(
            "Target",
            list(kinds),
            format_func=kinds.__getitem__,
            index=list(kinds).index(current_kind),
            horizontal=True,
            key=f"{prefix}_kind",
        )
        uri = st.text_input(
            "SIP URI (an echo extension, an IVR)",
            key=f"{prefix}_uri",
            value=probe.target.uri if probe and isinstance(probe.target, UriTarget) else "",
        )
        answerer = None
        if accounts and registrar != "builtin":
            current_answerer = (
                probe.target.account
                if probe and not isinstance(probe.target, UriTarget) and probe.target.account
                else accounts[-1]
            )
            answerer = st.selectbox(
                "Answering endpoint's account",
                accounts,
                key=f"{prefix}_answerer",
                index=accounts.index(current_answerer) if current_answerer in accounts else 0,
            )
        a, b, c = st.columns(3)
        codec = a.selectbox(
            "Codec",
            CODECS,
            key=f"{prefix}_codec",
            index=CODECS.index(probe.codec) if probe and probe.codec in CODECS else 0,
        )
        duration = b.number_input(
            "Call duration (s)",
            min_value=1.0,
            max_value=300.0,
            value=float(probe.call_duration_s) if probe else 10.0,
            key=f"{prefix}_duration",
        )
        interval = c.selectbox(
            "Every (minutes)",
            INTERVALS_MIN,
            key=f"{prefix}_interval",
            index=INTERVALS_MIN.index(probe.interval_min) if probe else 0,
        )
        where, value = placement_fields(probe)
        p1, p2 = st.columns([1, 2])
        placement_kind = p1.selectbox(
            "Placement", PLACEMENTS, index=PLACEMENTS.index(where), key=f"{prefix}_placement"
        )
        placement_value = p2.text_input(
            "Region, or workers (comma-separated)", value=value, key=f"{prefix}_where"
        )
        st.markdown("**Thresholds** (leave a level empty to skip it)")
        table = st.data_editor(
            threshold_table(probe),
            key=f"{prefix}_thresholds",
            hide_index=True,
            disabled=["metric", "label", "unit", "worse when"],
            width="stretch",
        )
        enabled = st.checkbox(
            "Enabled (unticked: paused)",
            value=probe.enabled if probe else True,
            key=f"{prefix}_enabled",
        )
        submitted = st.form_submit_button("Save probe" if probe else "Create probe")
    if not submitted:
        return
    target: dict[str, Any] = (
        {"kind": "uri", "uri": uri.strip()}
        if kind == "uri"
        else {"kind": "endpoint", "account": answerer}
    )
    config: dict[str, Any] = {
        "name": name.strip(),
        "description": description.strip(),
        "registrar": registrar,
        "account": account,
        "target": target,
        "codec": codec,
        "call_duration_s": duration,
        "interval_min": interval,
        "thresholds": thresholds_from(table),
        "enabled": enabled,
        "placement": placement_of(placement_kind, placement_value),
    }
    if probe is None:
        made = api.attempt(client.create_probe, project_id, **config)
        if made is not None:
            st.session_state[PICK_NEXT] = made.probe_id
            st.rerun()
    elif api.attempt(client.update_probe, probe.probe_id, **config) is not None:
        st.success("Saved.")
        st.rerun()


def history(probe: ProbeOut) -> None:
    client = api.client()
    left, right = st.columns([1, 3])
    if left.button("Run now", key="pr_trigger", help="Tester and above"):
        started = api.attempt(client.trigger_probe, probe.probe_id)
        if started is not None:
            st.toast(f"Execution {started.execution_id} queued.")
    right.caption(
        f"Health {health_label(probe.health)} since {probe.health_since:%Y-%m-%d %H:%M UTC}"
        if probe.health_since
        else f"Health {health_label(probe.health)}"
    )
    executions = api.attempt(client.probe_executions, probe.probe_id, limit=500) or []
    if not executions:
        st.info("No execution yet.")
        return
    for key in [k for k in PROBE_METRICS if k in probe.thresholds] or ["mos"]:
        st.plotly_chart(
            metric_figure(probe, executions, key), width="stretch", key=f"pr_chart_{key}"
        )
    st.dataframe(execution_rows(executions), hide_index=True, width="stretch")
    with_runs = [e for e in executions if e.run_id]
    if with_runs:
        labels = {
            e.execution_id: f"{e.finished_at or e.created_at:%Y-%m-%d %H:%M} · "
            f"{e.health or e.status}"
            for e in with_runs
        }
        c1, c2 = st.columns([3, 1])
        chosen = c1.selectbox(
            "Execution", list(labels), format_func=labels.__getitem__, key="pr_execution"
        )
        if c2.button("Open its call's results", key="pr_open"):
            run_id = next(e.run_id for e in with_runs if e.execution_id == chosen)
            api.select_run(run_id)
            st.switch_page("pages/results.py")


def webhooks(probe: ProbeOut) -> None:
    client = api.client()
    st.caption(
        "A JSON POST on every change of health, signed: header `Callmeter-Signature: "
        "t=<unix>,v1=<hex>` with `v1` = HMAC-SHA256(secret, `<t>.` + body). Reject old `t`."
    )
    shown = st.session_state.pop("pr_new_secret", None)
    if shown:
        st.success("Copy the signing secret now: it is not shown again.")
        st.code(shown, language=None)
    with st.form("pr_webhook_add"):
        url = st.text_input("URL (https://, or http:// to a loopback address)", key="pr_hook_url")
        description = st.text_input("Description", key="pr_hook_description")
        if st.form_submit_button("Add webhook"):
            made = api.attempt(
                client.create_webhook, probe.probe_id, url.strip(), description.strip()
            )
            if made is not None:
                st.session_state["pr_new_secret"] = made.secret
                st.rerun()
    hooks = api.attempt(client.webhooks, probe.probe_id) or []
    for hook in hooks:
        with st.expander(
            f"{'✅' if hook.enabled else '⏸️'} {hook.url}  ·  secret {hook.secret_hint}"
        ):
            a, b, c, d = st.columns(4)
            if a.button(
                "Disable" if hook.enabled else "Enable", key=f"pr_toggle_{hook.webhook_id}"
            ):
                if api.done(client.update_webhook, hook.webhook_id, enabled=not hook.enabled):
                    st.rerun()
            if b.button("Send a test event", key=f"pr_test_{hook.webhook_id}"):
                api.attempt(client.send_test_webhook, hook.webhook_id)
            if c.button("New secret", key=f"pr_rotate_{hook.webhook_id}"):
                rotated = api.attempt(client.rotate_webhook_secret, hook.webhook_id)
                if rotated is not None:
                    st.session_state["pr_new_secret"] = rotated.secret
                    st.rerun()
            if d.button("Delete", key=f"pr_delete_{hook.webhook_id}"):
                if api.done(client.delete_webhook, hook.webhook_id):
                    st.rerun()
            deliveries = api.attempt(client.webhook_deliveries, hook.webhook_id) or []
            if deliveries:
                st.dataframe(
                    pd.DataFrame(
                        [
                            {
                                "created": d.created_at,
                                "event": d.event,
                                "change": f"{d.body.get('previous_state', '')} → "
                                f"{d.body.get('current_state', '')}",
                                "status": d.status,
                                "attempts": d.attempts,
                                "codes": " ".join(str(a.status_code or "—") for a in d.log),
                                "last error": d.last_error or "",
                                "next attempt": d.next_attempt_at,
                            }
                            for d in deliveries
                        ]
                    ),
                    hide_index=True,
                    width="stretch",
                )
            else:
                st.caption("No delivery yet.")


st.title("Probes")
project = api.require_project()
client = api.client()
probes = api.attempt(client.probes, project.project_id) or []
st.caption(
    "One real call every few minutes, judged against thresholds: HEALTHY, DEGRADED (a warning "
    "level crossed), UNHEALTHY (a critical level crossed) or UNKNOWN (no data, or the call "
    "failed before media). Signed webhooks fire on every change."
)
if probes:
    st.dataframe(probe_rows(probes), hide_index=True, width="stretch")
if PICK_NEXT in st.session_state:
    st.session_state["pr_pick"] = st.session_state.pop(PICK_NEXT)
options = [p.probe_id for p in probes] + [NEW]
titles = {p.probe_id: f"{HEALTH_ICONS[p.health]} {p.name}" for p in probes} | {NEW: "+ New probe"}
picked = st.selectbox("Probe", options, format_func=titles.__getitem__, key="pr_pick")
if picked == NEW or picked is None:
    st.subheader("New probe")
    probe_form(project.project_id, None)
    st.stop()
probe = next(p for p in probes if p.probe_id == picked)
tab_history, tab_settings, tab_hooks = st.tabs(["History", "Settings", "Webhooks"])
with tab_history:
    history(probe)
with tab_settings:
    probe_form(project.project_id, probe)
    if st.button("Delete this probe", key="pr_delete_probe"):
        if api.done(client.delete_probe, probe.probe_id):
            st.session_state[PICK_NEXT] = None
            st.rerun()
with tab_hooks:
    webhooks(probe)
