"""Platform storage of people: users, sessions, organizations, plans, memberships, API keys
and invitations. Plain functions over a :class:`~callmeter.server.db.Tx`; they check
existence and uniqueness (404, 409) but not permissions, which are the routes' business."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from callmeter.server.access import Membership, Role
from callmeter.server.db import Row, Tx, new_id
from callmeter.server.errors import Conflict, NotFound
from callmeter.server.payloads import (
    ApiKeyOut,
    InvitationOut,
    MemberOut,
    OrganizationOut,
    ProjectGrant,
    RoleName,
    UserOut,
)
from callmeter.server.plans import PlanLimits

__all__ = [
    "add_member",
    "api_key_by_hash",
    "count_owners",
    "create_api_key",
    "create_invitation",
    "create_organization",
    "create_session",
    "create_user",
    "delete_invitation",
    "delete_organization",
    "delete_session",
    "get_api_key",
    "get_member",
    "get_organization",
    "get_plan",
    "get_user",
    "invitation_by_token_hash",
    "list_api_keys",
    "list_invitations",
    "list_members",
    "mark_invitation_accepted",
    "membership",
    "organizations_of",
    "remove_member",
    "rename_organization",
    "revoke_api_key",
    "session_user_id",
    "set_plan",
    "update_member",
    "user_by_email",
    "utc",
]


def utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def role_name(role: Role) -> RoleName:
    return RoleName(role.label)


# Users and sessions ------------------------------------------------------------------------


def _user(row: Row) -> UserOut:
    return UserOut(
        user_id=row["user_id"],
        email=row["email"],
        name=row["name"],
        created_at=_utc(row["created_at"]),
    )


def create_user(tx: Tx, email: str, name: str, password_hash: str, now: float) -> UserOut:
    email = email.strip().lower()
    if tx.scalar("SELECT 1 FROM users WHERE email = ?", [email]):
        raise Conflict(f"email: a user with email {email!r} already exists")
    user_id = new_id("usr")
    tx.run(
        "INSERT INTO users VALUES (?, ?, ?, ?, ?)",
        [user_id, email, name or email.split("@")[0], password_hash, now],
    )
    return get_user(tx, user_id)


def get_user(tx: Tx, user_id: str) -> UserOut:
    row = tx.one("SELECT * FROM users WHERE user_id = ?", [user_id])
    if row is None:
        raise NotFound.of("user", user_id)
    return _user(row)


def user_by_email(tx: Tx, email: str) -> Row | None:
    return tx.one("SELECT * FROM users WHERE email = ?", [email.strip().lower()])


def create_session(tx: Tx, user_id: str, token_hash: str, now: float, ttl_s: float) -> float:
    expires_at = now + ttl_s
    tx.run("DELETE FROM sessions WHERE expires_at < ?", [now])
    tx.run("INSERT INTO sessions VALUES (?, ?, ?, ?)", [token_hash, user_id, now, expires_at])
    return expires_at


def session_user_id(tx: Tx, token_hash: str, now: float) -> str | None:
    value = tx.scalar(
        "SELECT user_id FROM sessions WHERE token_hash = ? AND expires_at > ?", [token_hash, now]
    )
    return None if value is None else str(value)


def delete_session(tx: Tx, token_hash: str) -> None:
    tx.run("DELETE FROM sessions WHERE token_hash = ?", [token_hash])


# Organizations and plans -------------------------------------------------------------------


def create_organization(
    tx: Tx, name: str, owner_user_id: str, plan: PlanLimits, now: float
) -> OrganizationOut:
    organization_id = new_id("org")
    tx.run("INSERT INTO organizations VALUES (?, ?, ?)", [organization_id, name, now])
    tx.run(
        "INSERT INTO organization_plans VALUES (?, ?, ?, ?, ?, ?, ?)",
        [organization_id, *plan.model_dump().values()],
    )
    add_member(tx, organization_id, owner_user_id, Role.OWNER, True, {}, now)
    return get_organization(tx, organization_id, Role.OWNER)


def get_organization(tx: Tx, organization_id: str, role: Role) -> OrganizationOut:
    row = tx.one("SELECT * FROM organizations WHERE organization_id = ?", [organization_id])
    if row is None:
        raise NotFound.of("organization", organization_id)
    return OrganizationOut(
        organization_id=organization_id,
        name=row["name"],
        role=role_name(role),
        created_at=_utc(row["created_at"]),
    )


def rename_organization(tx: Tx, organization_id: str, name: str) -> None:
    tx.run("UPDATE organizations SET name = ? WHERE organization_id = ?", [name, organization_id])


def organizations_of(tx: Tx, user_id: str) -> list[OrganizationOut]:
    rows = tx.all(
        "SELECT o.*, m.role FROM organizations o JOIN memberships m USING (organization_id) "
        "WHERE m.user_id = ? ORDER BY o.created_at, o.rowid",
        [user_id],
    )
    return [
        OrganizationOut(
            organization_id=row["organization_id"],
            name=row["name"],
            role=RoleName(row["role"]),
            created_at=_utc(row["created_at"]),
        )
        for row in rows
    ]


_ORG_TABLES = (
    "organization_plans",
    "memberships",
    "project_grants",
    "api_keys",
    "invitations",
    "projects",
    "registrars",
    "sip_accounts",
    "media_files",
    "tests",
    "run_queue",
    "organizations",
)


def delete_organization(tx: Tx, organization_id: str) -> None:
    """Delete the organization and every platform row it owns (the store keeps run results,
    unreachable through the API once their organization is gone)."""
    for table in _ORG_TABLES:
        tx.run(f"DELETE FROM {table} WHERE organization_id = ?", [organization_id])


def get_plan(tx: Tx, organization_id: str) -> PlanLimits:
    row = tx.one("SELECT * FROM organization_plans WHERE organization_id = ?", [organization_id])
    if row is None:
        raise NotFound.of("organization", organization_id)
    del row["organization_id"]
    return PlanLimits(**row)


def set_plan(tx: Tx, organization_id: str, plan: PlanLimits) -> None:
    tx.run("DELETE FROM organization_plans WHERE organization_id = ?", [organization_id])
    tx.run(
        "INSERT INTO organization_plans VALUES (?, ?, ?, ?, ?, ?, ?)",
        [organization_id, *plan.model_dump().values()],
    )


# Memberships -------------------------------------------------------------------------------


def membership(tx: Tx, organization_id: str, user_id: str) -> Membership | None:
    row = tx.one(
        "SELECT role, all_projects FROM memberships WHERE organization_id = ? AND user_id = ?",
        [organization_id, user_id],
    )
    if row is None:
        return None
    grants = tx.all(
        "SELECT project_id, role_override FROM project_grants "
        "WHERE organization_id = ? AND user_id = ?",
        [organization_id, user_id],
    )
    return Membership(
        organization_id=organization_id,
        user_id=user_id,
        role=Role.parse(row["role"]),
        all_projects=bool(row["all_projects"]),
        projects={
            g["project_id"]: None if g["role_override"] is None else Role.parse(g["role_override"])
            for g in grants
        },
    )


def add_member(
    tx: Tx,
    organization_id: str,
    user_id: str,
    role: Role,
    all_projects: bool,
    projects: dict[str, Role | None],
    now: float,
) -> None:
    if membership(tx, organization_id, user_id) is not None:
        raise Conflict("user_id: already a member of this organization")
    tx.run(
        "INSERT INTO memberships VALUES (?, ?, ?, ?, ?)",
        [organization_id, user_id, role.label, all_projects, now],
    )
    _set_grants(tx, organization_id, user_id, projects)


def _set_grants(
    tx: Tx, organization_id: str, user_id: str, projects: dict[str, Role | None]
) -> None:
    tx.run(
        "DELETE FROM project_grants WHERE organization_id = ? AND user_id = ?",
        [organization_id, user_id],
    )
    for project_id, override in projects.items():
        tx.run(
            "INSERT INTO project_grants VALUES (?, ?, ?, ?)",
            [organization_id, user_id, project_id, None if override is None else override.label],
        )


def update_member(
    tx: Tx,
    organization_id: str,
    user_id: str,
    role: Role | None,
    all_projects: bool | None,
    projects: dict[str, Role | None] | None,
) -> None:
    if role is not None:
        tx.run(
            "UPDATE memberships SET role = ? WHERE organization_id = ? AND user_id = ?",
            [role.label, organization_id, user_id],
        )
    if all_projects is not None:
        tx.run(
            "UPDATE memberships SET all_projects = ? WHERE organization_id = ? AND user_id = ?",
            [all_projects, organization_id, user_id],
        )
    if projects is not None:
        _set_grants(tx, organization_id, user_id, projects)


def remove_member(tx: Tx, organization_id: str, user_id: str) -> None:
    for table in ("memberships", "project_grants"):
        tx.run(
            f"DELETE FROM {table} WHERE organization_id = ? AND user_id = ?",
            [organization_id, user_id],
        )
    tx.run(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, epoch(now())) "
        "WHERE organization_id = ? AND user_id = ?",
        [organization_id, user_id],
    )


def count_owners(tx: Tx, organization_id: str) -> int:
    return int(
        tx.scalar(
            "SELECT count(*) FROM memberships WHERE organization_id = ? AND role = ?",
            [organization_id, Role.OWNER.label],
        )
    )


def _grants(projects: dict[str, Role | None]) -> list[ProjectGrant]:
    return [
        ProjectGrant(project_id=p, role=None if r is None else role_name(r))
        for p, r in sorted(projects.items())
    ]


def list_members(tx: Tx, organization_id: str) -> list[MemberOut]:
    rows = tx.all(
        "SELECT u.user_id, u.email, u.name FROM memberships m JOIN users u USING (user_id) "
        "WHERE m.organization_id = ? ORDER BY m.created_at, m.rowid",
        [organization_id],
    )
    members = []
    for row in rows:
        found = membership(tx, organization_id, row["user_id"])
        assert found is not None
        members.append(
            MemberOut(
                **row,
                role=role_name(found.role),
                all_projects=found.all_projects,
                projects=_grants(dict(found.projects)),
            )
        )
    return members


def get_member(tx: Tx, organization_id: str, user_id: str) -> MemberOut:
    for member in list_members(tx, organization_id):
        if member.user_id == user_id:
            return member
    raise NotFound.of("member", user_id)


# API keys ----------------------------------------------------------------------------------


def _api_key(row: Row) -> ApiKeyOut:
    return ApiKeyOut(
        api_key_id=row["api_key_id"],
        organization_id=row["organization_id"],
        user_id=row["user_id"],
        name=row["name"],
        prefix=row["prefix"],
        created_at=_utc(row["created_at"]),
        last_used_at=utc(row["last_used_at"]),
        revoked_at=utc(row["revoked_at"]),
    )


def create_api_key(
    tx: Tx, organization_id: str, user_id: str, name: str, prefix: str, key_hash: str, now: float
) -> ApiKeyOut:
    api_key_id = new_id("key")
    tx.run(
        "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
        [api_key_id, organization_id, user_id, name, prefix, key_hash, now],
    )
    return get_api_key(tx, organization_id, api_key_id)


def get_api_key(tx: Tx, organization_id: str, api_key_id: str) -> ApiKeyOut:
    row = tx.one(
        "SELECT * FROM api_keys WHERE organization_id = ? AND api_key_id = ?",
        [organization_id, api_key_id],
    )
    if row is None:
        raise NotFound.of("API key", api_key_id)
    return _api_key(row)


def list_api_keys(tx: Tx, organization_id: str, user_id: str | None) -> list[ApiKeyOut]:
    """The organization's keys; only ``user_id``'s when given."""
    sql = "SELECT * FROM api_keys WHERE organization_id = ?"
    params: list[str] = [organization_id]
    if user_id is not None:
        sql += " AND user_id = ?"
        params.append(user_id)
    return [_api_key(row) for row in tx.all(sql + " ORDER BY created_at, rowid", params)]


def revoke_api_key(tx: Tx, organization_id: str, api_key_id: str, now: float) -> ApiKeyOut:
    get_api_key(tx, organization_id, api_key_id)
    tx.run(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE api_key_id = ?",
        [now, api_key_id],
    )
    return get_api_key(tx, organization_id, api_key_id)


def api_key_by_hash(tx: Tx, key_hash: str, now: float) -> Row | None:
    """The live key with this hash (revoked keys: None); notes its use once a minute."""
    row = tx.one("SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", [key_hash])
    if row is not None and (row["last_used_at"] or 0.0) < now - 60.0:
        tx.run(
            "UPDATE api_keys SET last_used_at = ? WHERE api_key_id = ?", [now, row["api_key_id"]]
        )
    return row


# Invitations -------------------------------------------------------------------------------


def _invitation(row: Row) -> InvitationOut:
    projects = json.loads(row["projects_json"])
    return InvitationOut(
        invitation_id=row["invitation_id"],
        organization_id=row["organization_id"],
        email=row["email"],
        role=RoleName(row["role"]),
        all_projects=bool(row["all_projects"]),
        projects=[ProjectGrant(**p) for p in projects],
        created_at=_utc(row["created_at"]),
        expires_at=_utc(row["expires_at"]),
        accepted_at=utc(row["accepted_at"]),
    )


def create_invitation(
    tx: Tx,
    organization_id: str,
    token_hash: str,
    email: str | None,
    role: Role,
    all_projects: bool,
    projects: Sequence[ProjectGrant],
    created_by: str,
    now: float,
    ttl_s: float,
) -> InvitationOut:
    invitation_id = new_id("inv")
    tx.run(
        "INSERT INTO invitations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
        [
            invitation_id,
            organization_id,
            token_hash,
            None if email is None else email.strip().lower(),
            role.label,
            all_projects,
            json.dumps([p.model_dump(mode="json") for p in projects]),
            created_by,
            now,
            now + ttl_s,
        ],
    )
    row = tx.one("SELECT * FROM invitations WHERE invitation_id = ?", [invitation_id])
    assert row is not None
    return _invitation(row)


def list_invitations(tx: Tx, organization_id: str) -> list[InvitationOut]:
    rows = tx.all(
        "SELECT * FROM invitations WHERE organization_id = ? ORDER BY created_at, rowid",
        [organization_id],
    )
    return [_invitation(row) for row in rows]


def invitation_by_token_hash(tx: Tx, token_hash: str) -> InvitationOut | None:
    row = tx.one("SELECT * FROM invitations WHERE token_hash = ?", [token_hash])
    return None if row is None else _invitation(row)


def mark_invitation_accepted(tx: Tx, invitation_id: str, user_id: str, now: float) -> None:
    tx.run(
        "UPDATE invitations SET accepted_at = ?, accepted_by = ? WHERE invitation_id = ?",
        [now, user_id, invitation_id],
    )


def delete_invitation(tx: Tx, organization_id: str, invitation_id: str) -> None:
    if not tx.scalar(
        "SELECT 1 FROM invitations WHERE organization_id = ? AND invitation_id = ?",
        [organization_id, invitation_id],
    ):
        raise NotFound.of("invitation", invitation_id)
    tx.run("DELETE FROM invitations WHERE invitation_id = ?", [invitation_id])
