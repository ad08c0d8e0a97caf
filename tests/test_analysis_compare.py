"""Two runs compared (``analysis.compare``): both values, the difference, and whether it is
beyond run-to-run noise (Welch's t-test over per-endpoint means; a two-proportion z-test for
the success rate), checked against known values and SciPy where it is installed."""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import analysis
from analysis.compare import two_proportion_z_test, welch_t_test
from callmeter.store import Store, shard_batch
from tests.test_analysis_trace import seed_call_run


def seed_population(
    store: Store, run_id: str, mos: float, spread: float, endpoints: int = 30, seed: int = 1
) -> str:
    """``endpoints`` answered callers, three seconds each, MOS around ``mos``."""
    rng = random.Random(seed)
    store.create_run(run_id, "population", {"name": "population"}, endpoints, 0.9)
    level = [mos + rng.gauss(0.0, spread) for _ in range(endpoints)]
    rows = SimpleNamespace(
        endpoints=[
            {
                "endpoint_id": e,
                "group_name": "callers",
                "role": "caller",
                "phase": "CLOSED",
                "outcome": "SUCCESS",
                "final_status_code": 200,
                "setup_time_ms": 100.0 + rng.uniform(0, 20),
            }
            for e in range(endpoints)
        ],
        metrics=[
            {
                "endpoint_id": e,
                "ts": 1e9 + s,
                "t_s": float(s),
                "second": s + 1,
                "direction": "receive",
                "interval_s": 1.0,
                "mos": level[e] + rng.gauss(0, 0.02),
                "jitter_ms": 2.0,
                "loss_percent": 0.0,
            }
            for e in range(endpoints)
            for s in range(3)
        ],
        events=[],
        trace=[],
        health=[],
    )
    store.append(shard_batch(run_id, 0, 0, rows))  # type: ignore[arg-type]
    store.set_status(run_id, "COMPLETED")
    return run_id


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "compare.duckdb") as opened:
        yield opened


def _row(frame: Any, metric: str, direction: str) -> dict[str, Any]:
    [row] = frame[(frame["metric"] == metric) & (frame["direction"] == direction)].to_dict(
        "records"
    )
    return dict(row)


def test_a_real_drop_in_mos_is_beyond_noise_and_worse(store: Store) -> None:
    seed_population(store, "good", 4.3, 0.05, seed=1)
    seed_population(store, "bad", 3.9, 0.05, seed=2)
    frame = analysis.compare(store.cursor(), "good", "bad")
    assert list(frame.columns) == list(analysis.COMPARE_COLUMNS)
    mos = _row(frame, "mos", "receive")
    assert mos["a"] == pytest.approx(4.3, abs=0.05) and mos["b"] == pytest.approx(3.9, abs=0.05)
    assert mos["difference"] == pytest.approx(mos["b"] - mos["a"])
    assert mos["relative_change"] == pytest.approx(mos["difference"] / mos["a"])
    assert (mos["a_n"], mos["b_n"]) == (30, 30)
    assert mos["p_value"] < 1e-6 and mos["beyond_noise"]
    assert (mos["verdict"], mos["method"], mos["unit"]) == ("worse", "welch_t", "MOS")
    jitter = _row(frame, "jitter_ms", "receive")
    assert jitter["difference"] == 0.0 and jitter["p_value"] == 1.0
    assert jitter["verdict"] == "within noise" and not jitter["beyond_noise"]
    # Reversed, the same difference is an improvement.
    assert _row(analysis.compare(store.cursor(), "bad", "good"), "mos", "receive")["verdict"] == (
        "better"
    )


def test_two_runs_of_the_same_population_are_within_noise(store: Store) -> None:
    seed_population(store, "one", 4.2, 0.2, seed=3)
    seed_population(store, "two", 4.2, 0.2, seed=4)
    mos = _row(analysis.compare(store.cursor(), "one", "two"), "mos", "receive")
    assert mos["difference"] != 0.0
    assert mos["p_value"] > 0.05 and mos["verdict"] == "within noise"


def test_small_runs_say_when_there_is_not_enough_data(store: Store) -> None:
    seed_call_run(store, "r1")
    seed_call_run(store, "r2", mos=3.5, loss=3.0)
    frame = analysis.compare(store.cursor(), "r1", "r2")
    success = _row(frame, "success_rate", "call")
    assert (success["a"], success["b"], success["a_n"]) == (0.5, 0.5, 2)
    assert success["method"] == "two_proportion_z" and success["verdict"] == "within noise"
    mos = _row(frame, "mos", "receive")  # two endpoints with media on each side
    assert (mos["a_n"], mos["b_n"]) == (2, 2) and mos["verdict"] == "worse"
    setup = _row(frame, "setup_time_ms", "call")
    assert (setup["a_n"], setup["b_n"]) == (1, 1) and setup["verdict"] == "not enough data"
    assert math.isnan(setup["p_value"])
    rtt = _row(frame, "rtt_ms", "send")
    assert rtt["a"] == 2.0 and rtt["verdict"] == "within noise"


def test_metrics_can_be_chosen_and_are_checked(store: Store) -> None:
    seed_call_run(store, "r1")
    seed_call_run(store, "r2")
    frame = analysis.compare(store.cursor(), "r1", "r2", [("loss_percent", "receive")])
    assert list(frame["metric"]) == ["loss_percent"]
    with pytest.raises(ValueError, match="not per-second metrics"):
        analysis.compare(store.cursor(), "r1", "r2", [("nope", "receive")])
    with pytest.raises(ValueError, match="not a one-shot call value"):
        analysis.compare(store.cursor(), "r1", "r2", [("mos", "call")])
    with pytest.raises(KeyError, match="no run 'r9'"):
        analysis.compare(store.cursor(), "r1", "r9")
    with pytest.raises(ValueError, match="alpha"):
        analysis.compare(store.cursor(), "r1", "r2", alpha=1.5)


def test_welch_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    for n_a, n_b, shift in ((5, 7, 0.3), (40, 25, 0.05), (3, 3, 2.0), (2, 2, 0.0)):
        a, b = rng.normal(4.0, 0.3, n_a), rng.normal(4.0 + shift, 0.5, n_b)
        t, df, p = welch_t_test(a, b)
        expected = stats.ttest_ind(b, a, equal_var=False)
        assert t == pytest.approx(expected.statistic, rel=1e-9)
        assert p == pytest.approx(expected.pvalue, rel=1e-7)
        assert df == pytest.approx(expected.df, rel=1e-9)


def test_welch_known_value_and_edge_cases() -> None:
    # Two classic samples (equal variances, n = 5 each): t = 2.0, df = 8, p = 0.08052.
    t, df, p = welch_t_test([1, 2, 3, 4, 5], [3, 4, 5, 6, 7])
    assert (t, df) == (pytest.approx(2.0), pytest.approx(8.0))
    assert p == pytest.approx(0.0805162, rel=1e-5)
    assert all(math.isnan(v) for v in welch_t_test([1.0], [1.0, 2.0]))
    assert welch_t_test([2.0, 2.0], [2.0, 2.0])[2] == 1.0
    assert welch_t_test([2.0, 2.0], [3.0, 3.0])[2] == 0.0


def test_two_proportions() -> None:
    z, p = two_proportion_z_test(95, 100, 85, 100)
    assert z == pytest.approx(-2.357, abs=1e-3) and p == pytest.approx(0.01842, abs=1e-4)
    assert two_proportion_z_test(10, 10, 20, 20) == (pytest.approx(math.nan, nan_ok=True), 1.0)
    assert math.isnan(two_proportion_z_test(0, 0, 1, 2)[1])
