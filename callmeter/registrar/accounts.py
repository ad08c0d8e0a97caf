"""SIP accounts of the built-in registrar: an in-memory table and ephemeral provisioning.

A test run with no SIP infrastructure gets ``n`` fresh accounts from :func:`provision`:
random ``cm-<hex>`` usernames and random passwords, drawn from the ``rng`` the caller passes
(a ``random.SystemRandom`` for a real run, a seeded ``random.Random`` in tests). The table is
single-domain: it is keyed by username, and every account shares the registrar's realm
(RFC 3261 section 22.1: the realm names the protection domain).

H(A1) values (RFC 7616 section 3.4.2) are computed once per (user, realm, algorithm) and
cached, so checking a digest response costs two hashes, not three.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from callmeter.sip.auth import HA1, MD5, compute_ha1

__all__ = ["USERNAME_PREFIX", "Account", "AccountTable", "provision"]

USERNAME_PREFIX = "cm-"
_USERNAME_BITS = 40  # 10 hex digits: collisions are retried, so this only keeps names short
_PASSWORD_BITS = 96  # 24 hex digits


@dataclass(frozen=True, slots=True)
class Account:
    """One SIP account: what a user agent needs to register (``sip:username@domain``)."""

    username: str
    password: str
    domain: str

    @property
    def aor(self) -> str:
        """The address-of-record (RFC 3261 section 10.2.1)."""
        return f"sip:{self.username}@{self.domain}"


class AccountTable:
    """Accounts by username, with cached H(A1) values for digest checks."""

    __slots__ = ("_accounts", "_ha1")

    def __init__(self, accounts: Iterable[Account] = ()) -> None:
        self._accounts: dict[str, Account] = {}
        self._ha1: dict[str, dict[tuple[str, str], HA1]] = {}  # user -> (realm, alg) -> HA1
        for account in accounts:
            self.add(account)

    def add(self, account: Account) -> None:
        """Add or replace an account (a new password drops its cached H(A1))."""
        self.remove(account.username)
        self._accounts[account.username] = account

    def remove(self, username: str) -> Account | None:
        self._ha1.pop(username, None)
        return self._accounts.pop(username, None)

    def get(self, username: str) -> Account | None:
        return self._accounts.get(username)

    def __contains__(self, username: object) -> bool:
        return username in self._accounts

    def __len__(self) -> int:
        return len(self._accounts)

    def __iter__(self) -> Iterator[Account]:
        return iter(list(self._accounts.values()))

    def ha1(self, username: str, realm: str, algorithm: str = MD5) -> HA1 | None:
        """H(username:realm:password) for ``algorithm``'s base hash, or None for an unknown
        user. ``algorithm`` must be a base algorithm (MD5 or SHA-256)."""
        cached = self._ha1.get(username)
        if cached is not None and (value := cached.get((realm, algorithm))) is not None:
            return value
        account = self._accounts.get(username)
        if account is None:
            return None
        value = HA1(compute_ha1(username, realm, account.password, algorithm), algorithm)
        self._ha1.setdefault(username, {})[(realm, algorithm)] = value
        return value

    def provision(self, n: int, rng: random.Random, domain: str) -> list[Account]:
        """Create ``n`` new accounts in ``domain`` (see :func:`provision`) and add them."""
        accounts = provision(n, rng, domain, taken=self._accounts.keys())
        for account in accounts:
            self._accounts[account.username] = account
        return accounts


def provision(
    n: int, rng: random.Random, domain: str, *, taken: Iterable[str] = ()
) -> list[Account]:
    """``n`` ephemeral accounts with random ``cm-<hex>`` usernames (distinct from each other
    and from ``taken``) and random hex passwords, all in ``domain``."""
    if n < 0:
        raise ValueError(f"cannot provision {n} accounts")
    used = set(taken)
    accounts: list[Account] = []
    while len(accounts) < n:
        username = f"{USERNAME_PREFIX}{rng.getrandbits(_USERNAME_BITS):010x}"
        if username in used:
            continue
        used.add(username)
        password = f"{rng.getrandbits(_PASSWORD_BITS):024x}"
        accounts.append(Account(username, password, domain))
    return accounts
