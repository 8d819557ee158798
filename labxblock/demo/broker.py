"""The demo's Celery broker: always a Redis server, as on a site.

In order: the Redis named by ``--broker``; else the one answering on 127.0.0.1:6379
(``LABXBLOCK_DEMO_LOCAL_REDIS`` names another place to look, e.g. a port where nothing
runs, so the tests get a private one although a Redis runs on 6379); else a private
``redis-server`` the demo starts itself (``runner.py``), on a free loopback port, with
a password of its own, working in ``<dir>/redis`` and keeping nothing on disk.
Without redis-server the demo says what to install and stops.

There is no serverless fallback: the one kombu has races (a worker may read a message
its writer has not finished) and has no acknowledgements.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from kombu.utils.url import maybe_sanitize_url

from labxblock.providers.local import free_port

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_REDIS_ENV = "LABXBLOCK_DEMO_LOCAL_REDIS"  # where to look instead (documented in docs/quickstart.md)
SCHEMES = ("redis", "rediss")
INSTALL = "install redis-server (apt-get install redis-server), or pass --broker redis://…"


class BrokerUnavailable(Exception):
    """No broker the demo can use; the message says what to do."""


def redis_url(value: str) -> str:
    """``--broker``'s value: a Redis URL (what kombu's Redis transport takes)."""
    if urlsplit(value).scheme not in SCHEMES or not urlsplit(value).hostname:
        raise ValueError(f"expected a Redis URL (redis://host:port/db, rediss://…), not {value!r}")
    return value


def redis_error(url: str, timeout: float = 0.5) -> str | None:
    """Why the Redis at ``url`` does not answer PING (refused, needs a password…); None if it does."""
    import redis  # the demo extra's

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout) as client:
            client.ping()
    except (redis.RedisError, OSError) as exc:
        return str(exc) or type(exc).__name__
    return None


@dataclass(frozen=True)
class PrivateRedis:
    """The demo's own redis-server: 127.0.0.1 only, a fresh password and port each run, no persistence."""

    binary: str
    directory: Path  # its working directory (Redis's ``dir``): nothing is saved there, but it is the demo's
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        """The command line: the configuration comes on stdin (``-``), so the password is in no argv."""
        return [self.binary, "-"]

    def config(self) -> bytes:
        lines = [
            "bind 127.0.0.1", f"port {self.port}", "protected-mode yes", f"requirepass {self.password}",
            "dir ./",  # the working directory the demo starts it in
            'save ""', "appendonly no",  # a broker for one run: a restart starts empty, like the labs
            "daemonize no", 'logfile ""',  # in the foreground, logging to the demo's logs/redis.log
        ]
        return "\n".join(lines).encode() + b"\n"


@dataclass(frozen=True)
class Broker:
    """The broker URL the web server, worker and beat share; ``private`` if the demo runs it."""

    url: str
    private: PrivateRedis | None = None

    def describe(self) -> str:
        if self.private:
            return f"its own redis-server on 127.0.0.1:{self.private.port}"
        return maybe_sanitize_url(self.url)


def local_redis() -> str:
    """Where the demo looks for a running Redis when no ``--broker`` is given."""
    try:
        return redis_url(os.environ.get(LOCAL_REDIS_ENV) or LOCAL_REDIS)
    except ValueError as exc:
        raise BrokerUnavailable(f"{LOCAL_REDIS_ENV}: {exc}") from None


def choose(given: str | None, directory: Path) -> Broker:
    """The broker for a demo in ``directory``; BrokerUnavailable says what is missing."""
    if given:
        if error := redis_error(given):
            raise BrokerUnavailable(f"the Redis of --broker {maybe_sanitize_url(given)}, which does not "
                                    f"answer ({error})")
        return Broker(given)
    local = local_redis()
    if redis_error(local) is None:
        return Broker(local)
    binary = shutil.which("redis-server")
    if binary is None:
        raise BrokerUnavailable(f"a Redis server for Celery (none answers at {maybe_sanitize_url(local)}): "
                                f"{INSTALL}")
    private = PrivateRedis(binary, directory / "redis")
    return Broker(private.url, private)
