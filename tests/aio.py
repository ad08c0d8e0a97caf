"""Async test helpers: poll with a deadline while the event loop keeps serving."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.peers import Sipp


async def poll(predicate: Callable[[], object], within_s: float, what: str) -> None:
    """Return once ``predicate()`` is truthy; AssertionError after ``within_s`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not after {within_s} s: {what}")
        await asyncio.sleep(0.05)


async def until(predicate: Callable[[], object], what: str, within_s: float = 10.0) -> None:
    """Poll ``predicate`` often (every millisecond) until true; AssertionError after
    ``within_s``. For transport tests where the poll interval itself matters."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def sipp_exit(sipp: Sipp, within_s: float = 30.0) -> int:
    """SIPp's exit code, polled while our loop keeps serving; its log if it hangs."""
    try:
        await poll(lambda: sipp.returncode is not None, within_s, "sipp exit")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{sipp.log()}") from None
    assert sipp.returncode is not None
    return sipp.returncode
