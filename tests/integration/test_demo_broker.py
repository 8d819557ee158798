"""`labxblock demo`'s broker: the Redis it finds or is given, and what it says when there is none.

Running the demo on its own redis-server, and that server stopping with it (Ctrl-C, and
the watchdog when the demo is killed), is in tests/browser/test_demo.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labxblock.demo.broker import LOCAL_REDIS_ENV, choose
from labxblock.providers.local import free_port

pytestmark = [pytest.mark.redis]
LABXBLOCK = Path(sys.executable).parent / "labxblock"  # the console script, as `pip install` put it


def _nowhere() -> str:
    """A Redis URL where nothing answers (a port free on 127.0.0.1 a moment ago)."""
    return f"redis://127.0.0.1:{free_port()}/0"


def _demo(directory: Path, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``labxblock demo`` as a user types it; here it must refuse to start, so it returns at once."""
    return subprocess.run([str(LABXBLOCK), "demo", "--dir", str(directory), "--port", "0", *options],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=60, check=False)


def test_a_broker_url_where_no_redis_answers_is_refused_with_the_reason_and_no_password(tmp_path) -> None:
    directory = tmp_path / "demo"
    dead = f"redis://:hush@127.0.0.1:{free_port()}/0"
    done = _demo(directory, "--broker", dead)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "labxblock demo needs:" in done.stderr
    assert f"the Redis of --broker redis://:**@127.0.0.1:{dead.rsplit(':', 1)[1]}, which does not answer" \
        in done.stderr, done.stderr
    assert "Connection refused" in done.stderr
    assert "hush" not in done.stderr + done.stdout  # a password in the URL is not repeated
    assert not directory.exists()  # refused before anything was made or started


@pytest.mark.parametrize("value", ["auto", "memory://", "amqp://localhost//", "redis://"])
def test_the_broker_option_takes_a_redis_url_only(tmp_path, value: str) -> None:
    done = _demo(tmp_path / "demo", "--broker", value)
    assert done.returncode == 2 and "--broker: expected a Redis URL" in done.stderr, done.stderr


def test_without_redis_server_on_the_path_it_says_what_to_install_and_starts_nothing(tmp_path) -> None:
    directory = tmp_path / "demo"
    done = _demo(directory, PATH=str(LABXBLOCK.parent), **{LOCAL_REDIS_ENV: _nowhere()})  # no redis-server
    assert done.returncode == 2, done.stdout + done.stderr
    assert "labxblock demo needs:" in done.stderr
    assert "install redis-server (apt-get install redis-server), or pass --broker redis://" in done.stderr
    assert not directory.exists()


def test_a_bad_local_redis_variable_is_named_in_the_message(tmp_path) -> None:
    done = _demo(tmp_path / "demo", **{LOCAL_REDIS_ENV: "127.0.0.1:6379"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{LOCAL_REDIS_ENV}: expected a Redis URL" in done.stderr, done.stderr


def test_a_redis_answering_where_it_looks_is_used_else_its_own_with_a_fresh_password(
        redis_server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(LOCAL_REDIS_ENV, redis_server.url)  # as 127.0.0.1:6379 when one runs there
    found = choose(None, tmp_path)
    assert (found.url, found.private) == (redis_server.url, None)
    assert found.describe() == redis_server.url

    monkeypatch.setenv(LOCAL_REDIS_ENV, _nowhere())
    own = choose(None, tmp_path)
    assert own.private is not None and own.private.directory == tmp_path / "redis"
    assert own.url == f"redis://:{own.private.password}@127.0.0.1:{own.private.port}/0"
    assert own.private.password not in own.describe()
    assert choose(None, tmp_path).private.password != own.private.password  # fresh each run
