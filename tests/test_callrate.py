"""The call-rate load driver against a real SIPp UAS: steady calls, and a stall of the
generator itself is skipped and reported, never turned into a burst."""

from __future__ import annotations

import asyncio
import time

import pytest

from callmeter.callrate import run_call_rate
from callmeter.transport import run
from tests.peers import Sipp, wait_until
from tests.test_interop_sipp import bound

pytestmark = [pytest.mark.interop]


def test_steady_calls_all_succeed() -> None:
    with Sipp.uas() as uas:
        wait_until(lambda: bound(uas.port, "udp"), 10, what="sipp listening")
        result = run(run_call_rate(("127.0.0.1", uas.port), rate_cps=100, duration_s=1.0))
    assert (result.attempted, result.succeeded, result.failed_total) == (100, 100, 0)
    assert result.skipped == 0


def test_a_generator_stall_is_skipped_not_burst() -> None:
    async def stalled() -> object:
        loop = asyncio.get_running_loop()
        # Block the loop for 0.5 s mid-run, as an overloaded generator would stall.
        loop.call_later(0.3, time.sleep, 0.5)
        return await run_call_rate(("127.0.0.1", uas.port), rate_cps=200, duration_s=1.0)

    with Sipp.uas() as uas:
        wait_until(lambda: bound(uas.port, "udp"), 10, what="sipp listening")
        result = run(stalled())
    # 0.5 s behind at 200 calls/s is 100 calls late; at most 0.1 s worth (20) are placed.
    assert 70 <= result.skipped <= 90, result
    assert result.attempted + result.skipped == 200
    assert result.failed_total == 0 and result.succeeded == result.attempted
    assert result.max_tick_lag_s >= 0.4
