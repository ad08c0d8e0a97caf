"""Judging one probe execution: measured values against thresholds, to a health state.

Pure: no database, no clock. The rules, per metric that has a threshold:

- a level is *crossed* when the value is strictly worse than it: below it for MOS and
  R-factor (lower is worse), above it for jitter, loss, RTT, setup time and post-dial delay
  (higher is worse); a value exactly at a level is still within it;
- crossing the critical level is a critical breach, else crossing the warning level a warning
  breach;
- the worst metric decides: any critical breach makes the execution UNHEALTHY, else any
  warning breach DEGRADED, else HEALTHY;
- a judged metric that was not measured is left out (and named in the reason); when none was
  measured (the call failed before media, the registrar did not answer) the health is UNKNOWN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from callmeter.probes.models import PROBE_METRICS, Health, ProbeMetric, Threshold

__all__ = ["Breach", "Evaluation", "crossed", "evaluate"]

Level = Literal["warning", "critical"]


@dataclass(frozen=True, slots=True)
class Breach:
    """One threshold crossed: the metric, its value and the level it crossed."""

    metric: str
    value: float
    level: Level
    threshold: float
    warning: float | None
    critical: float | None

    @property
    def label(self) -> str:
        return PROBE_METRICS[self.metric].label

    @property
    def unit(self) -> str:
        return PROBE_METRICS[self.metric].unit

    def as_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric, "label": self.label, "unit": self.unit, "value": self.value,
            "level": self.level, "threshold": self.threshold, "warning": self.warning,
            "critical": self.critical,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The verdict on one execution."""

    health: Health
    breaches: tuple[Breach, ...] = ()
    measured: Mapping[str, float] = field(default_factory=dict)  # judged metrics with a value
    reason: str | None = None


def crossed(metric: ProbeMetric, value: float, level: float | None) -> bool:
    """Whether ``value`` is strictly worse than ``level`` in ``metric``'s bad direction."""
    if level is None:
        return False
    return value < level if metric.lower_is_worse else value > level


def _breach(key: str, value: float, threshold: Threshold) -> Breach | None:
    metric = PROBE_METRICS[key]
    levels: tuple[tuple[Level, float | None], ...] = (
        ("critical", threshold.critical),
        ("warning", threshold.warning),
    )
    for level, limit in levels:
        if limit is not None and crossed(metric, value, limit):
            return Breach(key, value, level, limit, threshold.warning, threshold.critical)
    return None


def evaluate(
    measurements: Mapping[str, float | None],
    thresholds: Mapping[str, Threshold],
    *,
    failure: str | None = None,
) -> Evaluation:
    """The health of an execution that measured ``measurements`` (catalog key -> value, None
    when not measured). ``failure`` says why the call failed, if it did: the reason of an
    UNKNOWN verdict."""
    measured: dict[str, float] = {}
    missing: list[str] = []
    for key in PROBE_METRICS:  # catalog order: breaches and reasons read the same every time
        if key not in thresholds:
            continue
        value = measurements.get(key)
        if value is None or not math.isfinite(value):
            missing.append(key)
        else:
            measured[key] = float(value)
    if not measured:
        if not thresholds:
            reason = "the probe has no thresholds"
        else:
            reason = failure or f"not measured: {', '.join(missing)}"
        return Evaluation(Health.UNKNOWN, (), {}, reason)
    breaches = [b for key, v in measured.items() if (b := _breach(key, v, thresholds[key]))]
    breaches.sort(key=lambda b: b.level != "critical")  # stable: catalog order within a level
    if any(b.level == "critical" for b in breaches):
        health = Health.UNHEALTHY
    elif breaches:
        health = Health.DEGRADED
    else:
        health = Health.HEALTHY
    notes = [f"not measured: {', '.join(missing)}"] if missing else []
    if failure:
        notes.insert(0, failure)
    return Evaluation(health, tuple(breaches), measured, "; ".join(notes) or None)
