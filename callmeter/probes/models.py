"""Probes in the user's words: the configuration (pydantic), health states, the metrics a probe
judges with their direction, and the API bodies of probes, executions, webhooks and status
pages.

A **probe** places one call every ``interval_min`` minutes (5, 15, 30 or 60) from one endpoint
registered with a registrar (a project registrar and one of its accounts, or the built-in
registrar) to a target: an external SIP URI (an echo extension, an IVR) or a second endpoint
that answers. The call is judged against **thresholds**: per metric a ``warning`` and a
``critical`` level. Direction matters (:data:`PROBE_METRICS`): for MOS and R-factor lower is
worse, so ``warning`` must be above ``critical``; for jitter, loss, RTT, setup time and
post-dial delay higher is worse, so ``warning`` must be below ``critical``.

``impairment`` (optional) degrades the probe's own media on purpose, as a test group's would:
it rehearses alerting end to end (thresholds, webhooks, status page) without breaking the
network. Leave it out for real monitoring.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from callmeter.media.sdp import codec_named
from callmeter.metrics import by_key
from callmeter.models import BUILTIN, Impairment, Placement
from callmeter.sip.errors import ParseError
from callmeter.sip.uri import SipUri, parse_uri

__all__ = [
    "DEFAULT_THRESHOLDS",
    "INTERVALS_MIN",
    "PROBE_METRICS",
    "AttemptOut",
    "BreachOut",
    "ComponentIn",
    "ComponentOut",
    "DeliveryOut",
    "EndpointTarget",
    "ExecutionOut",
    "ExecutionStatus",
    "Health",
    "MetricKey",
    "ProbeConfig",
    "ProbeMetric",
    "ProbeOut",
    "ProbeUpdate",
    "StatusPageIn",
    "StatusPageOut",
    "StatusPageUpdate",
    "Threshold",
    "UriTarget",
    "WebhookCreated",
    "WebhookIn",
    "WebhookOut",
    "WebhookUpdate",
    "problems_of",
]

INTERVALS_MIN = (5, 15, 30, 60)
MAX_CALL_DURATION_S = 300.0

Interval = Literal[5, 15, 30, 60]
MetricKey = Literal[
    "mos", "r_factor", "jitter_ms", "loss_percent", "rtt_ms", "setup_time_ms",
    "post_dial_delay_ms",
]  # fmt: skip


class Health(enum.StrEnum):
    """A probe's health. HEALTHY: every measured metric within its thresholds; DEGRADED: a
    warning level crossed; UNHEALTHY: a critical level crossed; UNKNOWN: no data yet, or the
    call failed before any judged metric was measured."""

    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"
    UNKNOWN = "UNKNOWN"

    @property
    def severity(self) -> int:
        """For "the worst wins": HEALTHY 0 < UNKNOWN 1 < DEGRADED 2 < UNHEALTHY 3."""
        return _SEVERITY[self]


_SEVERITY = {Health.HEALTHY: 0, Health.UNKNOWN: 1, Health.DEGRADED: 2, Health.UNHEALTHY: 3}


class ExecutionStatus(enum.StrEnum):
    """PENDING (its slot is claimed, waiting to start) -> RUNNING -> DONE (evaluated), or
    INTERRUPTED (the server stopped during it twice; never evaluated)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    INTERRUPTED = "INTERRUPTED"


@dataclass(frozen=True, slots=True)
class ProbeMetric:
    """A metric a probe judges: the catalog key, how users call it, and its bad direction."""

    key: str
    label: str
    lower_is_worse: bool

    @property
    def unit(self) -> str:
        direction: Literal["receive", "call"] = "receive" if self.key in _MEDIA_KEYS else "call"
        return by_key(self.key, direction).unit  # the one metric catalog


_MEDIA_KEYS = frozenset({"mos", "r_factor", "jitter_ms", "loss_percent", "rtt_ms"})

PROBE_METRICS: Mapping[str, ProbeMetric] = {
    metric.key: metric
    for metric in (
        ProbeMetric("mos", "MOS", lower_is_worse=True),
        ProbeMetric("r_factor", "R-factor", lower_is_worse=True),
        ProbeMetric("jitter_ms", "Jitter", lower_is_worse=False),
        ProbeMetric("loss_percent", "Packet loss", lower_is_worse=False),
        ProbeMetric("rtt_ms", "Round-trip time", lower_is_worse=False),
        ProbeMetric("setup_time_ms", "Setup time", lower_is_worse=False),
        ProbeMetric("post_dial_delay_ms", "Post-dial delay", lower_is_worse=False),
    )
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Threshold(_Strict):
    """A warning and a critical level for one metric; either may be left out."""

    warning: float | None = None
    critical: float | None = None

    @model_validator(mode="after")
    def _one_level(self) -> Self:
        if self.warning is None and self.critical is None:
            raise ValueError("give warning, critical or both")
        return self


# Defaults for a narrowband call: MOS 4.0 is "satisfied", 3.6 "some users dissatisfied"
# (ITU-T G.107 Annex B); 1 % / 5 % loss and 30 / 50 ms jitter are the usual carrier limits.
DEFAULT_THRESHOLDS: Mapping[str, Threshold] = {
    "mos": Threshold(warning=4.0, critical=3.6),
    "loss_percent": Threshold(warning=1.0, critical=5.0),
    "jitter_ms": Threshold(warning=30.0, critical=50.0),
}


def _check_codec(value: str) -> str:
    return codec_named(value).name  # ValueError lists the known codecs


def _check_uri(value: str) -> str:
    try:
        uri = parse_uri(value)
    except ParseError as error:
        raise ValueError(str(error)) from None
    if not isinstance(uri, SipUri):
        raise ValueError(f"{value!r} is not a sip: or sips: URI")
    return value


_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_USER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2}){1,128}")


def _check_registrar_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(f"invalid registrar name {value!r}: 1 to 64 letters, digits, _ or -")
    return value


def _check_user(value: str) -> str:
    if not _USER_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a SIP user name (RFC 3261 section 25.1)")
    return value


Codec = Annotated[str, AfterValidator(_check_codec)]
SipUriText = Annotated[str, Field(max_length=512), AfterValidator(_check_uri)]
RegistrarName = Annotated[str, AfterValidator(_check_registrar_name)]
Username = Annotated[str, AfterValidator(_check_user)]


class UriTarget(_Strict):
    """Call an external SIP URI (an echo extension, an IVR) that answers by itself."""

    kind: Literal["uri"] = "uri"
    uri: SipUriText


class EndpointTarget(_Strict):
    """Call a second endpoint of the probe that answers; on an external registrar it
    registers with ``account`` (another account of the same registrar)."""

    kind: Literal["endpoint"] = "endpoint"
    account: Username | None = None


Target = Annotated[UriTarget | EndpointTarget, Field(discriminator="kind")]


def _check_metric_keys(value: dict[str, Threshold]) -> dict[str, Threshold]:
    unknown = sorted(set(value) - set(PROBE_METRICS))
    if unknown:
        raise ValueError(
            f"no probe metric {', '.join(map(repr, unknown))}; one of {', '.join(PROBE_METRICS)}"
        )
    return value


# metric key (one of PROBE_METRICS) -> its levels
Thresholds = Annotated[dict[str, Threshold], AfterValidator(_check_metric_keys)]


def _direction_problems(thresholds: Mapping[str, Threshold]) -> list[str]:
    problems = []
    for key, threshold in thresholds.items():
        metric = PROBE_METRICS[key]
        warning, critical = threshold.warning, threshold.critical
        if warning is None or critical is None:
            continue
        if metric.lower_is_worse and warning < critical:
            problems.append(
                f"thresholds.{key}: lower {metric.label} is worse, so warning ({warning:g}) "
                f"must be at or above critical ({critical:g})"
            )
        if not metric.lower_is_worse and warning > critical:
            problems.append(
                f"thresholds.{key}: higher {metric.label} is worse, so warning ({warning:g}) "
                f"must be at or below critical ({critical:g})"
            )
    return problems


class ProbeConfig(_Strict):
    """What a probe does (the editable part)."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    registrar: RegistrarName = BUILTIN
    account: Username | None = None
    target: Target = Field(default_factory=EndpointTarget)
    codec: Codec = "PCMU"
    call_duration_s: float = Field(default=10.0, gt=0, le=MAX_CALL_DURATION_S)
    interval_min: Interval = 5
    placement: Placement | None = None
    thresholds: Thresholds = Field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    impairment: Impairment | None = None
    enabled: bool = True

    @model_validator(mode="after")
    def _check_probe(self) -> Self:
        problems = _direction_problems(self.thresholds)
        answerer = self.target.account if isinstance(self.target, EndpointTarget) else None
        if self.registrar == BUILTIN:
            if self.account is not None:
                problems.append("account: the built-in registrar makes its own accounts")
            if answerer is not None:
                problems.append("target.account: the built-in registrar makes its own accounts")
        else:
            if self.account is None:
                problems.append(f"account: name one of registrar {self.registrar}'s accounts")
            if isinstance(self.target, EndpointTarget):
                if answerer is None:
                    problems.append(
                        "target.account: the answering endpoint needs its own account on "
                        f"registrar {self.registrar}"
                    )
                elif answerer == self.account:
                    problems.append("target.account: use another account than the caller's")
        if problems:  # a custom error: the message reads without pydantic's "Value error, "
            raise PydanticCustomError("probe", "{problems}", {"problems": "; ".join(problems)})
        return self

    @property
    def interval_s(self) -> float:
        return self.interval_min * 60.0


class ProbeUpdate(_Strict):
    """A partial change: the fields given replace the current ones (``thresholds`` whole)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    registrar: RegistrarName | None = None
    account: Username | None = None
    target: Target | None = None
    codec: Codec | None = None
    call_duration_s: float | None = Field(default=None, gt=0, le=MAX_CALL_DURATION_S)
    interval_min: Interval | None = None
    placement: Placement | None = None
    thresholds: Thresholds | None = None
    impairment: Impairment | None = None
    enabled: bool | None = None

    def applied_to(self, current: ProbeConfig) -> ProbeConfig:
        """``current`` with this change (validated again as a whole)."""
        data = current.model_dump(mode="json")
        data.update(self.model_dump(mode="json", exclude_unset=True))
        try:
            return ProbeConfig.model_validate(data)
        except ValidationError as error:
            raise ValueError(problems_of(error)) from None


def problems_of(error: ValidationError) -> str:
    """A validation error in one line per problem: ``field.path: what is wrong``."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"])
        lines.append(f"{where}: {problem['msg']}" if where else str(problem["msg"]))
    return "; ".join(lines)


class BreachOut(BaseModel):
    """A threshold crossed by an execution."""

    metric: str
    label: str
    unit: str
    value: float
    level: Literal["warning", "critical"]
    threshold: float  # the level crossed
    warning: float | None
    critical: float | None


class ProbeOut(ProbeConfig):
    probe_id: str
    project_id: str
    health: Health
    health_since: datetime | None
    last_execution_id: str | None
    last_execution_at: datetime | None
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ExecutionOut(BaseModel):
    execution_id: str
    probe_id: str
    trigger: Literal["schedule", "manual"]
    status: ExecutionStatus
    scheduled_for: datetime | None
    missed_slots: int
    attempts: int
    run_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    health: Health | None
    previous_health: Health | None
    measurements: dict[str, float | None]
    breaches: list[BreachOut]
    reason: str | None


# Webhooks ------------------------------------------------------------------------------------


class WebhookIn(_Strict):
    url: str = Field(min_length=8, max_length=2000, description="https://, or http to loopback")
    description: str = Field(default="", max_length=500)
    enabled: bool = True


class WebhookUpdate(_Strict):
    url: str | None = Field(default=None, min_length=8, max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None


class WebhookOut(BaseModel):
    webhook_id: str
    probe_id: str
    url: str
    description: str
    enabled: bool
    secret_hint: str  # the secret's last characters, to tell secrets apart
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str  # shown once: keep it to verify the signatures


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryOut(BaseModel):
    delivery_id: str
    webhook_id: str
    event: str
    event_id: str
    execution_id: str | None
    status: Literal["PENDING", "DELIVERED", "FAILED"]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    body: dict[str, Any]
    log: list[AttemptOut]


# Status pages ------------------------------------------------------------------------------

_SLUG = r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$"
Slug = Annotated[str, Field(min_length=3, max_length=64, pattern=_SLUG)]


class ComponentIn(_Strict):
    probe_id: str = Field(min_length=1, max_length=100)
    display_name: str | None = Field(default=None, min_length=1, max_length=200)


class ComponentOut(BaseModel):
    probe_id: str
    display_name: str


class StatusPageIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    slug: Slug
    description: str = Field(default="", max_length=2000)
    components: list[ComponentIn] = Field(default_factory=list, max_length=50)


class StatusPageUpdate(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    slug: Slug | None = None
    description: str | None = Field(default=None, max_length=2000)
    components: list[ComponentIn] | None = Field(default=None, max_length=50)


class StatusPageOut(BaseModel):
    status_page_id: str
    project_id: str
    name: str
    slug: str
    description: str
    components: list[ComponentOut]
    url: str  # the public page
    created_at: datetime
    updated_at: datetime
