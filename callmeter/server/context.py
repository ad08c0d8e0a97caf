"""What a request handler works with: the :class:`Platform` (database, store, queue, workers,
clock) and the :class:`Caller` (who is asking), with the access checks that join them.

Every resource lookup goes through :meth:`Caller.in_organization`, :meth:`Caller.in_project`
or :meth:`Caller.on_resource`: they answer 404 for what the caller cannot see and 403 for what
their role does not allow (see :mod:`callmeter.server.access`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callmeter.server import repo_people, repo_resources
from callmeter.server.access import Action, Membership, require
from callmeter.server.db import Database, Tx
from callmeter.server.errors import NotFound
from callmeter.server.repo_resources import Owner
from callmeter.server.workers import WorkerSource

if TYPE_CHECKING:
    from callmeter.server.queue import RunQueue

__all__ = ["Caller", "Platform"]


@dataclass(slots=True)
class Platform:
    """The server's long-lived parts, shared by every request."""

    db: Database
    store: Any  # callmeter.store.Store (typed loosely: the server also runs on a bare Database)
    queue: RunQueue
    workers: WorkerSource
    clock: Callable[[], float]
    media_dir: Path
    public_url: str


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user, and the organization their API key is bound to (if any)."""

    user_id: str
    email: str
    api_key_id: str | None = None
    api_key_organization_id: str | None = None

    @property
    def label(self) -> str:
        return self.email if self.api_key_id is None else f"{self.email} (API key)"

    def membership(self, tx: Tx, organization_id: str) -> Membership:
        """The caller's membership; 404 when there is none or the key is for another one."""
        if self.api_key_organization_id not in (None, organization_id):
            raise NotFound.of("organization", organization_id)
        found = repo_people.membership(tx, organization_id, self.user_id)
        if found is None:
            raise NotFound.of("organization", organization_id)
        return found

    def in_organization(self, tx: Tx, organization_id: str, action: Action) -> Membership:
        """Check an organization-level action (members, plan, keys, projects, workers)."""
        member = self.membership(tx, organization_id)
        require(member.role, action)
        return member

    def in_project(self, tx: Tx, project_id: str, action: Action) -> Owner:
        """Check an action in a project: visible (else 404), allowed by the project role."""
        return self.on_resource(tx, "project", project_id, action)

    def on_resource(
        self,
        tx: Tx,
        kind: str,
        resource_id: str,
        action: Action,
        owner_of: Callable[[Tx, str, str], Owner] = repo_resources.owner_of,
    ) -> Owner:
        """Check an action on a project resource (``kind`` as in ``repo_resources.KINDS``, or
        as the ``owner_of`` given knows them): 404 for what the caller cannot see, 403 for
        what their project role does not allow."""
        owner = owner_of(tx, kind, resource_id)
        try:
            member = self.membership(tx, owner.organization_id)
        except NotFound:
            raise NotFound.of(kind, resource_id) from None
        role = member.project_role(owner.project_id)
        if role is None:
            raise NotFound.of(kind, resource_id)
        require(role, action)
        return owner

    def visible_projects(self, tx: Tx, organization_id: str) -> Callable[[str], bool]:
        member = self.membership(tx, organization_id)
        return member.sees_project
