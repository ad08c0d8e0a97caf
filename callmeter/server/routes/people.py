"""Sessions, the current user, and invitations accepted by link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from callmeter.server import repo_people
from callmeter.server.access import Role
from callmeter.server.auth import (
    SESSION_TTL_S,
    hash_password,
    hash_token,
    new_session_token,
    verify_password,
)
from callmeter.server.db import Tx
from callmeter.server.deps import CallerDep, PlatformDep, envelope, get_caller
from callmeter.server.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from callmeter.server.payloads import (
    AcceptInvitationIn,
    Envelope,
    LoginIn,
    OrganizationOut,
    SessionOut,
    UserOut,
)

__all__ = ["router"]

router = APIRouter(tags=["people"])
_optional_bearer = HTTPBearer(auto_error=False)


@router.post("/auth/login", response_model=Envelope[SessionOut])
def login(body: LoginIn, platform: PlatformDep) -> Envelope[SessionOut]:
    """Exchange email and password for a session token (``Authorization: Bearer``)."""
    now = platform.clock()
    with platform.db.transaction() as tx:
        row = repo_people.user_by_email(tx, body.email)
        if row is None or not verify_password(row["password_hash"], body.password):
            raise Unauthenticated("wrong email or password")
        token = new_session_token()
        expires_at = repo_people.create_session(
            tx, row["user_id"], hash_token(token), now, SESSION_TTL_S
        )
        user = repo_people.get_user(tx, row["user_id"])
    expires = repo_people.utc(expires_at)
    assert expires is not None
    return envelope(SessionOut(token=token, expires_at=expires, user=user))


@router.post("/auth/logout", status_code=204)
def logout(
    platform: PlatformDep,
    caller: CallerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_optional_bearer)],
) -> Response:
    """End this session (an API key stays valid: revoke it instead)."""
    if credentials is not None and caller.api_key_id is None:
        with platform.db.transaction() as tx:
            repo_people.delete_session(tx, hash_token(credentials.credentials))
    return Response(status_code=204)


@router.get("/me", response_model=Envelope[UserOut])
def me(platform: PlatformDep, caller: CallerDep) -> Envelope[UserOut]:
    with platform.db.transaction() as tx:
        user = repo_people.get_user(tx, caller.user_id)
    return envelope(user, api_key_id=caller.api_key_id)


@router.post("/invitations/accept", response_model=Envelope[OrganizationOut])
def accept_invitation(
    body: AcceptInvitationIn,
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_optional_bearer)],
) -> Envelope[OrganizationOut]:
    """Join the inviting organization: as the logged-in user, or as a new user created from
    ``email``, ``name`` and ``password`` (no login needed: the token is the credential). The
    token travels in the body, never in a URL, so no access log ever holds it."""
    user_id = (
        get_caller(platform, credentials).user_id
        if credentials is not None and credentials.credentials
        else None
    )
    now = platform.clock()
    with platform.db.transaction() as tx:
        invitation = repo_people.invitation_by_token_hash(tx, hash_token(body.token))
        if invitation is None or invitation.expires_at.timestamp() < now:
            raise NotFound("no such invitation, or it expired: ask for a new link")
        if invitation.accepted_at is not None:
            raise Conflict("this invitation was already accepted")
        if user_id is None:
            user_id = _new_user(tx, body, invitation.email, now)
        if repo_people.membership(tx, invitation.organization_id, user_id) is not None:
            raise Conflict("you are already a member of this organization")
        role = Role.parse(invitation.role.value)
        projects = {
            g.project_id: None if g.role is None else Role.parse(g.role.value)
            for g in invitation.projects
        }
        repo_people.add_member(
            tx, invitation.organization_id, user_id, role, invitation.all_projects, projects, now
        )
        repo_people.mark_invitation_accepted(tx, invitation.invitation_id, user_id, now)
        organization = repo_people.get_organization(tx, invitation.organization_id, role)
    return envelope(organization)


def _new_user(tx: Tx, body: AcceptInvitationIn, invited: str | None, now: float) -> str:
    email = body.email or invited
    if email is None:
        raise InvalidInput("email: required to create your account")
    if invited is not None and email.strip().lower() != invited:
        raise InvalidInput(f"email: this invitation is for {invited}")
    if body.password is None:
        raise InvalidInput("password: required to create your account")
    try:
        password_hash = hash_password(body.password)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    return repo_people.create_user(tx, email, body.name or "", password_hash, now).user_id
