"""Single use of tickets across gateway processes: a claim per ticket id.

One process: the in-process ``labxblock.tickets.ReplayGuard``. Several processes
or replicas (``LABXBLOCK_GATEWAY_REDIS_URL``): Redis ``SET <id> 1 NX EXAT
<until>``, atomic, so exactly one process wins a ticket, and the key expires
when the ticket could no longer be opened anyway. If Redis cannot be asked, the
ticket is refused: a replay guard that fails open is no guard.
"""

from __future__ import annotations

import math
from typing import Protocol

from labxblock.tickets import ReplayGuard

KEY_PREFIX = "labxblock:ticket:"


class GuardUnavailable(Exception):
    """The shared guard could not be asked; the ticket is refused."""


class AsyncReplayGuard(Protocol):
    async def claim(self, ticket_id: str, *, expires_at: float, now: float) -> bool: ...

    async def close(self) -> None: ...


class LocalGuard:
    """The in-process guard (one gateway process)."""

    def __init__(self) -> None:
        self._guard = ReplayGuard()

    async def claim(self, ticket_id: str, *, expires_at: float, now: float) -> bool:
        return self._guard.claim(ticket_id, expires_at=expires_at, now=now)

    async def close(self) -> None:
        return None


class RedisGuard:
    """A guard every gateway process shares."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        import redis.asyncio  # only needed with LABXBLOCK_GATEWAY_REDIS_URL

        self._redis = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError)

    async def claim(self, ticket_id: str, *, expires_at: float, now: float) -> bool:
        if expires_at <= now:
            return False
        try:
            won = await self._redis.set(KEY_PREFIX + ticket_id, b"1", nx=True, exat=math.ceil(expires_at))
        except self._errors as exc:
            why = type(exc).__name__  # never the URL: it may hold a password
            raise GuardUnavailable(f"the shared replay guard (Redis) did not answer: {why}") from None
        return bool(won)

    async def close(self) -> None:
        await self._redis.aclose()


def make_guard(redis_url: str | None) -> AsyncReplayGuard:
    return RedisGuard(redis_url) if redis_url else LocalGuard()
