"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from callmeter.transport import run, uvloop_available

Runner = Callable[[Coroutine[Any, Any, None]], None]

LOOPS = [
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(not uvloop_available(), reason="no uvloop")),
]


@pytest.fixture(params=LOOPS)
def run_on(request: pytest.FixtureRequest) -> Runner:
    """Run a coroutine on the default asyncio loop, then again on uvloop."""
    use_uvloop = request.param == "uvloop"

    def runner(coro: Coroutine[Any, Any, None]) -> None:
        run(coro, use_uvloop=use_uvloop)

    return runner
