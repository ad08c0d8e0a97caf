"""Endpoint lifecycle: forward-only phases and a set-once outcome from synthetic events and a
fake clock, the call timing row against the catalog, and two real endpoints end to end."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

import callmeter.lifecycle
from callmeter.callmedia import MediaOptions
from callmeter.endpoint import Endpoint
from callmeter.lifecycle import (
    EndpointLifecycle,
    Outcome,
    OutcomeSet,
    Phase,
    PhaseChanged,
    call_result,
    call_timing_row,
)
from callmeter.metrics import by_key, keys
from callmeter.registrar import RunningRegistrar
from callmeter.sip.events import (
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallFailed,
    CallRinging,
    CallTiming,
    IncomingCall,
    Registered,
    RegistrationFailed,
    TransactionTimedOut,
    Unregistered,
)
from callmeter.sip.useragent import UserAgentConfig
from callmeter.transport import run
from tests.aio import poll
from tests.test_sans_io import FORBIDDEN, imported_modules

CALL = "a84b4c76e66710@pc33"
# A caller's call: INVITE at 10.0, 100 at 10.01, 180 at 10.2, 2xx at 11.0, BYE at 41.0.
TIMING = CallTiming(invite=10.0, trying=10.01, ringing=10.2, answered=11.0, ack=11.0)
ENDED = dataclasses.replace(TIMING, bye=41.0, ended=41.05)
PHASES = ["INITIALIZING", "REGISTERED", "CALLING", "RINGING", "NEGOTIATING", "INCALL",
          "DISCONNECTING", "CLOSED"]  # fmt: skip
OUTCOMES = ["SUCCESS", "COMPLETED_WITH_WARNINGS", "REGISTRATION_FAILED", "CALL_FAILED",
            "NEGOTIATION_FAILED", "TIMEOUT", "OSERROR", "TEARDOWN_ERROR"]  # fmt: skip


def phases(lifecycle: EndpointLifecycle) -> list[tuple[float, str]]:
    return [(r.at, r.phase.name) for r in lifecycle.records if isinstance(r, PhaseChanged)]


def outcomes(lifecycle: EndpointLifecycle) -> list[OutcomeSet]:
    return [r for r in lifecycle.records if isinstance(r, OutcomeSet)]


def answered_caller(media: bool = True) -> EndpointLifecycle:
    """A caller registered at 1.0, INVITE at 10.0, 180 at 10.2, answered at 11.0."""
    lifecycle = EndpointLifecycle("caller", media=media)
    lifecycle.on_event(Registered(1.0, "sip:alice@example.com", 3600))
    lifecycle.invite_sent(10.0, CALL)
    lifecycle.on_event(CallRinging(10.2, CALL, 180))
    lifecycle.on_event(CallAnswered(11.0, CALL, TIMING))
    return lifecycle


def failed(status: int, reason: str = "Failed") -> CallFailed:
    return CallFailed(10.5, CALL, status, reason, CallTiming(invite=10.0, ended=10.5))


def test_names_are_design_md_s() -> None:
    assert [p.name for p in Phase] == PHASES
    assert [o.name for o in Outcome] == OUTCOMES
    assert [p.value for p in Phase] == PHASES  # stored as the same words


def test_a_call_with_media_walks_every_phase_and_succeeds() -> None:
    lifecycle = answered_caller()
    lifecycle.media_started(11.0)
    lifecycle.first_media(11.03)
    lifecycle.hangup(41.0)
    lifecycle.on_event(CallEnded(41.05, CALL, "local", 200, ENDED))
    lifecycle.closed(42.0)
    assert phases(lifecycle) == [
        (1.0, "REGISTERED"), (10.0, "CALLING"), (10.2, "RINGING"), (11.0, "NEGOTIATING"),
        (11.0, "INCALL"), (41.0, "DISCONNECTING"), (41.05, "CLOSED"),
    ]  # fmt: skip
    assert outcomes(lifecycle) == [OutcomeSet(41.05, Outcome.SUCCESS, "ended by local BYE", 200)]
    assert lifecycle.first_media_at == 11.03
    assert (lifecycle.transitions_ignored, lifecycle.outcomes_ignored) == (0, 0)


def test_records_are_pulled_in_order_once_and_frozen() -> None:
    lifecycle = answered_caller()
    pulled = []
    while (record := lifecycle.next_record()) is not None:
        pulled.append(record)
    assert pulled == lifecycle.records
    assert pulled[0] == PhaseChanged(1.0, Phase.REGISTERED, Phase.INITIALIZING)
    assert pulled[-1] == PhaseChanged(11.0, Phase.NEGOTIATING, Phase.RINGING)
    assert lifecycle.next_record() is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        pulled[0].at = 2.0  # type: ignore[misc]


def test_a_callee_gets_its_silent_180_from_call_timing() -> None:
    lifecycle = EndpointLifecycle()
    lifecycle.on_event(Registered(1.0, "sip:bob@example.com", 3600))
    lifecycle.on_event(IncomingCall(10.1, CALL, "sip:alice@example.com", "sip:bob@example.com"))
    uas = CallTiming(invite=10.1, trying=10.1, ringing=10.1, answered=10.9, ack=11.0)
    lifecycle.on_event(CallAnswered(11.0, CALL, uas))
    lifecycle.media_started(11.0)
    lifecycle.first_media(11.02)
    ended = dataclasses.replace(uas, bye=41.02, ended=41.02)
    lifecycle.on_event(CallEnded(41.02, CALL, "remote", 200, ended))
    assert lifecycle.role == "callee"
    assert [name for _, name in phases(lifecycle)] == PHASES[1:]
    assert phases(lifecycle)[2:4] == [(10.1, "RINGING"), (10.9, "NEGOTIATING")]
    assert lifecycle.outcome == OutcomeSet(41.02, Outcome.SUCCESS, "ended by remote BYE", 200)


def test_the_first_call_decides_the_role() -> None:
    caller = EndpointLifecycle()
    caller.invite_sent(1.0, CALL)
    assert (caller.role, caller.call_id) == ("caller", CALL)
    fixed = EndpointLifecycle("caller")
    fixed.on_event(IncomingCall(1.0, CALL, "sip:a@x", "sip:b@x"))
    assert fixed.role == "caller"  # given, not inferred
    assert fixed.phase is Phase.CALLING


def test_without_media_the_answer_puts_the_call_up_and_a_2xx_bye_succeeds() -> None:
    lifecycle = answered_caller(media=False)
    assert lifecycle.phase is Phase.INCALL
    assert Phase.NEGOTIATING not in {r.phase for r in lifecycle.records if hasattr(r, "phase")}
    lifecycle.on_event(CallEnded(41.05, CALL, "local", 200, ENDED))
    assert lifecycle.outcome is not None and lifecycle.outcome.outcome is Outcome.SUCCESS


def test_answered_but_no_media_received_completes_with_warnings() -> None:
    lifecycle = answered_caller()
    lifecycle.media_started(11.0)  # we sent, nothing came back
    lifecycle.on_event(CallEnded(41.05, CALL, "local", 200, ENDED))
    assert lifecycle.outcome == OutcomeSet(
        41.05, Outcome.COMPLETED_WITH_WARNINGS, "no media received", 200
    )


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (302, Outcome.CALL_FAILED),
        (404, Outcome.CALL_FAILED),
        (486, Outcome.CALL_FAILED),
        (503, Outcome.CALL_FAILED),
        (603, Outcome.CALL_FAILED),
        (488, Outcome.NEGOTIATION_FAILED),
        (606, Outcome.NEGOTIATION_FAILED),
        (408, Outcome.TIMEOUT),
    ],
)
def test_call_failed_maps_by_status(status: int, outcome: Outcome) -> None:
    lifecycle = EndpointLifecycle("caller")
    lifecycle.on_event(Registered(1.0, "sip:alice@example.com", 3600))
    lifecycle.on_event(failed(status, "Nope"))
    assert lifecycle.outcome == OutcomeSet(10.5, outcome, "Nope", status)
    assert phases(lifecycle) == [(1.0, "REGISTERED"), (10.0, "CALLING"), (10.5, "CLOSED")]
    assert call_result(outcome) == {Outcome.TIMEOUT: "TIMEOUT"}.get(outcome, "REJECTED")


def test_an_invite_timeout_decides_once_before_its_408() -> None:
    lifecycle = EndpointLifecycle("caller")
    lifecycle.invite_sent(10.0, CALL)
    lifecycle.on_event(TransactionTimedOut(42.0, "INVITE", CALL))
    lifecycle.on_event(CallFailed(42.0, CALL, 408, "Request Timeout", CallTiming(invite=10.0)))
    assert outcomes(lifecycle) == [OutcomeSet(42.0, Outcome.TIMEOUT, "INVITE timed out", 408)]
    assert lifecycle.outcomes_ignored == 1
    assert lifecycle.phase is Phase.CLOSED


def test_other_transaction_timeouts_decide_nothing() -> None:
    lifecycle = answered_caller()
    for method in ("BYE", "REGISTER", "OPTIONS"):
        lifecycle.on_event(TransactionTimedOut(50.0, method, CALL))
    assert lifecycle.outcome is None


@pytest.mark.parametrize(("status", "reason"), [(481, "BYE refused"), (408, "BYE timed out")])
def test_a_bye_without_2xx_is_a_teardown_error(status: int, reason: str) -> None:
    lifecycle = answered_caller()
    lifecycle.media_started(11.0)
    lifecycle.first_media(11.03)
    lifecycle.hangup(41.0)
    lifecycle.on_event(CallEnded(73.0, CALL, "local", status, ENDED))
    assert lifecycle.outcome == OutcomeSet(73.0, Outcome.TEARDOWN_ERROR, reason, status)
    assert call_result(Outcome.TEARDOWN_ERROR) == "ERROR"


def test_registration_failure_closes_before_any_call() -> None:
    lifecycle = EndpointLifecycle("caller")
    lifecycle.on_event(RegistrationFailed(1.0, 403, "Forbidden"))
    assert lifecycle.outcome == OutcomeSet(1.0, Outcome.REGISTRATION_FAILED, "Forbidden", 403)
    assert phases(lifecycle) == [(1.0, "CLOSED")]
    assert call_result(Outcome.REGISTRATION_FAILED) == "ERROR"


def test_a_failed_refresh_during_a_call_decides_nothing() -> None:
    lifecycle = answered_caller()
    lifecycle.on_event(RegistrationFailed(20.0, 408, "Request Timeout"))
    lifecycle.on_event(Registered(21.0, "sip:alice@example.com", 3600))  # a refresh: no step
    lifecycle.on_event(Unregistered(22.0, "sip:alice@example.com"))
    assert lifecycle.outcome is None
    assert lifecycle.phase is Phase.NEGOTIATING
    assert lifecycle.transitions_ignored == 0


def test_steps_backwards_are_counted_and_ignored() -> None:
    lifecycle = answered_caller()
    before = list(lifecycle.records)
    lifecycle.on_event(CallRinging(11.5, CALL, 180))  # a late 180 after the 2xx
    lifecycle.invite_sent(12.0, "second-call")
    assert lifecycle.records == before
    assert lifecycle.phase is Phase.NEGOTIATING
    assert lifecycle.transitions_ignored == 2
    assert lifecycle.call_id == CALL  # it follows the first call


def test_the_outcome_is_set_once_and_later_decisions_are_counted() -> None:
    lifecycle = answered_caller()
    lifecycle.error(12.0, "sendto: [Errno 101] Network is unreachable")
    lifecycle.negotiation_failed(12.5, "no common codec")
    lifecycle.on_event(CallEnded(41.05, CALL, "local", 200, ENDED))
    assert outcomes(lifecycle) == [
        OutcomeSet(12.0, Outcome.OSERROR, "sendto: [Errno 101] Network is unreachable")
    ]
    assert lifecycle.outcomes_ignored == 2
    assert lifecycle.phase is Phase.CLOSED  # phases still move: the call did end


def test_negotiation_failure_from_media() -> None:
    lifecycle = answered_caller()
    lifecycle.negotiation_failed(11.0, "no negotiated media")
    assert lifecycle.outcome == OutcomeSet(11.0, Outcome.NEGOTIATION_FAILED, "no negotiated media")


def test_a_cancelled_call_failed_with_487() -> None:
    lifecycle = EndpointLifecycle("caller")
    lifecycle.invite_sent(10.0, CALL)
    lifecycle.on_event(CallRinging(10.2, CALL, 180))
    lifecycle.hangup(12.0)
    lifecycle.on_event(CallCancelled(12.1, CALL, "local", CallTiming(invite=10.0, ended=12.1)))
    assert lifecycle.outcome == OutcomeSet(12.1, Outcome.CALL_FAILED, "cancelled (local)", 487)
    assert [name for _, name in phases(lifecycle)] == [
        "CALLING", "RINGING", "DISCONNECTING", "CLOSED"
    ]  # fmt: skip


def test_closing_during_a_call_is_a_teardown_error_and_idle_close_decides_nothing() -> None:
    busy = answered_caller()
    busy.closed(20.0)
    assert busy.outcome == OutcomeSet(20.0, Outcome.TEARDOWN_ERROR, "closed during the call")
    idle = EndpointLifecycle()
    idle.on_event(Registered(1.0, "sip:bob@example.com", 3600))
    idle.closed(5.0)
    idle.closed(6.0)
    assert (idle.outcome, idle.phase, idle.transitions_ignored) == (None, Phase.CLOSED, 0)


def test_call_timing_row_values() -> None:
    row = call_timing_row(ENDED, first_media_at=11.03, final_status=200, result=Outcome.SUCCESS)
    assert row == pytest.approx(
        {
            "time_to_100_ms": 10.0,
            "time_to_180_ms": 200.0,
            "post_dial_delay_ms": 200.0,
            "setup_time_ms": 1000.0,
            "ack_delay_ms": 0.0,
            "time_to_first_media_ms": 30.0,
            "call_duration_s": 30.05,
            "disconnect_delay_ms": 50.0,
            "final_status_code": 200,
            "call_result": "SUCCESS",
        }
    )


def test_call_timing_row_leaves_steps_that_did_not_happen_empty() -> None:
    row = call_timing_row(
        CallTiming(invite=10.0, trying=10.01, ringing=10.3, ended=10.5),
        first_media_at=None, final_status=404, result=Outcome.CALL_FAILED, ringing_status=183,
    )  # fmt: skip
    assert row["post_dial_delay_ms"] == pytest.approx(300.0)
    assert row["time_to_180_ms"] is None  # the first 18x was a 183
    for key in ("setup_time_ms", "ack_delay_ms", "time_to_first_media_ms", "call_duration_s",
                "disconnect_delay_ms"):  # fmt: skip
        assert row[key] is None
    assert (row["final_status_code"], row["call_result"]) == (404, "REJECTED")


def test_call_timing_row_keys_are_catalog_call_timing_one_shots() -> None:
    row = call_timing_row(ENDED, first_media_at=11.03, final_status=200, result=None)
    assert row["call_result"] is None  # undecided
    call_keys = set(keys(direction="call", category="call_timing"))
    assert set(row) <= call_keys
    for key in row:
        assert by_key(key, "call").kind == "one_shot"


@pytest.mark.parametrize(
    ("outcome", "result"),
    [
        (Outcome.SUCCESS, "SUCCESS"),
        (Outcome.COMPLETED_WITH_WARNINGS, "SUCCESS"),
        (Outcome.TIMEOUT, "TIMEOUT"),
        (Outcome.CALL_FAILED, "REJECTED"),
        (Outcome.NEGOTIATION_FAILED, "REJECTED"),
        (Outcome.REGISTRATION_FAILED, "ERROR"),
        (Outcome.OSERROR, "ERROR"),
        (Outcome.TEARDOWN_ERROR, "ERROR"),
    ],
)
def test_call_result_of_every_outcome(outcome: Outcome, result: str) -> None:
    assert call_result(outcome) == result


def test_the_lifecycle_module_does_no_io() -> None:
    assert imported_modules(Path(callmeter.lifecycle.__file__)) & FORBIDDEN == set()


# -- end to end: two endpoints through the built-in registrar -----------------------------------
async def registered(
    registrar: RunningRegistrar, ring_time_s: float, media: bool
) -> list[Endpoint]:
    """One registered endpoint per account; all but the first ring for ``ring_time_s``."""
    domain = registrar.config.domain
    endpoints = []
    for index, account in enumerate(registrar.accounts):
        ring = ring_time_s if index else 0.0
        config = UserAgentConfig(
            account.username, domain, registrar.address, password=account.password,
            ring_time_s=ring,
        )  # fmt: skip
        endpoint = await Endpoint.open(config, media=MediaOptions() if media else None)
        endpoint.register()
        await endpoint.wait_for(Registered)
        endpoints.append(endpoint)
    return endpoints


@pytest.mark.slow
def test_a_call_with_media_end_to_end() -> None:
    async def scenario() -> None:
        async with RunningRegistrar(accounts=2) as registrar:
            caller, callee = await registered(registrar, ring_time_s=0.2, media=True)
            try:
                call_id = caller.call(f"sip:{callee.ua.config.username}@{registrar.config.domain}")
                await caller.wait_for(CallAnswered, call_id=call_id)
                await poll(lambda: caller.lifecycle.first_media_at is not None, 5.0,
                           "first media at the caller")  # fmt: skip
                await asyncio.sleep(0.3)
                caller.hangup(call_id)
                await caller.wait_for(CallEnded, call_id=call_id)
                await callee.wait_for(CallEnded, call_id=call_id)
            finally:
                await caller.close()
                await callee.close()
        for endpoint, role in ((caller, "caller"), (callee, "callee")):
            lifecycle = endpoint.lifecycle
            assert lifecycle.role == role
            assert [name for _, name in phases(lifecycle)] == PHASES[1:], role
            times = [at for at, _ in phases(lifecycle)]
            assert times == sorted(times), role
            assert lifecycle.outcome is not None
            assert lifecycle.outcome.outcome is Outcome.SUCCESS, role
            assert (lifecycle.transitions_ignored, lifecycle.outcomes_ignored) == (0, 0)
            [row] = endpoint.call_rows
            assert row["call_id"] == call_id
            assert (row["final_status_code"], row["call_result"]) == (200, "SUCCESS")
            for key in ("setup_time_ms", "time_to_first_media_ms", "call_duration_s"):
                assert row[key] > 0, (role, key)
        caller_row, callee_row = caller.call_rows[0], callee.call_rows[0]
        assert callee_row["post_dial_delay_ms"] == 0.0  # the callee sent its 180 at once
        assert 0 < caller_row["post_dial_delay_ms"] < caller_row["setup_time_ms"]
        assert caller_row["setup_time_ms"] >= 200.0  # the callee rang for 0.2 s

    run(scenario())


@pytest.mark.slow
def test_a_call_to_an_unknown_user_is_rejected_404() -> None:
    async def scenario() -> Endpoint:
        async with RunningRegistrar(accounts=1) as registrar:
            [caller] = await registered(registrar, ring_time_s=0.0, media=True)
            try:
                call_id = caller.call(f"sip:nobody@{registrar.config.domain}")
                failure = await caller.wait_for(CallFailed, call_id=call_id)
                assert isinstance(failure, CallFailed) and failure.status == 404
            finally:
                await caller.close()
            return caller

    caller = run(scenario())
    lifecycle = caller.lifecycle
    assert lifecycle.outcome is not None
    assert (lifecycle.outcome.outcome, lifecycle.outcome.status) == (Outcome.CALL_FAILED, 404)
    assert [name for _, name in phases(lifecycle)] == ["REGISTERED", "CALLING", "CLOSED"]
    [row] = caller.call_rows
    assert (row["final_status_code"], row["call_result"]) == (404, "REJECTED")
    assert row["setup_time_ms"] is None and row["time_to_first_media_ms"] is None
