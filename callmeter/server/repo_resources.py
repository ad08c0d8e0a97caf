"""Platform storage of project resources: projects, registrars, SIP accounts, media files and
tests. Plain functions over a :class:`~callmeter.server.db.Tx`; permissions are checked by the
routes (see :mod:`callmeter.server.access`) before these are called.

SIP account passwords are stored as given (a load generator has to answer digest challenges
with them) and never leave this module except through :func:`accounts_for_run` and
:func:`account_for_check` (the registration check).

Media files: the bytes live in the database; :func:`write_media` puts a copy where runs read
it (``<media_dir>/<sha256><ext>``) and the pre-encoded files of
:func:`callmeter.media.source.transcode_file` sit beside that copy, which is where the
duration and codecs of :class:`MediaFileOut` are read from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from callmeter.server.db import Row, Tx, new_id
from callmeter.server.errors import Conflict, NotFound
from callmeter.server.payloads import (
    MediaFileOut,
    ProjectOut,
    RegistrarOut,
    SipAccountOut,
    TestOut,
    Transport,
)

__all__ = [
    "KINDS",
    "MEDIA_SUFFIXES",
    "Owner",
    "account_for_check",
    "accounts_for_run",
    "check_media_name",
    "create_media_file",
    "create_project",
    "create_registrar",
    "create_test",
    "delete_resource",
    "get_account",
    "get_media_file",
    "get_project",
    "get_registrar",
    "get_test",
    "list_accounts",
    "list_media_files",
    "list_projects",
    "list_registrars",
    "list_tests",
    "materialize_media",
    "media_bytes",
    "media_path",
    "owner_of",
    "registrar_by_name",
    "slugify",
    "update_account",
    "update_project",
    "update_registrar",
    "update_test",
    "upsert_accounts",
    "write_media",
]

log = logging.getLogger(__name__)


class Owner(NamedTuple):
    """Where a resource lives."""

    organization_id: str
    project_id: str


# kind -> (table, id column); the kinds are the API's words.
KINDS: Mapping[str, tuple[str, str]] = {
    "project": ("projects", "project_id"),
    "registrar": ("registrars", "registrar_id"),
    "SIP account": ("sip_accounts", "sip_account_id"),
    "media file": ("media_files", "media_file_id"),
    "test": ("tests", "test_id"),
    "run": ("runs", "run_id"),  # the store's table: runs carry their organization and project
}


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def owner_of(tx: Tx, kind: str, resource_id: str) -> Owner:
    """The organization and project of a resource; 404 when there is none."""
    table, column = KINDS[kind]
    row = tx.one(
        f"SELECT organization_id, project_id FROM {table} WHERE {column} = ?", [resource_id]
    )
    if row is None or row["organization_id"] is None or row["project_id"] is None:
        raise NotFound.of(kind, resource_id)
    return Owner(row["organization_id"], row["project_id"])


def _unique(tx: Tx, table: str, project_id: str, name: str, skip_id: str | None = None) -> None:
    column = KINDS_BY_TABLE[table]
    row = tx.one(
        f"SELECT {column} FROM {table} WHERE project_id = ? AND name = ?", [project_id, name]
    )
    if row is not None and row[column] != skip_id:
        raise Conflict(f"name: {name!r} is already taken in this project")


KINDS_BY_TABLE = {table: column for table, column in KINDS.values()}


# Projects ----------------------------------------------------------------------------------


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].strip("-")
    return slug or "project"


def _project(row: Row) -> ProjectOut:
    return ProjectOut(
        project_id=row["project_id"],
        organization_id=row["organization_id"],
        name=row["name"],
        slug=row["slug"],
        description=row["description"],
        created_at=_utc(row["created_at"]),
    )


def create_project(
    tx: Tx, organization_id: str, name: str, description: str, slug: str | None, now: float
) -> ProjectOut:
    taken = {
        r["slug"]
        for r in tx.all("SELECT slug FROM projects WHERE organization_id = ?", [organization_id])
    }
    if slug is not None:
        if slug in taken:
            raise Conflict(f"slug: {slug!r} is already taken in this organization")
    else:
        base = slug = slugify(name)
        n = 1
        while slug in taken:
            n += 1
            slug = f"{base}-{n}"
    project_id = new_id("prj")
    tx.run(
        "INSERT INTO projects VALUES (?, ?, ?, ?, ?, ?)",
        [project_id, organization_id, name, slug, description, now],
    )
    return get_project(tx, project_id)


def get_project(tx: Tx, project_id: str) -> ProjectOut:
    row = tx.one("SELECT * FROM projects WHERE project_id = ?", [project_id])
    if row is None:
        raise NotFound.of("project", project_id)
    return _project(row)


def list_projects(tx: Tx, organization_id: str) -> list[ProjectOut]:
    rows = tx.all(
        "SELECT * FROM projects WHERE organization_id = ? ORDER BY created_at, rowid",
        [organization_id],
    )
    return [_project(row) for row in rows]


def update_project(
    tx: Tx, project_id: str, name: str | None, description: str | None
) -> ProjectOut:
    if name is not None:
        tx.run("UPDATE projects SET name = ? WHERE project_id = ?", [name, project_id])
    if description is not None:
        tx.run(
            "UPDATE projects SET description = ? WHERE project_id = ?", [description, project_id]
        )
    return get_project(tx, project_id)


_PROJECT_CHILDREN = ("registrars", "sip_accounts", "media_files", "tests", "project_grants")


def delete_resource(tx: Tx, kind: str, resource_id: str) -> None:
    """Delete a resource and what hangs off it (a project's resources, a registrar's accounts)."""
    table, column = KINDS[kind]
    owner_of(tx, kind, resource_id)
    if kind == "project":
        for child in _PROJECT_CHILDREN:
            tx.run(f"DELETE FROM {child} WHERE project_id = ?", [resource_id])
    elif kind == "registrar":
        tx.run("DELETE FROM sip_accounts WHERE registrar_id = ?", [resource_id])
    tx.run(f"DELETE FROM {table} WHERE {column} = ?", [resource_id])


# Registrars and SIP accounts ---------------------------------------------------------------


def _registrar(row: Row) -> RegistrarOut:
    return RegistrarOut(
        registrar_id=row["registrar_id"],
        project_id=row["project_id"],
        name=row["name"],
        domain=row["domain"],
        port=row["port"],
        transport=Transport(row["transport"]),
        outbound_proxy=row["outbound_proxy"],
        tls_verify=bool(row["tls_verify"]),
        accounts=int(row["accounts"]),
        created_at=_utc(row["created_at"]),
    )


_REGISTRAR_SELECT = (
    "SELECT r.*, (SELECT count(*) FROM sip_accounts a WHERE a.registrar_id = r.registrar_id) "
    "AS accounts FROM registrars r"
)


def create_registrar(tx: Tx, owner: Owner, fields: Mapping[str, Any], now: float) -> RegistrarOut:
    _unique(tx, "registrars", owner.project_id, fields["name"])
    registrar_id = new_id("reg")
    tx.run(
        "INSERT INTO registrars VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            registrar_id,
            owner.organization_id,
            owner.project_id,
            fields["name"],
            fields["domain"],
            fields.get("port"),
            str(fields.get("transport", "UDP")),
            fields.get("outbound_proxy"),
            fields.get("tls_verify", True),
            now,
        ],
    )
    return get_registrar(tx, registrar_id)


def get_registrar(tx: Tx, registrar_id: str) -> RegistrarOut:
    row = tx.one(f"{_REGISTRAR_SELECT} WHERE r.registrar_id = ?", [registrar_id])
    if row is None:
        raise NotFound.of("registrar", registrar_id)
    return _registrar(row)


def registrar_by_name(tx: Tx, project_id: str, name: str) -> RegistrarOut | None:
    row = tx.one(f"{_REGISTRAR_SELECT} WHERE r.project_id = ? AND r.name = ?", [project_id, name])
    return None if row is None else _registrar(row)


def list_registrars(tx: Tx, project_id: str) -> list[RegistrarOut]:
    rows = tx.all(
        f"{_REGISTRAR_SELECT} WHERE r.project_id = ? ORDER BY r.created_at, r.rowid",
        [project_id],
    )
    return [_registrar(row) for row in rows]


_REGISTRAR_COLUMNS = ("name", "domain", "port", "transport", "outbound_proxy", "tls_verify")


def update_registrar(tx: Tx, registrar_id: str, changes: Mapping[str, Any]) -> RegistrarOut:
    current = get_registrar(tx, registrar_id)
    if "name" in changes and changes["name"] is not None:
        _unique(tx, "registrars", current.project_id, changes["name"], skip_id=registrar_id)
    for column in _REGISTRAR_COLUMNS:
        if column in changes:
            value = changes[column]
            if column == "transport" and value is not None:
                value = str(value)
            tx.run(
                f"UPDATE registrars SET {column} = ? WHERE registrar_id = ?", [value, registrar_id]
            )
    return get_registrar(tx, registrar_id)


def _account(row: Row) -> SipAccountOut:
    return SipAccountOut(
        sip_account_id=row["sip_account_id"],
        registrar_id=row["registrar_id"],
        username=row["username"],
        realm=row["realm"],
        created_at=_utc(row["created_at"]),
    )


def upsert_accounts(
    tx: Tx, owner: Owner, registrar_id: str, accounts: Iterable[tuple[str, str, str | None]],
    now: float,
) -> tuple[list[SipAccountOut], int]:  # fmt: skip
    """Add (username, password, realm) accounts; an existing username gets the new password
    and realm. Returns the accounts written and how many replaced existing ones."""
    written: list[str] = []
    replaced = 0
    for username, password, realm in accounts:
        found = tx.scalar(
            "SELECT sip_account_id FROM sip_accounts WHERE registrar_id = ? AND username = ?",
            [registrar_id, username],
        )
        if found is not None:
            replaced += 1
            tx.run(
                "UPDATE sip_accounts SET password = ?, realm = ? WHERE sip_account_id = ?",
                [password, realm, found],
            )
            written.append(str(found))
            continue
        account_id = new_id("acc")
        tx.run(
            "INSERT INTO sip_accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                account_id,
                owner.organization_id,
                owner.project_id,
                registrar_id,
                username,
                password,
                realm,
                now,
            ],
        )
        written.append(account_id)
    return [get_account(tx, account_id) for account_id in written], replaced


def get_account(tx: Tx, sip_account_id: str) -> SipAccountOut:
    row = tx.one("SELECT * FROM sip_accounts WHERE sip_account_id = ?", [sip_account_id])
    if row is None:
        raise NotFound.of("SIP account", sip_account_id)
    return _account(row)


def update_account(tx: Tx, sip_account_id: str, changes: Mapping[str, Any]) -> SipAccountOut:
    for column in ("password", "realm"):
        if column in changes:
            tx.run(
                f"UPDATE sip_accounts SET {column} = ? WHERE sip_account_id = ?",
                [changes[column], sip_account_id],
            )
    return get_account(tx, sip_account_id)


def list_accounts(tx: Tx, registrar_id: str) -> list[SipAccountOut]:
    rows = tx.all(
        "SELECT * FROM sip_accounts WHERE registrar_id = ? ORDER BY username", [registrar_id]
    )
    return [_account(row) for row in rows]


def accounts_for_run(tx: Tx, registrar_id: str) -> list[tuple[str, str, str | None]]:
    """(username, password, realm) of a registrar's accounts: for the runner only."""
    rows = tx.all(
        "SELECT username, password, realm FROM sip_accounts WHERE registrar_id = ? "
        "ORDER BY username",
        [registrar_id],
    )
    return [(r["username"], r["password"], r["realm"]) for r in rows]


def account_for_check(tx: Tx, registrar_id: str, username: str) -> tuple[str, str | None] | None:
    """(password, realm) of one account, for the registration check only; None: no such."""
    row = tx.one(
        "SELECT password, realm FROM sip_accounts WHERE registrar_id = ? AND username = ?",
        [registrar_id, username],
    )
    return None if row is None else (row["password"], row["realm"])


# Media files -------------------------------------------------------------------------------

MEDIA_SUFFIXES = (".wav", ".mp3", ".ogg", ".flac", ".opus", ".m4a", ".raw", ".pcm")


def media_path(media_dir: Path, sha256: str, name: str) -> Path:
    """Where runs read a media file: ``<sha256><ext>`` in the media directory, written once
    per content (the bytes stay in the database); its pre-encoded files sit beside it."""
    suffix = Path(name).suffix.lower()
    return media_dir / f"{sha256}{suffix if suffix in MEDIA_SUFFIXES else ''}"


def write_media(media_dir: Path, sha256: str, name: str, data: bytes) -> tuple[Path, bool]:
    """Write a media file's bytes where runs read them (unless there already); returns the
    path and whether this call wrote it."""
    path = media_path(media_dir, sha256, name)
    if path.exists():
        return path, False
    media_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.partial")
    partial.write_bytes(data)
    partial.replace(path)
    return path, True


def materialize_media(tx: Tx, media_dir: Path, media_file_id: str) -> Path:
    """The path runs use for a stored media file, written and transcoded if it is not there
    yet (a media directory lost or made before uploads were transcoded). A file that does
    not transcode is still returned: the run reports what is wrong with it."""
    from callmeter.media.source import SUPPORTED_CODECS, pre_encoded_headers, transcode_file

    row = tx.one("SELECT name, sha256 FROM media_files WHERE media_file_id = ?", [media_file_id])
    if row is None:
        raise NotFound.of("media file", media_file_id)
    path = media_path(media_dir, row["sha256"], row["name"])
    if not path.exists():
        write_media(media_dir, row["sha256"], row["name"], media_bytes(tx, media_file_id))
    if len(pre_encoded_headers(path, row["sha256"])) < len(SUPPORTED_CODECS):
        try:
            transcode_file(path)
        except (OSError, ValueError) as error:
            log.warning("media file %s (%s) not transcoded: %s", media_file_id, path, error)
    return path


def _media(row: Row, media_dir: Path | None) -> MediaFileOut:
    media = MediaFileOut(
        media_file_id=row["media_file_id"],
        project_id=row["project_id"],
        name=row["name"],
        content_type=row["content_type"],
        size_bytes=int(row["size_bytes"]),
        sha256=row["sha256"],
        created_at=_utc(row["created_at"]),
    )
    if media_dir is not None:
        from callmeter.media.source import pre_encoded_headers

        headers = pre_encoded_headers(media_path(media_dir, media.sha256, media.name), media.sha256)
        if headers:
            media.duration_s = round(headers[0].duration_s, 3)
            media.codecs = [h.codec for h in headers]
    return media


_MEDIA_COLUMNS = "media_file_id, project_id, name, content_type, size_bytes, sha256, created_at"


def check_media_name(tx: Tx, project_id: str, name: str) -> None:
    """Conflict when the project has a media file of that name already."""
    _unique(tx, "media_files", project_id, name)


def create_media_file(
    tx: Tx, owner: Owner, name: str, content_type: str, data: bytes, now: float,
    media_dir: Path | None = None,
) -> MediaFileOut:  # fmt: skip
    _unique(tx, "media_files", owner.project_id, name)
    media_file_id = new_id("med")
    tx.run(
        "INSERT INTO media_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            media_file_id,
            owner.organization_id,
            owner.project_id,
            name,
            content_type,
            len(data),
            hashlib.sha256(data).hexdigest(),
            data,
            now,
        ],
    )
    return get_media_file(tx, media_file_id, media_dir)


def get_media_file(tx: Tx, media_file_id: str, media_dir: Path | None = None) -> MediaFileOut:
    """A media file; with ``media_dir``, also its duration and the codecs it is
    transcoded into (read from the pre-encoded files)."""
    row = tx.one(
        f"SELECT {_MEDIA_COLUMNS} FROM media_files WHERE media_file_id = ?", [media_file_id]
    )
    if row is None:
        raise NotFound.of("media file", media_file_id)
    return _media(row, media_dir)


def media_bytes(tx: Tx, media_file_id: str) -> bytes:
    value = tx.scalar("SELECT data FROM media_files WHERE media_file_id = ?", [media_file_id])
    if value is None:
        raise NotFound.of("media file", media_file_id)
    return bytes(value)


def list_media_files(tx: Tx, project_id: str, media_dir: Path | None = None) -> list[MediaFileOut]:
    rows = tx.all(
        f"SELECT {_MEDIA_COLUMNS} FROM media_files WHERE project_id = ? ORDER BY created_at, rowid",
        [project_id],
    )
    return [_media(row, media_dir) for row in rows]


# Tests -------------------------------------------------------------------------------------


def _test(row: Row, endpoints: int) -> TestOut:
    return TestOut(
        test_id=row["test_id"],
        project_id=row["project_id"],
        name=row["name"],
        description=row["description"],
        definition=json.loads(row["definition_json"]),
        endpoints=endpoints,
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
    )


def _endpoints(definition: Mapping[str, Any]) -> int:
    groups: Sequence[Mapping[str, Any]] = definition.get("groups") or ()
    total = definition.get("endpoints")
    if isinstance(total, int):
        return total
    sizes = (g.get("endpoints") for g in groups if isinstance(g, Mapping))
    return sum(size for size in sizes if isinstance(size, int))


def create_test(
    tx: Tx, owner: Owner, name: str, description: str, definition: Mapping[str, Any], now: float
) -> TestOut:
    _unique(tx, "tests", owner.project_id, name)
    test_id = new_id("tst")
    tx.run(
        "INSERT INTO tests VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            test_id,
            owner.organization_id,
            owner.project_id,
            name,
            description,
            json.dumps(definition),
            now,
            now,
        ],
    )
    return get_test(tx, test_id)


def get_test(tx: Tx, test_id: str) -> TestOut:
    row = tx.one("SELECT * FROM tests WHERE test_id = ?", [test_id])
    if row is None:
        raise NotFound.of("test", test_id)
    return _test(row, _endpoints(json.loads(row["definition_json"])))


def list_tests(tx: Tx, project_id: str, name: str | None = None) -> list[TestOut]:
    sql = "SELECT * FROM tests WHERE project_id = ?"
    params = [project_id]
    if name is not None:
        sql += " AND name = ?"
        params.append(name)
    rows = tx.all(sql + " ORDER BY created_at, rowid", params)
    return [_test(row, _endpoints(json.loads(row["definition_json"]))) for row in rows]


def update_test(
    tx: Tx,
    test_id: str,
    name: str | None,
    description: str | None,
    definition: Mapping[str, Any] | None,
    now: float,
) -> TestOut:
    current = get_test(tx, test_id)
    if name is not None:
        _unique(tx, "tests", current.project_id, name, skip_id=test_id)
        tx.run("UPDATE tests SET name = ? WHERE test_id = ?", [name, test_id])
    if description is not None:
        tx.run("UPDATE tests SET description = ? WHERE test_id = ?", [description, test_id])
    if definition is not None:
        tx.run(
            "UPDATE tests SET definition_json = ? WHERE test_id = ?",
            [json.dumps(definition), test_id],
        )
    tx.run("UPDATE tests SET updated_at = ? WHERE test_id = ?", [now, test_id])
    return get_test(tx, test_id)
