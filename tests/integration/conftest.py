"""Fixtures for tests that run the lifecycle engine with real workers, beat, Redis and a cloud."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from tests.celery_app import app as celery_app
from tests.cloudfake.server import CloudFake
from tests.engine_harness import LabPort, active_lab_settings, lab_settings
from tests.services.celery_procs import CeleryProcesses


@dataclass
class Engine:
    """The running engine of one test: its cloud, workers, lab port and settings."""

    cloud: CloudFake
    procs: CeleryProcesses
    lab_port: LabPort
    settings: dict[str, Any]

    def stacks(self) -> set[str]:
        """Names of the live stacks carrying this site's tag at the cloud (not those listed deleted)."""
        now = time.monotonic()
        return {stack.name for stack in self.cloud.cloud.listing(["labxblock-test"])
                if stack.status(now)[0] != "DELETE_COMPLETE"}

    def user(self, name: str) -> Any:
        return get_user_model().objects.create_user(username=name, email=f"{name}@example.com")


@pytest.fixture
def lab_port() -> Iterator[LabPort]:
    port = LabPort()
    yield port
    port.close()


@pytest.fixture
def engine_factory(transactional_db, cloud_fake, celery_processes, redis_server, lab_port):
    """Start the engine with settings of the test's choosing: ``engine_factory(**overrides)``."""
    celery_app.conf.broker_url = redis_server.url  # this process sends tasks too (after commit)
    stack = []

    def start(providers: dict[str, dict[str, Any]] | None = None, workers: int = 1, beat: bool = True,
              calls_threads: int = 4, **overrides: Any) -> Engine:
        providers = providers or {"default": {"type": "openstack", **cloud_fake.provider_config}}
        settings = lab_settings(providers, **overrides)
        ctx = active_lab_settings(settings)
        ctx.__enter__()
        stack.append(ctx)
        for _ in range(workers):  # workers[:workers] take the cloud calls and checks
            celery_processes.start_calls_worker(concurrency=calls_threads)
        if beat:
            celery_processes.start_ticks_worker()
            celery_processes.start_beat()
        return Engine(cloud_fake, celery_processes, lab_port, settings)

    yield start
    celery_processes.stop()
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)
