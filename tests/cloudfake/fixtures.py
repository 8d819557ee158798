"""Pytest plugin: the HTTP cloud fake, one server per test session, reset for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cloudfake.server import CloudFake


@pytest.fixture(scope="session")
def cloud_fake_server() -> Iterator[CloudFake]:
    """The running fake (127.0.0.1, a free port) for the whole session."""
    fake = CloudFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def cloud_fake(cloud_fake_server: CloudFake) -> Iterator[CloudFake]:
    """The fake with no stacks, tokens, counts or faults; ``.provider_config`` to reach it."""
    cloud_fake_server.reset()
    yield cloud_fake_server
    cloud_fake_server.reset()
