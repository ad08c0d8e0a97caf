"""Credentials: argon2 password hashes, session tokens and API keys.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended
profile). Session tokens and API keys are 256-bit random strings: a fast SHA-256 of such a
secret is as strong as a slow KDF (there is nothing to guess), so they are stored as SHA-256
hex digests and looked up by digest. An API key is ``cmk_`` + 43 URL-safe characters; it is
returned once, when created, and only its first 12 characters are kept in clear to tell keys
apart in a list.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "API_KEY_PREFIX",
    "SESSION_PREFIX",
    "SESSION_TTL_S",
    "hash_password",
    "hash_token",
    "new_api_key",
    "new_session_token",
    "verify_password",
]

API_KEY_PREFIX = "cmk_"
SESSION_PREFIX = "cms_"
SESSION_TTL_S = 14 * 24 * 3600.0
SHOWN_PREFIX_CHARS = 12
MIN_PASSWORD_CHARS = 8

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted, parameters encoded in the string)."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"password: at least {MIN_PASSWORD_CHARS} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; never raises for a wrong password or a broken hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    """The stored form of a session token or API key."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """A new key and the prefix kept in clear: ``("cmk_Xy...", "cmk_Xy3k9Qa0")``."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:SHOWN_PREFIX_CHARS]


def new_invitation_token() -> str:
    return "cmi_" + secrets.token_urlsafe(32)
