"""Gateway settings, read once from environment variables.

A wrong or missing value stops the start with the variable's name and what
was expected. No secret value is ever put into an error message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

PREFIX = "LABXBLOCK_GATEWAY_"
MODES = ("guac", "console")


class ConfigError(ValueError):
    """A gateway environment variable is missing or wrong."""


@dataclass(frozen=True)
class GatewayConfig:
    """What one gateway process needs; see docs/terminal.md for each variable."""

    # Fernet keys shared with the LMS; the first one is the LMS's minting key.
    ticket_keys: tuple[str, ...]
    # Origins allowed to open a websocket (where the gateway's pages are served).
    allowed_origins: tuple[str, ...]
    # Origins allowed to frame the pages (the LMS); CSP frame-ancestors.
    frame_ancestors: tuple[str, ...]
    # Enabled modes: "guac" (relay to guacd) and/or "console" (built-in SSH).
    modes: tuple[str, ...] = MODES
    # guacd host and port, needed for "guac" mode.
    guacd_host: str = "127.0.0.1"
    guacd_port: int = 4822
    # Address uvicorn listens on.
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    # Seconds a browser has to present its ticket after the socket opens.
    ticket_wait_seconds: float = 10.0
    # Seconds for the guacd handshake or the SSH login.
    upstream_timeout: float = 15.0
    log_level: str = "info"


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _host_port(name: str, value: str, *, any_port: bool = False) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    lowest = 0 if any_port else 1  # port 0 = "any free port", for tests
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise ConfigError(f"{name}: expected host:port, got {value!r}")
    return host.strip("[]"), int(port)


def _origins(name: str, value: str) -> tuple[str, ...]:
    origins = _split(value)
    if not origins:
        raise ConfigError(f"{name}: expected a comma-separated list of origins (https://host[:port])")
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
            raise ConfigError(f"{name}: {origin!r} is not an origin like https://lms.example.org")
    return tuple(o.rstrip("/") for o in origins)


def load_config(env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Build the configuration from ``env`` (default: ``os.environ``)."""
    env = os.environ if env is None else env

    def get(name: str, default: str | None = None) -> str:
        value = env.get(PREFIX + name, "").strip()
        if value:
            return value
        if default is None:
            raise ConfigError(f"{PREFIX}{name} is required")
        return default

    keys = _split(get("TICKET_KEYS"))
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{PREFIX}TICKET_KEYS: key #{index + 1} is not a Fernet key (32 url-safe base64 bytes)"
            ) from None
    allowed = _origins(PREFIX + "ALLOWED_ORIGINS", get("ALLOWED_ORIGINS"))
    frame_ancestors = allowed
    if env.get(PREFIX + "FRAME_ANCESTORS", "").strip():
        frame_ancestors = _origins(PREFIX + "FRAME_ANCESTORS", get("FRAME_ANCESTORS"))
    modes = _split(get("MODES", ",".join(MODES)))
    if not modes or set(modes) - set(MODES):
        raise ConfigError(f"{PREFIX}MODES: expected a comma-separated subset of {', '.join(MODES)}")
    guacd_host, guacd_port = "", 0
    if "guac" in modes:
        guacd_host, guacd_port = _host_port(PREFIX + "GUACD", get("GUACD"))
    listen_host, listen_port = _host_port(PREFIX + "LISTEN", get("LISTEN", "127.0.0.1:8080"), any_port=True)
    wait = get("TICKET_WAIT_SECONDS", "10")
    try:
        ticket_wait = float(wait)
        if not 0 < ticket_wait <= 60:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{PREFIX}TICKET_WAIT_SECONDS: expected seconds in (0, 60]") from None
    log_level = get("LOG_LEVEL", "info").lower()
    if log_level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"{PREFIX}LOG_LEVEL: expected debug, info, warning or error")
    return GatewayConfig(
        ticket_keys=keys,
        allowed_origins=allowed,
        frame_ancestors=frame_ancestors,
        modes=modes,
        guacd_host=guacd_host,
        guacd_port=guacd_port,
        listen_host=listen_host,
        listen_port=listen_port,
        ticket_wait_seconds=ticket_wait,
        log_level=log_level,
    )
