"""Probes, their executions and their webhooks.

Access as for every project resource: invisible ones are 404, reading needs Viewer, triggering
a probe Tester (``TRIGGER_PROBE``), creating and changing probes and webhooks Editor
(``EDIT_RESOURCES``). A new probe counts against the plan's ``probe_count``.

A webhook's secret is returned once, by the request that creates (or rotates) it.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from callmeter.probes import repo, webhooks
from callmeter.probes.executor import build_test
from callmeter.probes.models import (
    DeliveryOut,
    ExecutionOut,
    Health,
    ProbeConfig,
    ProbeOut,
    ProbeUpdate,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
    WebhookUpdate,
)
from callmeter.probes.scheduler import ProbeScheduler
from callmeter.server import repo_people
from callmeter.server.access import Action
from callmeter.server.context import Caller, Platform
from callmeter.server.db import Tx
from callmeter.server.deps import CallerDep, PageDep, PlatformDep, envelope, paged
from callmeter.server.errors import InvalidInput, PlanLimitExceeded
from callmeter.server.payloads import Envelope
from callmeter.server.plans import PlanLimits, check_probe_count
from callmeter.server.repo_resources import Owner

__all__ = ["check_access", "router"]

router = APIRouter(tags=["probes"])


def get_scheduler(request: Request) -> ProbeScheduler:
    scheduler: ProbeScheduler = request.app.state.probes
    return scheduler


SchedulerDep = Annotated[ProbeScheduler, Depends(get_scheduler)]


def check_access(tx: Tx, caller: Caller, kind: str, resource_id: str, action: Action) -> Owner:
    """:meth:`Caller.on_resource` for the probe kinds (``repo.KINDS``)."""
    return caller.on_resource(tx, kind, resource_id, action, owner_of=repo.owner_of)


# The test a probe becomes has groups; its problems are told in the probe's own fields.
_FIELDS = (
    (re.compile(r"^definition: groups\[0\]\.accounts(\[0\])?"), "account"),
    (re.compile(r"^definition: groups\[1\]\.accounts(\[0\])?"), "target.account"),
    (re.compile(r"^definition: groups\[\d\]\.registrar"), "registrar"),
    (re.compile(r"^definition: registrars\.[^:]+\.accounts"), "account"),
    (re.compile(r"^definition: groups\[\d\]\.codecs(\[0\])?"), "codec"),
    (re.compile(r"^definition: groups\[\d\]\.placement"), "placement"),
    (re.compile(r"^definition: groups\[0\]\.impairment"), "impairment"),
    (re.compile(r"^definition: groups\[0\]\.target\.uri"), "target.uri"),
    (re.compile(r"^definition"), "probe"),
)


def _probe_field(message: str) -> str:
    lines = []
    for line in message.splitlines():
        for pattern, name in _FIELDS:
            if pattern.match(line):
                line = pattern.sub(name, line, count=1)
                break
        lines.append(line)
    return "\n".join(lines)


def _validate(
    platform: Platform, tx: Tx, owner: Owner, config: ProbeConfig, plan: PlanLimits
) -> None:
    """The probe's call must be a valid test of the project, within the plan's duration."""
    if config.call_duration_s > plan.max_test_duration_s:
        raise PlanLimitExceeded(
            f"call_duration_s: {config.call_duration_s:g} s; plan {plan.plan} allows "
            f"{plan.max_test_duration_s} s"
        )
    try:
        build_test(tx, platform.media_dir, owner.project_id, config, for_run=False)
    except InvalidInput as error:
        raise InvalidInput(_probe_field(error.message)) from None


# Probes ---------------------------------------------------------------------------------------


@router.get("/projects/{project_id}/probes", response_model=Envelope[list[ProbeOut]])
def list_probes(
    project_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[ProbeOut]]:
    """The project's probes with their current health."""
    with platform.db.transaction() as tx:
        caller.in_project(tx, project_id, Action.READ)
        return paged(repo.list_probes(tx, project_id), paging)


@router.post("/projects/{project_id}/probes", status_code=201, response_model=Envelope[ProbeOut])
def create_probe(
    project_id: str,
    body: ProbeConfig,
    platform: PlatformDep,
    caller: CallerDep,
    scheduler: SchedulerDep,
) -> Envelope[ProbeOut]:
    """Define a probe; an enabled one runs at once, then every ``interval_min`` minutes.
    409 ``plan_limit`` when the organization has as many probes as its plan allows."""
    with platform.db.transaction() as tx:
        owner = caller.in_project(tx, project_id, Action.EDIT_RESOURCES)
        plan = repo_people.get_plan(tx, owner.organization_id)
        check_probe_count(plan, repo.count_probes(tx, owner.organization_id))
        _validate(platform, tx, owner, body, plan)
        probe = repo.create_probe(tx, owner, body, platform.clock())
    scheduler.wake()
    return envelope(probe)


@router.get("/probes/{probe_id}", response_model=Envelope[ProbeOut])
def get_probe(probe_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[ProbeOut]:
    with platform.db.transaction() as tx:
        check_access(tx, caller, "probe", probe_id, Action.READ)
        return envelope(repo.get_probe(tx, probe_id))


@router.patch("/probes/{probe_id}", response_model=Envelope[ProbeOut])
def update_probe(
    probe_id: str,
    body: ProbeUpdate,
    platform: PlatformDep,
    caller: CallerDep,
    scheduler: SchedulerDep,
) -> Envelope[ProbeOut]:
    """Change a probe (``enabled: false`` pauses it); the fields given replace the current
    ones and the result is validated as a whole."""
    with platform.db.transaction() as tx:
        owner = check_access(tx, caller, "probe", probe_id, Action.EDIT_RESOURCES)
        try:
            config = body.applied_to(repo.probe_config(tx, probe_id))
        except ValueError as error:
            raise InvalidInput(str(error)) from None
        _validate(platform, tx, owner, config, repo_people.get_plan(tx, owner.organization_id))
        probe = repo.update_probe(tx, probe_id, config, platform.clock())
    scheduler.wake()
    return envelope(probe)


@router.delete("/probes/{probe_id}", status_code=204)
def delete_probe(probe_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    """Delete a probe with its history, webhooks and status page entries (its runs stay)."""
    with platform.db.transaction() as tx:
        check_access(tx, caller, "probe", probe_id, Action.EDIT_RESOURCES)
        repo.delete_probe(tx, probe_id)
    return Response(status_code=204)


@router.post("/probes/{probe_id}/trigger", status_code=202, response_model=Envelope[ExecutionOut])
def trigger_probe(
    probe_id: str, platform: PlatformDep, caller: CallerDep, scheduler: SchedulerDep
) -> Envelope[ExecutionOut]:
    """Run the probe now (also when paused). The execution is PENDING until it starts; when
    one is already waiting, that one is returned (a probe never runs twice at once)."""
    with platform.db.transaction() as tx:
        check_access(tx, caller, "probe", probe_id, Action.TRIGGER_PROBE)
    execution_id = scheduler.trigger(probe_id)
    with platform.db.transaction() as tx:
        return envelope(repo.get_execution(tx, execution_id))


@router.get("/probes/{probe_id}/executions", response_model=Envelope[list[ExecutionOut]])
def list_executions(
    probe_id: str,
    platform: PlatformDep,
    caller: CallerDep,
    paging: PageDep,
    health: Annotated[Health | None, Query(description="only executions judged so")] = None,
    since: Annotated[float | None, Query(ge=0, description="epoch seconds")] = None,
) -> Envelope[list[ExecutionOut]]:
    """The probe's executions, newest first, each with its measurements and breaches."""
    with platform.db.transaction() as tx:
        check_access(tx, caller, "probe", probe_id, Action.READ)
        found, total = repo.list_executions(
            tx, probe_id, health=health, since=since, limit=paging.limit, offset=paging.offset
        )
    return paged(found, paging, total)


@router.get("/probe-executions/{execution_id}", response_model=Envelope[ExecutionOut])
def get_execution(
    execution_id: str, platform: PlatformDep, caller: CallerDep
) -> Envelope[ExecutionOut]:
    """One execution; its call's metrics, events and SIP trace are the run ``run_id``'s."""
    with platform.db.transaction() as tx:
        check_access(tx, caller, "probe execution", execution_id, Action.READ)
        return envelope(repo.get_execution(tx, execution_id))


# Webhooks -------------------------------------------------------------------------------------


def _url(url: str) -> str:
    try:
        return webhooks.check_url(url)
    except ValueError as error:
        raise InvalidInput(str(error)) from None


@router.get("/probes/{probe_id}/webhooks", response_model=Envelope[list[WebhookOut]])
def list_webhooks(
    probe_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[WebhookOut]]:
    with platform.db.transaction() as tx:
        check_access(tx, caller, "probe", probe_id, Action.READ)
        return paged(repo.list_webhooks(tx, probe_id), paging)


@router.post(
    "/probes/{probe_id}/webhooks", status_code=201, response_model=Envelope[WebhookCreated]
)
def create_webhook(
    probe_id: str, body: WebhookIn, platform: PlatformDep, caller: CallerDep
) -> Envelope[WebhookCreated]:
    """Add a webhook: a POST on every change of the probe's health, signed with the
    ``secret`` returned here and never again (see :mod:`callmeter.probes.webhooks`)."""
    secret = webhooks.new_secret()
    with platform.db.transaction() as tx:
        check_access(tx, caller, "probe", probe_id, Action.EDIT_RESOURCES)
        hook = repo.create_webhook(
            tx, probe_id, _url(body.url), body.description, body.enabled, secret, platform.clock()
        )
    return envelope(WebhookCreated(**hook.model_dump(), secret=secret))


@router.get("/webhooks/{webhook_id}", response_model=Envelope[WebhookOut])
def get_webhook(webhook_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[WebhookOut]:
    with platform.db.transaction() as tx:
        check_access(tx, caller, "webhook", webhook_id, Action.READ)
        return envelope(repo.get_webhook(tx, webhook_id))


@router.patch("/webhooks/{webhook_id}", response_model=Envelope[WebhookOut])
def update_webhook(
    webhook_id: str, body: WebhookUpdate, platform: PlatformDep, caller: CallerDep
) -> Envelope[WebhookOut]:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("url") is not None:
        changes["url"] = _url(changes["url"])
    with platform.db.transaction() as tx:
        check_access(tx, caller, "webhook", webhook_id, Action.EDIT_RESOURCES)
        return envelope(repo.update_webhook(tx, webhook_id, changes))


@router.delete("/webhooks/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    """Delete a webhook and its delivery log (pending deliveries are dropped)."""
    with platform.db.transaction() as tx:
        check_access(tx, caller, "webhook", webhook_id, Action.EDIT_RESOURCES)
        repo.delete_webhook(tx, webhook_id)
    return Response(status_code=204)


@router.post("/webhooks/{webhook_id}/rotate-secret", response_model=Envelope[WebhookCreated])
def rotate_secret(
    webhook_id: str, platform: PlatformDep, caller: CallerDep
) -> Envelope[WebhookCreated]:
    """A new signing secret, returned once; the old one stops signing at once."""
    secret = webhooks.new_secret()
    with platform.db.transaction() as tx:
        check_access(tx, caller, "webhook", webhook_id, Action.EDIT_RESOURCES)
        hook = repo.update_webhook(tx, webhook_id, {"secret": secret})
    return envelope(WebhookCreated(**hook.model_dump(), secret=secret))


@router.post("/webhooks/{webhook_id}/test", status_code=202, response_model=Envelope[DeliveryOut])
def test_webhook(
    webhook_id: str, platform: PlatformDep, caller: CallerDep, scheduler: SchedulerDep
) -> Envelope[DeliveryOut]:
    """Queue a signed ``webhook.test`` event to the webhook (to check a receiver)."""
    with platform.db.transaction() as tx:
        check_access(tx, caller, "webhook", webhook_id, Action.EDIT_RESOURCES)
        hook = repo.get_webhook(tx, webhook_id)
        probe = repo.get_probe(tx, hook.probe_id)
        delivery_id = webhooks.enqueue_test(
            tx, webhook_id, {"id": probe.probe_id, "name": probe.name}, platform.clock()
        )
        found, _ = repo.list_deliveries(tx, webhook_id, limit=1)
    scheduler.webhooks.wake()
    assert found and found[0].delivery_id == delivery_id
    return envelope(found[0])


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Envelope[list[DeliveryOut]])
def list_deliveries(
    webhook_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[DeliveryOut]]:
    """The delivery log, newest first: each delivery with its body and every attempt's
    status code or error."""
    with platform.db.transaction() as tx:
        check_access(tx, caller, "webhook", webhook_id, Action.READ)
        found, total = repo.list_deliveries(
            tx, webhook_id, limit=paging.limit, offset=paging.offset
        )
    return paged(found, paging, total)
