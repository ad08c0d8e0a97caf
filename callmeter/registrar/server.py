"""The asyncio shell of the built-in registrar: one socket (UDP or TCP) driving a
:class:`~callmeter.registrar.proxy.Registrar` through ``callmeter.transport``.

``callmeter registrar`` calls :func:`serve`, which runs in the foreground until cancelled (or
until ``stop`` is set). Tests and the embedded mode use :class:`RunningRegistrar`, an async
context manager that binds a free port, provisions accounts and closes on exit. The core's
events (malformed messages, transaction timeouts) are drained after every input so a long
run keeps no backlog; the core counts them in ``registrar.counters``.
"""

from __future__ import annotations

import asyncio
import csv
import ipaddress
import logging
import os
import random
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from callmeter.registrar.accounts import Account
from callmeter.registrar.proxy import Registrar, RegistrarConfig
from callmeter.sip.core import Address
from callmeter.sip.events import MalformedMessageReceived
from callmeter.transport import TcpTransport, UdpTransport, open_tcp, open_udp

__all__ = ["RunningRegistrar", "read_credentials", "serve", "write_credentials"]

logger = logging.getLogger(__name__)

CREDENTIALS_HEADER = ("username", "password", "domain")
TRANSPORTS = ("udp", "tcp")


def write_credentials(path: str | os.PathLike[str], accounts: Iterable[Account]) -> Path:
    """Write ``username,password,domain`` CSV rows (with that header line), readable by the
    owner only: the file holds passwords."""
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CREDENTIALS_HEADER)
        for account in accounts:
            writer.writerow((account.username, account.password, account.domain))
    return target


def read_credentials(path: str | os.PathLike[str]) -> list[Account]:
    """The accounts of a file written by :func:`write_credentials`."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return [Account(row["username"], row["password"], row["domain"]) for row in rows]
    except KeyError as missing:
        raise ValueError(
            f"{path}: expected the columns {','.join(CREDENTIALS_HEADER)}"
        ) from missing


class RunningRegistrar:
    """A registrar on a real socket for the duration of an ``async with`` block.

    ``port=0`` picks a free port. ``accounts`` is how many ephemeral accounts to provision
    (random names and passwords from ``secrets``-seeded randomness) or the accounts to load.
    Inside the block: ``.address`` (host, port), ``.accounts``, ``.registrar`` (the core, for
    its counters and location table) and ``.transport``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        transport: str = "udp",
        accounts: int | Iterable[Account] = 10,
        config: RegistrarConfig | None = None,
        rng: random.Random | None = None,
        trace_limit: int = 0,
    ) -> None:
        kind = transport.lower()
        if kind not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        if _is_wildcard(host):
            raise ValueError(
                f"cannot bind {host}: Via and Record-Route need the address peers reach, "
                "so bind one address (127.0.0.1 by default)"
            )
        self.host, self.port, self.kind = host, port, kind
        self.config = config or RegistrarConfig(domain=host)
        self.registrar = Registrar(
            self.config,
            local_addr=(host, port),
            transport=kind.upper(),
            rng=rng or random.Random(secrets.randbits(128)),
            nonce_secret=secrets.token_bytes(32),
            trace_limit=trace_limit,
        )
        if isinstance(accounts, int):
            self.accounts = self.registrar.accounts.provision(
                accounts, random.SystemRandom(), self.config.domain
            )
        else:
            self.accounts = list(accounts)
            for account in self.accounts:
                self.registrar.accounts.add(account)
        self._transport: UdpTransport | TcpTransport | None = None
        self.malformed = 0

    @property
    def transport(self) -> UdpTransport | TcpTransport:
        if self._transport is None:
            raise RuntimeError("the registrar is not running (use it in 'async with')")
        return self._transport

    @property
    def address(self) -> Address:
        return self.transport.local_address

    def _drain(self) -> None:
        registrar = self.registrar
        while (event := registrar.next_event()) is not None:
            if isinstance(event, MalformedMessageReceived):
                self.malformed += 1
                logger.debug("malformed message from %s: %s", event.addr, event.error)

    async def start(self) -> RunningRegistrar:
        opener = open_udp if self.kind == "udp" else open_tcp
        self._transport = await opener(
            self.registrar, self.host, self.port, on_activity=self._drain
        )
        self.registrar.local_addr = self._transport.local_address
        return self

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            await self._transport.wait_closed()

    async def __aenter__(self) -> RunningRegistrar:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


async def serve(
    host: str = "127.0.0.1",
    port: int = 5060,
    transport: str = "udp",
    accounts_count: int = 10,
    credentials_path: str | os.PathLike[str] | None = None,
    *,
    config: RegistrarConfig | None = None,
    announce: Callable[[str], None] | None = print,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the built-in registrar on ``transport:host:port`` with ``accounts_count``
    ephemeral accounts until cancelled or ``stop`` is set; the accounts are written to
    ``credentials_path`` (CSV ``username,password,domain``) and ``announce`` is told where it
    listens and where the credentials are."""
    running = RunningRegistrar(
        host, port, transport=transport, accounts=accounts_count, config=config
    )
    async with running:
        written = None
        if credentials_path is not None:
            written = write_credentials(credentials_path, running.accounts)
        if announce is not None:
            announce(_banner(running, written))
        await (stop or asyncio.Event()).wait()


def _banner(running: RunningRegistrar, credentials: Path | None) -> str:
    host, port = running.address
    shown = f"[{host}]" if ":" in host else host
    lines = [
        f"callmeter registrar listening on {running.kind}:{shown}:{port} "
        f"(domain {running.config.domain}, {len(running.accounts)} accounts)"
    ]
    if credentials is not None:
        lines.append(f"credentials written to {credentials} (username,password,domain)")
    return "\n".join(lines)
