"""A deadline for the OpenStack provider's requests made by one thread (``Provider.within``).

An observation holds a short lease and runs in a threads pool, where Celery's time
limits do nothing: each of its requests (signing in, lists, reads) is given no more
time than the lease has left, whatever the provider's connect and read timeouts.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter

MIN_SECONDS = 0.1  # a request past the deadline still gets this long, and fails as a timeout


class _Deadline(threading.local):
    until: float | None = None  # time.monotonic() by which this thread's requests must have ended


_DEADLINE = _Deadline()


@contextlib.contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """This thread's requests inside the block end ``seconds`` from now at the latest (None: no bound)."""
    outer = _DEADLINE.until
    if seconds is not None:
        until = time.monotonic() + seconds
        _DEADLINE.until = until if outer is None else min(outer, until)
    try:
        yield
    finally:
        _DEADLINE.until = outer


def capped(timeout: Any) -> Any:
    """``timeout`` (seconds, or requests' (connect, read)) cut to what this thread's deadline leaves."""
    if _DEADLINE.until is None:
        return timeout
    left = max(MIN_SECONDS, _DEADLINE.until - time.monotonic())
    if isinstance(timeout, tuple):
        return tuple(left if t is None else min(t, left) for t in timeout)
    return left if timeout is None else min(float(timeout), left)


class BoundedAdapter(HTTPAdapter):
    """requests' adapter (connection pools), each request's timeouts capped by its thread's deadline."""

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if args:  # requests passes everything by keyword; keep any positional form intact
            return super().send(request, *args, **kwargs)
        kwargs["timeout"] = capped(kwargs.get("timeout"))
        return super().send(request, **kwargs)
