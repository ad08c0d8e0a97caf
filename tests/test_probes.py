"""Probe evaluation with exact values (direction-aware thresholds, the worst metric wins,
UNKNOWN without data), the probe configuration's validation, and the probe as a test."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from callmeter.models import parse_test
from callmeter.probes.evaluation import Breach, crossed, evaluate
from callmeter.probes.executor import probe_definition
from callmeter.probes.models import (
    DEFAULT_THRESHOLDS,
    PROBE_METRICS,
    Health,
    ProbeConfig,
    ProbeUpdate,
    Threshold,
)

T = Threshold
THRESHOLDS = {
    "mos": T(warning=4.0, critical=3.6),
    "r_factor": T(warning=80, critical=70),
    "jitter_ms": T(warning=30, critical=50),
    "loss_percent": T(warning=1, critical=5),
    "rtt_ms": T(warning=300, critical=600),
    "setup_time_ms": T(warning=2000, critical=5000),
    "post_dial_delay_ms": T(warning=3000, critical=8000),
}
GOOD = {
    "mos": 4.41, "r_factor": 93.2, "jitter_ms": 2.5, "loss_percent": 0.0, "rtt_ms": 40.0,
    "setup_time_ms": 120.0, "post_dial_delay_ms": 80.0,
}  # fmt: skip


# -- evaluation --------------------------------------------------------------------------------


def test_all_within_thresholds_is_healthy_with_every_value_kept() -> None:
    result = evaluate(GOOD, THRESHOLDS)
    assert result.health is Health.HEALTHY
    assert result.breaches == ()
    assert result.measured == GOOD
    assert result.reason is None


@pytest.mark.parametrize(
    ("metric", "value", "expected"),
    [
        ("mos", 3.9, Health.DEGRADED),  # lower is worse
        ("mos", 3.5, Health.UNHEALTHY),
        ("r_factor", 79.9, Health.DEGRADED),
        ("r_factor", 69.0, Health.UNHEALTHY),
        ("jitter_ms", 30.5, Health.DEGRADED),  # higher is worse
        ("jitter_ms", 51.0, Health.UNHEALTHY),
        ("loss_percent", 1.2, Health.DEGRADED),
        ("loss_percent", 7.5, Health.UNHEALTHY),
        ("rtt_ms", 301.0, Health.DEGRADED),
        ("rtt_ms", 900.0, Health.UNHEALTHY),
        ("setup_time_ms", 2500.0, Health.DEGRADED),
        ("setup_time_ms", 5001.0, Health.UNHEALTHY),
        ("post_dial_delay_ms", 3000.1, Health.DEGRADED),
        ("post_dial_delay_ms", 9000.0, Health.UNHEALTHY),
    ],
)
def test_each_metric_in_its_own_direction(metric: str, value: float, expected: Health) -> None:
    result = evaluate({**GOOD, metric: value}, THRESHOLDS)
    assert result.health is expected
    [breach] = result.breaches
    level = "critical" if expected is Health.UNHEALTHY else "warning"
    threshold = THRESHOLDS[metric]
    assert breach == Breach(
        metric, value, level, getattr(threshold, level), threshold.warning, threshold.critical
    )


def test_a_value_exactly_at_a_level_is_within_it() -> None:
    at_levels = {**GOOD, "mos": 4.0, "loss_percent": 1.0, "jitter_ms": 30.0}
    assert evaluate(at_levels, THRESHOLDS).health is Health.HEALTHY
    at_critical = {**GOOD, "mos": 3.6, "loss_percent": 5.0}
    result = evaluate(at_critical, THRESHOLDS)
    assert result.health is Health.DEGRADED
    assert [(b.metric, b.level) for b in result.breaches] == [
        ("mos", "warning"), ("loss_percent", "warning"),
    ]  # fmt: skip


def test_the_worst_metric_wins_and_every_breach_is_named_with_its_value() -> None:
    values = {**GOOD, "mos": 3.8, "jitter_ms": 61.25, "loss_percent": 2.0}
    result = evaluate(values, THRESHOLDS)
    assert result.health is Health.UNHEALTHY
    assert [(b.metric, b.level, b.value, b.threshold) for b in result.breaches] == [
        ("jitter_ms", "critical", 61.25, 50.0),  # critical first, then catalog order
        ("mos", "warning", 3.8, 4.0),
        ("loss_percent", "warning", 2.0, 1.0),
    ]
    assert result.breaches[0].as_dict() == {
        "metric": "jitter_ms", "label": "Jitter", "unit": "ms", "value": 61.25,
        "level": "critical", "threshold": 50.0, "warning": 30.0, "critical": 50.0,
    }  # fmt: skip


def test_only_thresholded_metrics_are_judged() -> None:
    result = evaluate({"mos": 1.0, "loss_percent": 0.5}, {"loss_percent": T(warning=1)})
    assert result.health is Health.HEALTHY
    assert result.measured == {"loss_percent": 0.5}


def test_a_warning_only_or_critical_only_threshold() -> None:
    only_critical = {"loss_percent": T(critical=5)}
    assert evaluate({"loss_percent": 4.9}, only_critical).health is Health.HEALTHY
    assert evaluate({"loss_percent": 5.1}, only_critical).health is Health.UNHEALTHY
    only_warning = {"mos": T(warning=4.0)}
    assert evaluate({"mos": 1.0}, only_warning).health is Health.DEGRADED


def test_no_data_is_unknown_with_the_failure_as_reason() -> None:
    failure = "the call ended REGISTRATION_FAILED (408): Request Timeout"
    result = evaluate({k: None for k in GOOD}, THRESHOLDS, failure=failure)
    assert result == type(result)(Health.UNKNOWN, (), {}, failure)
    no_failure = evaluate({}, {"mos": T(warning=4)})
    assert no_failure.health is Health.UNKNOWN
    assert no_failure.reason == "not measured: mos"
    assert evaluate({"mos": float("nan")}, {"mos": T(warning=4)}).health is Health.UNKNOWN
    assert evaluate(GOOD, {}).reason == "the probe has no thresholds"


def test_metrics_not_measured_are_left_out_and_named() -> None:
    result = evaluate({"mos": 4.3, "rtt_ms": None}, THRESHOLDS)
    assert result.health is Health.HEALTHY
    assert result.measured == {"mos": 4.3}
    assert result.reason == (
        "not measured: r_factor, jitter_ms, loss_percent, rtt_ms, setup_time_ms, post_dial_delay_ms"
    )


def test_crossed_is_strict_and_direction_aware() -> None:
    mos, loss = PROBE_METRICS["mos"], PROBE_METRICS["loss_percent"]
    assert crossed(mos, 3.59, 3.6) and not crossed(mos, 3.6, 3.6) and not crossed(mos, 4, 3.6)
    assert crossed(loss, 5.01, 5) and not crossed(loss, 5, 5) and not crossed(loss, 1, None)


def test_units_come_from_the_metric_catalog() -> None:
    units = {key: metric.unit for key, metric in PROBE_METRICS.items()}
    assert units == {
        "mos": "MOS", "r_factor": "R", "jitter_ms": "ms", "loss_percent": "%", "rtt_ms": "ms",
        "setup_time_ms": "ms", "post_dial_delay_ms": "ms",
    }  # fmt: skip


# -- the configuration ---------------------------------------------------------------------------


def _problem(data: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as caught:
        ProbeConfig.model_validate(data)
    return "; ".join(str(e["msg"]) for e in caught.value.errors())


def test_defaults_are_a_builtin_probe_every_five_minutes() -> None:
    config = ProbeConfig(name="p")
    assert (config.registrar, config.interval_min, config.codec) == ("builtin", 5, "PCMU")
    assert config.thresholds == dict(DEFAULT_THRESHOLDS)
    assert config.interval_s == 300.0 and config.enabled


def test_thresholds_must_point_the_right_way() -> None:
    assert _problem({"name": "p", "thresholds": {"mos": {"warning": 3.0, "critical": 3.5}}}) == (
        "thresholds.mos: lower MOS is worse, so warning (3) must be at or above critical (3.5)"
    )
    assert _problem(
        {"name": "p", "thresholds": {"jitter_ms": {"warning": 60, "critical": 50}}}
    ) == (
        "thresholds.jitter_ms: higher Jitter is worse, so warning (60) must be at or below "
        "critical (50)"
    )
    assert "give warning, critical or both" in _problem({"name": "p", "thresholds": {"mos": {}}})
    assert "no probe metric 'bitrate_bps'" in _problem(
        {"name": "p", "thresholds": {"bitrate_bps": {"warning": 1}}}
    )


def test_interval_codec_and_accounts_are_checked() -> None:
    assert "Input should be 5, 15, 30 or 60" in _problem({"name": "p", "interval_min": 7})
    assert "unknown audio codec 'nope'" in _problem({"name": "p", "codec": "nope"})
    assert _problem({"name": "p", "account": "1000"}) == (
        "account: the built-in registrar makes its own accounts"
    )
    assert _problem({"name": "p", "registrar": "pbx", "account": "1000"}) == (
        "target.account: the answering endpoint needs its own account on registrar pbx"
    )
    assert _problem(
        {"name": "p", "registrar": "pbx", "account": "1000",
         "target": {"kind": "endpoint", "account": "1000"}}
    ) == "target.account: use another account than the caller's"  # fmt: skip
    assert "not a sip: or sips: URI" in _problem(
        {"name": "p", "target": {"kind": "uri", "uri": "tel:+15551234"}}
    )


def test_an_update_is_validated_as_a_whole() -> None:
    current = ProbeConfig(name="p")
    changed = ProbeUpdate(interval_min=15, enabled=False).applied_to(current)
    assert (changed.interval_min, changed.enabled, changed.name) == (15, False, "p")
    with pytest.raises(ValueError, match="account: name one of registrar pbx's accounts"):
        ProbeUpdate(registrar="pbx").applied_to(current)


# -- the probe as a test -------------------------------------------------------------------------


def test_a_probe_is_one_caller_and_one_answering_endpoint() -> None:
    config = ProbeConfig(
        name="pbx", codec="opus", call_duration_s=3, placement={"region": "eu"},
        impairment={"loss_percent": 6, "seed": 3},
    )  # fmt: skip
    test = parse_test({"name": "probe: pbx", **probe_definition(config)})
    caller, answer = test.groups
    assert (caller.name, caller.endpoints, caller.codecs) == ("probe", 1, ["opus"])
    assert caller.target is not None and caller.target.group == "answer"
    assert caller.impairment is not None and caller.impairment.loss_percent == 6
    assert answer.impairment is None and answer.codecs == ["opus"]
    assert caller.placement == answer.placement and answer.placement is not None
    assert answer.placement.region == "eu"
    assert test.call_duration_s == 3 and test.buildup_s == 0
    assert test.success.min_success_rate == 1.0


def test_a_probe_to_a_uri_is_a_single_endpoint() -> None:
    config = ProbeConfig(
        name="echo", registrar="pbx", account="1000",
        target={"kind": "uri", "uri": "sip:echo@pbx.example.com"},
    )  # fmt: skip
    definition = probe_definition(config)
    assert definition["groups"] == [
        {"name": "probe", "endpoints": 1, "registrar": "pbx", "codecs": ["PCMU"],
         "accounts": ["1000"], "target": {"uri": "sip:echo@pbx.example.com"}},
    ]  # fmt: skip
