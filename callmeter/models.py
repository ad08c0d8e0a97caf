"""Test files: the pydantic models of a test, loaded from YAML or from the REST API.

Theory of operation
-------------------
A **test** is a reusable configuration (DESIGN.md): registrars with their SIP accounts, and
groups of endpoints that share codecs, media, placement, a callee target and an optional
network impairment. YAML files and the REST API produce the same models: ``load_test(path)``
reads a file, ``parse_test(data)`` takes the decoded mapping.

Validation happens in three layers, and every problem comes back with the path of the field
it is about, in the user's notation (``groups[1].codecs[0]``):

1. **Fields**: types and ranges, by pydantic. ``extra="forbid"`` everywhere, so a typo in a
   field name is an error that suggests the right name instead of a silently ignored line.
2. **One model**: a target names exactly one thing, a registrar is built-in or external, an
   impairment is a valid :class:`~callmeter.media.impairment.ImpairmentProfile`.
3. **The whole test** (:meth:`Test._check_test`): names that refer to other entries exist,
   who calls whom is consistent, every endpoint of an external registrar has its own account.

A validator reports several problems at once by raising :class:`_Problems` (a ``ValueError``
that pydantic wraps); :func:`_problems_of` unpacks it back into one line per problem.
``TestFileError`` carries them as ``FILE: PATH: what is wrong``.

Paths in a test (``media_file``, ``accounts_file``) are relative to the directory of the YAML
file (``base_dir`` for ``parse_test``; the current directory without one) and are stored
absolute once validated, so a validated test dumps and re-validates anywhere. Loading reads
the files it names and writes nothing: a bad file changes nothing.
"""

from __future__ import annotations

import csv
import difflib
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from callmeter.media.impairment import ImpairmentProfile, JitterDistribution
from callmeter.media.sdp import codec_named
from callmeter.sip.errors import ParseError
from callmeter.sip.uri import SipUri, parse_uri

__all__ = [
    "BUILTIN",
    "DEFAULT_CODECS",
    "DEFAULT_SIP_PORT",
    "Group",
    "Impairment",
    "ImpairmentDirection",
    "Placement",
    "Registrar",
    "Role",
    "SipAccount",
    "SuccessThreshold",
    "Target",
    "Test",
    "TestFileError",
    "Transport",
    "load_test",
    "parse_test",
    "test_json_schema",
]

BUILTIN = "builtin"  # the registrar name that always means the built-in registrar
DEFAULT_SIP_PORT = 5060  # RFC 3261 section 19.1.2
DEFAULT_CODECS = ("PCMU", "PCMA")
# Mirrors callmeter.media.source (not imported: it loads PyAV); tests keep them equal.
MIN_PTIME_MS, MAX_PTIME_MS = 10, 120
ENCODER_FRAME_MS = 20  # opus is sent in 20 ms frames only
FRAME_ONLY_CODECS = frozenset({"opus"})

Transport = Literal["udp", "tcp"]
NOT_YET_TRANSPORTS = ("tls", "ws", "wss", "auto")  # DESIGN.md lists them; not built yet
ImpairmentDirection = Literal["receive", "send", "both"]
Role = Literal["caller", "callee", "receiver"]

_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAME_RULE = "use 1 to 64 letters, digits, '_' or '-'"
_HOST_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_USER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")  # RFC 3261 25.1
_CSV_HEADERS = (("username", "password"), ("username", "password", "realm"))

Problem = tuple[str, str]  # (path relative to the model that found it, what is wrong)


class TestFileError(ValueError):
    """A test that cannot be used: one line ``SOURCE: PATH: what is wrong`` per problem."""

    __test__: ClassVar[bool] = False  # a name starting with "Test": not a pytest class

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = (
            f"{source}: {path}: {msg}" if path else f"{source}: {msg}" for path, msg in problems
        )
        super().__init__("\n".join(lines))


class _Problems(ValueError):
    """Several problems found by one validator, with paths relative to that model."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(f"{p}: {m}" if p else m for p, m in self.problems))


def _raise_if(problems: Sequence[Problem]) -> None:
    if problems:
        raise _Problems(problems)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# -- small validators ---------------------------------------------------------------------------
def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(f"invalid name {value!r}: {_NAME_RULE}")
    return value


Name = Annotated[str, AfterValidator(_check_name)]


def _canonical_codec(value: str) -> str:
    return codec_named(value).name  # ValueError lists the known codecs


CodecName = Annotated[str, AfterValidator(_canonical_codec)]


def _check_domain(value: str) -> str:
    if "://" in value or value.lower().startswith(("sip:", "sips:")):
        raise ValueError(f"give a host name or address without a scheme, got {value!r}")
    if not _HOST_RE.fullmatch(value):
        host, colon, port = value.rpartition(":")
        if colon and port.isdigit() and _HOST_RE.fullmatch(host):
            raise ValueError(f"{value!r} has a port: give it in port")
        raise ValueError(f"not a host name or IP address: {value!r}")
    return value


HostName = Annotated[str, AfterValidator(_check_domain)]


def _check_sip_domain(value: str) -> str:
    """A SIP domain: a host, or ``host:port`` where the server's accounts carry the port in
    their address of record (``sip:1001@127.0.0.1:5070``, RFC 3261 hostport)."""
    host, colon, port = value.rpartition(":")
    if colon and port.isdigit() and _HOST_RE.fullmatch(host) and not _HOST_RE.fullmatch(value):
        parse_hostport(value)  # the port's range
        return value
    return _check_domain(value)


SipDomain = Annotated[str, AfterValidator(_check_sip_domain)]


def _not_a_number(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(
            f'got the number {value}: write it in quotes ("{value}"); YAML reads unquoted '
            "digits as a number (0042 becomes 34)"
        )
    return value


Text = Annotated[str, BeforeValidator(_not_a_number)]  # user names and passwords


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _check_transport(value: object) -> object:
    value = _lower(value)
    if value in NOT_YET_TRANSPORTS:
        raise ValueError(f"transport {value} is not supported yet; use udp or tcp")
    return value


def parse_hostport(text: str, default_port: int = DEFAULT_SIP_PORT) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; the port may be left out) as ``(host, port)``;
    ValueError says what is wrong."""
    if text.lower().startswith(("sip:", "sips:")):
        raise ValueError(f"give host:port without sip:, got {text!r}")
    host, port = text, default_port
    if not _HOST_RE.fullmatch(text):
        host, colon, port_text = text.rpartition(":")
        if not (colon and port_text.isdigit() and _HOST_RE.fullmatch(host)):
            raise ValueError(f"expected host:port, got {text!r}")
        port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1..65535 in {text!r}")
    return host, port


def _check_hostport(value: str) -> str:
    parse_hostport(value)
    return value


def _resolve_path(value: str, info: ValidationInfo) -> Path:
    """``value`` relative to the test's directory (``base_dir`` in the validation context)."""
    context = info.context if isinstance(info.context, Mapping) else {}
    base = context.get("base_dir")
    base_dir = Path(base) if base is not None else Path.cwd()
    return (base_dir / Path(value).expanduser()).resolve()


def _check_sip_uri(value: str) -> str:
    try:
        uri = parse_uri(value)
    except ParseError as error:
        raise ValueError(str(error)) from None
    if not isinstance(uri, SipUri):
        raise ValueError(f"{value!r} is not a sip: or sips: URI")
    return value


SipUriText = Annotated[str, AfterValidator(_check_sip_uri)]


def _existing_file(value: str, info: ValidationInfo) -> str:
    path = _resolve_path(value, info)
    if not path.is_file():
        raise ValueError(f"no such file: {value} ({path})")
    return str(path)


ExistingFile = Annotated[str, AfterValidator(_existing_file)]


# -- the models ---------------------------------------------------------------------------------
class SipAccount(_Model):
    """One SIP account of a registrar (RFC 3261 section 22 digest credentials)."""

    username: Annotated[Text, Field(min_length=1, max_length=128)]
    password: Annotated[Text, Field(repr=False, max_length=256)]
    realm: Annotated[str | None, Field(min_length=1, max_length=256)] = None

    @field_validator("username")
    @classmethod
    def _sip_user(cls, value: str) -> str:
        if not _USER_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a SIP user name (RFC 3261 section 25.1)")
        return value


class Registrar(_Model):
    """A SIP server under test, or ``builtin: true`` for the built-in registrar (whose
    accounts are ephemeral, generated at run time).

    An external registrar's accounts are ``accounts`` followed by those of ``accounts_file``
    (CSV with the header ``username,password[,realm]``): :attr:`all_accounts`.
    """

    builtin: bool = False
    domain: SipDomain | None = None  # host[:port] of the accounts' addresses of record
    host: HostName | None = None  # where requests go; default: the domain's host
    port: Annotated[int, Field(ge=1, le=65535)] = DEFAULT_SIP_PORT
    transport: Annotated[Transport, BeforeValidator(_check_transport)] = "udp"
    outbound_proxy: Annotated[str, AfterValidator(_check_hostport)] | None = None  # host:port
    accounts: list[SipAccount] = Field(default_factory=list)
    accounts_file: str | None = None  # absolute once validated

    _file_accounts: tuple[SipAccount, ...] = PrivateAttr(default=())
    _file_lines: tuple[int, ...] = PrivateAttr(default=())  # line of each, for messages

    @property
    def all_accounts(self) -> tuple[SipAccount, ...]:
        """The inline accounts, then those of ``accounts_file``."""
        return (*self.accounts, *self._file_accounts)

    def outbound_proxy_address(self) -> tuple[str, int] | None:
        """``outbound_proxy`` as ``(host, port)``."""
        return None if self.outbound_proxy is None else parse_hostport(self.outbound_proxy)

    @model_validator(mode="after")
    def _check_registrar(self, info: ValidationInfo) -> Self:
        if self.builtin:
            extra = [
                name
                for name, unset in (
                    ("domain", self.domain is None),
                    ("host", self.host is None),
                    ("port", self.port == DEFAULT_SIP_PORT),
                    ("outbound_proxy", self.outbound_proxy is None),
                    ("accounts", not self.accounts),
                    ("accounts_file", self.accounts_file is None),
                )
                if not unset
            ]
            msg = (
                "the built-in registrar takes only transport (its address and accounts are "
                "set at run time); remove this field"
            )
            _raise_if([(name, msg) for name in extra])
            return self
        if self.domain is None:
            raise _Problems([("domain", "an external registrar needs a domain (or builtin: true)")])
        if self.host is None:  # the domain is valid here: a host, or host:port
            self.host, port = parse_hostport(self.domain, self.port)
            if port != self.port and "port" not in self.model_fields_set:
                self.port = port
        shown = self.accounts_file
        if shown is not None:
            path = _resolve_path(shown, info)
            lines_accounts = _read_accounts_csv(path, shown=shown)
            self._file_lines = tuple(line for line, _ in lines_accounts)
            self._file_accounts = tuple(account for _, account in lines_accounts)
            self.accounts_file = str(path)
        _raise_if(self._duplicate_accounts(shown))
        return self

    def _duplicate_accounts(self, shown_file: str | None) -> list[Problem]:
        first: dict[str, str] = {}
        problems: list[Problem] = []
        places = [f"accounts[{i}]" for i in range(len(self.accounts))]
        places += [f"{shown_file}:{line}" for line in self._file_lines]
        for place, account in zip(places, self.all_accounts, strict=True):
            if account.username in first:
                path = place if place.startswith("accounts[") else "accounts_file"
                where = "" if path == place else f"{place}: "
                user = account.username
                msg = f'{where}account "{user}" is already listed at {first[user]}'
                problems.append((path, msg))
            else:
                first[account.username] = place
        return problems


def _read_accounts_csv(path: Path, *, shown: str) -> list[tuple[int, SipAccount]]:
    """The accounts of a CSV file with their line numbers; ``_Problems`` name the file (as
    ``shown``) and the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate the BOM spreadsheets write
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise _Problems([("accounts_file", f"cannot read {shown}: {reason}")]) from None
    rows = ((n, row) for n, row in enumerate(csv.reader(text.splitlines()), 1) if any(row))
    header = next(rows, None)
    if header is None or tuple(c.strip().lower() for c in header[1]) not in _CSV_HEADERS:
        got = ",".join(header[1]) if header else "an empty file"
        where = f"{shown}:{header[0]}" if header else shown
        msg = f"{where}: the first line must be username,password[,realm], got {got!r}"
        raise _Problems([("accounts_file", msg)])
    columns = [c.strip().lower() for c in header[1]]
    accounts: list[tuple[int, SipAccount]] = []
    problems: list[Problem] = []
    for line, row in rows:
        if len(row) != len(columns):
            msg = f"{shown}:{line}: expected {len(columns)} fields ({','.join(columns)}), got "
            problems.append(("accounts_file", msg + f"{len(row)}"))
            continue
        fields = dict(zip(columns, (c.strip() for c in row), strict=True))
        if not fields.get("realm"):
            fields.pop("realm", None)
        try:
            accounts.append((line, SipAccount.model_validate(fields)))
        except ValidationError as error:
            for field, msg in _problems_of(error):
                problems.append(("accounts_file", f"{shown}:{line}: {field}: {msg}"))
    _raise_if(problems)
    return accounts


class Impairment(_Model):
    """Network impairment applied to a group's own streams; fields as in
    :class:`~callmeter.media.impairment.ImpairmentProfile`, which documents them."""

    loss_percent: Annotated[float, Field(ge=0, le=100)] = 0.0
    gilbert_p: Annotated[float, Field(ge=0, le=1)] = 0.0
    gilbert_r: Annotated[float, Field(ge=0, le=1)] = 1.0
    gilbert_h: Annotated[float, Field(ge=0, le=1)] = 0.0
    gilbert_k: Annotated[float, Field(ge=0, le=1)] = 1.0
    delay_ms: Annotated[float, Field(ge=0)] = 0.0
    jitter_ms: Annotated[float, Field(ge=0)] = 0.0
    jitter_distribution: JitterDistribution = "uniform"
    reorder: bool = False
    duplicate_percent: Annotated[float, Field(ge=0, le=100)] = 0.0
    direction: ImpairmentDirection = "receive"  # which of the group's streams it applies to
    seed: int = 0  # endpoint i draws from seed + its endpoint_id

    def profile(self) -> ImpairmentProfile:
        return ImpairmentProfile(
            loss_percent=self.loss_percent,
            gilbert_p=self.gilbert_p,
            gilbert_r=self.gilbert_r,
            gilbert_h=self.gilbert_h,
            gilbert_k=self.gilbert_k,
            delay_ms=self.delay_ms,
            jitter_ms=self.jitter_ms,
            jitter_distribution=self.jitter_distribution,
            reorder=self.reorder,
            duplicate_percent=self.duplicate_percent,
        )

    @model_validator(mode="after")
    def _check_profile(self) -> Self:
        self.profile()  # its ValueError says which parameters clash
        return self


class Placement(_Model):
    """Where a group's endpoints run: a region, or named workers (exactly one)."""

    region: Name | None = None
    workers: Annotated[list[Name] | None, Field(min_length=1)] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.region is None) == (self.workers is None):
            raise ValueError("give either region or workers (leave placement out: anywhere)")
        if self.workers is not None:
            _raise_if(_repeated(self.workers, "workers", "worker"))
        return self


class Target(_Model):
    """Whom a group calls: another ``group``, an external ``uri``, or ``receive: external``
    (register and wait for calls from outside). Exactly one."""

    group: Name | None = None
    uri: SipUriText | None = None
    receive: Literal["external"] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in ("group", "uri", "receive") if getattr(self, name) is not None]
        if len(given) != 1:
            got = f"got {' and '.join(given)}" if given else "got none"
            raise ValueError(f"give exactly one of group, uri or receive: external ({got})")
        return self

    @property
    def places_calls(self) -> bool:
        return self.receive is None


class Group(_Model):
    """Endpoints sharing a configuration."""

    name: Name
    endpoints: Annotated[int, Field(ge=1)]
    registrar: Name = BUILTIN
    accounts: list[Text] | None = None  # usernames, in order; default: the next unused ones
    codecs: Annotated[list[CodecName], Field(min_length=1)] = Field(
        default_factory=lambda: list(DEFAULT_CODECS)
    )
    ptime_ms: Annotated[int, Field(ge=MIN_PTIME_MS, le=MAX_PTIME_MS)] = 20
    # how long its endpoints ring (180) before answering a call; 0 answers at once (no 180)
    ring_s: Annotated[float, Field(ge=0, le=60)] = 0.0
    media_file: ExistingFile | None = None  # absolute once validated
    placement: Placement | None = None
    target: Target | None = None
    impairment: Impairment | None = None
    # the media socket: "shared" (one batched port per shard, calls told apart by source and
    # SSRC), "per_call" (a port per call, for peers that send from another address than their
    # SDP says without declaring an SSRC), "auto": shared between our own endpoints only
    media_port: Literal["auto", "shared", "per_call"] = "auto"

    @model_validator(mode="after")
    def _check_group(self) -> Self:
        problems = _repeated(self.codecs, "codecs", "codec")
        frame_only = sorted(FRAME_ONLY_CODECS & set(self.codecs))
        if frame_only and self.ptime_ms != ENCODER_FRAME_MS:
            msg = f"{frame_only[0]} is sent with ptime {ENCODER_FRAME_MS} ms only"
            problems.append(("ptime_ms", f"{msg}, got {self.ptime_ms}"))
        if self.accounts is not None:
            problems += _repeated(self.accounts, "accounts", "account")
            if len(self.accounts) != self.endpoints:
                msg = f"{_count(len(self.accounts), 'account')} for {self.endpoints} endpoints"
                problems.append(("accounts", msg))
        _raise_if(problems)
        return self

    @property
    def places_calls(self) -> bool:
        """Whether it calls a group or a URI (see :meth:`Test.role` for the others)."""
        return self.target is not None and self.target.places_calls


class SuccessThreshold(_Model):
    """When a run counts as passed."""

    min_success_rate: Annotated[float, Field(ge=0, le=1)] = 0.99
    min_mos: Annotated[float | None, Field(ge=1, le=5)] = None


class Test(_Model):
    """A reusable test configuration. Never runs by itself: the planner turns it into a run."""

    __test__: ClassVar[bool] = False  # a name starting with "Test": not a pytest class

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str | None = None
    endpoints: Annotated[int | None, Field(ge=1)] = None  # total; checked against the groups
    call_duration_s: Annotated[float, Field(gt=0)] = 10.0
    buildup_s: Annotated[float, Field(ge=0)] = 0.0
    registrars: dict[Name, Registrar] = Field(
        default_factory=lambda: {BUILTIN: Registrar(builtin=True)}
    )
    groups: Annotated[list[Group], Field(min_length=1)]
    success: SuccessThreshold = Field(default_factory=SuccessThreshold)

    def group(self, name: str) -> Group:
        """The group called ``name`` (KeyError if none)."""
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)

    @property
    def total_endpoints(self) -> int:
        return sum(group.endpoints for group in self.groups)

    def callers_of(self, name: str) -> list[Group]:
        """The groups that call group ``name``, in file order."""
        return [g for g in self.groups if g.target is not None and g.target.group == name]

    def role(self, group: Group) -> Role:
        """``caller`` (targets a group or URI), ``callee`` (called by another group) or
        ``receiver`` (waits for calls from outside, or just stays registered)."""
        if group.places_calls:
            return "caller"
        return "callee" if self.callers_of(group.name) else "receiver"

    @model_validator(mode="after")
    def _check_test(self) -> Self:
        registrar = self.registrars.setdefault(BUILTIN, Registrar(builtin=True))
        problems: list[Problem] = []
        if not registrar.builtin:
            msg = f'the name "{BUILTIN}" is reserved for the built-in registrar (builtin: true)'
            problems.append((f"registrars.{BUILTIN}", msg))
        problems += self._check_names()
        problems += self._check_targets()
        problems += self._check_accounts()
        _raise_if(problems)
        return self

    def _check_names(self) -> list[Problem]:
        problems: list[Problem] = []
        first: dict[str, int] = {}
        for i, group in enumerate(self.groups):
            if group.name in first:
                msg = f'"{group.name}" is already the name of groups[{first[group.name]}]'
                problems.append((f"groups[{i}].name", msg))
            first.setdefault(group.name, i)
        total = self.total_endpoints
        if self.endpoints is not None and self.endpoints != total:
            sizes = ", ".join(f"{g.name} {g.endpoints}" for g in self.groups)
            msg = f"{self.endpoints} endpoints, but the groups add up to {total} ({sizes})"
            problems.append(("endpoints", msg))
        known = ", ".join(self.registrars)
        for i, group in enumerate(self.groups):
            if group.registrar not in self.registrars:
                msg = f'no registrar named "{group.registrar}" (known: {known})'
                problems.append((f"groups[{i}].registrar", msg))
        return problems

    def _check_targets(self) -> list[Problem]:
        problems: list[Problem] = []
        names = [g.name for g in self.groups]
        for i, group in enumerate(self.groups):
            target = group.target
            if target is None or target.group is None:
                continue
            path = f"groups[{i}].target.group"
            if target.group not in names:
                msg = f'no group named "{target.group}" (known: {", ".join(names)})'
                problems.append((path, msg))
            elif target.group == group.name:
                problems.append((path, f'group "{group.name}" cannot call itself'))
        for i, group in enumerate(self.groups):
            callers = self.callers_of(group.name)
            if any(caller is group for caller in callers):
                continue  # it calls itself: reported above
            if group.places_calls and callers and group.target is not None:
                calls = group.target.uri or f'"{group.target.group}"'
                called_by = ", ".join(f'"{g.name}"' for g in callers)
                msg = (
                    f'a group cannot both place and receive calls: "{group.name}" calls '
                    f"{calls} and is called by {called_by}"
                )
                problems.append((f"groups[{i}].target", msg))
        return problems

    def _check_accounts(self) -> list[Problem]:
        problems: list[Problem] = []
        used: dict[tuple[str, str], str] = {}  # (registrar, username) -> path of first use
        for name, registrar in self.registrars.items():
            users = [(i, g) for i, g in enumerate(self.groups) if g.registrar == name]
            if name == BUILTIN and not registrar.builtin:
                continue  # a reserved name: reported above
            if registrar.builtin:
                msg = (
                    f'registrar "{name}" is the built-in one: it generates accounts at run '
                    "time; remove accounts"
                )
                problems += [(f"groups[{i}].accounts", msg) for i, g in users if g.accounts]
                continue
            accounts = registrar.all_accounts
            needed = sum(g.endpoints for _, g in users)
            if len(accounts) < needed:
                names = ", ".join(g.name for _, g in users)
                label = "group" if len(users) == 1 else "groups"
                msg = f"{_count(len(accounts), 'account')} for {needed} endpoints ({label} {names})"
                problems.append((f"registrars.{name}.accounts", msg))
            known = {account.username for account in accounts}
            for i, group in users:
                for j, username in enumerate(group.accounts or ()):
                    path = f"groups[{i}].accounts[{j}]"
                    if username not in known:
                        problems.append((path, f'no account "{username}" in registrar "{name}"'))
                    elif (name, username) in used:
                        first = used[name, username]
                        problems.append((path, f'account "{username}" is already used by {first}'))
                    used.setdefault((name, username), path)
        return problems


# -- helpers ------------------------------------------------------------------------------------
def _count(n: int, noun: str) -> str:
    return f"{n} {noun if n == 1 else noun + 's'}"


def _repeated(values: Sequence[str], path: str, noun: str) -> list[Problem]:
    first: dict[str, int] = {}
    problems: list[Problem] = []
    for i, value in enumerate(values):
        if value in first:
            msg = f'{noun} "{value}" is listed twice (first at {path}[{first[value]}])'
            problems.append((f"{path}[{i}]", msg))
        first.setdefault(value, i)
    return problems


def _format_loc(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":  # a bad dict key: the path already ends with the key
            path += f".{part}" if path else part
    return path


def _join(base: str, sub: str) -> str:
    if not sub:
        return base
    if not base:
        return sub
    return base + sub if sub.startswith("[") else f"{base}.{sub}"


def _problems_of(error: ValidationError, model: type[BaseModel] | None = None) -> list[Problem]:
    """One ``(path, message)`` per problem, in the user's notation."""
    problems: list[Problem] = []
    for detail in error.errors():
        loc = detail["loc"]
        path = _format_loc(loc)
        cause = detail.get("ctx", {}).get("error")
        if isinstance(cause, _Problems):
            problems += [(_join(path, sub), msg) for sub, msg in cause.problems]
        elif isinstance(cause, ValueError):
            problems.append((path, str(cause)))
        elif detail["type"] == "extra_forbidden":
            problems.append((path, _unknown_field(model, loc)))
        elif detail["type"] == "missing":
            problems.append((path, "required"))
        else:
            problems.append((path, _with_input(detail["msg"], detail.get("input"))))
    return problems


def _with_input(msg: str, value: object) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        return f"{msg}, got {value!r}"
    return msg if isinstance(value, list | tuple | Mapping) else f"{msg}, got {value!r}"


def _type_name(value: object) -> str:
    if isinstance(value, Mapping):
        return "mapping"
    return "list" if isinstance(value, list | tuple) else type(value).__name__


def _unknown_field(model: type[BaseModel] | None, loc: Sequence[int | str]) -> str:
    fields = list(_model_at(model, loc[:-1]).model_fields) if model is not None else []
    if not fields:
        return "unknown field"
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return f"unknown field{hint} (fields: {', '.join(fields)})"


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel]:
    """The model class found at ``loc`` below ``model`` (following lists, dicts, options)."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, str) and _is_model(annotation) and part in annotation.model_fields:
            annotation = annotation.model_fields[part].annotation
        elif get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            return BaseModel
    annotation = _unwrap(annotation)
    return annotation if _is_model(annotation) else BaseModel


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        annotation = options[0] if len(options) == 1 else annotation
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


# -- loading ------------------------------------------------------------------------------------
def parse_test(
    data: Mapping[str, Any], *, source: str = "<test>", base_dir: Path | None = None
) -> Test:
    """Validate decoded test data (from YAML or the REST API). Relative paths in it are
    relative to ``base_dir`` (default: the current directory). Raises TestFileError."""
    if not isinstance(data, Mapping):
        got = "nothing" if data is None else f"a {_type_name(data)}"
        msg = f"a test is a mapping of fields (name, groups...), got {got}"
        raise TestFileError(source, [("", msg)])
    try:
        return Test.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as error:
        raise TestFileError(source, _problems_of(error, Test)) from None


def load_test(path: str | Path) -> Test:
    """Read and validate a YAML test file. Raises TestFileError naming the file and, for
    each problem, the field (or the line, for YAML syntax)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise TestFileError(str(path), [("", f"cannot read the file: {reason}")]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.MarkedYAMLError as error:
        raise TestFileError(str(path), [_yaml_problem(error)]) from None
    except yaml.YAMLError as error:
        raise TestFileError(str(path), [("", f"invalid YAML: {error}")]) from None
    return parse_test(data, source=str(path), base_dir=path.parent)


def _yaml_problem(error: yaml.MarkedYAMLError) -> Problem:
    mark, what = error.problem_mark, error.problem or "unreadable"
    if error.context and error.context_mark is not None:
        what += f" ({error.context} at line {error.context_mark.line + 1})"
    elif error.context:
        what += f" ({error.context})"
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return where, f"invalid YAML: {what}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently: a copy-paste slip would change a test without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'the key "{key}" is given twice', key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def test_json_schema() -> dict[str, Any]:
    """The JSON Schema of a test (``callmeter schema``); editors use it to complete and check
    YAML test files."""
    schema = Test.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


test_json_schema.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
