"""The one small exception hierarchy of the SIP core.

Exceptions are for broken contracts only. Busy, timeout and 5xx outcomes are events, never
exceptions (see ``callmeter.sip.events``).
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ParseError", "RemoteProtocolError", "SipError"]


class SipError(Exception):
    """Base of every error raised by ``callmeter.sip``."""


class RemoteProtocolError(SipError):
    """The peer broke the protocol. ``status`` is the response code to answer a request with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ParseError(RemoteProtocolError, ValueError):
    """Bytes that are not a valid SIP message (or header, or URI). The message names what is
    wrong; ``status`` is what a UAS answers (400 unless said otherwise, e.g. 505 for a bad
    version)."""


class LocalProtocolError(SipError):
    """We were asked to do something the protocol forbids (a bug in the caller)."""
