"""Public status pages: what a page shows, computed from probe health history, and its HTML.

A status page names some probes of a project as its *components* (with public display
names). The page shows, and only shows:

- the overall banner: the worst current component state (an outage beats degraded
  performance, which beats unknown, which beats operational);
- per component: its current state (a paused probe is "not monitored"), a 90-day uptime bar
  (one bar per UTC day, coloured by the worst state that day, with the day's uptime) and its
  SLA uptime over the 90 days;
- an incident timeline: the periods a component was DEGRADED or UNHEALTHY, newest first.

SLA uptime is the share of evaluated executions that were not UNHEALTHY (HEALTHY and DEGRADED
count as up, UNKNOWN has no say: no data is not downtime, nor uptime), floored to two
decimals so that a page never shows 100 % over a downtime. An incident starts with the first
DEGRADED or UNHEALTHY execution and ends with the next HEALTHY one (UNKNOWN in between neither
ends nor starts one); its severity is the worst state in it.

Nothing else leaves the organization: no probe ids or configuration, no registrar, account,
target, threshold, metric value, project or organization name. The page is plain HTML with
inline CSS and no script, served with a strict Content-Security-Policy.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from callmeter.probes import repo
from callmeter.probes.models import Health, StatusPageOut
from callmeter.probes.webhooks import iso_utc
from callmeter.server.db import Tx

__all__ = [
    "DAYS",
    "ComponentView",
    "DayBar",
    "Incident",
    "PageView",
    "build_view",
    "day_bars",
    "incidents",
    "render",
    "uptime_percent",
]

DAYS = 90
Sample = tuple[float, Health]  # (epoch seconds, health) of one evaluated execution

_LABELS = {
    Health.HEALTHY: "Operational",
    Health.DEGRADED: "Degraded performance",
    Health.UNHEALTHY: "Major outage",
    Health.UNKNOWN: "Unknown",
}
_BANNERS = {
    Health.HEALTHY: "All systems operational",
    Health.DEGRADED: "Degraded performance",
    Health.UNHEALTHY: "Major outage",
    Health.UNKNOWN: "Status unknown",
}
_COLOURS = {
    Health.HEALTHY: "#2e9e5b",
    Health.DEGRADED: "#e0a800",
    Health.UNHEALTHY: "#d6453d",
    Health.UNKNOWN: "#8a94a6",
}
_NO_DATA = "#dde1e7"


@dataclass(frozen=True, slots=True)
class DayBar:
    day: date
    worst: Health | None  # None: no evaluated execution that day
    uptime: float | None  # percent, None without HEALTHY/DEGRADED/UNHEALTHY samples
    checks: int


@dataclass(frozen=True, slots=True)
class Incident:
    component: str
    severity: Health  # DEGRADED or UNHEALTHY
    started_at: float
    ended_at: float | None  # None: ongoing


@dataclass(frozen=True, slots=True)
class ComponentView:
    name: str
    health: Health
    monitored: bool
    uptime: float | None  # percent over DAYS
    days: tuple[DayBar, ...]


@dataclass(frozen=True, slots=True)
class PageView:
    name: str
    description: str
    overall: Health
    components: tuple[ComponentView, ...]
    incidents: tuple[Incident, ...]
    generated_at: float


def uptime_percent(healths: Iterable[Health]) -> float | None:
    """Share of HEALTHY/DEGRADED among HEALTHY/DEGRADED/UNHEALTHY, in percent, floored to
    two decimals; None when there is none."""
    up = down = 0
    for health in healths:
        if health is Health.UNHEALTHY:
            down += 1
        elif health is not Health.UNKNOWN:
            up += 1
    if up + down == 0:
        return None
    return math.floor(10000 * up / (up + down)) / 100


def _worst(healths: Iterable[Health]) -> Health | None:
    found = list(healths)
    return max(found, key=lambda h: h.severity) if found else None


def day_bars(samples: Sequence[Sample], now: float, days: int = DAYS) -> tuple[DayBar, ...]:
    """One bar per UTC day, the oldest first, today last."""
    today = datetime.fromtimestamp(now, UTC).date()
    buckets: dict[date, list[Health]] = {}
    for at, health in samples:
        buckets.setdefault(datetime.fromtimestamp(at, UTC).date(), []).append(health)
    bars = []
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        found = buckets.get(day, [])
        bars.append(DayBar(day, _worst(found), uptime_percent(found), len(found)))
    return tuple(bars)


def incidents(component: str, samples: Sequence[Sample]) -> list[Incident]:
    """The DEGRADED/UNHEALTHY periods in ``samples`` (oldest first), oldest first."""
    found: list[Incident] = []
    start: float | None = None
    severity = Health.DEGRADED
    for at, health in samples:
        if health in (Health.DEGRADED, Health.UNHEALTHY):
            if start is None:
                start, severity = at, health
            elif health.severity > severity.severity:
                severity = health
        elif health is Health.HEALTHY and start is not None:
            found.append(Incident(component, severity, start, at))
            start = None
    if start is not None:
        found.append(Incident(component, severity, start, None))
    return found


def build_view(tx: Tx, page: StatusPageOut, now: float, days: int = DAYS) -> PageView:
    """What the public page of ``page`` shows at ``now``."""
    since = datetime.fromtimestamp(now, UTC).date() - timedelta(days=days - 1)
    since_s = datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp()
    probe_ids = [c.probe_id for c in page.components]
    samples: dict[str, list[Sample]] = {probe_id: [] for probe_id in probe_ids}
    for row in repo.health_history(tx, probe_ids, since_s):
        samples[row["probe_id"]].append((float(row["at"]), Health(row["health"])))
    states = _current_states(tx, probe_ids)
    components = []
    timeline: list[Incident] = []
    for component in page.components:
        health, monitored = states.get(component.probe_id, (Health.UNKNOWN, False))
        history = samples[component.probe_id]
        components.append(
            ComponentView(
                name=component.display_name, health=health if monitored else Health.UNKNOWN,
                monitored=monitored, uptime=uptime_percent(h for _, h in history),
                days=day_bars(history, now, days),
            )
        )  # fmt: skip
        timeline += incidents(component.display_name, history)
    timeline.sort(key=lambda i: i.started_at, reverse=True)
    overall = _worst(c.health for c in components) or Health.UNKNOWN
    return PageView(page.name, page.description, overall, tuple(components), tuple(timeline), now)


def _current_states(tx: Tx, probe_ids: Sequence[str]) -> dict[str, tuple[Health, bool]]:
    if not probe_ids:
        return {}
    marks = ", ".join("?" for _ in probe_ids)
    rows = tx.all(
        f"SELECT probe_id, health, enabled FROM probes WHERE probe_id IN ({marks})",
        list(probe_ids),
    )
    return {r["probe_id"]: (Health(r["health"]), bool(r["enabled"])) for r in rows}


# -- HTML --------------------------------------------------------------------------------------

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

_CSS = """
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,sans-serif;color:#1f2733;background:#f5f7fa}main{max-width:860px;margin:0 auto;
padding:32px 20px}h1{font-size:26px;margin:0 0 4px}p.lead{color:#5b6676;margin:0 0 24px}
.banner{border-radius:8px;padding:16px 20px;color:#fff;font-size:18px;font-weight:600;
margin-bottom:28px}section{background:#fff;border:1px solid #e3e7ed;border-radius:8px;
padding:8px 20px;margin-bottom:28px}.component{padding:14px 0;border-bottom:1px solid #eef1f5}
.component:last-child{border-bottom:0}.row{display:flex;justify-content:space-between;
align-items:baseline;gap:12px}.name{font-weight:600}.state{font-weight:600}
.bars{display:flex;gap:2px;height:34px;margin:10px 0 4px}.bar{flex:1;border-radius:2px}
.scale{display:flex;justify-content:space-between;color:#7a8595;font-size:12px}
h2{font-size:18px;margin:18px 0 8px}.incident{padding:10px 0;border-bottom:1px solid #eef1f5}
.incident:last-child{border-bottom:0}.when{color:#5b6676;font-size:13px}.none{color:#5b6676}
footer{color:#7a8595;font-size:12px;text-align:center}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days {hours % 24} h"


def _percent(value: float | None) -> str:
    return "no data" if value is None else f"{value:.2f} % uptime"


def _bar(bar: DayBar) -> str:
    colour = _NO_DATA if bar.worst is None else _COLOURS[bar.worst]
    if bar.worst is None:
        title = f"{bar.day.isoformat()}: no data"
    else:
        title = f"{bar.day.isoformat()}: {_percent(bar.uptime)}, {_LABELS[bar.worst].lower()}"
    state = "none" if bar.worst is None else bar.worst.lower()
    return (
        f'<div class="bar" style="background:{colour}" title="{_e(title)}" '
        f'data-day="{bar.day.isoformat()}" data-state="{state}"></div>'
    )


def _component(view: ComponentView) -> str:
    state = _LABELS[view.health] if view.monitored else "Not monitored"
    uptime = "" if view.uptime is None else f"{view.uptime:.2f}"
    return (
        f'<div class="component" data-state="{view.health.lower()}">'
        f'<div class="row"><span class="name">{_e(view.name)}</span>'
        f'<span class="state" style="color:{_COLOURS[view.health]}">{_e(state)}</span></div>'
        f'<div class="bars" aria-label="uptime over the last {len(view.days)} days">'
        + "".join(_bar(bar) for bar in view.days)
        + f'</div><div class="scale"><span>{len(view.days)} days ago</span>'
        f'<span class="uptime" data-uptime="{uptime}">{_e(_percent(view.uptime))}</span>'
        "<span>Today</span></div></div>"
    )


def _incident(incident: Incident, now: float) -> str:
    label = _LABELS[incident.severity]
    start = f'<time datetime="{iso_utc(incident.started_at)}">{_when(incident.started_at)}</time>'
    if incident.ended_at is None:
        period = f"ongoing since {start} ({_duration(now - incident.started_at)})"
    else:
        end = f'<time datetime="{iso_utc(incident.ended_at)}">{_when(incident.ended_at)}</time>'
        period = f"{start} to {end} ({_duration(incident.ended_at - incident.started_at)})"
    return (
        f'<div class="incident" data-severity="{incident.severity.lower()}">'
        f'<div><strong style="color:{_COLOURS[incident.severity]}">{_e(label)}</strong> '
        f"&middot; {_e(incident.component)}</div>"
        f'<div class="when">{period}</div></div>'
    )


def render(view: PageView) -> str:
    """The page as a complete HTML document."""
    components = "".join(_component(c) for c in view.components) or (
        '<p class="none">No components yet.</p>'
    )
    timeline = "".join(_incident(i, view.generated_at) for i in view.incidents) or (
        f'<p class="none">No incidents in the last {DAYS} days.</p>'
    )
    description = f'<p class="lead">{_e(view.description)}</p>' if view.description else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="refresh" content="60"><meta name="robots" content="noindex">'
        f"<title>{_e(view.name)} status</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{_e(view.name)}</h1>{description}"
        f'<div class="banner" data-state="{view.overall.lower()}" '
        f'style="background:{_COLOURS[view.overall]}">{_e(_BANNERS[view.overall])}</div>'
        f'<section class="components">{components}</section>'
        f'<h2>Incidents</h2><section class="incidents">{timeline}</section>'
        f'<footer>Updated <time datetime="{iso_utc(view.generated_at)}">'
        f"{_when(view.generated_at)}</time> &middot; powered by callmeter</footer>"
        "</main></body></html>"
    )
