"""Caddy (Debian's ``caddy``) serving a Caddyfile that Tutor rendered, over plain HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.services import missing_service
from tests.services.process import ServiceProcess, free_port, port_open

GLOBAL_BLOCK = "# Global configuration\n{\n"


def caddy_binary() -> str:
    binary = shutil.which("caddy")
    if binary is None:
        missing_service("caddy is not installed (apt install caddy)")
    return binary


@contextlib.contextmanager
def running_caddy(caddyfile: str, workdir: Path, upstreams: Mapping[str, str]) -> Iterator[int]:
    """Serve ``caddyfile`` as it is, but for three things; yield the port.

    The container names in ``upstreams`` are replaced by local addresses; the
    site port (Tutor's ``{$default_site_port}``) is a free port declared as the
    HTTP port, so Caddy serves it without TLS; the admin endpoint is off.
    """
    port = free_port()
    assert caddyfile.startswith(GLOBAL_BLOCK), "Tutor's Caddyfile opens with its global options"
    text = caddyfile.replace(GLOBAL_BLOCK, f"{GLOBAL_BLOCK}    admin off\n    http_port {port}\n", 1)
    for name, address in upstreams.items():
        assert name in text, f"{name} is not an upstream of this Caddyfile"
        text = text.replace(name, address)
    path = workdir / "Caddyfile"
    path.write_text(text)
    env = {"default_site_port": f":{port}", "HOME": str(workdir), "XDG_DATA_HOME": str(workdir / "data"),
           "XDG_CONFIG_HOME": str(workdir / "config")}  # fmt: skip
    process = ServiceProcess(
        "caddy", [caddy_binary(), "run", "--config", str(path), "--adapter", "caddyfile"],
        workdir / "caddy.log", env=env,
    ).start(lambda: port_open(port), timeout=30)
    try:
        yield port
    finally:
        process.stop()
