"""The lifecycle of one endpoint: its phase and its outcome (DESIGN.md "Test run"), sans-I/O.

Theory of operation
-------------------
An :class:`EndpointLifecycle` is fed what happens to one endpoint, each fact with the time it
happened: the user agent's events (``on_event``), a few commands of the shell
(``invite_sent``, ``hangup``), media facts (``media_started``, ``first_media``,
``negotiation_failed``), an OS error (``error``) and the end (``closed``). It keeps two things
and reports every change as a frozen, past-tense record pulled with ``next_record()`` (all of
them stay in ``records``):

* the **phase**, forward only: INITIALIZING, REGISTERED, CALLING, RINGING, NEGOTIATING, INCALL,
  DISCONNECTING, CLOSED (:class:`PhaseChanged`). A step may be skipped; a step backwards is
  ignored and counted in ``transitions_ignored``, never raised: a late retransmission or a
  second call must not break a loop that carries thousands of endpoints.
* the **outcome**, set once (:class:`OutcomeSet`): the first decisive fact wins; later ones
  are ignored and counted in ``outcomes_ignored``.

Phases
    ==============  ============================================================================
    REGISTERED      ``Registered`` (a refresh later on is not a step backwards, just a refresh)
    CALLING         ``invite_sent`` (caller) or ``IncomingCall`` (callee)
    RINGING         ``CallRinging`` (18x received); a callee's 18x sent is read from CallTiming
    NEGOTIATING     ``CallAnswered`` (2xx received and ACKed / ACK received), until media starts
    INCALL          ``media_started``; at the answer itself when the endpoint has no media
    DISCONNECTING   ``hangup`` (BYE or CANCEL sent), or the remote BYE/CANCEL
    CLOSED          the call's final event (``CallEnded``, ``CallFailed``, ``CallCancelled``),
                    a registration failure before any call, or ``closed``
    ==============  ============================================================================

    Steps the events do not report (a callee sends its 180 silently; a shell may not report
    the INVITE it sent) are recovered from the event's :class:`~callmeter.sip.events.CallTiming`,
    at the time they happened.

Outcomes
    ========================  ==================================================================
    REGISTRATION_FAILED       ``RegistrationFailed`` before the call (a failed refresh during a
                              call decides nothing: the call does)
    NEGOTIATION_FAILED        ``CallFailed`` with 488 or 606, or ``negotiation_failed``
    TIMEOUT                   ``CallFailed`` with 408, or ``TransactionTimedOut`` of the INVITE
    CALL_FAILED               any other ``CallFailed`` (3xx-6xx), and ``CallCancelled`` (487)
    SUCCESS                   ``CallEnded`` whose BYE got a 2xx, after media arrived (or with
                              no media configured)
    COMPLETED_WITH_WARNINGS   ``CallEnded`` with a 2xx, answered but no media ever received
    TEARDOWN_ERROR            ``CallEnded`` whose BYE got a non-2xx or timed out (408), or
                              ``closed`` while a call was under way
    OSERROR                   ``error`` (an OS error in the shell)
    ========================  ==================================================================

:func:`call_timing_row` turns a finished call's CallTiming into the catalog's one-shot call
timing values (``callmeter.metrics``, category ``call_timing``), and :func:`call_result`
folds an outcome into the call result a telecom report shows: SUCCESS, TIMEOUT, REJECTED or
ERROR.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from callmeter.metrics import CALL_TIMING_PROPERTIES
from callmeter.sip.events import (
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallFailed,
    CallRinging,
    CallTiming,
    Event,
    IncomingCall,
    Registered,
    RegistrationFailed,
    TransactionTimedOut,
)

__all__ = [
    "CallResult",
    "EndpointLifecycle",
    "Outcome",
    "OutcomeSet",
    "Phase",
    "PhaseChanged",
    "Record",
    "Role",
    "call_outcome",
    "call_result",
    "call_timing_row",
]

Role = Literal["caller", "callee"]
CallResult = Literal["SUCCESS", "TIMEOUT", "REJECTED", "ERROR"]
CallEnd = CallEnded | CallFailed | CallCancelled


class Phase(enum.StrEnum):
    """Where an endpoint is, in the only order it may go (DESIGN.md "Test run")."""

    INITIALIZING = "INITIALIZING"
    REGISTERED = "REGISTERED"
    CALLING = "CALLING"
    RINGING = "RINGING"
    NEGOTIATING = "NEGOTIATING"
    INCALL = "INCALL"
    DISCONNECTING = "DISCONNECTING"
    CLOSED = "CLOSED"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK: Final[dict[Phase, int]] = {phase: index for index, phase in enumerate(Phase)}


class Outcome(enum.StrEnum):
    """How an endpoint's run ended (DESIGN.md "Test run"); set once."""

    SUCCESS = "SUCCESS"
    COMPLETED_WITH_WARNINGS = "COMPLETED_WITH_WARNINGS"
    REGISTRATION_FAILED = "REGISTRATION_FAILED"
    CALL_FAILED = "CALL_FAILED"
    NEGOTIATION_FAILED = "NEGOTIATION_FAILED"
    TIMEOUT = "TIMEOUT"
    OSERROR = "OSERROR"
    TEARDOWN_ERROR = "TEARDOWN_ERROR"


@dataclass(frozen=True, slots=True)
class PhaseChanged:
    at: float
    phase: Phase
    previous: Phase


@dataclass(frozen=True, slots=True)
class OutcomeSet:
    """``status`` is the SIP status that decided it (None for a media or OS fact)."""

    at: float
    outcome: Outcome
    reason: str
    status: int | None = None


Record = PhaseChanged | OutcomeSet

NEGOTIATION_STATUSES: Final = frozenset({488, 606})  # Not Acceptable Here / Not Acceptable
TIMEOUT_STATUS: Final = 408
CANCELLED_STATUS: Final = 487  # Request Terminated (RFC 3261 9.2)

_RESULTS: Final[dict[Outcome, CallResult]] = {
    Outcome.SUCCESS: "SUCCESS",
    Outcome.COMPLETED_WITH_WARNINGS: "SUCCESS",  # the call completed; the warning is media
    Outcome.TIMEOUT: "TIMEOUT",
    Outcome.CALL_FAILED: "REJECTED",
    Outcome.NEGOTIATION_FAILED: "REJECTED",
    Outcome.REGISTRATION_FAILED: "ERROR",
    Outcome.OSERROR: "ERROR",
    Outcome.TEARDOWN_ERROR: "ERROR",
}


def call_outcome(end: CallEnd, *, media_received: bool, media_expected: bool = True) -> OutcomeSet:
    """The outcome a call's final event decides (the table in the module docstring)."""
    if isinstance(end, CallCancelled):
        return OutcomeSet(end.at, Outcome.CALL_FAILED, f"cancelled ({end.by})", CANCELLED_STATUS)
    if isinstance(end, CallFailed):
        if end.status in NEGOTIATION_STATUSES:
            outcome = Outcome.NEGOTIATION_FAILED
        elif end.status == TIMEOUT_STATUS:
            outcome = Outcome.TIMEOUT
        else:
            outcome = Outcome.CALL_FAILED
        return OutcomeSet(end.at, outcome, end.reason, end.status)
    if not 200 <= end.status < 300:
        reason = "BYE timed out" if end.status == TIMEOUT_STATUS else "BYE refused"
        return OutcomeSet(end.at, Outcome.TEARDOWN_ERROR, reason, end.status)
    if media_received or not media_expected:
        return OutcomeSet(end.at, Outcome.SUCCESS, f"ended by {end.by} BYE", end.status)
    return OutcomeSet(end.at, Outcome.COMPLETED_WITH_WARNINGS, "no media received", end.status)


def call_result(outcome: Outcome | None) -> CallResult | None:
    """The catalog's ``call_result`` of an outcome: SUCCESS (completed, with or without
    warnings), TIMEOUT, REJECTED (a final failure response, negotiation included) or ERROR
    (registration, OS or teardown errors). None while undecided."""
    return None if outcome is None else _RESULTS[outcome]


def _ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else (end - start) * 1000.0


def call_timing_row(
    timing: CallTiming,
    *,
    first_media_at: float | None,
    final_status: int | None,
    result: Outcome | None,
    ringing_status: int = 180,
) -> dict[str, Any]:
    """One call's one-shot timing values keyed by the metric catalog (None: the step did not
    happen). ``first_media_at`` is when the first RTP packet arrived; time to first media is
    counted from the 2xx (sent or received). ``ringing_status`` is the first 18x: only a 180
    gives ``time_to_180_ms``."""
    row: dict[str, Any] = {
        "time_to_100_ms": _ms(timing.invite, timing.trying),
        "time_to_180_ms": _ms(timing.invite, timing.ringing) if ringing_status == 180 else None,
        "ack_delay_ms": _ms(timing.answered, timing.ack),
        "time_to_first_media_ms": _ms(timing.answered, first_media_at),
        "disconnect_delay_ms": _ms(timing.bye, timing.ended),
    }
    for name, (key, factor) in CALL_TIMING_PROPERTIES.items():
        value = getattr(timing, name)
        row[key] = None if value is None else value * factor
    row["final_status_code"] = final_status
    row["call_result"] = call_result(result)
    return row


class EndpointLifecycle:
    """Phase and outcome of one endpoint; see the module docstring. ``role`` None is decided
    by the first call: ``invite_sent`` makes a caller, ``IncomingCall`` a callee. ``media``
    False: the endpoint carries no media, so the answer puts it in call."""

    def __init__(self, role: Role | None = None, *, media: bool = True) -> None:
        self.role = role
        self.media = media
        self.phase = Phase.INITIALIZING
        self.outcome: OutcomeSet | None = None
        self.records: list[Record] = []  # every record so far, in order
        self.call_id: str | None = None  # the call this lifecycle follows (the first one)
        self.media_started_at: float | None = None
        self.first_media_at: float | None = None
        self.transitions_ignored = 0  # steps backwards
        self.outcomes_ignored = 0  # decisions after the first
        self._pending: deque[Record] = deque()
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            Registered: self._registered,
            RegistrationFailed: self._registration_failed,
            IncomingCall: self._incoming_call,
            CallRinging: self._ringing,
            CallAnswered: self._answered,
            CallFailed: self._call_end,
            CallCancelled: self._call_end,
            CallEnded: self._call_end,
            TransactionTimedOut: self._timed_out,
        }

    # -- records ------------------------------------------------------------------------------
    def next_record(self) -> Record | None:
        """The oldest record not yet pulled, or None."""
        return self._pending.popleft() if self._pending else None

    def _emit(self, record: Record) -> None:
        self.records.append(record)
        self._pending.append(record)

    def advance(self, phase: Phase, at: float) -> bool:
        """Move forward to ``phase``; a step backwards is counted and ignored, staying put is
        a no-op. True when the phase changed."""
        if phase.rank < self.phase.rank:
            self.transitions_ignored += 1
            return False
        if phase is self.phase:
            return False
        self._emit(PhaseChanged(at, phase, self.phase))
        self.phase = phase
        return True

    def decide(self, outcome: OutcomeSet) -> bool:
        """Set the outcome unless one is set already (then count it). True when it was set."""
        if self.outcome is not None:
            self.outcomes_ignored += 1
            return False
        self.outcome = outcome
        self._emit(outcome)
        return True

    # -- facts from the shell -----------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Feed one user agent event; kinds that change nothing here are ignored."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def invite_sent(self, now: float, call_id: str | None = None) -> None:
        if self.role is None:
            self.role = "caller"
        self._follow(call_id)
        self.advance(Phase.CALLING, now)

    def hangup(self, now: float) -> None:
        """We hung up (BYE, CANCEL or a rejection of a ringing call)."""
        if Phase.CALLING.rank <= self.phase.rank:
            self.advance(Phase.DISCONNECTING, now)

    def media_started(self, now: float) -> None:
        if self.media_started_at is None:
            self.media_started_at = now
        self.advance(Phase.INCALL, now)

    def first_media(self, now: float) -> None:
        """The first RTP packet arrived at ``now`` (only the first report counts)."""
        if self.first_media_at is None:
            self.first_media_at = now

    def negotiation_failed(self, now: float, reason: str) -> None:
        self.decide(OutcomeSet(now, Outcome.NEGOTIATION_FAILED, reason))

    def error(self, now: float, reason: str) -> None:
        self.decide(OutcomeSet(now, Outcome.OSERROR, reason))

    def closed(self, now: float) -> None:
        """The endpoint is gone; a call still under way is a teardown error."""
        if self.outcome is None and Phase.CALLING.rank <= self.phase.rank < Phase.CLOSED.rank:
            self.decide(OutcomeSet(now, Outcome.TEARDOWN_ERROR, "closed during the call"))
        self.advance(Phase.CLOSED, now)

    # -- event handlers -----------------------------------------------------------------------
    def _follow(self, call_id: str | None) -> None:
        if self.call_id is None:
            self.call_id = call_id

    def _registered(self, event: Registered) -> None:
        if self.phase is Phase.INITIALIZING:  # later ones are refreshes, not steps back
            self.advance(Phase.REGISTERED, event.at)

    def _registration_failed(self, event: RegistrationFailed) -> None:
        if self.phase.rank < Phase.CALLING.rank:
            self.decide(OutcomeSet(event.at, Outcome.REGISTRATION_FAILED, event.reason,
                                   event.status))  # fmt: skip
            self.advance(Phase.CLOSED, event.at)

    def _incoming_call(self, event: IncomingCall) -> None:
        if self.role is None:
            self.role = "callee"
        self._follow(event.call_id)
        self.advance(Phase.CALLING, event.at)

    def _ringing(self, event: CallRinging) -> None:
        self.advance(Phase.RINGING, event.at)

    def _catch_up(self, timing: CallTiming) -> None:
        """Steps no event reported, at the time CallTiming says they happened."""
        for phase, at in ((Phase.CALLING, timing.invite), (Phase.RINGING, timing.ringing)):
            if at is not None and self.phase.rank < phase.rank:
                self.advance(phase, at)

    def _answered(self, event: CallAnswered) -> None:
        self._follow(event.call_id)
        self._catch_up(event.timing)
        if self.media:
            self.advance(Phase.NEGOTIATING, event.timing.answered or event.at)
        else:
            self.advance(Phase.INCALL, event.at)

    def _timed_out(self, event: TransactionTimedOut) -> None:
        if event.method == "INVITE":
            self.decide(OutcomeSet(event.at, Outcome.TIMEOUT, "INVITE timed out",
                                   TIMEOUT_STATUS))  # fmt: skip

    def _call_end(self, event: CallEnd) -> None:
        self._follow(event.call_id)
        self._catch_up(event.timing)
        if not isinstance(event, CallFailed) and self.phase.rank >= Phase.CALLING.rank:
            self.advance(Phase.DISCONNECTING, event.timing.bye or event.at)
        received = self.first_media_at is not None
        self.decide(call_outcome(event, media_received=received, media_expected=self.media))
        self.advance(Phase.CLOSED, event.at)
