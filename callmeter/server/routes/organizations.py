"""Organizations, their members, invitations, API keys, plan and workers."""

from __future__ import annotations

from fastapi import APIRouter, Response

from callmeter.server import repo_people, repo_resources, repo_runs
from callmeter.server.access import Action, Membership, Role
from callmeter.server.auth import hash_token, new_api_key, new_invitation_token
from callmeter.server.db import Tx
from callmeter.server.deps import CallerDep, PageDep, PlatformDep, envelope, paged
from callmeter.server.errors import Conflict, Forbidden, InvalidInput, NotFound
from callmeter.server.payloads import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    Envelope,
    InvitationCreated,
    InvitationIn,
    InvitationOut,
    MemberOut,
    MemberUpdate,
    OrganizationIn,
    OrganizationOut,
    PlanLimits,
    PlanUpdate,
    ProjectGrant,
    WorkerOut,
)
from callmeter.server.plans import DEFAULT_PLAN, PLANS, plan_named
from callmeter.server.workers import effective_status, visible_to

__all__ = ["router"]

router = APIRouter(tags=["organizations"])

INVITATION_TTL_S = 7 * 24 * 3600.0


@router.get("/plans", response_model=Envelope[list[PlanLimits]])
def list_plans(caller: CallerDep, paging: PageDep) -> Envelope[list[PlanLimits]]:
    """The named plans and their default limits."""
    return paged(list(PLANS.values()), paging)


@router.get("/organizations", response_model=Envelope[list[OrganizationOut]])
def list_organizations(
    platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[OrganizationOut]]:
    """The organizations the caller belongs to (an API key: its own organization only)."""
    with platform.db.transaction() as tx:
        found = repo_people.organizations_of(tx, caller.user_id)
    if caller.api_key_organization_id is not None:
        found = [o for o in found if o.organization_id == caller.api_key_organization_id]
    return paged(found, paging)


@router.post("/organizations", status_code=201, response_model=Envelope[OrganizationOut])
def create_organization(
    body: OrganizationIn, platform: PlatformDep, caller: CallerDep
) -> Envelope[OrganizationOut]:
    """A new organization with the caller as its Owner."""
    if caller.api_key_id is not None:
        raise Forbidden("an API key acts in its own organization: log in to create one")
    with platform.db.transaction() as tx:
        organization = repo_people.create_organization(
            tx, body.name, caller.user_id, PLANS[DEFAULT_PLAN], platform.clock()
        )
    return envelope(organization)


@router.get("/organizations/{organization_id}", response_model=Envelope[OrganizationOut])
def get_organization(
    organization_id: str, platform: PlatformDep, caller: CallerDep
) -> Envelope[OrganizationOut]:
    with platform.db.transaction() as tx:
        member = caller.in_organization(tx, organization_id, Action.READ)
        return envelope(repo_people.get_organization(tx, organization_id, member.role))


@router.patch("/organizations/{organization_id}", response_model=Envelope[OrganizationOut])
def update_organization(
    organization_id: str, body: OrganizationIn, platform: PlatformDep, caller: CallerDep
) -> Envelope[OrganizationOut]:
    with platform.db.transaction() as tx:
        member = caller.in_organization(tx, organization_id, Action.MANAGE_ORGANIZATION)
        repo_people.rename_organization(tx, organization_id, body.name)
        return envelope(repo_people.get_organization(tx, organization_id, member.role))


@router.delete("/organizations/{organization_id}", status_code=204)
def delete_organization(organization_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    """Delete the organization and everything in it (Owner)."""
    with platform.db.transaction() as tx:
        caller.in_organization(tx, organization_id, Action.DELETE_ORGANIZATION)
        if _active_runs(tx, organization_id):
            raise Conflict("stop the organization's runs first")
        repo_people.delete_organization(tx, organization_id)
    return Response(status_code=204)


def _active_runs(tx: Tx, organization_id: str) -> list[str]:
    return [r.run_id for r in repo_runs.active_runs(tx, organization_id)]


# Plan --------------------------------------------------------------------------------------


@router.get("/organizations/{organization_id}/plan", response_model=Envelope[PlanLimits])
def get_plan(
    organization_id: str, platform: PlatformDep, caller: CallerDep
) -> Envelope[PlanLimits]:
    with platform.db.transaction() as tx:
        caller.in_organization(tx, organization_id, Action.READ)
        return envelope(repo_people.get_plan(tx, organization_id))


@router.patch("/organizations/{organization_id}/plan", response_model=Envelope[PlanLimits])
def update_plan(
    organization_id: str, body: PlanUpdate, platform: PlatformDep, caller: CallerDep
) -> Envelope[PlanLimits]:
    """Switch to a named plan (its defaults) and/or change single limits (Owner)."""
    with platform.db.transaction() as tx:
        caller.in_organization(tx, organization_id, Action.EDIT_PLAN)
        current = repo_people.get_plan(tx, organization_id)
        if body.plan is not None:
            try:
                current = plan_named(body.plan)
            except ValueError as error:
                raise InvalidInput(str(error)) from None
        changes = body.model_dump(exclude_none=True, exclude={"plan"})
        plan = current.model_copy(update=changes)
        repo_people.set_plan(tx, organization_id, plan)
        return envelope(plan)


# Members -----------------------------------------------------------------------------------


@router.get("/organizations/{organization_id}/members", response_model=Envelope[list[MemberOut]])
def list_members(
    organization_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[MemberOut]]:
    with platform.db.transaction() as tx:
        caller.in_organization(tx, organization_id, Action.READ)
        return paged(repo_people.list_members(tx, organization_id), paging)


def _grants(tx: Tx, organization_id: str, grants: list[ProjectGrant]) -> dict[str, Role | None]:
    projects: dict[str, Role | None] = {}
    for i, grant in enumerate(grants):
        try:
            owner = repo_resources.owner_of(tx, "project", grant.project_id)
        except NotFound:
            owner = None
        if owner is None or owner.organization_id != organization_id:
            raise InvalidInput(f"projects[{i}].project_id: no project {grant.project_id!r}")
        if grant.role is not None and Role.parse(grant.role.value) is Role.OWNER:
            raise InvalidInput(f"projects[{i}].role: Owner is an organization role")
        projects[grant.project_id] = None if grant.role is None else Role.parse(grant.role.value)
    return projects


def _check_grantable(actor: Membership, role: Role | None, field: str) -> None:
    if role is not None and role > actor.role:
        raise Forbidden(f"{field}: you cannot grant {role.label}, above your own role")


@router.patch(
    "/organizations/{organization_id}/members/{user_id}", response_model=Envelope[MemberOut]
)
def update_member(
    organization_id: str,
    user_id: str,
    body: MemberUpdate,
    platform: PlatformDep,
    caller: CallerDep,
) -> Envelope[MemberOut]:
    """Change a member's role, project access and project role overrides (Admin)."""
    with platform.db.transaction() as tx:
        actor = caller.in_organization(tx, organization_id, Action.MANAGE_MEMBERS)
        target = repo_people.membership(tx, organization_id, user_id)
        if target is None:
            raise NotFound.of("member", user_id)
        _check_can_manage(tx, actor, target)
        role = None if body.role is None else Role.parse(body.role.value)
        _check_grantable(actor, role, "role")
        if target.role is Role.OWNER and role not in (None, Role.OWNER):
            _keep_an_owner(tx, organization_id)
        projects = None if body.projects is None else _grants(tx, organization_id, body.projects)
        for i, override in enumerate((projects or {}).values()):
            _check_grantable(actor, override, f"projects[{i}].role")
        repo_people.update_member(tx, organization_id, user_id, role, body.all_projects, projects)
        return envelope(repo_people.get_member(tx, organization_id, user_id))


@router.delete("/organizations/{organization_id}/members/{user_id}", status_code=204)
def remove_member(
    organization_id: str, user_id: str, platform: PlatformDep, caller: CallerDep
) -> Response:
    """Remove a member (Admin), or leave (anyone); their API keys are revoked."""
    with platform.db.transaction() as tx:
        if user_id == caller.user_id:
            target = caller.membership(tx, organization_id)
        else:
            actor = caller.in_organization(tx, organization_id, Action.MANAGE_MEMBERS)
            found = repo_people.membership(tx, organization_id, user_id)
            if found is None:
                raise NotFound.of("member", user_id)
            target = found
            _check_can_manage(tx, actor, target)
        if target.role is Role.OWNER:
            _keep_an_owner(tx, organization_id)
        repo_people.remove_member(tx, organization_id, user_id)
    return Response(status_code=204)


def _check_can_manage(tx: Tx, actor: Membership, target: Membership) -> None:
    if target.role > actor.role:
        raise Forbidden(f"only an {target.role.label} or above can change an {target.role.label}")


def _keep_an_owner(tx: Tx, organization_id: str) -> None:
    if repo_people.count_owners(tx, organization_id) <= 1:
        raise Conflict("the organization needs an Owner: make someone else Owner first")


# Invitations -------------------------------------------------------------------------------


@router.post(
    "/organizations/{organization_id}/invitations",
    status_code=201,
    response_model=Envelope[InvitationCreated],
)
def create_invitation(
    organization_id: str, body: InvitationIn, platform: PlatformDep, caller: CallerDep
) -> Envelope[InvitationCreated]:
    """An invitation link (there is no mail: pass the link on). The token is shown once; it
    is accepted with ``POST /api/v1/invitations/accept``."""
    with platform.db.transaction() as tx:
        actor = caller.in_organization(tx, organization_id, Action.MANAGE_MEMBERS)
        role = Role.parse(body.role.value)
        _check_grantable(actor, role, "role")
        projects = _grants(tx, organization_id, body.projects)
        token = new_invitation_token()
        invitation = repo_people.create_invitation(
            tx,
            organization_id,
            hash_token(token),
            body.email,
            role,
            body.all_projects,
            body.projects,
            caller.user_id,
            platform.clock(),
            INVITATION_TTL_S,
        )
    del projects
    # The token rides in the fragment: browsers never send it, so no server log holds it.
    link = f"{platform.public_url}/invite#{token}"
    return envelope(InvitationCreated(**invitation.model_dump(), token=token, link=link))


@router.get(
    "/organizations/{organization_id}/invitations", response_model=Envelope[list[InvitationOut]]
)
def list_invitations(
    organization_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[InvitationOut]]:
    with platform.db.transaction() as tx:
        caller.in_organization(tx, organization_id, Action.MANAGE_MEMBERS)
        return paged(repo_people.list_invitations(tx, organization_id), paging)


@router.delete("/organizations/{organization_id}/invitations/{invitation_id}", status_code=204)
def delete_invitation(
    organization_id: str, invitation_id: str, platform: PlatformDep, caller: CallerDep
) -> Response:
    with platform.db.transaction() as tx:
        caller.in_organization(tx, organization_id, Action.MANAGE_MEMBERS)
        repo_people.delete_invitation(tx, organization_id, invitation_id)
    return Response(status_code=204)


# API keys ----------------------------------------------------------------------------------


@router.post(
    "/organizations/{organization_id}/api-keys",
    status_code=201,
    response_model=Envelope[ApiKeyCreated],
)
def create_api_key(
    organization_id: str, body: ApiKeyIn, platform: PlatformDep, caller: CallerDep
) -> Envelope[ApiKeyCreated]:
    """A key acting with the caller's role in this organization; ``key`` is shown only here."""
    key, prefix = new_api_key()
    with platform.db.transaction() as tx:
        caller.in_organization(tx, organization_id, Action.MANAGE_API_KEYS)
        created = repo_people.create_api_key(
            tx, organization_id, caller.user_id, body.name, prefix, hash_token(key),
            platform.clock(),
        )  # fmt: skip
    return envelope(ApiKeyCreated(**created.model_dump(), key=key))


@router.get("/organizations/{organization_id}/api-keys", response_model=Envelope[list[ApiKeyOut]])
def list_api_keys(
    organization_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[ApiKeyOut]]:
    """Admins see every key of the organization, Editors their own."""
    with platform.db.transaction() as tx:
        member = caller.in_organization(tx, organization_id, Action.MANAGE_API_KEYS)
        mine = None if member.role >= Role.ADMIN else caller.user_id
        return paged(repo_people.list_api_keys(tx, organization_id, mine), paging)


@router.delete(
    "/organizations/{organization_id}/api-keys/{api_key_id}", response_model=Envelope[ApiKeyOut]
)
def revoke_api_key(
    organization_id: str, api_key_id: str, platform: PlatformDep, caller: CallerDep
) -> Envelope[ApiKeyOut]:
    """Revoke a key (one's own as Editor, any as Admin); it stays listed as revoked."""
    with platform.db.transaction() as tx:
        member = caller.in_organization(tx, organization_id, Action.MANAGE_API_KEYS)
        key = repo_people.get_api_key(tx, organization_id, api_key_id)
        if key.user_id != caller.user_id and member.role < Role.ADMIN:
            raise NotFound.of("API key", api_key_id)
        return envelope(
            repo_people.revoke_api_key(tx, organization_id, api_key_id, platform.clock())
        )


# Workers -----------------------------------------------------------------------------------


@router.get("/organizations/{organization_id}/workers", response_model=Envelope[list[WorkerOut]])
def list_workers(
    organization_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[WorkerOut]]:
    """Shared workers and the organization's own, with status as the queue sees it."""
    with platform.db.transaction() as tx:
        caller.in_organization(tx, organization_id, Action.READ)
    now = platform.clock()
    workers = [
        WorkerOut(
            name=w.name,
            region=w.region,
            capacity=w.capacity,
            allocated=w.allocated,
            status=effective_status(w, now).value,
            last_heartbeat=repo_people.utc(w.last_heartbeat),
        )
        for w in sorted(platform.workers.workers(), key=lambda w: (w.region, w.name))
        if visible_to(w, organization_id)
    ]
    return paged(workers, paging)
