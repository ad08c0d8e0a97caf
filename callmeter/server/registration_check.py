"""Testing one SIP account against a project registrar: a real REGISTER from the server, the
answer, and the message ladder.

Theory of operation. The check is what a run's endpoint would do, once: the registrar is read
with the same rules as a test (:class:`callmeter.models.Registrar`: the domain, its host and
port, the outbound proxy), the name resolved, and a one-off
:class:`~callmeter.endpoint.Endpoint` opened on the local address that routes to it, on its own
event loop (``asyncio.run`` in the request's worker thread, so nothing is shared with the
server). It sends REGISTER (the user agent answers a 401/407 digest challenge itself), waits
for ``Registered`` or ``RegistrationFailed`` up to ``timeout_s``, then, when registered,
unregisters (``Expires: 0``) and closes. The answer is data, never an exception: a refusal, a
timeout or a name that does not resolve is ``ok: false`` with the status and the reason.

Only the first line of each message is reported (the ladder), so the digest response and
every other header stay on the server; the password is never logged. At most
``MAX_CONCURRENT_CHECKS`` run at once: each holds a worker thread for up to ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from callmeter.endpoint import Endpoint, EventTimeout
from callmeter.models import Registrar
from callmeter.server.errors import Conflict, InvalidInput
from callmeter.server.payloads import RegistrarOut, RegistrationCheckOut, TraceLine
from callmeter.sip.core import Address
from callmeter.sip.events import Event, Registered, RegistrationFailed, Unregistered
from callmeter.sip.layer import TraceEntry
from callmeter.sip.useragent import UserAgentConfig

__all__ = [
    "CHECK_EXPIRES_S",
    "MAX_CONCURRENT_CHECKS",
    "REGISTRATION_TIMEOUT_S",
    "RegistrationTarget",
    "check_registration",
    "run_check",
    "target_of",
]

REGISTRATION_TIMEOUT_S = 10.0  # REGISTER to final answer, challenge round trip included
UNREGISTER_TIMEOUT_S = 2.0  # best effort: the binding expires by itself anyway
CHECK_EXPIRES_S = 60  # short, in case the unregister is lost (423 raises it to Min-Expires)
MAX_CONCURRENT_CHECKS = 8
MAX_TRACE_LINES = 32
_LINE_CHARS = 200

_slots = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)


@dataclass(frozen=True, slots=True)
class RegistrationTarget:
    """Where the REGISTER goes: ``domain`` names the address of record and the Request-URI,
    ``host``/``port`` is where it is sent (the outbound proxy, else the registrar)."""

    domain: str
    host: str
    port: int
    transport: str  # "udp" or "tcp"

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def target_of(registrar: RegistrarOut) -> RegistrationTarget:
    """The registrar as a run reaches it; 400 naming the field when a run could not."""
    entry: dict[str, object] = {
        "domain": registrar.domain,
        "transport": registrar.transport.value.lower(),
    }
    if registrar.port is not None:
        entry["port"] = registrar.port
    if registrar.outbound_proxy:
        entry["outbound_proxy"] = registrar.outbound_proxy
    try:
        model = Registrar.model_validate(entry)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "registrar"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"registrar {field}: {message}") from None
    assert model.domain is not None and model.host is not None  # an external registrar
    host, port = model.outbound_proxy_address() or (model.host, model.port)
    return RegistrationTarget(model.domain, host.strip("[]"), port, model.transport)


def run_check(
    target: RegistrationTarget,
    username: str,
    password: str,
    realm: str | None = None,
    *,
    timeout_s: float = REGISTRATION_TIMEOUT_S,
) -> RegistrationCheckOut:
    """:func:`check_registration` on a fresh event loop in this (worker) thread; 409 when
    ``MAX_CONCURRENT_CHECKS`` are running already."""
    if not _slots.acquire(blocking=False):
        raise Conflict(
            f"{MAX_CONCURRENT_CHECKS} registration tests are running: try again in a few seconds"
        )
    try:
        return asyncio.run(
            check_registration(target, username, password, realm, timeout_s=timeout_s)
        )
    finally:
        _slots.release()


async def check_registration(
    target: RegistrationTarget,
    username: str,
    password: str,
    realm: str | None = None,
    *,
    timeout_s: float = REGISTRATION_TIMEOUT_S,
) -> RegistrationCheckOut:
    """Register ``username`` at ``target`` for real, unregister, and report."""
    try:
        address = await _resolve(target)
        local_host = _local_host_towards(address)
    except OSError as error:
        reason = f"cannot reach {target.label}: {error.strerror or error}"
        return RegistrationCheckOut(ok=False, status=None, reason=reason, elapsed_ms=None, trace=[])
    config = UserAgentConfig(
        username, target.domain, address, password=password, realm=realm,
        expires=CHECK_EXPIRES_S,
    )  # fmt: skip
    endpoint = await Endpoint.open(
        config, host=local_host, transport=target.transport.upper(), trace_limit=MAX_TRACE_LINES
    )
    started = asyncio.get_running_loop().time()
    try:
        endpoint.register()
        answer: Event | None = None
        with contextlib.suppress(EventTimeout):
            answer = await endpoint.wait_for(Registered, RegistrationFailed, within_s=timeout_s)
        registered_trace = list(endpoint.ua.trace)
        if isinstance(answer, Registered):
            endpoint.unregister()
            with contextlib.suppress(EventTimeout):
                await endpoint.wait_for(
                    Unregistered, RegistrationFailed, within_s=UNREGISTER_TIMEOUT_S
                )
    finally:
        await endpoint.close()
    trace = [_line(entry, started) for entry in endpoint.ua.trace]
    return _outcome(answer, registered_trace, started, target, timeout_s, trace)


async def _resolve(target: RegistrationTarget) -> Address:
    """The first address ``host`` resolves to (an IP address resolves to itself)."""
    kind = socket.SOCK_DGRAM if target.transport == "udp" else socket.SOCK_STREAM
    loop = asyncio.get_running_loop()
    found = await loop.getaddrinfo(target.host, target.port, type=kind)
    if not found:
        raise OSError(f"{target.host} has no address")
    sockaddr = found[0][4]
    return str(sockaddr[0]), int(sockaddr[1])


def _local_host_towards(address: Address) -> str:
    """The local address the system routes ``address`` from: Via and Contact must carry an
    address the registrar can answer. Connecting a UDP socket sends nothing."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(address)
        return str(probe.getsockname()[0])


def _line(entry: TraceEntry, started: float) -> TraceLine:
    first = entry.data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    host, port = entry.addr[0], entry.addr[1]
    return TraceLine(
        at_ms=round((entry.at - started) * 1000.0, 3),
        direction=entry.direction,
        peer=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        line=first[:_LINE_CHARS],
    )


def _final_response(entries: Iterable[TraceEntry]) -> tuple[int, str] | None:
    """Status and reason phrase of the last final response received."""
    final = None
    for entry in entries:
        if entry.direction != "in":
            continue
        version, _, rest = entry.data.split(b"\r\n", 1)[0].decode("utf-8", "replace").partition(" ")
        code, _, phrase = rest.partition(" ")
        if version == "SIP/2.0" and code.isdigit() and int(code) >= 200:
            final = (int(code), phrase)
    return final


def _outcome(
    answer: Event | None,
    registered_trace: list[TraceEntry],
    started: float,
    target: RegistrationTarget,
    timeout_s: float,
    trace: list[TraceLine],
) -> RegistrationCheckOut:
    elapsed_ms = None if answer is None else round((answer.at - started) * 1000.0, 3)
    if isinstance(answer, RegistrationFailed):
        return RegistrationCheckOut(
            ok=False, status=answer.status, reason=answer.reason, elapsed_ms=elapsed_ms,
            trace=trace,
        )  # fmt: skip
    if isinstance(answer, Registered):
        status, reason = _final_response(registered_trace) or (200, "OK")
        return RegistrationCheckOut(
            ok=True, status=status, reason=reason, elapsed_ms=elapsed_ms, trace=trace
        )
    heard = any(entry.direction == "in" for entry in registered_trace)
    reason = f"no {'final ' if heard else ''}answer from {target.label} within {timeout_s:g} s"
    return RegistrationCheckOut(ok=False, status=None, reason=reason, elapsed_ms=None, trace=trace)
