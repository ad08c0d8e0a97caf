"""The built-in SIP registrar and record-routing proxy: a test needs no SIP infrastructure.

Sans-I/O core (:class:`Registrar`, :class:`LocationService`, :class:`AccountTable`) plus a thin
asyncio shell (:func:`serve`, :class:`RunningRegistrar`) on ``callmeter.transport``. The shell
is imported on first use, so importing the core never imports asyncio or sockets.
"""

from typing import TYPE_CHECKING, Any

from callmeter.registrar.accounts import USERNAME_PREFIX, Account, AccountTable, provision
from callmeter.registrar.guard import DigestGuard, Verdict
from callmeter.registrar.location import Binding, LocationService, RegisterOutcome
from callmeter.registrar.proxy import ALLOW, Registrar, RegistrarConfig

if TYPE_CHECKING:
    from callmeter.registrar.server import (
        RunningRegistrar,
        read_credentials,
        serve,
        write_credentials,
    )

_SHELL = frozenset({"RunningRegistrar", "read_credentials", "serve", "write_credentials"})

__all__ = [
    "ALLOW",
    "USERNAME_PREFIX",
    "Account",
    "AccountTable",
    "Binding",
    "DigestGuard",
    "LocationService",
    "RegisterOutcome",
    "Registrar",
    "RegistrarConfig",
    "RunningRegistrar",
    "Verdict",
    "provision",
    "read_credentials",
    "serve",
    "write_credentials",
]


def __getattr__(name: str) -> Any:
    if name in _SHELL:
        from callmeter.registrar import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
