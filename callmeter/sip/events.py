"""Events a SIP core hands to its application, in the past tense (STYLE.md principle 4).

Busy, timeouts and 5xx are what a load test measures: they are events carrying the status and
the timestamps that call-timing metrics need, never exceptions. Every timestamp is the core's
``now`` (monotonic loop seconds) at the moment the message was sent or received.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from callmeter.sip.core import Address

__all__ = [
    "CallAnswered",
    "CallCancelled",
    "CallEnded",
    "CallEvent",
    "CallFailed",
    "CallRinging",
    "CallTiming",
    "Event",
    "IncomingCall",
    "MalformedMessageReceived",
    "Registered",
    "RegistrationFailed",
    "TransactionTimedOut",
    "Unregistered",
]


@dataclass(frozen=True, slots=True)
class CallTiming:
    """When each step of a call happened (None: it did not happen). For a UAC: INVITE sent,
    first 100, first 18x, 2xx received, ACK sent, BYE sent or received, end of the call. For a
    UAS: INVITE received, 100/18x/2xx sent, ACK received, BYE, end."""

    invite: float | None = None
    trying: float | None = None
    ringing: float | None = None
    answered: float | None = None
    ack: float | None = None
    bye: float | None = None
    ended: float | None = None

    @property
    def post_dial_delay_s(self) -> float | None:
        """INVITE to first 18x: post-dial delay, and RFC 6076 4.3 SRD of a successful setup."""
        if self.invite is None or self.ringing is None:
            return None
        return self.ringing - self.invite

    @property
    def setup_time_s(self) -> float | None:
        """INVITE to 2xx."""
        if self.invite is None or self.answered is None:
            return None
        return self.answered - self.invite

    @property
    def duration_s(self) -> float | None:
        """2xx to end of the call."""
        if self.answered is None or self.ended is None:
            return None
        return self.ended - self.answered


@dataclass(frozen=True, slots=True)
class Event:
    at: float


@dataclass(frozen=True, slots=True)
class Registered(Event):
    aor: str
    expires: int


@dataclass(frozen=True, slots=True)
class RegistrationFailed(Event):
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Unregistered(Event):
    aor: str


@dataclass(frozen=True, slots=True)
class CallEvent(Event):
    call_id: str


@dataclass(frozen=True, slots=True)
class IncomingCall(CallEvent):
    caller: str
    callee: str


@dataclass(frozen=True, slots=True)
class CallRinging(CallEvent):
    status: int


@dataclass(frozen=True, slots=True)
class CallAnswered(CallEvent):
    """UAC: a 2xx arrived (and was ACKed). UAS: the ACK for our 2xx arrived."""

    timing: CallTiming


@dataclass(frozen=True, slots=True)
class CallFailed(CallEvent):
    """The call never got established: a 3xx-6xx, a timeout (408) or a failed negotiation."""

    status: int
    reason: str
    timing: CallTiming


@dataclass(frozen=True, slots=True)
class CallCancelled(CallEvent):
    by: Literal["local", "remote"]
    timing: CallTiming


@dataclass(frozen=True, slots=True)
class CallEnded(CallEvent):
    """An established call ended with a BYE from either side. ``status`` is the BYE's final
    response (408 when it timed out) for a local hang-up, 200 for a remote one."""

    by: Literal["local", "remote"]
    status: int
    timing: CallTiming


@dataclass(frozen=True, slots=True)
class TransactionTimedOut(Event):
    method: str
    call_id: str


@dataclass(frozen=True, slots=True)
class MalformedMessageReceived(Event):
    """A message from ``addr`` that did not parse; ``answered`` is the status we replied with
    (None when it could not be answered, e.g. a broken response)."""

    addr: Address
    error: str
    answered: int | None
