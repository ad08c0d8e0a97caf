"""From a test as the platform stores it to a validated :class:`callmeter.models.Test`.

A test file names everything it needs inline (registrars with accounts, media file paths).
On the platform those are project resources, so a stored definition refers to them by name:

- ``groups[i].registrar`` names a registrar of the project (or ``builtin``); the definition's
  own ``registrars`` may not carry ``accounts`` or ``accounts_file`` (SIP passwords live only in
  the registrar's accounts, write-only);
- ``groups[i].media_file`` names a media file of the project; its stored bytes are written once
  to the media cache (``<sha256>.<ext>``) and the test gets that path.

:func:`resolve` builds the mapping ``parse_test`` validates. When saving a test
(``for_run=False``) a registrar short of accounts is padded with placeholders, so a test can be
written before its accounts are imported; when triggering a run (``for_run=True``) the real
accounts are used and a shortage is a clear error naming the registrar.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from callmeter.models import BUILTIN, Test, TestFileError, parse_test
from callmeter.server.errors import InvalidInput

__all__ = ["ProjectRegistrar", "resolve", "validate"]

SOURCE = "definition"
_PLACEHOLDER = "callmeter-placeholder-{}"


class ProjectRegistrar(NamedTuple):
    """A project registrar as the test resolver needs it."""

    domain: str
    port: int | None
    transport: str
    outbound_proxy: str | None
    accounts: Sequence[tuple[str, str, str | None]]  # (username, password, realm)


def _registrar_entry(registrar: ProjectRegistrar, accounts: list[dict[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "domain": registrar.domain,
        "transport": registrar.transport.lower(),
        "accounts": accounts,
    }
    if registrar.port is not None:
        entry["port"] = registrar.port
    if registrar.outbound_proxy:
        entry["outbound_proxy"] = registrar.outbound_proxy
    return entry


def _needed(groups: Sequence[Any], name: str) -> int:
    total = 0
    for group in groups:
        if isinstance(group, Mapping) and group.get("registrar", BUILTIN) == name:
            size = group.get("endpoints")
            total += size if isinstance(size, int) and size > 0 else 0
    return total


def _check_inline(definition: Mapping[str, Any]) -> None:
    registrars = definition.get("registrars")
    if not isinstance(registrars, Mapping):
        return
    for name, entry in registrars.items():
        if isinstance(entry, Mapping):
            for field in ("accounts", "accounts_file"):
                if field in entry:
                    raise InvalidInput(
                        f"{SOURCE}: registrars.{name}.{field}: keep SIP accounts in the "
                        "project's registrars (POST /api/v1/registrars/{id}/accounts)"
                    )


def resolve(
    definition: Mapping[str, Any],
    *,
    name: str,
    registrars: Callable[[str], ProjectRegistrar | None],
    media_path: Callable[[str], Path | None],
    for_run: bool,
) -> dict[str, Any]:
    """The mapping to validate: ``definition`` with project registrars and media filled in."""
    _check_inline(definition)
    data = copy.deepcopy(dict(definition))
    data["name"] = name
    groups = data.get("groups")
    group_list: list[Any] = groups if isinstance(groups, list) else []
    inline = data.get("registrars")
    entries: dict[str, Any] = dict(inline) if isinstance(inline, Mapping) else {}
    for index, group in enumerate(group_list):
        if not isinstance(group, dict):
            continue
        registrar_name = group.get("registrar", BUILTIN)
        if isinstance(registrar_name, str) and registrar_name not in entries:
            found = registrars(registrar_name) if registrar_name != BUILTIN else None
            if found is not None:
                accounts = [
                    {
                        "username": u,
                        "password": p if for_run else "x",
                        **({"realm": r} if r else {}),
                    }
                    for u, p, r in found.accounts
                ]
                short = _needed(group_list, registrar_name) - len(accounts)
                if not for_run and short > 0:
                    accounts += [
                        {"username": _PLACEHOLDER.format(i), "password": "x"} for i in range(short)
                    ]
                entries[registrar_name] = _registrar_entry(found, accounts)
        media = group.get("media_file")
        if isinstance(media, str):
            path = media_path(media)
            if path is None:
                raise InvalidInput(
                    f"{SOURCE}: groups[{index}].media_file: no media file named {media!r} in "
                    "this project (upload it first)"
                )
            group["media_file"] = str(path)
    if entries:
        data["registrars"] = entries
    return data


def validate(data: Mapping[str, Any]) -> Test:
    """``parse_test`` with its error as a 400 naming the field (``definition: groups[1]...``)."""
    try:
        return parse_test(data, source=SOURCE, base_dir=Path("/nonexistent-base"))
    except TestFileError as error:
        raise InvalidInput(str(error)) from None
