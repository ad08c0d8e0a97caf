"""Projects and their resources: registrars (with a registration check), SIP accounts (with
CSV import) and media files (transcoded at upload)."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from callmeter.models import BUILTIN, SipAccount
from callmeter.server import registration_check, repo_resources, repo_runs
from callmeter.server.access import Action
from callmeter.server.context import Caller, Platform
from callmeter.server.deps import CallerDep, PageDep, PlatformDep, envelope, paged
from callmeter.server.errors import Conflict, InvalidInput
from callmeter.server.payloads import (
    Envelope,
    ImportResult,
    MediaFileOut,
    ProjectIn,
    ProjectOut,
    ProjectUpdate,
    RegistrarIn,
    RegistrarOut,
    RegistrarUpdate,
    RegistrationCheckIn,
    RegistrationCheckOut,
    SipAccountIn,
    SipAccountOut,
    SipAccountUpdate,
)

__all__ = ["MAX_MEDIA_BYTES", "parse_accounts_csv", "router"]

router = APIRouter(tags=["projects"])

MAX_MEDIA_BYTES = 50 * 1024 * 1024
MAX_CSV_BYTES = 20 * 1024 * 1024


# Projects ----------------------------------------------------------------------------------


@router.get("/organizations/{organization_id}/projects", response_model=Envelope[list[ProjectOut]])
def list_projects(
    organization_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[ProjectOut]]:
    """The projects of the organization the caller sees."""
    with platform.db.transaction() as tx:
        caller.in_organization(tx, organization_id, Action.READ)
        sees = caller.visible_projects(tx, organization_id)
        projects = [
            p for p in repo_resources.list_projects(tx, organization_id) if sees(p.project_id)
        ]
    return paged(projects, paging)


@router.post(
    "/organizations/{organization_id}/projects",
    status_code=201,
    response_model=Envelope[ProjectOut],
)
def create_project(
    organization_id: str, body: ProjectIn, platform: PlatformDep, caller: CallerDep
) -> Envelope[ProjectOut]:
    with platform.db.transaction() as tx:
        caller.in_organization(tx, organization_id, Action.MANAGE_ORGANIZATION)
        project = repo_resources.create_project(
            tx, organization_id, body.name, body.description, body.slug, platform.clock()
        )
    return envelope(project)


@router.get("/projects/{project_id}", response_model=Envelope[ProjectOut])
def get_project(project_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[ProjectOut]:
    with platform.db.transaction() as tx:
        caller.in_project(tx, project_id, Action.READ)
        return envelope(repo_resources.get_project(tx, project_id))


@router.patch("/projects/{project_id}", response_model=Envelope[ProjectOut])
def update_project(
    project_id: str, body: ProjectUpdate, platform: PlatformDep, caller: CallerDep
) -> Envelope[ProjectOut]:
    """Rename or describe a project; its slug never changes."""
    with platform.db.transaction() as tx:
        caller.in_project(tx, project_id, Action.MANAGE_ORGANIZATION)
        current = repo_resources.get_project(tx, project_id)
        if body.slug is not None and body.slug != current.slug:
            raise InvalidInput(f"slug: a project's slug never changes (it is {current.slug!r})")
        return envelope(repo_resources.update_project(tx, project_id, body.name, body.description))


@router.delete("/projects/{project_id}", status_code=204)
def delete_project(project_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    """Delete a project and its registrars, accounts, media files and tests (runs stay)."""
    with platform.db.transaction() as tx:
        owner = caller.in_project(tx, project_id, Action.MANAGE_ORGANIZATION)
        active = repo_runs.active_runs(tx, owner.organization_id)
        if any(r.project_id == project_id for r in active):
            raise Conflict("the project has runs in progress: stop them first")
        repo_resources.delete_resource(tx, "project", project_id)
    return Response(status_code=204)


# Registrars --------------------------------------------------------------------------------


@router.get("/projects/{project_id}/registrars", response_model=Envelope[list[RegistrarOut]])
def list_registrars(
    project_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[RegistrarOut]]:
    with platform.db.transaction() as tx:
        caller.in_project(tx, project_id, Action.READ)
        return paged(repo_resources.list_registrars(tx, project_id), paging)


@router.post(
    "/projects/{project_id}/registrars", status_code=201, response_model=Envelope[RegistrarOut]
)
def create_registrar(
    project_id: str, body: RegistrarIn, platform: PlatformDep, caller: CallerDep
) -> Envelope[RegistrarOut]:
    with platform.db.transaction() as tx:
        owner = caller.in_project(tx, project_id, Action.EDIT_RESOURCES)
        fields = body.model_dump()
        fields["transport"] = body.transport.value
        return envelope(repo_resources.create_registrar(tx, owner, fields, platform.clock()))


@router.get("/registrars/{registrar_id}", response_model=Envelope[RegistrarOut])
def get_registrar(
    registrar_id: str, platform: PlatformDep, caller: CallerDep
) -> Envelope[RegistrarOut]:
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "registrar", registrar_id, Action.READ)
        return envelope(repo_resources.get_registrar(tx, registrar_id))


@router.patch("/registrars/{registrar_id}", response_model=Envelope[RegistrarOut])
def update_registrar(
    registrar_id: str, body: RegistrarUpdate, platform: PlatformDep, caller: CallerDep
) -> Envelope[RegistrarOut]:
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "registrar", registrar_id, Action.EDIT_RESOURCES)
        changes = body.model_dump(exclude_unset=True)
        for field in ("name", "domain", "transport", "tls_verify"):
            if field in changes and changes[field] is None:
                raise InvalidInput(f"{field}: cannot be null")
        if body.transport is not None:
            changes["transport"] = body.transport.value
        return envelope(repo_resources.update_registrar(tx, registrar_id, changes))


@router.delete("/registrars/{registrar_id}", status_code=204)
def delete_registrar(registrar_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    """Delete a registrar and its SIP accounts."""
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "registrar", registrar_id, Action.EDIT_RESOURCES)
        repo_resources.delete_resource(tx, "registrar", registrar_id)
    return Response(status_code=204)


@router.post(
    "/registrars/{registrar_id}/test-registration",
    response_model=Envelope[RegistrationCheckOut],
)
def registration_test(
    registrar_id: str, body: RegistrationCheckIn, platform: PlatformDep, caller: CallerDep
) -> Envelope[RegistrationCheckOut]:
    """Register one of the registrar's accounts for real (REGISTER with digest auth, up to
    10 s), then unregister; the answer, the time it took and the first line of every SIP
    message. A refusal or a timeout is ``ok: false``, not an error. Tester and above."""
    if registrar_id == BUILTIN:
        raise InvalidInput("the built-in registrar needs no test")
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "registrar", registrar_id, Action.RUN_TEST)
        registrar = repo_resources.get_registrar(tx, registrar_id)
        secret = repo_resources.account_for_check(tx, registrar_id, body.username)
    if secret is None:
        raise InvalidInput(
            f"username: registrar {registrar.name!r} has no account {body.username!r}"
        )
    target = registration_check.target_of(registrar)
    password, realm = secret
    return envelope(registration_check.run_check(target, body.username, password, realm))


# SIP accounts ------------------------------------------------------------------------------


@router.get("/registrars/{registrar_id}/accounts", response_model=Envelope[list[SipAccountOut]])
def list_accounts(
    registrar_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[SipAccountOut]]:
    """The registrar's accounts (passwords are never returned)."""
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "registrar", registrar_id, Action.READ)
        return paged(repo_resources.list_accounts(tx, registrar_id), paging)


@router.post(
    "/registrars/{registrar_id}/accounts",
    status_code=201,
    response_model=Envelope[SipAccountOut],
)
def create_account(
    registrar_id: str, body: SipAccountIn, platform: PlatformDep, caller: CallerDep
) -> Envelope[SipAccountOut]:
    """Add an account (or set the password and realm of an existing username)."""
    _check_account(body.username, body.password, body.realm, "")
    with platform.db.transaction() as tx:
        owner = caller.on_resource(tx, "registrar", registrar_id, Action.EDIT_RESOURCES)
        written, _ = repo_resources.upsert_accounts(
            tx, owner, registrar_id, [(body.username, body.password, body.realm)],
            platform.clock(),
        )  # fmt: skip
    return envelope(written[0])


def _check_account(username: str, password: str, realm: str | None, where: str) -> None:
    try:
        SipAccount(username=username, password=password, realm=realm)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where}{field}: {first['msg']}") from None


def parse_accounts_csv(text: str) -> list[tuple[str, str, str | None]]:
    """``username,password[,realm]`` rows (a header line first); errors name the line."""
    rows = [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text)), 1) if any(row)]
    if not rows:
        raise InvalidInput("csv: empty; expected a header username,password[,realm]")
    header = [c.strip().lower() for c in rows[0][1]]
    if header not in (["username", "password"], ["username", "password", "realm"]):
        raise InvalidInput(
            f"csv line {rows[0][0]}: the header must be username,password[,realm], "
            f"got {','.join(rows[0][1])!r}"
        )
    accounts: list[tuple[str, str, str | None]] = []
    seen: dict[str, int] = {}
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise InvalidInput(f"csv line {line}: expected {len(header)} fields, got {len(row)}")
        username, password = row[0].strip(), row[1]
        realm = row[2].strip() or None if len(row) > 2 else None
        _check_account(username, password, realm, f"csv line {line}: ")
        if username in seen:
            raise InvalidInput(
                f"csv line {line}: username {username!r} repeats line {seen[username]}"
            )
        seen[username] = line
        accounts.append((username, password, realm))
    return accounts


def _import(
    platform: Platform, caller: Caller, registrar_id: str, data: bytes
) -> Envelope[ImportResult]:
    with platform.db.transaction() as tx:
        owner = caller.on_resource(tx, "registrar", registrar_id, Action.EDIT_RESOURCES)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("csv: not UTF-8 text") from None
    accounts = parse_accounts_csv(text)
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "registrar", registrar_id, Action.EDIT_RESOURCES)
        written, replaced = repo_resources.upsert_accounts(
            tx, owner, registrar_id, accounts, platform.clock()
        )
    return envelope(ImportResult(imported=len(written) - replaced, replaced=replaced))


@router.post(
    "/registrars/{registrar_id}/accounts/import",
    response_model=Envelope[ImportResult],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def import_accounts(
    registrar_id: str, request: Request, platform: PlatformDep, caller: CallerDep
) -> Envelope[ImportResult]:
    """Bulk import from CSV (``username,password[,realm]``); existing usernames are updated.
    All or nothing: one bad line imports none and the error names the line."""
    data = await request.body()
    if len(data) > MAX_CSV_BYTES:
        raise InvalidInput(f"csv: larger than {MAX_CSV_BYTES} bytes")
    return await run_in_threadpool(_import, platform, caller, registrar_id, data)


@router.patch("/sip-accounts/{sip_account_id}", response_model=Envelope[SipAccountOut])
def update_account(
    sip_account_id: str, body: SipAccountUpdate, platform: PlatformDep, caller: CallerDep
) -> Envelope[SipAccountOut]:
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "SIP account", sip_account_id, Action.EDIT_RESOURCES)
        changes = body.model_dump(exclude_unset=True)
        if "password" in changes and changes["password"] is None:
            raise InvalidInput("password: cannot be null")
        return envelope(repo_resources.update_account(tx, sip_account_id, changes))


@router.delete("/sip-accounts/{sip_account_id}", status_code=204)
def delete_account(sip_account_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "SIP account", sip_account_id, Action.EDIT_RESOURCES)
        repo_resources.delete_resource(tx, "SIP account", sip_account_id)
    return Response(status_code=204)


# Media files -------------------------------------------------------------------------------


@router.get("/projects/{project_id}/media-files", response_model=Envelope[list[MediaFileOut]])
def list_media_files(
    project_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[MediaFileOut]]:
    with platform.db.transaction() as tx:
        caller.in_project(tx, project_id, Action.READ)
        return paged(repo_resources.list_media_files(tx, project_id, platform.media_dir), paging)


@router.post(
    "/projects/{project_id}/media-files", status_code=201, response_model=Envelope[MediaFileOut]
)
def upload_media_file(
    project_id: str,
    file: Annotated[UploadFile, File(description="a WAV (or any audio PyAV decodes)")],
    platform: PlatformDep,
    caller: CallerDep,
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> Envelope[MediaFileOut]:
    """Upload a media file; tests name it in ``groups[].media_file``. It is decoded and
    transcoded once, now, into every supported codec (``codecs`` in the answer), so runs send
    it without encoding; a file that does not decode as audio is refused (400)."""
    data = file.file.read(MAX_MEDIA_BYTES + 1)
    if len(data) > MAX_MEDIA_BYTES:
        raise InvalidInput(f"file: larger than {MAX_MEDIA_BYTES} bytes")
    if not data:
        raise InvalidInput("file: empty")
    media_name = (name or file.filename or "").strip()
    if not media_name or "/" in media_name or "\\" in media_name or media_name.startswith("."):
        raise InvalidInput("name: give a file name without a path")
    content_type = file.content_type or "application/octet-stream"
    with platform.db.transaction() as tx:  # refuse before the work, not after
        caller.in_project(tx, project_id, Action.EDIT_RESOURCES)
        repo_resources.check_media_name(tx, project_id, media_name)
    _transcode(platform.media_dir, media_name, data)  # outside the lock: seconds for long files
    with platform.db.transaction() as tx:
        owner = caller.in_project(tx, project_id, Action.EDIT_RESOURCES)
        media = repo_resources.create_media_file(
            tx, owner, media_name, content_type, data, platform.clock(), platform.media_dir
        )
    return envelope(media)


def _transcode(media_dir: Path, name: str, data: bytes) -> None:
    """Write the bytes where runs read them and pre-encode them beside (a content already
    there is reused); 400 naming the file and FFmpeg's reason when it is not audio."""
    from callmeter.media.source import MediaFileError, transcode_file  # loads PyAV

    path, written = repo_resources.write_media(
        media_dir, hashlib.sha256(data).hexdigest(), name, data
    )
    try:
        transcode_file(path)
    except MediaFileError as error:
        if written:
            path.unlink(missing_ok=True)
        raise InvalidInput(f"file: {name!r} {error.reason}") from None


@router.get("/media-files/{media_file_id}", response_model=Envelope[MediaFileOut])
def get_media_file(
    media_file_id: str, platform: PlatformDep, caller: CallerDep
) -> Envelope[MediaFileOut]:
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "media file", media_file_id, Action.READ)
        return envelope(repo_resources.get_media_file(tx, media_file_id, platform.media_dir))


@router.get(
    "/media-files/{media_file_id}/content",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_media_file(media_file_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "media file", media_file_id, Action.READ)
        media = repo_resources.get_media_file(tx, media_file_id)
        data = repo_resources.media_bytes(tx, media_file_id)
    return Response(content=data, media_type=media.content_type)


@router.delete("/media-files/{media_file_id}", status_code=204)
def delete_media_file(media_file_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "media file", media_file_id, Action.EDIT_RESOURCES)
        repo_resources.delete_resource(tx, "media file", media_file_id)
    return Response(status_code=204)
