"""Request and response bodies of the REST API (pydantic; they make the OpenAPI schema).

Responses are wrapped in :class:`Envelope` (``{"data": ..., "meta": {...}}``); lists carry
:class:`Page` meta. Secrets travel one way only: passwords of users and SIP accounts are
accepted and never returned; a session token, an API key or an invitation token is returned
once, by the request that creates it.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from callmeter.server.plans import PlanLimits

__all__ = [
    "AcceptInvitationIn",
    "ApiKeyCreated",
    "ApiKeyIn",
    "ApiKeyOut",
    "Envelope",
    "ImportResult",
    "InvitationCreated",
    "InvitationIn",
    "InvitationOut",
    "LoginIn",
    "MediaFileOut",
    "MemberOut",
    "MemberUpdate",
    "OrganizationIn",
    "OrganizationOut",
    "Page",
    "PlanLimits",
    "PlanUpdate",
    "ProjectGrant",
    "ProjectIn",
    "ProjectOut",
    "ProjectUpdate",
    "RegistrarIn",
    "RegistrarOut",
    "RegistrarUpdate",
    "RegistrationCheckIn",
    "RegistrationCheckOut",
    "RoleName",
    "RunIn",
    "RunOut",
    "SessionOut",
    "SipAccountIn",
    "SipAccountOut",
    "SipAccountUpdate",
    "TestIn",
    "TestOut",
    "TestUpdate",
    "TraceLine",
    "Transport",
    "UserOut",
    "WorkerOut",
]

T = TypeVar("T")

Name = Field(min_length=1, max_length=200)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoleName(enum.StrEnum):
    VIEWER = "Viewer"
    TESTER = "Tester"
    EDITOR = "Editor"
    ADMIN = "Admin"
    OWNER = "Owner"


class Transport(enum.StrEnum):
    UDP = "UDP"
    TCP = "TCP"
    TLS = "TLS"
    WSS = "WSS"
    AUTO = "AUTO"


class Page(BaseModel):
    total: int
    limit: int
    offset: int


class Envelope(BaseModel, Generic[T]):
    data: T
    meta: dict[str, Any] = Field(default_factory=dict)


# People ------------------------------------------------------------------------------------


class UserOut(BaseModel):
    user_id: str
    email: str
    name: str
    created_at: datetime


class LoginIn(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    token: str
    expires_at: datetime
    user: UserOut


class OrganizationIn(Strict):
    name: str = Name


class OrganizationOut(BaseModel):
    organization_id: str
    name: str
    role: RoleName
    created_at: datetime


class ProjectGrant(Strict):
    project_id: str = Field(min_length=1, max_length=100)
    role: RoleName | None = None


class MemberOut(BaseModel):
    user_id: str
    email: str
    name: str
    role: RoleName
    all_projects: bool
    projects: list[ProjectGrant]


class MemberUpdate(Strict):
    role: RoleName | None = None
    all_projects: bool | None = None
    projects: list[ProjectGrant] | None = None


class InvitationIn(Strict):
    email: str | None = Field(default=None, min_length=3, max_length=320)
    role: RoleName = RoleName.VIEWER
    all_projects: bool = True
    projects: list[ProjectGrant] = Field(default_factory=list)


class InvitationOut(BaseModel):
    invitation_id: str
    organization_id: str
    email: str | None
    role: RoleName
    all_projects: bool
    projects: list[ProjectGrant]
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None


class InvitationCreated(InvitationOut):
    token: str
    link: str


class AcceptInvitationIn(Strict):
    token: str = Field(min_length=1, max_length=200, description="from the invitation link")
    email: str | None = Field(default=None, min_length=3, max_length=320)
    name: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, max_length=1024)


class ApiKeyIn(Strict):
    name: str = Name


class ApiKeyOut(BaseModel):
    api_key_id: str
    organization_id: str
    user_id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str


class PlanUpdate(Strict):
    plan: str | None = Field(default=None, min_length=1, max_length=64)
    concurrent_endpoints: int | None = Field(default=None, ge=0, le=10_000_000)
    max_test_duration_s: int | None = Field(default=None, ge=0, le=30 * 24 * 3600)
    probe_count: int | None = Field(default=None, ge=0, le=1_000_000)
    worker_capacity: int | None = Field(default=None, ge=0, le=10_000_000)
    concurrent_runs: int | None = Field(default=None, ge=0, le=100_000)


# Resources ---------------------------------------------------------------------------------


class ProjectIn(Strict):
    name: str = Name
    description: str = Field(default="", max_length=2000)
    slug: str | None = Field(default=None, pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class ProjectUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    slug: str | None = Field(default=None, description="never changes; accepted if unchanged")


class ProjectOut(BaseModel):
    project_id: str
    organization_id: str
    name: str
    slug: str
    description: str
    created_at: datetime


class RegistrarIn(Strict):
    name: str = Name
    domain: str = Field(min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    transport: Transport = Transport.UDP
    outbound_proxy: str | None = Field(default=None, min_length=1, max_length=255)
    tls_verify: bool = True


class RegistrarUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    domain: str | None = Field(default=None, min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    transport: Transport | None = None
    outbound_proxy: str | None = Field(default=None, max_length=255)
    tls_verify: bool | None = None


class RegistrarOut(BaseModel):
    registrar_id: str
    project_id: str
    name: str
    domain: str
    port: int | None
    transport: Transport
    outbound_proxy: str | None
    tls_verify: bool
    accounts: int
    created_at: datetime


# Limits as in callmeter.models.SipAccount, so that a stored account always validates there
# (a validation message may quote the value: a password must never reach one).
class SipAccountIn(Strict):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=256)
    realm: str | None = Field(default=None, min_length=1, max_length=256)


class SipAccountUpdate(Strict):
    password: str | None = Field(default=None, min_length=1, max_length=256)
    realm: str | None = Field(default=None, min_length=1, max_length=256)


class SipAccountOut(BaseModel):
    """A SIP account as the API shows it: the password is write-only."""

    sip_account_id: str
    registrar_id: str
    username: str
    realm: str | None
    created_at: datetime


class ImportResult(BaseModel):
    imported: int
    replaced: int


class MediaFileOut(BaseModel):
    media_file_id: str
    project_id: str
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime
    duration_s: float | None = Field(
        default=None, description="length of the audio; null until it is transcoded"
    )
    codecs: list[str] = Field(
        default_factory=list,
        description="codecs it is transcoded into, each for every ptime the codec allows "
        "(runs send these without encoding)",
    )


class RegistrationCheckIn(Strict):
    username: str = Field(min_length=1, max_length=128, description="an account of the registrar")


class TraceLine(BaseModel):
    """One SIP message of a registration check, as a ladder line: its first line only."""

    at_ms: float = Field(description="since the first REGISTER was sent")
    direction: str = Field(description="out (sent by the server) or in (received)")
    peer: str = Field(description="host:port it went to or came from")
    line: str = Field(description="request line or status line")


class RegistrationCheckOut(BaseModel):
    """The answer to one REGISTER with digest authentication (then unregistered)."""

    ok: bool
    status: int | None = Field(description="final SIP status; null when none came")
    reason: str
    elapsed_ms: float | None = Field(description="REGISTER to final answer (challenge included)")
    trace: list[TraceLine]


class TestIn(Strict):
    name: str = Name
    description: str = Field(default="", max_length=2000)
    definition: dict[str, Any]


class TestUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    definition: dict[str, Any] | None = None


class TestOut(BaseModel):
    test_id: str
    project_id: str
    name: str
    description: str
    definition: dict[str, Any]
    endpoints: int
    created_at: datetime
    updated_at: datetime


class RunIn(Strict):
    """Trigger options (none needed: the test says everything)."""

    note: str | None = Field(default=None, max_length=500)


class RunOut(BaseModel):
    run_id: str
    project_id: str | None
    test_id: str | None
    test_name: str
    status: str
    reason: str | None
    endpoints: int
    triggered_by: str | None
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class WorkerOut(BaseModel):
    name: str
    region: str
    capacity: int
    allocated: int
    status: str
    last_heartbeat: datetime | None
