"""What ``callmeter run`` shows: a live progress panel and the summary table at the end.

Rendering only (rich): the figures come from the driver's progress (``actors.driver``) and
from ``analysis.run_summary``. The progress view is a plain object with the fields of
:class:`ProgressView`, so this module does not import Ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from rich.console import Group
from rich.table import Table
from rich.text import Text

from callmeter.lifecycle import Phase

__all__ = ["ProgressView", "progress_panel", "summary_table"]


class ProgressView(Protocol):
    run_id: str
    status: str
    elapsed_s: float
    endpoints: int
    phases: dict[str, int]
    failures: int
    mos: float | None
    jitter_ms: float | None
    loss_percent: float | None
    rows_written: int
    shards: int
    shards_lost: int

    @property
    def remaining_s(self) -> float: ...


def _fmt(value: Any, spec: str = ".2f", unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:{spec}}{unit}"
    return str(value)


def progress_panel(progress: ProgressView) -> Group:
    """One screenful: time, endpoints per phase, live quality, failures."""
    head = Text.assemble(
        (f"run {progress.run_id}  ", "bold"),
        (progress.status, "yellow" if progress.status != "RUNNING" else "green"),
        f"  elapsed {progress.elapsed_s:5.0f} s  remaining {progress.remaining_s:5.0f} s",
        f"  shards {progress.shards - progress.shards_lost}/{progress.shards}",
        f"  rows stored {progress.rows_written:,}",
    )
    phases = Table(box=None, show_header=True, pad_edge=False)
    for phase in Phase:
        phases.add_column(phase.value.lower(), justify="right")
    phases.add_row(*(str(progress.phases.get(p.value, 0)) for p in Phase))
    quality = Text(
        f"live (receive, last second): MOS {_fmt(progress.mos)}  "
        f"jitter {_fmt(progress.jitter_ms, '.2f', ' ms')}  "
        f"loss {_fmt(progress.loss_percent, '.2f', ' %')}  "
        f"failures so far {progress.failures}"
    )
    return Group(head, phases, quality)


_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("call success rate", "success_rate", ".1%", ""),
    ("MOS average", "mos_avg", ".2f", ""),
    ("MOS 5th percentile", "mos_p5", ".2f", ""),
    ("jitter average", "jitter_ms_avg", ".2f", " ms"),
    ("loss average", "loss_pct_avg", ".2f", " %"),
    ("RTT average", "rtt_ms_avg", ".1f", " ms"),
    ("setup time p50 / p95 / p99", "setup_ms", ".1f", " ms"),
    ("post-dial delay p50 / p95 / p99", "pdd_ms", ".1f", " ms"),
)


def summary_table(summary: Mapping[str, Any], *, passed: bool | None = None) -> Table:
    """The end-of-run table: results, outcome distribution and the generator's health."""
    title = f"run {summary.get('run_id')}: {summary.get('status')}"
    if passed is not None:
        title += "  (threshold met)" if passed else "  (threshold NOT met)"
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for label, key, spec, unit in _ROWS:
        if key in ("setup_ms", "pdd_ms"):
            value = " / ".join(_fmt(summary.get(f"{key}_{p}"), spec) for p in ("p50", "p95", "p99"))
            table.add_row(label, value + unit)
        else:
            table.add_row(label, _fmt(summary.get(key), spec, unit))
    outcomes = summary.get("outcomes") or {}
    table.add_row("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "-")
    generator = summary.get("generator") or {}
    verdict = (
        "OVERLOADED (results may blame the generator)" if generator.get("overloaded") else "ok"
    )
    table.add_row(
        "generator health",
        f"{verdict}; loop lag max {_fmt(generator.get('loop_lag_ms_max'), '.1f', ' ms')}, "
        f"send lateness p99 {_fmt(generator.get('lateness_ms_p99'), '.1f', ' ms')}",
    )
    if summary.get("reason"):
        table.add_row("reason", str(summary["reason"]))
    return table
