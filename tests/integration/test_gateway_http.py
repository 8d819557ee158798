"""Gateway pages, assets and configuration errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from labxblock.gateway.config import ConfigError, load_config
from tests.guacd_standin.harness import gateway_env, running_gateway


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
    ],
)
def test_config_errors_name_the_variable(override, names):
    with pytest.raises(ConfigError, match=names):
        load_config(gateway_env(**override))


def test_console_only_needs_no_guacd():
    env = gateway_env(modes="console")
    del env["LABXBLOCK_GATEWAY_GUACD"]
    assert load_config(env).modes == ("console",)


def test_command_exits_2_naming_the_missing_variable():
    command = Path(sys.executable).parent / "labxblock-gateway"
    result = subprocess.run([str(command)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode == 2
    assert "LABXBLOCK_GATEWAY_TICKET_KEYS is required" in result.stderr
