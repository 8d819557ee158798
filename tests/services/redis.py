"""A private Redis server on 127.0.0.1 for the Celery broker; it can be restarted mid-test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.services import missing_service
from tests.services.process import ServiceProcess, free_port, port_open


@dataclass
class RedisServer:
    """One redis-server process; ``restart()`` keeps the port, as a broker outage would."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: ServiceProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                "--save", "", "--appendonly", "no", "--protected-mode", "yes"]
        self.process = ServiceProcess("redis", argv, self.workdir / "redis.log")
        self.process.start(lambda: port_open(self.port), timeout=15)
        return self

    def client(self):  # -> redis.Redis (the client comes with the test extra)
        import redis

        return redis.Redis.from_url(self.url)

    def queued(self, queue: str) -> list[dict]:
        """The messages waiting in a Celery queue (kombu's Redis transport keeps one list per queue)."""
        import json

        with self.client() as client:
            return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not (shutil.which("redis-server") or Path("/usr/bin/redis-server").exists()):
        missing_service("redis-server is not installed (apt install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()
