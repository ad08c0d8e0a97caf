"""Two runs compared, metric by metric: both values, the difference, and whether the difference
is beyond run-to-run noise.

Method
------
The unit of observation is the **endpoint**, not the endpoint-second: the seconds of one call
share its codec, path and jitter buffer, so they are far from independent, and a test over
seconds would call almost any difference significant. For each per-second metric we take each
endpoint's mean over its rows in the chosen direction; for a one-shot call value (setup time,
post-dial delay) each caller's value. A run's value is the mean of those per-endpoint values
(for MOS, jitter and loss this weights endpoints equally, where ``run_overview`` weights
seconds: the two agree when calls last the same).

The two samples are compared with **Welch's t-test** (unequal variances): t = (mean_b -
mean_a) / sqrt(var_a / n_a + var_b / n_b), with Welch-Satterthwaite degrees of freedom, and the
two-sided p-value from Student's t distribution (the regularised incomplete beta function,
computed here: no SciPy needed). The success rate, a proportion of calls, is compared with the
pooled **two-proportion z-test**. A difference is *beyond noise* when p < ``alpha`` (0.05 by
default). With fewer than two values on a side there is no test (p is NaN); with no spread on
either side, any difference at all is beyond noise (p = 0) and none is not (p = 1).

Caveats: the test assumes endpoints are independent, which a shared bottleneck (one overloaded
proxy) breaks; several metrics are tested at once, so about one in twenty unrelated metrics
shows p < 0.05 by chance. Read a lone significant metric with care.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Literal

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.runs import _ATTEMPTED, _SUCCESSFUL, LOWER_IS_WORSE, _check_metrics, _quote
from callmeter.metrics import by_key
from callmeter.store.schema import CALL_KEYS

__all__ = [
    "COMPARE_COLUMNS",
    "DEFAULT_METRICS",
    "HIGHER_IS_BETTER",
    "compare",
    "two_proportion_z_test",
    "welch_t_test",
]

Side = Literal["send", "receive", "call"]
COMPARE_COLUMNS: Final = (
    "metric", "direction", "unit", "a", "b", "difference", "relative_change", "a_n", "b_n",
    "p_value", "beyond_noise", "verdict", "method",
)  # fmt: skip
DEFAULT_METRICS: Final[tuple[tuple[str, Side], ...]] = (
    ("success_rate", "call"),
    ("mos", "receive"),
    ("r_factor", "receive"),
    ("jitter_ms", "receive"),
    ("loss_percent", "receive"),
    ("rtt_ms", "send"),
    ("bitrate_bps", "receive"),
    ("mos", "send"),
    ("setup_time_ms", "call"),
    ("post_dial_delay_ms", "call"),
)
# Where a higher value is the better one; for every other metric lower is better.
HIGHER_IS_BETTER: Final = LOWER_IS_WORSE | {"success_rate"}
_SUCCESS_RATE: Final = "success_rate"


# -- statistics ---------------------------------------------------------------------------------
def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
        + b * math.log1p(-x)
    )  # fmt: skip
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _t_two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    return _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def welch_t_test(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[float, float, float]:
    """Welch's t-test of mean(b) - mean(a): ``(t, degrees of freedom, two-sided p)``. NaN
    throughout with fewer than two values on a side; with no spread on either side t is
    +-inf or NaN and p is 0 (means differ) or 1 (they do not)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2:
        return math.nan, math.nan, math.nan
    va, vb = float(x.var(ddof=1)) / len(x), float(y.var(ddof=1)) / len(y)
    difference = float(y.mean() - x.mean())
    if va + vb == 0.0:
        if difference == 0.0:
            return math.nan, math.nan, 1.0
        return math.copysign(math.inf, difference), math.nan, 0.0
    t = difference / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    return t, df, _t_two_sided(t, df)


def two_proportion_z_test(
    successes_a: int, n_a: int, successes_b: int, n_b: int
) -> tuple[float, float]:
    """Pooled two-proportion z-test of p_b - p_a: ``(z, two-sided p)``; NaN when a side has
    no trials, p = 1 when both sides are all successes or all failures."""
    if n_a == 0 or n_b == 0:
        return math.nan, math.nan
    pooled = (successes_a + successes_b) / (n_a + n_b)
    spread = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)
    if spread == 0.0:
        return math.nan, 1.0
    z = (successes_b / n_b - successes_a / n_a) / math.sqrt(spread)
    return z, math.erfc(abs(z) / math.sqrt(2.0))


# -- samples ------------------------------------------------------------------------------------
def _check_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    [(known,)] = con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchall()
    if not known:
        raise KeyError(f"no run {run_id!r}")


def _check(metrics: Sequence[tuple[str, Side]]) -> None:
    for key, side in metrics:
        if key == _SUCCESS_RATE:
            continue
        if side == "call":
            if key not in CALL_KEYS:
                raise ValueError(f"{key!r} is not a one-shot call value of the catalog")
            by_key(key, "call")
        elif side in ("send", "receive"):
            _check_metrics([key], side)
        else:
            raise ValueError(f"direction must be send, receive or call, not {side!r}")


def _endpoint_means(
    con: duckdb.DuckDBPyConnection, run_id: str, metrics: Sequence[tuple[str, Side]]
) -> dict[tuple[str, Side], npt.NDArray[np.float64]]:
    """Per metric: one value per endpoint (per-second metrics averaged over its rows)."""
    samples: dict[tuple[str, Side], npt.NDArray[np.float64]] = {}
    media = sorted({key for key, side in metrics if side in ("send", "receive")})
    if media:
        values = ", ".join(f"avg({_quote(k)}) AS {_quote(k)}" for k in media)
        frame = con.execute(
            f"SELECT direction, {values} FROM metrics WHERE run_id = $run_id"
            " GROUP BY endpoint_id, direction",
            {"run_id": run_id},
        ).df()
        for key, side in metrics:
            if side in ("send", "receive"):
                column = frame.loc[frame["direction"] == side, key]
                samples[key, side] = column.dropna().to_numpy(dtype=float)
    calls = sorted({key for key, side in metrics if side == "call" and key != _SUCCESS_RATE})
    if calls:
        frame = con.execute(
            f"SELECT {', '.join(_quote(k) for k in calls)} FROM endpoints"
            " WHERE run_id = $run_id AND role = 'caller'",
            {"run_id": run_id},
        ).df()
        for key in calls:
            samples[key, "call"] = frame[key].dropna().to_numpy(dtype=float)
    return samples


def _calls(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[int, int]:
    """(successful calls, attempted calls), as ``run_overview`` counts them."""
    [(successful, attempted)] = con.execute(
        f"SELECT count(*) FILTER (WHERE {_SUCCESSFUL}), count(*) FILTER (WHERE {_ATTEMPTED})"
        " FROM endpoints WHERE run_id = $run_id",
        {"run_id": run_id},
    ).fetchall()
    return int(successful), int(attempted)


# -- comparison ---------------------------------------------------------------------------------
def _verdict(key: str, difference: float, p_value: float, alpha: float) -> str:
    if math.isnan(p_value):
        return "not enough data"
    if p_value >= alpha or difference == 0.0:
        return "within noise"
    improved = (difference > 0) == (key in HIGHER_IS_BETTER)
    return "better" if improved else "worse"


def _unit(key: str, side: Side) -> str:
    return "ratio" if key == _SUCCESS_RATE else by_key(key, side).unit


def _row(
    key: str, side: Side, a: float, b: float, n: tuple[int, int], p: float, method: str,
    alpha: float,
) -> dict[str, object]:  # fmt: skip
    difference = b - a
    relative = difference / abs(a) if a and not math.isnan(a) else math.nan
    return {
        "metric": key, "direction": side, "unit": _unit(key, side), "a": a, "b": b,
        "difference": difference, "relative_change": relative, "a_n": n[0], "b_n": n[1],
        "p_value": p, "beyond_noise": bool(p < alpha) if not math.isnan(p) else False,
        "verdict": _verdict(key, difference, p, alpha), "method": method,
    }  # fmt: skip


def _mean(values: npt.NDArray[np.float64]) -> float:
    return float(values.mean()) if len(values) else math.nan


def compare(
    con: duckdb.DuckDBPyConnection,
    run_a: str,
    run_b: str,
    metrics: Sequence[tuple[str, Side]] = DEFAULT_METRICS,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Run ``run_b`` against ``run_a``, one row per ``(metric, direction)`` of ``metrics``
    (direction ``call`` for one-shot call values and ``success_rate``): ``unit``, ``a`` and
    ``b`` (the runs' values), ``difference`` (b - a), ``relative_change`` (of a),
    ``a_n``/``b_n`` (endpoints, or attempted calls for the success rate), ``p_value``,
    ``beyond_noise`` (p < ``alpha``), ``verdict`` (``better``/``worse`` for run b,
    ``within noise`` or ``not enough data``) and ``method`` (``welch_t`` or
    ``two_proportion_z``). The method is in the module docstring. KeyError for an unknown run,
    ValueError for a metric the catalog does not have in that direction."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    _check(metrics)
    _check_run(con, run_a)
    _check_run(con, run_b)
    sample_a, sample_b = _endpoint_means(con, run_a, metrics), _endpoint_means(con, run_b, metrics)
    rows = []
    for key, side in metrics:
        if key == _SUCCESS_RATE:
            (ok_a, n_a), (ok_b, n_b) = _calls(con, run_a), _calls(con, run_b)
            _, p = two_proportion_z_test(ok_a, n_a, ok_b, n_b)
            rate_a = ok_a / n_a if n_a else math.nan
            rate_b = ok_b / n_b if n_b else math.nan
            rows.append(_row(key, side, rate_a, rate_b, (n_a, n_b), p, "two_proportion_z", alpha))
            continue
        x, y = sample_a[key, side], sample_b[key, side]
        _, _, p = welch_t_test(x, y)
        rows.append(_row(key, side, _mean(x), _mean(y), (len(x), len(y)), p, "welch_t", alpha))
    return pd.DataFrame.from_records(rows, columns=list(COMPARE_COLUMNS))
