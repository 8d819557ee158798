"""Real services the tests start themselves (MariaDB, Redis, Keystone + Heat, OpenSSH).

Each module starts its service on 127.0.0.1 in a private directory and stops it
afterwards. A missing service skips a test on a developer's machine but fails it
in CI (``CI=true``): in CI every real-service test must run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Reused between local runs: service virtualenvs, downloaded artefacts.
CACHE_DIR = Path(os.environ.get("LABXBLOCK_TEST_CACHE", Path.home() / ".cache" / "labxblock-tests"))

# Screenshots and logs that a person may want to look at after a run.
ARTIFACTS_DIR = Path(os.environ.get("LABXBLOCK_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


def missing_service(reason: str) -> NoReturn:
    """Skip for a missing service locally; fail in CI, where nothing may skip."""
    if IN_CI:
        pytest.fail(f"required service missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)
