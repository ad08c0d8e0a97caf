"""HTTP Digest authentication for SIP (RFC 3261 section 22, RFC 2617, RFC 7616), sans-I/O.

Theory of operation. A server answers a request with 401/407 carrying a ``Challenge``
(WWW-Authenticate / Proxy-Authenticate); the client retries with ``Credentials`` (Authorization
/ Proxy-Authorization) whose ``response`` hashes the password, the nonce and the request
(RFC 7616 section 3.4.1). Both header values parse and serialize: ``parse(x.serialize()) == x``.
Client: ``DigestSession`` remembers the last challenge per realm and counts nc, so a UA can
pre-authorize later requests (RFC 7616 section 3.4, nc). Server: ``make_challenge``, ``verify``
and ``NonceManager`` (stateless HMAC nonces, nc replay tracking in bounded memory).
Randomness (cnonce) and time (``now``) are arguments; nothing here reads a clock or socket.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from callmeter.sip.errors import LocalProtocolError, ParseError

__all__ = [
    "DIGEST",
    "HA1",
    "MAX_HEADER_VALUE_LEN",
    "MD5",
    "MD5_SESS",
    "QOP_AUTH",
    "QOP_AUTH_INT",
    "SHA_256",
    "SHA_256_SESS",
    "Challenge",
    "Credentials",
    "DigestSession",
    "NonceManager",
    "NonceStatus",
    "compute_ha1",
    "compute_response",
    "credentials_rejected",
    "make_challenge",
    "verify",
]

DIGEST = "Digest"  # auth-scheme, RFC 3261 section 25.1 (matched case-insensitively)
MD5 = "MD5"  # RFC 7616 section 3.3: the default when a challenge names no algorithm
MD5_SESS = "MD5-sess"
SHA_256 = "SHA-256"
SHA_256_SESS = "SHA-256-sess"
QOP_AUTH = "auth"  # RFC 7616 section 3.3 qop-options
QOP_AUTH_INT = "auth-int"
MAX_HEADER_VALUE_LEN = 8192  # longer header values are refused, so parsing work is bounded

NonceStatus = Literal["valid", "stale", "invalid"]
Params = tuple[tuple[str, str], ...]

_HASHLIB_NAMES = {MD5: "md5", SHA_256: "sha256"}  # base algorithm, upper case -> hashlib name
_SESS = "-SESS"
_WS = " \t\r\n"  # LWS outside quoted strings (RFC 3261 section 25.1, folding included)
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_HEX = frozenset("0123456789abcdefABCDEF")
_CHALLENGE_PARAMS = frozenset({"realm", "nonce", "algorithm", "qop", "opaque", "stale"})
_CREDENTIALS_REQUIRED = ("username", "realm", "nonce", "uri", "response")
_CREDENTIALS_OPTIONAL = ("algorithm", "cnonce", "opaque", "qop", "nc")


def _param(name: str, value: str, quoted: bool) -> str:
    """One auth-param; a value that is not a token is always quoted (RFC 7235 section 2.1)."""
    if quoted or not value or not all(c in _TOKEN for c in value):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name}={value}"


def _scan(text: str, i: int, chars: str | frozenset[str]) -> int:
    while i < len(text) and text[i] in chars:
        i += 1
    return i


def _scan_quoted(text: str, i: int, what: str, name: str) -> tuple[str, int]:
    """A quoted-string whose opening quote is at ``i - 1`` (RFC 3261 section 25.1)."""
    out: list[str] = []
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":  # quoted-pair
            i += 1
            if i == len(text):
                break
            c = text[i]
        if (c < " " and c != "\t") or c == "\x7f":  # CTLs are refused, escaped or not
            raise ParseError(f'{what}: control character in "{name}"')
        out.append(c)
        i += 1
    raise ParseError(f'{what}: unterminated quoted string in "{name}"')


def _scan_param(text: str, i: int, what: str) -> tuple[str, str, int]:
    """``auth-param = token EQUAL ( token / quoted-string )`` at ``i`` (RFC 3261 section 25.1)."""
    end = _scan(text, i, _TOKEN)
    name = text[i:end]
    if not name:
        raise ParseError(f'{what}: unexpected character "{text[i]}"')
    i = _scan(text, end, _WS)
    if i == len(text) or text[i] != "=":
        raise ParseError(f'{what}: expected "=" after "{name}"')
    i = _scan(text, i + 1, _WS)
    if i < len(text) and text[i] == '"':
        value, i = _scan_quoted(text, i + 1, what, name)
        return name, value, i
    end = _scan(text, i, _TOKEN)
    if end == i:
        raise ParseError(f'{what}: missing value for "{name}"')
    return name, text[i:end], end


def _parse_params(text: str, what: str, known: frozenset[str]) -> tuple[dict[str, str], Params]:
    """Split ``Digest name=value, ...`` into known params (lower-cased names) and the others in
    order. Names are case-insensitive and occur once (RFC 7235 section 2.1); empty list
    elements are skipped (RFC 7230 section 7)."""
    if len(text) > MAX_HEADER_VALUE_LEN:
        raise ParseError(f"{what}: longer than {MAX_HEADER_VALUE_LEN} characters")
    try:  # the message layer decodes with surrogateescape; other surrogates cannot be hashed
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ParseError(f"{what}: invalid character encoding") from None
    start = _scan(text, 0, _WS)
    i = _scan(text, start, _TOKEN)
    scheme = text[start:i]
    if scheme.lower() != DIGEST.lower():
        raise ParseError(f'{what}: unsupported scheme "{scheme}"' if scheme else f"{what}: empty")
    if i < len(text) and text[i] not in _WS:
        raise ParseError(f'{what}: expected space after "{scheme}"')
    found: dict[str, str] = {}
    extras: list[tuple[str, str]] = []
    seen: set[str] = set()
    i = _scan(text, i, _WS)
    while i < len(text):
        if text[i] == ",":
            i = _scan(text, i + 1, _WS)
            continue
        name, value, i = _scan_param(text, i, what)
        if name.lower() in seen:
            raise ParseError(f'{what}: duplicate "{name}"')
        seen.add(name.lower())
        if name.lower() in known:
            found[name.lower()] = value
        else:
            extras.append((name, value))
        i = _scan(text, i, _WS)
        if i < len(text) and text[i] != ",":
            raise ParseError(f'{what}: expected "," after "{name}"')
    return found, tuple(extras)


def _require(found: dict[str, str], names: tuple[str, ...], what: str) -> None:
    for name in names:
        if name not in found:
            raise ParseError(f"{what}: missing {name}")


@dataclass(frozen=True, slots=True)
class Challenge:
    """A Digest challenge: a WWW-Authenticate / Proxy-Authenticate value (RFC 3261 sections
    22.4 and 25.1 ``digest-cln``, RFC 7616 section 3.3). ``algorithm`` is kept as sent (None:
    absent, meaning MD5); ``qop`` lists the options offered (empty: RFC 2069 mode); ``stale``
    means "retry with this new nonce", not a wrong password; ``params`` keeps unknown
    auth-params (e.g. ``domain``) in order."""

    realm: str
    nonce: str
    algorithm: str | None = None
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> Challenge:
        """Parse a header value; ``ParseError`` names what is wrong."""
        what = "Digest challenge"
        found, extras = _parse_params(text, what, _CHALLENGE_PARAMS)
        _require(found, ("realm", "nonce"), what)
        qop = found.get("qop", "")
        return cls(
            realm=found["realm"],
            nonce=found["nonce"],
            algorithm=found.get("algorithm"),
            qop=tuple(o.strip(_WS) for o in qop.split(",") if o.strip(_WS)),
            opaque=found.get("opaque"),
            stale=found.get("stale", "").lower() == "true",  # anything else is false (RFC 2617)
            params=extras,
        )

    def serialize(self) -> str:
        """Kamailio's order: realm, nonce, [opaque], [qop], [stale], [algorithm], others."""
        parts = [_param("realm", self.realm, True), _param("nonce", self.nonce, True)]
        if self.opaque is not None:
            parts.append(_param("opaque", self.opaque, True))
        if self.qop:
            parts.append(_param("qop", ",".join(self.qop), True))
        if self.stale:
            parts.append("stale=true")
        if self.algorithm is not None:
            parts.append(_param("algorithm", self.algorithm, False))
        parts.extend(_param(n, v, False) for n, v in self.params)
        return f"{DIGEST} " + ", ".join(parts)

    __str__ = serialize


@dataclass(frozen=True, slots=True)
class Credentials:
    """Digest credentials: an Authorization / Proxy-Authorization value (RFC 3261 sections 22.4
    and 25.1 ``digest-response``, RFC 7616 section 3.4). ``nc`` keeps its wire form (8 hex
    digits) because the response hash covers it; ``nonce_count`` is its value."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """Parse a header value; ``ParseError`` names what is wrong. With qop, cnonce and nc
        are mandatory (RFC 7616 section 3.4)."""
        what = "Digest credentials"
        found, extras = _parse_params(
            text, what, frozenset(_CREDENTIALS_REQUIRED).union(_CREDENTIALS_OPTIONAL)
        )
        _require(found, _CREDENTIALS_REQUIRED, what)
        if "qop" in found:
            _require(found, ("cnonce", "nc"), what)
        nc = found.get("nc")
        if nc is not None and (len(nc) != 8 or not all(c in _HEX for c in nc)):  # 8LHEX
            raise ParseError(f'{what}: invalid nc "{nc}"')
        return cls(**cast("dict[str, Any]", found), params=extras)  # names checked above

    @property
    def nonce_count(self) -> int | None:
        return None if self.nc is None else int(self.nc, 16)

    def serialize(self) -> str:
        """RFC 7616 section 3.4 quoting: algorithm, qop and nc are tokens, the rest quoted."""
        parts = [_param(n, getattr(self, n), True) for n in _CREDENTIALS_REQUIRED]
        for name in _CREDENTIALS_OPTIONAL:
            if (value := getattr(self, name)) is not None:
                parts.append(_param(name, value, name in ("cnonce", "opaque")))
        parts.extend(_param(n, v, False) for n, v in self.params)
        return f"{DIGEST} " + ", ".join(parts)

    __str__ = serialize


@dataclass(frozen=True, slots=True)
class HA1:
    """A stored H(A1) = H(username:realm:password) hex digest for base ``algorithm`` (MD5 or
    SHA-256), what a registrar may keep instead of the password (RFC 7616 section 3.4.2)."""

    value: str
    algorithm: str = MD5


def _split_algorithm(algorithm: str | None) -> tuple[str, bool] | None:
    """(base algorithm, is -sess) when supported, else None (RFC 7616 section 3.3)."""
    name = (algorithm or MD5).upper()
    sess = name.endswith(_SESS)
    base = name[: -len(_SESS)] if sess else name
    return (base, sess) if base in _HASHLIB_NAMES else None


def _h(base: str, *parts: str | bytes) -> str:
    """H(part ":" part ...) over UTF-8 (RFC 7616 section 3.4.1); surrogate-escaped bytes from
    the message layer hash as the bytes the peer sent."""
    data = b":".join(
        p if isinstance(p, bytes) else p.encode("utf-8", "surrogateescape") for p in parts
    )
    return hashlib.new(_HASHLIB_NAMES[base], data).hexdigest()


def compute_ha1(username: str, realm: str, password: str, algorithm: str = MD5) -> str:
    """H(username ":" realm ":" password) (RFC 7616 section 3.4.2; ``-sess`` is not applied)."""
    split = _split_algorithm(algorithm)
    if split is None:
        raise LocalProtocolError(f'unsupported digest algorithm "{algorithm}"')
    return _h(split[0], username, realm, password)


def _response(ha1: str, c: Credentials, method: str, body: bytes) -> str | None:
    split = _split_algorithm(c.algorithm)
    qop = None if c.qop is None else c.qop.lower()
    if split is None or qop not in (None, QOP_AUTH, QOP_AUTH_INT):
        return None
    base, sess = split
    if ((sess or qop) and c.cnonce is None) or (qop and c.nc is None):
        return None
    if sess:  # RFC 7616 section 3.4.2
        ha1 = _h(base, ha1, c.nonce, str(c.cnonce))
    ha2 = (
        _h(base, method, c.uri, _h(base, body)) if qop == QOP_AUTH_INT else _h(base, method, c.uri)
    )
    if qop is None:  # RFC 2617 section 3.2.2.1, RFC 2069 compatibility
        return _h(base, ha1, c.nonce, ha2)
    return _h(base, ha1, c.nonce, str(c.nc), str(c.cnonce), qop, ha2)


def compute_response(ha1: str, credentials: Credentials, method: str, body: bytes = b"") -> str:
    """The ``response`` for ``credentials`` (its own ``response`` is ignored) from the base
    ``ha1`` (RFC 7616 sections 3.4.1 to 3.4.3). ``body`` only counts for qop auth-int."""
    response = _response(ha1, credentials, method, body)
    if response is None:
        raise LocalProtocolError(f"digest: cannot compute a response for {credentials}")
    return response


def _pick_qop(offered: tuple[str, ...]) -> str | None:
    """``auth`` when offered, else ``auth-int`` (RFC 7616 section 3.4: the client picks one)."""
    lowered = {o.lower() for o in offered}
    return next((q for q in (QOP_AUTH, QOP_AUTH_INT) if q in lowered), None)


def credentials_rejected(challenge: Challenge, sent: Credentials | None) -> bool:
    """Whether a 401/407 ``challenge`` to a request that carried ``sent`` means the password
    was refused, so the UA must not retry (RFC 3261 sections 22.2, 22.3). False when stale, for
    another realm, or when ``sent`` were pre-authorized (nc > 1) with another nonce: those earn
    one fresh retry, whose nc is 1, so retries always end. The UA still caps stale retries."""
    if sent is None or challenge.stale or sent.realm != challenge.realm:
        return False
    return sent.nonce_count in (None, 1) or sent.nonce == challenge.nonce


class DigestSession:
    """Client digest state of one account (RFC 7616 section 3.4, RFC 3261 section 22).

    Per realm it remembers the last challenge, the last nc used with its nonce and the first
    cnonce, reused with ``-sess`` so H(A1) is the session key of RFC 2617 section 3.2.2.2
    whichever cnonce the server hashes. When ``realm`` is configured only challenges for that
    realm are answered: the realm alone defines the protection domain the credentials belong
    to (RFC 3261 section 22.1) and the server hashes its own realm, so answering another realm
    could only fail or hand credentials to a foreign domain.
    """

    def __init__(self, username: str, password: str, realm: str | None = None) -> None:
        self.username = username
        self.realm = realm
        self._password = password
        self._last: dict[str, tuple[Challenge, int, str]] = {}  # realm -> (chal, nc, cnonce)

    def refusal(self, challenge: Challenge) -> str | None:
        """Why ``challenge`` cannot be answered, or None when it can."""
        if self.realm is not None and challenge.realm != self.realm:
            return f'challenge realm "{challenge.realm}" is not the configured "{self.realm}"'
        if _split_algorithm(challenge.algorithm) is None:
            return f'unsupported algorithm "{challenge.algorithm}"'
        if challenge.qop and _pick_qop(challenge.qop) is None:
            return f'unsupported qop "{",".join(challenge.qop)}"'
        return None

    def authorize(
        self, challenge: Challenge, method: str, uri: str, cnonce: str, body: bytes = b""
    ) -> Credentials | None:
        """Answer a 401/407 ``challenge``; None when ``refusal()`` says why not. The nonce of
        the last challenge continues its nc; a new nonce starts at 1."""
        if self.refusal(challenge) is not None:
            return None
        last = self._last.pop(challenge.realm, None)
        if last is not None and last[0].nonce == challenge.nonce:
            return self._answer(challenge, last[1] + 1, last[2], cnonce, method, uri, body)
        return self._answer(challenge, 1, cnonce, cnonce, method, uri, body)

    def preauthorize(
        self, method: str, uri: str, cnonce: str, body: bytes = b"", realm: str | None = None
    ) -> Credentials | None:
        """Credentials for a new request from the remembered challenge of ``realm`` (default:
        the configured realm, else the last one challenged) with the next nc; None when
        there is none."""
        realm = realm or self.realm or next(reversed(self._last), None)
        last = self._last.pop(realm, None) if realm is not None else None
        if last is None:
            return None
        return self._answer(last[0], last[1] + 1, last[2], cnonce, method, uri, body)

    def _answer(
        self, c: Challenge, nc: int, first: str, cnonce: str, method: str, uri: str, body: bytes
    ) -> Credentials | None:
        split = _split_algorithm(c.algorithm)
        if split is None or nc > 0xFFFFFFFF:  # nc is 8LHEX: past it, wait for a new nonce
            return None
        self._last[c.realm] = (c, nc, first)
        qop = _pick_qop(c.qop)
        cn = (first if split[1] else cnonce) if qop or split[1] else None
        nc_text = f"{nc:08x}" if qop else None
        creds = Credentials(
            self.username, c.realm, c.nonce, uri, "", c.algorithm, cn, c.opaque, qop, nc_text
        )
        ha1 = compute_ha1(self.username, c.realm, self._password, split[0])
        return replace(creds, response=compute_response(ha1, creds, method, body))


def make_challenge(
    realm: str,
    nonce: str,
    algorithm: str | None = MD5,
    qop: str | None = QOP_AUTH,
    stale: bool = False,
    opaque: str | None = None,
) -> Challenge:
    """A challenge for a 401/407 (RFC 3261 section 22.4). ``qop`` is a comma list, or None for
    RFC 2069 mode; ``stale=True`` when the password was right but the nonce old (RFC 7616
    section 3.3)."""
    if _split_algorithm(algorithm) is None:
        raise LocalProtocolError(f'unsupported digest algorithm "{algorithm}"')
    options = tuple(o.strip() for o in (qop or "").split(",") if o.strip())
    return Challenge(realm, nonce, algorithm, options, opaque, stale)


def verify(
    credentials: Credentials,
    method: str,
    password_or_ha1: str | HA1,
    *,
    realm: str,
    uri: str | None = None,
    body: bytes = b"",
    require_qop: bool = True,
) -> bool:
    """Whether ``credentials`` prove the password for a request (RFC 7616 section 3.4.1).

    ``realm`` is the server's realm: credentials for another fail. ``uri``, when given, must
    equal the digest-uri exactly (RFC 7616 section 3.4.6: the Request-URI). ``require_qop``
    refuses RFC 2069 answers (no nc, so replayable). A ``str`` is a plaintext password; an
    ``HA1`` must be for the credentials' base algorithm. Nonce freshness, nc replay and the
    choice of algorithm are the caller's (``NonceManager``). Never raises on peer input.
    """
    split = _split_algorithm(credentials.algorithm)
    if split is None or credentials.realm != realm or (require_qop and not credentials.qop):
        return False
    if uri is not None and credentials.uri != uri:
        return False
    if isinstance(password_or_ha1, HA1):
        if _split_algorithm(password_or_ha1.algorithm) != (split[0], False):
            return False
        ha1 = password_or_ha1.value.lower()
    else:
        ha1 = compute_ha1(credentials.username, realm, password_or_ha1, split[0])
    expected = _response(ha1, credentials, method, body)
    given = credentials.response.lower().encode("utf-8", "replace")
    return expected is not None and hmac.compare_digest(expected.encode(), given)


class NonceManager:
    """Stateless server nonces and nc replay tracking (RFC 7616 sections 3.3, 3.4 and 5.4).

    A nonce is hex(issue time in microseconds, 8 bytes signed + sequence, 4 bytes + the first
    16 bytes of HMAC-SHA256(secret, both)): ``check`` tells forged from valid from stale with
    no table. The sequence keeps nonces issued in the same microsecond distinct, so clients
    never share an nc counter. ``accept_nc`` keeps the highest nc of at most ``max_tracked``
    nonces; evicting one moves a horizon, and an untracked nonce issued at or before it is
    "stale" (the client retries with a new nonce) rather than open to replay.

    Registrar flow: ``check`` "invalid" -> new challenge; ``verify`` False -> 401/403; "stale"
    -> challenge with ``stale=True``; "valid" -> ``accept_nc`` False is a replay. Call
    ``accept_nc`` only after ``verify`` succeeded, so forged requests cannot burn counts.
    """

    _MAC_LEN = 16
    _RAW_LEN = 8 + 4 + _MAC_LEN

    def __init__(self, secret: bytes, max_tracked: int = 65536) -> None:
        if len(secret) < 16:
            raise ValueError("NonceManager secret must be at least 16 bytes")
        self._secret = secret
        self._max_tracked = max(1, max_tracked)
        self._seq = 0
        self._nc: dict[str, int] = {}  # nonce -> highest accepted nc, oldest first
        self._horizon_us: int | None = None

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[: self._MAC_LEN]

    def issue(self, now: float) -> str:
        """A new nonce stamped with ``now`` (seconds)."""
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        payload = int(now * 1e6).to_bytes(8, "big", signed=True) + self._seq.to_bytes(4, "big")
        return (payload + self._mac(payload)).hex()

    def _issued_us(self, nonce: str) -> int | None:
        """The issue time of a nonce this manager signed, else None."""
        if len(nonce) != 2 * self._RAW_LEN:
            return None
        try:
            raw = bytes.fromhex(nonce)
        except ValueError:
            return None
        if not hmac.compare_digest(raw[12:], self._mac(raw[:12])):
            return None
        return int.from_bytes(raw[:8], "big", signed=True)

    def _forgotten(self, nonce: str, issued_us: int) -> bool:
        horizon = self._horizon_us
        return horizon is not None and issued_us <= horizon and nonce not in self._nc

    def check(self, nonce: str, now: float, max_age_s: float) -> NonceStatus:
        """Classify ``nonce``: "invalid" (not ours, or from the future), "stale" (older than
        ``max_age_s``, or forgotten), else "valid". Reads state, changes none."""
        issued_us = self._issued_us(nonce)
        if issued_us is None or issued_us > int(now * 1e6):
            return "invalid"
        if int(now * 1e6) - issued_us > max_age_s * 1e6 or self._forgotten(nonce, issued_us):
            return "stale"
        return "valid"

    def accept_nc(self, nonce: str, nc: int) -> bool:
        """Record ``nc`` for ``nonce``; False when it does not grow (a replay, RFC 7616 section
        3.4), or the nonce is not ours or was forgotten."""
        issued_us = self._issued_us(nonce)
        if issued_us is None or self._forgotten(nonce, issued_us) or nc <= self._nc.get(nonce, 0):
            return False
        self._nc[nonce] = nc
        if len(self._nc) > self._max_tracked:
            oldest = next(iter(self._nc))
            del self._nc[oldest]
            oldest_us = self._issued_us(oldest)
            if oldest_us is not None:
                self._horizon_us = max(oldest_us, self._horizon_us or oldest_us)
        return True
