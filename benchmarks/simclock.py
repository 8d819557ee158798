"""Virtual time for engine benchmarks that replay weeks: the real engine, stepped tick by tick.

What is faked is the clock, nothing else. This process is the beat: it sets the virtual
time, runs the ticks' own task bodies (``tasks.reconcile.run()``…) and waits until every
task they caused has run (in an embedded Celery worker, on the real Redis broker and the
real database), then moves the clock one reconcile interval on — or, when nothing is in
flight, straight to the next moment something can happen (a learner's click, a lab going
idle). Quiet hours cost nothing, so a month replays in minutes.

- ``time_machine`` moves ``datetime.now``/``time.time`` for the whole process (the engine's
  ``timezone.now()``, Celery's expiry checks, the cache's timeouts); ``time.monotonic`` is
  left alone, so Celery's and Redis's own timers keep real time.
- The cloud fake runs in this process and reads ``SimClock.seconds`` (its ``clock``), so a
  60 s suspend takes 60 virtual seconds, i.e. 60 ticks.
- ``Quiescence`` counts tasks published and finished (Celery signals, this process only: the
  worker is in it), so a step ends exactly when its work is done.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import time_machine


class SimClock:
    """The virtual time: frozen between steps, moved by ``set``."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.now = start
        self._travel = time_machine.travel(start, tick=False)
        self._coordinates: Any = None

    def __enter__(self) -> SimClock:
        self._coordinates = self._travel.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._travel.stop()

    def set(self, when: datetime) -> None:
        self.now = when
        self._coordinates.move_to(when)

    def seconds(self) -> float:
        """Virtual seconds since the start: the cloud fake's clock."""
        return (self.now - self.start).total_seconds()


class Quiescence:
    """Tasks published by this process (the embedded worker's too) against tasks finished."""

    def __init__(self) -> None:
        from celery import signals

        self.published = self.finished = 0
        self._lock = threading.Lock()
        signals.after_task_publish.connect(self._publish, weak=False)
        signals.task_postrun.connect(self._finish, weak=False)
        signals.task_revoked.connect(self._finish, weak=False)  # expired before it ran

    def _publish(self, **_: Any) -> None:
        with self._lock:
            self.published += 1

    def _finish(self, **_: Any) -> None:
        with self._lock:
            self.finished += 1

    def wait(self, timeout: float = 60.0) -> None:
        """Until every task published so far has finished (RuntimeError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.published > self.finished:
            if time.monotonic() > deadline:
                pending = self.published - self.finished
                raise RuntimeError(f"{pending} task(s) still pending after {timeout} s")
            time.sleep(0.001)


@contextlib.contextmanager
def embedded_worker(*queues: str, concurrency: int = 8) -> Iterator[None]:
    """A Celery worker (threads pool) in this process, taking ``queues`` from the real broker."""
    from celery.contrib.testing.worker import start_worker

    from tests.celery_app import app

    with start_worker(app, pool="threads", concurrency=concurrency, perform_ping_check=False,
                      queues=list(queues), loglevel="WARNING", shutdown_timeout=30):
        yield
