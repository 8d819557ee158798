"""Gateway settings, read once from environment variables.

A wrong or missing value stops the start with the variable's name and what
was expected. No secret value is ever put into an error message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

from labxblock.addresses import EVERYWHERE, Network, parse_networks

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
    # Lab networks the gateway (and guacd, for it) may connect to; built-in refusals still apply.
    allowed_networks: tuple[Network, ...] = EVERYWHERE
    # Proxies whose X-Forwarded-For names the client ("*": any; "" none).
    forwarded_allow_ips: str = "127.0.0.1"
    # Open connections: in all, and per client (an IPv4 address, an IPv6 /ipv6_client_prefix).
    max_connections: int = 4096
    max_connections_per_address: int = 100
    # Of those, connections without an accepted ticket (every HTTP one): in all, and per client.
    max_pending_connections: int = 1024
    max_pending_per_address: int = 32
    # Bits of an IPv6 client's address that name it for the per-client caps (one host has a /64).
    ipv6_client_prefix: int = 64
    # Seconds a connection has to send a request's headers (from its opening or its last answer).
    header_timeout_seconds: float = 10.0
    # Seconds an idle HTTP keep-alive connection stays open.
    keep_alive_seconds: int = 5
    # Largest request head (request line and headers).
    max_header_bytes: int = 16 * 1024
    # Largest websocket message before the ticket is accepted (the ticket), and after.
    ticket_max_bytes: int = 16 * 1024
    max_message_bytes: int = 256 * 1024
    # Shared single-use guard for several processes or replicas (redis://…); None: in-process.
    redis_url: str | None = None


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


def _number(name: str, value: str, low: float, high: float, *, whole: bool = True) -> float:
    try:
        number = int(value) if whole else float(value)
        if not low <= number <= high:
            raise ValueError
    except ValueError:
        kind = "an integer" if whole else "a number"
        raise ConfigError(f"{PREFIX}{name}: expected {kind} in [{low:g}, {high:g}]") from None
    return number


def _networks(value: str) -> tuple[Network, ...]:
    try:
        return parse_networks(_split(value), what=PREFIX + "ALLOWED_NETWORKS")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _limits(get: Callable[[str, str], str]) -> dict[str, object]:
    """The hardening knobs: connection caps, timeouts, message sizes."""
    return {
        "max_connections": int(_number("MAX_CONNECTIONS", get("MAX_CONNECTIONS", "4096"), 1, 1_000_000)),
        "max_connections_per_address": int(
            _number("MAX_CONNECTIONS_PER_ADDRESS", get("MAX_CONNECTIONS_PER_ADDRESS", "100"), 1, 1_000_000)
        ),
        "max_pending_connections": int(
            _number("MAX_PENDING_CONNECTIONS", get("MAX_PENDING_CONNECTIONS", "1024"), 1, 1_000_000)
        ),
        "max_pending_per_address": int(
            _number("MAX_PENDING_PER_ADDRESS", get("MAX_PENDING_PER_ADDRESS", "32"), 1, 1_000_000)
        ),
        "ipv6_client_prefix": int(_number("IPV6_CLIENT_PREFIX", get("IPV6_CLIENT_PREFIX", "64"), 32, 128)),
        "header_timeout_seconds": _number(
            "HEADER_TIMEOUT_SECONDS", get("HEADER_TIMEOUT_SECONDS", "10"), 0.1, 300, whole=False
        ),
        "keep_alive_seconds": int(_number("KEEP_ALIVE_SECONDS", get("KEEP_ALIVE_SECONDS", "5"), 1, 300)),
        "max_header_bytes": int(_number("MAX_HEADER_BYTES", get("MAX_HEADER_BYTES", "16384"), 1024, 1 << 20)),
        "ticket_max_bytes": int(_number("TICKET_MAX_BYTES", get("TICKET_MAX_BYTES", "16384"), 1024, 1 << 20)),
        "max_message_bytes": int(
            _number("MAX_MESSAGE_BYTES", get("MAX_MESSAGE_BYTES", "262144"), 4096, 16 << 20)
        ),
    }


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
    log_level = get("LOG_LEVEL", "info").lower()
    if log_level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"{PREFIX}LOG_LEVEL: expected debug, info, warning or error")
    redis_url = env.get(PREFIX + "REDIS_URL", "").strip() or None
    if redis_url is not None and urlsplit(redis_url).scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"{PREFIX}REDIS_URL: expected a redis://, rediss:// or unix:// URL")
    return GatewayConfig(
        ticket_keys=keys,
        allowed_origins=allowed,
        frame_ancestors=frame_ancestors,
        modes=modes,
        guacd_host=guacd_host,
        guacd_port=guacd_port,
        listen_host=listen_host,
        listen_port=listen_port,
        ticket_wait_seconds=_number(
            "TICKET_WAIT_SECONDS", get("TICKET_WAIT_SECONDS", "10"), 0.1, 60, whole=False
        ),
        log_level=log_level,
        allowed_networks=_networks(get("ALLOWED_NETWORKS", "0.0.0.0/0,::/0")),
        forwarded_allow_ips=env.get(PREFIX + "FORWARDED_ALLOW_IPS", "127.0.0.1").strip(),
        redis_url=redis_url,
        **_limits(get),  # type: ignore[arg-type]
    )
