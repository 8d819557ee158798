"""Gateway pages, assets and configuration errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from labxblock.gateway.config import ConfigError, load_config
from tests.guacd_standin.harness import COMMAND, gateway_env, gateway_process, running_gateway


def fetch(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_all(*paths: str) -> list[tuple[int, dict, bytes]]:
    async def run():
        async with running_gateway() as base:
            return await asyncio.gather(*(asyncio.to_thread(fetch, base + p) for p in paths))

    return asyncio.run(run())


def test_pages_assets_and_headers():
    page, evil, asset, health, missing, unknown_mode = get_all(
        "/console/lab-a/", "/guac/%3Cscript%3Ealert(1)%3C%2Fscript%3E/",
        "/static/xterm-6.0.0.mjs", "/healthz", "/static/../setup.py", "/nomode/lab-a/",
    )  # fmt: skip
    assert page[0] == 200 and b"xterm-6.0.0.css" in page[2]
    csp = page[1]["content-security-policy"]
    assert "frame-ancestors 'self' https://lms.test" in csp and "script-src 'self'" in csp
    assert page[1]["referrer-policy"] == "no-referrer" and page[1]["cache-control"] == "no-store"
    assert evil[0] == 200 and b"<script>alert" not in evil[2] and b"&lt;script&gt;alert(1)" in evil[2]
    assert (
        asset[0] == 200
        and asset[1]["content-type"] == "text/javascript"
        and "immutable" in asset[1]["cache-control"]
    )
    assert health[0] == 200
    assert missing[0] == 404 and unknown_mode[0] == 404


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ({"ticket_keys": ""}, "LABXBLOCK_GATEWAY_TICKET_KEYS is required"),
        ({"ticket_keys": "not-a-key"}, "LABXBLOCK_GATEWAY_TICKET_KEYS: key #1"),
        ({"allowed_origins": "lms.example.org"}, "LABXBLOCK_GATEWAY_ALLOWED_ORIGINS"),
        ({"guacd": "nohostport"}, "LABXBLOCK_GATEWAY_GUACD"),
        ({"modes": "guac,telnet"}, "LABXBLOCK_GATEWAY_MODES"),
        ({"listen": "127.0.0.1:99999"}, "LABXBLOCK_GATEWAY_LISTEN"),
        ({"ticket_wait_seconds": "600"}, "LABXBLOCK_GATEWAY_TICKET_WAIT_SECONDS"),
        ({"allowed_networks": "10.0.0.0/8,lab-net"}, r"LABXBLOCK_GATEWAY_ALLOWED_NETWORKS\[1\]"),
        ({"max_connections": "0"}, "LABXBLOCK_GATEWAY_MAX_CONNECTIONS: expected an integer"),
        ({"max_connections_per_address": "many"}, "LABXBLOCK_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS"),
        ({"max_pending_connections": "0"}, "LABXBLOCK_GATEWAY_MAX_PENDING_CONNECTIONS"),
        ({"max_pending_per_address": "x"}, "LABXBLOCK_GATEWAY_MAX_PENDING_PER_ADDRESS"),
        ({"ipv6_client_prefix": "16"}, r"LABXBLOCK_GATEWAY_IPV6_CLIENT_PREFIX: expected an integer in \[32,"),
        ({"header_timeout_seconds": "0"}, "LABXBLOCK_GATEWAY_HEADER_TIMEOUT_SECONDS"),
        ({"keep_alive_seconds": "1.5"}, "LABXBLOCK_GATEWAY_KEEP_ALIVE_SECONDS"),
        ({"max_header_bytes": "10"}, "LABXBLOCK_GATEWAY_MAX_HEADER_BYTES"),
        ({"ticket_max_bytes": "-1"}, "LABXBLOCK_GATEWAY_TICKET_MAX_BYTES"),
        ({"max_message_bytes": "1"}, "LABXBLOCK_GATEWAY_MAX_MESSAGE_BYTES"),
        ({"redis_url": "http://:secret@redis:6379"}, "LABXBLOCK_GATEWAY_REDIS_URL: expected a redis://"),
    ],
)
def test_config_errors_name_the_variable(override, names):
    with pytest.raises(ConfigError, match=names) as refused:
        load_config(gateway_env(**override))
    assert "secret" not in str(refused.value)


def test_console_only_needs_no_guacd():
    env = gateway_env(modes="console")
    del env["LABXBLOCK_GATEWAY_GUACD"]
    assert load_config(env).modes == ("console",)


def test_command_exits_2_naming_the_missing_variable():
    command = Path(sys.executable).parent / "labxblock-gateway"
    result = subprocess.run([str(command)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode == 2
    assert "LABXBLOCK_GATEWAY_TICKET_KEYS is required" in result.stderr


def test_command_refuses_arguments_such_as_workers():
    result = subprocess.run([str(COMMAND), "--workers", "2"], capture_output=True, text=True)
    assert result.returncode == 2 and "takes no arguments" in result.stderr


def test_command_raises_the_open_file_limit_and_fits_the_connection_cap_to_it(tmp_path):
    # Start it as a service manager with a low soft limit (256) and a hard limit of 1024 would.
    lower = (
        "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024)); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    log = tmp_path / "gw.log"
    with gateway_process(log, prefix=[sys.executable, "-c", lower], modes="console") as (_, pid):
        limits = Path(f"/proc/{pid}/limits").read_text()
    soft, hard = next(line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files"))
    assert (soft, hard) == ("1024", "1024")
    assert "does not fit 1024 open files; using 480" in log.read_text()  # (1024 - 64) / 2 sessions


def test_the_kernel_queues_more_connections_than_asyncio_accepts_in_one_turn(tmp_path):
    from labxblock.gateway.server import ACCEPT_BATCH, LISTEN_BACKLOG

    with gateway_process(tmp_path / "gw.log", modes="console") as (base, _):
        port = base.rsplit(":", 1)[1]
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert int(listening.split()[2]) == LISTEN_BACKLOG > ACCEPT_BATCH  # ss shows the backlog as Send-Q
