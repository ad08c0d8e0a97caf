"""The metric catalog: its rules, its coverage of DESIGN.md, and its ties to the producers
(ReceiverSnapshot, RBudget, CallTiming) that keep it the single source."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest

import callmeter.metrics
from callmeter import metrics
from callmeter.media.quality import RBudget
from callmeter.media.rtpstats import ReceiverSnapshot, ReceiverStats
from callmeter.metrics import Metric, by_key, catalog, column_types, keys, validate
from callmeter.sip.events import CallTiming
from tests.test_sans_io import FORBIDDEN, imported_modules


def test_catalog_has_at_least_150_values_per_endpoint_second() -> None:
    assert len(catalog()) >= 150


def test_catalog_passes_its_own_rules() -> None:
    validate(catalog())
    pairs = Counter((m.key, m.direction) for m in catalog())
    assert max(pairs.values()) == 1
    assert all(m.description.strip() for m in catalog())
    for metric in catalog():
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", metric.key), metric.key
        assert metrics.expected_unit(metric.key) == metric.unit, metric.key


def test_every_category_direction_and_kind_is_used() -> None:
    assert {m.category for m in catalog()} == set(metrics.CATEGORIES)
    assert {m.direction for m in catalog()} == set(metrics.DIRECTIONS)
    assert {m.kind for m in catalog()} == set(metrics.KINDS)


@pytest.mark.parametrize(
    ("key", "unit"),
    [
        ("jitter_ms", "ms"),
        ("call_duration_s", "s"),
        ("bitrate_bps", "bit/s"),
        ("loss_percent", "%"),
        ("pli_count", "count"),
        ("packets_lost", "packets"),
        ("packets", "packets"),
        ("remote_cumulative_lost_packets", "packets"),
        ("r_factor", "R"),
        ("mos", "MOS"),
        ("call_result", "text"),
        ("latency", None),
        ("r", None),
    ],
)
def test_keys_name_their_unit(key: str, unit: str | None) -> None:
    assert metrics.expected_unit(key) == unit


def metric(**changes: str) -> Metric:
    base = Metric("jitter_ms", "ms", "quality", "receive", "gauge", "A.8 jitter")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ((metric(), metric()), "duplicate metric 'jitter_ms' for direction 'receive'"),
        ((metric(key="Jitter_ms"),), "metric key 'Jitter_ms' is not snake_case"),
        ((metric(key="jitter__ms"),), "metric key 'jitter__ms' is not snake_case"),
        (
            (metric(key="latency"),),
            "metric key 'latency' names no unit and is not in NAMED_EXCEPTIONS",
        ),
        ((metric(unit="s"),), "metric 'jitter_ms' has unit 's', its key says 'ms'"),
        ((metric(category="misc"),), "metric 'jitter_ms' has unknown category 'misc'"),
        ((metric(direction="both"),), "metric 'jitter_ms' has unknown direction 'both'"),
        ((metric(kind="histogram"),), "metric 'jitter_ms' has unknown kind 'histogram'"),
        (
            (metric(kind="counter"),),
            "counter 'jitter_ms' must count ['bytes', 'count', 'frames', 'packets'], not 'ms'",
        ),
        ((metric(description="  "),), "metric 'jitter_ms' (receive) has no description"),
        (
            (metric(), metric(direction="send", category="network")),
            "metric 'jitter_ms' differs in unit, category or kind across directions",
        ),
    ],
)
def test_validate_rejects_broken_catalogs(entries: tuple[Metric, ...], message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        validate(entries)
    assert str(excinfo.value) == message


# DESIGN.md "Metrics": every family it names, in the directions a user expects.
DESIGN_METRICS = {
    "quality": ["mos", "r_factor", "jitter_ms", "rtt_ms", "loss_percent", "burst_ratio",
                "effective_loss_percent"],
    "network": ["packets", "payload_bytes", "bitrate_bps", "spacing_avg_ms"],
    "rtcp_feedback": ["nack_count", "pli_count", "fir_count", "sr_count", "rr_count"],
    "audio": ["audio_level_dbov", "dtmf_events_count", "silence_percent"],
    "video": ["frame_rate_fps", "key_frames", "frame_width_px"],
    "fec": ["fec_packets", "red_packets"],
}  # fmt: skip
RECEIVE_ONLY = {
    "network": ["packets_lost", "packets_expected", "fraction_lost", "packets_duplicate",
                "packets_out_of_order", "seq_gap_count", "seq_jump_count", "seq_reset_count",
                "ssrc_switch_count", "timestamp_jump_count"],
    "rtcp_feedback": ["remote_fraction_lost", "remote_cumulative_lost_packets",
                      "remote_jitter_ms", "xr_burst_density", "xr_gap_density",
                      "xr_burst_duration_ms", "xr_gap_duration_ms"],
    "jitter_buffer": ["jb_delay_ms", "packets_late_discarded", "packets_played",
                      "jb_underrun_count", "jb_overrun_count"],
    "audio": ["plc_event_count"],
    "video": ["freeze_count", "decode_error_count"],
    "fec": ["packets_recovered"],
}  # fmt: skip
CALL_ONE_SHOTS = ["time_to_100_ms", "time_to_180_ms", "post_dial_delay_ms", "setup_time_ms",
                  "call_duration_s", "final_status_code", "call_result"]  # fmt: skip


@pytest.mark.parametrize("category", sorted(DESIGN_METRICS))
def test_design_metrics_exist_in_both_directions(category: str) -> None:
    for key in DESIGN_METRICS[category]:
        for direction in ("send", "receive"):
            assert by_key(key, direction).category == category


@pytest.mark.parametrize("category", sorted(RECEIVE_ONLY))
def test_receive_side_metrics(category: str) -> None:
    for key in RECEIVE_ONLY[category]:
        assert by_key(key, "receive").category == category


def test_call_timing_one_shots() -> None:
    for key in CALL_ONE_SHOTS:
        found = by_key(key, "call")
        assert (found.category, found.kind) == ("call_timing", "one_shot")
    for direction in ("send", "receive"):
        assert by_key("time_to_first_media_ms", direction).kind == "one_shot"


def test_generator_health_is_measured() -> None:
    assert set(keys(category="generator")) >= {
        "event_loop_lag_ms",
        "send_lateness_p50_ms",
        "send_lateness_p99_ms",
    }


def test_by_key_names_what_is_missing() -> None:
    with pytest.raises(KeyError, match="no metric 'nack_count' in direction 'call'"):
        by_key("nack_count", "call")


def test_keys_filter_by_direction_and_category() -> None:
    all_keys = keys()
    assert len(all_keys) == len(set(all_keys)) == len({m.key for m in catalog()})
    assert keys(direction="call", category="quality") == ()
    assert "packets_lost" in keys(direction="receive")
    assert "packets_lost" not in keys(direction="send")
    assert set(keys(category="jitter_buffer")) <= set(keys(direction="receive"))


def test_column_types_give_one_duckdb_type_per_key() -> None:
    types = column_types()
    assert list(types) == list(keys())
    assert set(types.values()) == {"DOUBLE", "BIGINT", "VARCHAR"}
    assert types["packets_lost"] == "BIGINT"
    assert types["jitter_ms"] == "DOUBLE"
    assert types["mos"] == "DOUBLE"
    assert types["fraction_lost"] == "BIGINT"
    assert types["final_status_code"] == "BIGINT"
    assert types["call_result"] == "VARCHAR"
    assert all(types[m.key] == "BIGINT" for m in catalog() if m.kind == "counter")


def test_markdown_table_has_one_row_per_key() -> None:
    lines = callmeter.metrics.markdown_table().splitlines()
    assert lines[0] == "| key | unit | category | kind | directions | description |"
    assert len(lines) == 2 + len(keys())
    assert any(line.startswith("| `jitter_ms` | ms | quality | gauge | send, receive |")
               for line in lines)  # fmt: skip
    assert all(line.count(" | ") == 5 for line in lines)


def test_receiver_snapshot_fields_are_all_accounted_for() -> None:
    fields = {f.name for f in dataclasses.fields(ReceiverSnapshot)}
    mapped, skipped = (
        set(metrics.RECEIVER_SNAPSHOT_FIELDS),
        set(metrics.RECEIVER_SNAPSHOT_NOT_METRICS),
    )
    assert mapped.isdisjoint(skipped)
    assert mapped | skipped == fields
    for key in metrics.RECEIVER_SNAPSHOT_FIELDS.values():
        by_key(key, "receive")


def test_receiver_snapshot_values_fit_their_columns() -> None:
    stats = ReceiverStats(clock_rate=8000)
    stats.start(0.0)
    for seq in (0, 1, 2, 4, 5, 5, 3):
        stats.add(seq, seq * 160, ssrc=1, size=160, arrival=0.01 + seq * 0.02)
    snapshot = stats.snapshot(1.0)
    types = column_types()
    for field, key in metrics.RECEIVER_SNAPSHOT_FIELDS.items():
        value = getattr(snapshot, field)
        if types[key] == "BIGINT":
            assert isinstance(value, int), field
        else:
            assert value is None or isinstance(value, float), field


def test_r_budget_terms_are_catalog_keys() -> None:
    fields = {f.name for f in dataclasses.fields(RBudget)}
    expected = {"mos" if name == "mos" else "r_factor" if name == "r" else f"r_{name}"
                for name in fields}  # fmt: skip
    assert expected <= set(keys(category="quality"))


def test_call_timing_properties_map_to_catalog_keys() -> None:
    timing = CallTiming(invite=1.0, ringing=1.25, answered=2.0, ended=32.0)
    for name, (key, factor) in metrics.CALL_TIMING_PROPERTIES.items():
        assert isinstance(getattr(CallTiming, name), property)
        metric = by_key(key, "call")
        assert factor == {"ms": 1000.0, "s": 1.0}[metric.unit]
    assert timing.post_dial_delay_s is not None
    assert timing.post_dial_delay_s * 1000.0 == 250.0


def test_the_catalog_module_does_no_io() -> None:
    source = Path(callmeter.metrics.__file__)
    assert imported_modules(source) & FORBIDDEN == set()
