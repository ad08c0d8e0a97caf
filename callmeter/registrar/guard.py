"""Digest authentication on the registrar's side (RFC 3261 section 22, RFC 7616), sans-I/O.

:class:`DigestGuard` issues challenges with stateless HMAC nonces
(:class:`~callmeter.sip.auth.NonceManager`) and checks the credentials of a request in O(1):
one HMAC for the nonce, two hashes for the response (H(A1) is cached by the account table),
one dict update for the nonce count. It answers with a :class:`Verdict`:

- ``MISSING``: no credentials for our realm: challenge (401 or 407).
- ``STALE``: the password was right but the nonce is old, forgotten or not ours (e.g. from
  before a restart), or its nc was replayed: challenge with ``stale=true`` so the client
  retries at once with the new nonce (RFC 7616 section 3.3).
- ``REJECTED``: unknown user, wrong password or unexpected algorithm: challenge anew; a
  client whose fresh credentials were refused stops there (RFC 3261 section 22.2).
- ``AUTHENTICATED``: with the username, which the caller checks against the AOR (403).

The digest-uri is not compared with the Request-URI (RFC 7616 section 3.4.6 asks for it):
SIPp, the reference load tool, puts the proxy's host:port there, and Kamailio accepts that
too. Credentials still cannot be replayed onto another request: the response hash covers
the nonce count, and ``accept_nc`` refuses a count that does not grow.
"""

from __future__ import annotations

import enum
import re
from typing import Any, cast

from callmeter.registrar.accounts import AccountTable
from callmeter.sip.auth import (
    MAX_HEADER_VALUE_LEN,
    MD5,
    QOP_AUTH,
    Credentials,
    NonceManager,
    make_challenge,
    verify,
)
from callmeter.sip.errors import ParseError
from callmeter.sip.message import Request

__all__ = ["DigestGuard", "Verdict", "parse_credentials"]

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_SCHEME = re.compile(r"[ \t]*[Dd][Ii][Gg][Ee][Ss][Tt][ \t]+")
_PARAM = re.compile(
    rf'({_TOKEN})[ \t]*=[ \t]*(?:"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"|({_TOKEN}))[ \t]*(?:,[ \t]*|$)'
)
_NAMES = frozenset(
    ("username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "opaque", "qop", "nc")
)
_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")


class Verdict(enum.Enum):
    AUTHENTICATED = "authenticated"
    MISSING = "missing"
    STALE = "stale"
    REJECTED = "rejected"


class DigestGuard:
    """Challenges and checks digest credentials for one realm against an account table."""

    __slots__ = ("accounts", "algorithm", "nonce_max_age_s", "nonces", "qop", "realm")

    def __init__(
        self,
        accounts: AccountTable,
        realm: str,
        secret: bytes,
        *,
        nonce_max_age_s: float = 300.0,
        algorithm: str = MD5,
        qop: str = QOP_AUTH,
    ) -> None:
        self.accounts = accounts
        self.realm = realm
        self.nonces = NonceManager(secret)
        self.nonce_max_age_s = nonce_max_age_s
        self.algorithm = algorithm
        self.qop = qop

    def challenge(self, now: float, *, stale: bool = False) -> str:
        """A WWW-Authenticate / Proxy-Authenticate value with a fresh nonce (section 22.4)."""
        nonce = self.nonces.issue(now)
        return make_challenge(self.realm, nonce, self.algorithm, self.qop, stale).serialize()

    def check(self, request: Request, header: str, now: float) -> tuple[Verdict, str | None]:
        """Check the first credentials for our realm in ``header`` (Authorization or
        Proxy-Authorization); values that do not parse are skipped (a 401/407 follows)."""
        for value in request.headers.get_all(header):
            try:
                credentials = parse_credentials(value)
            except ParseError:
                continue
            if credentials.realm == self.realm:
                return self._check(credentials, request, now), credentials.username
        return Verdict.MISSING, None

    def _check(self, credentials: Credentials, request: Request, now: float) -> Verdict:
        if (credentials.algorithm or MD5).upper() != self.algorithm.upper():
            return Verdict.REJECTED
        ha1 = self.accounts.ha1(credentials.username, self.realm, self.algorithm)
        if ha1 is None:
            return Verdict.REJECTED
        if not verify(credentials, request.method, ha1, realm=self.realm, body=request.body):
            return Verdict.REJECTED
        status = self.nonces.check(credentials.nonce, now, self.nonce_max_age_s)
        nc = credentials.nonce_count
        if status != "valid" or nc is None or not self.nonces.accept_nc(credentials.nonce, nc):
            return Verdict.STALE
        return Verdict.AUTHENTICATED


def parse_credentials(text: str) -> Credentials:
    """``Credentials.parse`` with a fast path: a value in the plain form every client sends
    (``Digest name="value", name=token, ...``: no escapes, no folding, no duplicates, all
    mandatory parameters) is read with two regular expressions, several times faster than
    the general scanner; anything else goes to ``Credentials.parse``, which accepts or
    refuses it with the precise error. Both give equal results (tests/test_registrar.py)."""
    scheme = _SCHEME.match(text)
    if scheme is None or len(text) > MAX_HEADER_VALUE_LEN:
        return Credentials.parse(text)
    found: dict[str, str] = {}
    extras: list[tuple[str, str]] = []
    position, end = scheme.end(), len(text)
    while position < end:
        param = _PARAM.match(text, position)
        if param is None:
            return Credentials.parse(text)
        name, quoted, token = param.groups()
        lower = name.lower()
        if lower in found or any(k.lower() == lower for k, _ in extras):
            return Credentials.parse(text)  # a duplicate: let the scanner name it
        if lower in _NAMES:
            found[lower] = token if quoted is None else quoted
        else:
            extras.append((name, token if quoted is None else quoted))
        position = param.end()
    if not _complete(found):
        return Credentials.parse(text)
    return Credentials(**cast("dict[str, Any]", found), params=tuple(extras))


def _complete(found: dict[str, str]) -> bool:
    """The checks ``Credentials.parse`` makes after scanning (RFC 7616 section 3.4)."""
    if not all(name in found for name in ("username", "realm", "nonce", "uri", "response")):
        return False
    if "qop" in found and not ("cnonce" in found and "nc" in found):
        return False
    return "nc" not in found or _HEX8.fullmatch(found["nc"]) is not None
