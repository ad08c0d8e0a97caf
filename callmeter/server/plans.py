"""Named plans: the limits an organization runs under.

Every organization has a plan (a name and five limits). New organizations start on
``DEFAULT_PLAN``; the Owner may switch to another named plan or change any limit (the plan
name then stays what it was, and the limits are the organization's own).

- ``concurrent_endpoints``: endpoints the organization's runs may hold at once;
- ``max_test_duration_s``: the longest test (buildup + call duration) one run may take;
- ``probe_count``: probes the organization may define;
- ``worker_capacity``: endpoints the organization may place on shared (cloud) workers at
  once; its own on-premise workers do not count;
- ``concurrent_runs``: runs RUNNING or STOPPING at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from callmeter.server.errors import PlanLimitExceeded

__all__ = ["DEFAULT_PLAN", "PLANS", "PlanLimits", "check_probe_count", "plan_named"]


class PlanLimits(BaseModel):
    """The limits of one plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plan: str = Field(min_length=1, max_length=64)
    concurrent_endpoints: int = Field(ge=0, le=10_000_000)
    max_test_duration_s: int = Field(ge=0, le=30 * 24 * 3600)
    probe_count: int = Field(ge=0, le=1_000_000)
    worker_capacity: int = Field(ge=0, le=10_000_000)
    concurrent_runs: int = Field(ge=0, le=100_000)


PLANS: Mapping[str, PlanLimits] = {
    plan.plan: plan
    for plan in (
        PlanLimits(
            plan="free",
            concurrent_endpoints=50,
            max_test_duration_s=600,
            probe_count=3,
            worker_capacity=50,
            concurrent_runs=1,
        ),
        PlanLimits(
            plan="team",
            concurrent_endpoints=2_000,
            max_test_duration_s=3_600,
            probe_count=50,
            worker_capacity=1_000,
            concurrent_runs=5,
        ),
        PlanLimits(
            plan="enterprise",
            concurrent_endpoints=100_000,
            max_test_duration_s=24 * 3_600,
            probe_count=1_000,
            worker_capacity=100_000,
            concurrent_runs=50,
        ),
        # Self-hosted default: the operator owns the machines, so the limits are generous.
        PlanLimits(
            plan="self-hosted",
            concurrent_endpoints=1_000_000,
            max_test_duration_s=7 * 24 * 3_600,
            probe_count=10_000,
            worker_capacity=1_000_000,
            concurrent_runs=100,
        ),
    )
}

DEFAULT_PLAN = "self-hosted"


def plan_named(name: str) -> PlanLimits:
    """The named plan; ``ValueError`` naming the choices for an unknown one."""
    try:
        return PLANS[name]
    except KeyError:
        raise ValueError(f"plan: unknown plan {name!r}; one of {', '.join(PLANS)}") from None


def check_probe_count(plan: PlanLimits, existing: int) -> None:
    """Refuse one more probe when the organization has ``plan.probe_count`` already (a plan
    lowered below the probes defined keeps them, and allows no new one)."""
    if existing >= plan.probe_count:
        raise PlanLimitExceeded(
            f"probes: the organization has {existing} of the {plan.probe_count} probes plan "
            f"{plan.plan} allows; delete one or change the plan"
        )
