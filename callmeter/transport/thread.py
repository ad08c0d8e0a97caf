"""An event loop on its own thread, for hosts that are not asyncio programs.

A Ray actor's methods and the ``callmeter run`` driver are plain blocking code; the endpoints
and the built-in registrar need a running loop (uvloop where available). :class:`LoopThread`
starts one on a daemon thread; :meth:`LoopThread.call` runs a coroutine on it and waits for
the result, :meth:`LoopThread.submit` starts one without waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from callmeter.transport.loop import new_event_loop

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """A loop running forever on a daemon thread until :meth:`close`."""

    def __init__(self, name: str = "callmeter-loop", *, use_uvloop: bool | None = None) -> None:
        self.loop = new_event_loop(use_uvloop=use_uvloop)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop; the returned future completes with its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return self.submit(coro).result(timeout)

    def call_soon(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """Run the plain function ``fn`` on the loop's thread and wait for its result."""

        async def wrapper() -> T:
            return fn()

        return self.call(wrapper(), timeout)

    def close(self, cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run ``cleanup`` (if any), cancel what is left, stop the loop and join the thread."""
        if self.loop.is_closed():
            return
        if cleanup is not None:
            self.call(_as_coroutine(cleanup), timeout=30)
        self.call(_cancel_others(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self.loop.close()


async def _as_coroutine(fn: Callable[[], Awaitable[None]]) -> None:
    await fn()


async def _cancel_others() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
