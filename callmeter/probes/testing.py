"""A probe executor that answers from a script, for tests and for trying the UI without Ray.

:class:`ScriptedExecutor` returns the measurements pushed to it, in order (then its default),
records every job, and can hold executions until released (or until the scheduler asks them
to stop), to test what happens while a call is in progress.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping

from callmeter.probes.executor import Measurement, ProbeJob

__all__ = ["ScriptedExecutor", "failed", "measured"]


def measured(**values: float | None) -> Measurement:
    """A call that measured ``values`` (catalog keys)."""
    return Measurement(dict(values))


def failed(
    reason: str = "the call ended REGISTRATION_FAILED (408): Request Timeout",
) -> Measurement:
    """A call that failed before any metric was measured."""
    return Measurement({}, reason)


class ScriptedExecutor:
    """Answers each job with the next scripted measurement (else ``default``)."""

    def __init__(self, default: Measurement | None = None) -> None:
        self.default = default or measured(mos=4.4, loss_percent=0.0, jitter_ms=1.0)
        self.jobs: list[ProbeJob] = []
        self.stopped: list[ProbeJob] = []  # jobs that ended because the scheduler stopped
        self._script: deque[Measurement] = deque()
        self._lock = threading.Lock()
        self.hold = threading.Event()  # set: executions wait for release() (or a stop)
        self._release = threading.Event()
        self.entered = threading.Semaphore(0)  # released once per execution started

    def push(self, *measurements: Measurement | Mapping[str, float | None]) -> None:
        with self._lock:
            for item in measurements:
                self._script.append(item if isinstance(item, Measurement) else Measurement(item))

    def release(self) -> None:
        self._release.set()

    def execute(self, job: ProbeJob) -> Measurement:
        with self._lock:
            self.jobs.append(job)
            answer = self._script.popleft() if self._script else self.default
        self.entered.release()
        if self.hold.is_set():
            while not (self._release.wait(0.01) or job.stop.is_set()):
                pass
            if job.stop.is_set():
                self.stopped.append(job)
                return Measurement({}, "stopped")
        return answer

    @property
    def probes_run(self) -> list[str]:
        return [job.probe_id for job in self.jobs]
