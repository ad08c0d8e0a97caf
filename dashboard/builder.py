"""The test builder's model, without Streamlit: the fields of a test as the form holds them,
the definition the API validates, and the API's 400 message split back into one message per
field.

The API names every problem with its path in the definition, one per line
(``definition: groups[1].endpoints: Input should be greater than or equal to 1, got 0``, see
``callmeter.models.TestFileError``): :func:`field_errors` maps each path to its messages and
:func:`errors_at` finds those of one field, so the page shows them right below it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "CODECS",
    "IMPAIRMENT_DIRECTIONS",
    "PLACEMENTS",
    "TARGETS",
    "GroupFields",
    "TestFields",
    "errors_at",
    "field_errors",
    "fields_from_definition",
]

CODECS: Final = ("PCMU", "PCMA", "G722", "opus")
PLACEMENTS: Final = ("anywhere", "region", "workers")
TARGETS: Final = ("none (answers calls)", "group", "uri", "receive external")
IMPAIRMENT_DIRECTIONS: Final = ("receive", "send", "both")
BUILTIN: Final = "builtin"
_LINE: Final = re.compile(r"^(?:definition: )?(?:(?P<path>[A-Za-z_][\w.\[\]-]*): )?(?P<msg>.+)$")


@dataclass
class GroupFields:
    """One group as the form shows it (strings where the user types free text)."""

    name: str = "callers"
    endpoints: int = 1
    registrar: str = BUILTIN
    accounts: str = ""  # usernames, comma separated; empty: the next unused ones
    codecs: list[str] = field(default_factory=lambda: ["PCMU", "PCMA"])
    media_file: str = ""  # a media file of the project; empty: the built-in tone
    placement: str = "anywhere"
    placement_value: str = ""  # the region, or worker names comma separated
    target: str = TARGETS[0]
    target_value: str = ""  # the group name or SIP URI
    impaired: bool = False
    loss_percent: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    impairment_direction: str = "receive"

    def definition(self) -> dict[str, Any]:
        group: dict[str, Any] = {"name": self.name.strip(), "endpoints": self.endpoints}
        if self.registrar and self.registrar != BUILTIN:
            group["registrar"] = self.registrar
        accounts = _split(self.accounts)
        if accounts:
            group["accounts"] = accounts
        group["codecs"] = list(self.codecs)
        if self.media_file:
            group["media_file"] = self.media_file
        if self.placement == "region":
            group["placement"] = {"region": self.placement_value.strip()}
        elif self.placement == "workers":
            group["placement"] = {"workers": _split(self.placement_value)}
        if self.target == "group":
            group["target"] = {"group": self.target_value.strip()}
        elif self.target == "uri":
            group["target"] = {"uri": self.target_value.strip()}
        elif self.target == "receive external":
            group["target"] = {"receive": "external"}
        if self.impaired:
            group["impairment"] = {
                "direction": self.impairment_direction,
                "loss_percent": self.loss_percent,
                "delay_ms": self.delay_ms,
                "jitter_ms": self.jitter_ms,
            }
        return group


@dataclass
class TestFields:
    """A whole test as the form shows it; ``endpoints`` 0 means "the sum of the groups"."""

    __test__ = False  # not a pytest class

    name: str = "quickstart"
    description: str = ""
    endpoints: int = 0
    call_duration_s: float = 10.0
    buildup_s: float = 2.0
    min_success_rate: float = 0.99
    min_mos: float = 0.0  # 0: no MOS threshold
    groups: list[GroupFields] = field(
        default_factory=lambda: [
            GroupFields("callers", 5, target="group", target_value="callees"),
            GroupFields("callees", 5),
        ]
    )

    def definition(self) -> dict[str, Any]:
        """What ``POST /projects/{id}/tests`` takes as ``definition``."""
        definition: dict[str, Any] = {
            "call_duration_s": self.call_duration_s,
            "buildup_s": self.buildup_s,
            "groups": [group.definition() for group in self.groups],
        }
        if self.endpoints:
            definition["endpoints"] = self.endpoints
        if self.description.strip():
            definition["description"] = self.description.strip()
        success: dict[str, Any] = {"min_success_rate": self.min_success_rate}
        if self.min_mos:
            success["min_mos"] = self.min_mos
        definition["success"] = success
        return definition


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def fields_from_definition(name: str, definition: Mapping[str, Any]) -> TestFields:
    """The form's fields for a stored test (what the form cannot show is left at defaults)."""
    success = definition.get("success") or {}
    groups = []
    for raw in definition.get("groups") or []:
        group = GroupFields(name=str(raw.get("name", "")), endpoints=int(raw.get("endpoints", 1)))
        group.registrar = str(raw.get("registrar", BUILTIN))
        group.accounts = ", ".join(raw.get("accounts") or [])
        group.codecs = list(raw.get("codecs") or ["PCMU", "PCMA"])
        group.media_file = str(raw.get("media_file") or "")
        placement = raw.get("placement") or {}
        if placement.get("region"):
            group.placement, group.placement_value = "region", str(placement["region"])
        elif placement.get("workers"):
            group.placement, group.placement_value = "workers", ", ".join(placement["workers"])
        target = raw.get("target") or {}
        if target.get("group"):
            group.target, group.target_value = "group", str(target["group"])
        elif target.get("uri"):
            group.target, group.target_value = "uri", str(target["uri"])
        elif target.get("receive"):
            group.target = "receive external"
        impairment = raw.get("impairment")
        if impairment:
            group.impaired = True
            group.loss_percent = float(impairment.get("loss_percent", 0.0))
            group.delay_ms = float(impairment.get("delay_ms", 0.0))
            group.jitter_ms = float(impairment.get("jitter_ms", 0.0))
            group.impairment_direction = str(impairment.get("direction", "receive"))
        groups.append(group)
    return TestFields(
        name=name,
        description=str(definition.get("description") or ""),
        endpoints=int(definition.get("endpoints") or 0),
        call_duration_s=float(definition.get("call_duration_s", 10.0)),
        buildup_s=float(definition.get("buildup_s", 0.0)),
        min_success_rate=float(success.get("min_success_rate", 0.99)),
        min_mos=float(success.get("min_mos") or 0.0),
        groups=groups or [GroupFields()],
    )


def field_errors(message: str) -> dict[str, list[str]]:
    """The API's error message as ``{path: [messages]}``; a line that names no field goes
    under ``""``. Paths are relative to the definition (``groups[0].endpoints``)."""
    found: dict[str, list[str]] = {}
    for line in message.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        found.setdefault(match["path"] or "", []).append(match["msg"])
    return found


def errors_at(errors: Mapping[str, list[str]], path: str) -> list[str]:
    """The messages of one field: its own path and every path below it
    (``groups[0].placement`` gets ``groups[0].placement.region`` too)."""
    return [
        message
        for where, messages in errors.items()
        if where == path or where.startswith((f"{path}.", f"{path}["))
        for message in messages
    ]
