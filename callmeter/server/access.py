"""Who may do what: roles, actions, memberships and the project a member sees.

Theory of operation. A user belongs to organizations through a :class:`Membership` carrying
one :class:`Role`. Each role includes the one below it (Viewer < Tester < Editor < Admin <
Owner). A membership sees either every project of the organization or chosen ones; for a
chosen project it may carry a role override (higher or lower than the organization role).
Every request is checked in two steps:

1. visibility: the resource must belong to an organization the caller is a member of, and to a
   project the membership sees; otherwise the answer is 404 (``NotFound``), exactly as for a
   resource that does not exist, so another organization's data never leaks its existence;
2. permission: the role that applies (the project's role for project resources, the
   organization role otherwise) must reach ``REQUIRED_ROLE[action]``; otherwise 403.

An API key acts as its creator's membership in the key's organization, looked up live: a
demoted creator demotes their keys, a removed creator disables them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from callmeter.server.errors import Forbidden

__all__ = [
    "REQUIRED_ROLE",
    "Action",
    "Membership",
    "Role",
    "require",
]


class Role(enum.IntEnum):
    """Organization and project roles; a larger value includes every smaller one."""

    VIEWER = 1
    TESTER = 2
    EDITOR = 3
    ADMIN = 4
    OWNER = 5

    @property
    def label(self) -> str:
        return self.name.capitalize()

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            choices = ", ".join(r.label for r in cls)
            raise ValueError(f"unknown role {name!r}; one of {choices}") from None


class Action(enum.Enum):
    """What a request does; the RBAC matrix is ``REQUIRED_ROLE``."""

    READ = "read"  # anything in scope: projects, tests, runs, results, members, workers
    EXPORT = "export"  # run results as CSV / Parquet
    RUN_TEST = "run_test"
    STOP_RUN = "stop_run"
    TRIGGER_PROBE = "trigger_probe"
    EDIT_RESOURCES = "edit_resources"  # tests, registrars, SIP accounts, media files, probes
    MANAGE_API_KEYS = "manage_api_keys"
    MANAGE_MEMBERS = "manage_members"  # members, invitations
    MANAGE_ORGANIZATION = "manage_organization"  # settings, projects
    EDIT_PLAN = "edit_plan"
    DELETE_ORGANIZATION = "delete_organization"


REQUIRED_ROLE: Mapping[Action, Role] = {
    Action.READ: Role.VIEWER,
    Action.EXPORT: Role.VIEWER,
    Action.RUN_TEST: Role.TESTER,
    Action.STOP_RUN: Role.TESTER,
    Action.TRIGGER_PROBE: Role.TESTER,
    Action.EDIT_RESOURCES: Role.EDITOR,
    Action.MANAGE_API_KEYS: Role.EDITOR,
    Action.MANAGE_MEMBERS: Role.ADMIN,
    Action.MANAGE_ORGANIZATION: Role.ADMIN,
    Action.EDIT_PLAN: Role.OWNER,
    Action.DELETE_ORGANIZATION: Role.OWNER,
}


@dataclass(frozen=True, slots=True)
class Membership:
    """One user's place in one organization.

    ``projects`` maps each chosen project to its role override (None: the organization role).
    With ``all_projects`` every project is visible and ``projects`` holds only overrides."""

    organization_id: str
    user_id: str
    role: Role
    all_projects: bool = True
    projects: Mapping[str, Role | None] = field(default_factory=dict)

    def project_role(self, project_id: str) -> Role | None:
        """The role that applies in ``project_id``, or None when the project is not visible."""
        if project_id in self.projects:
            override = self.projects[project_id]
            return self.role if override is None else override
        return self.role if self.all_projects else None

    def sees_project(self, project_id: str) -> bool:
        return self.project_role(project_id) is not None


def require(role: Role, action: Action) -> None:
    """Raise :class:`Forbidden` unless ``role`` may perform ``action``."""
    needed = REQUIRED_ROLE[action]
    if role < needed:
        raise Forbidden(
            f"{action.value.replace('_', ' ')} needs the {needed.label} role; you are {role.label}"
        )
