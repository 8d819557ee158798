"""``labxblock-gateway``: run the terminal gateway on uvicorn, configured from the environment."""

from __future__ import annotations

import logging
import os
import sys

from labxblock.gateway.app import Gateway
from labxblock.gateway.config import PREFIX, ConfigError, load_config


def create_app() -> Gateway:
    """Factory for ``uvicorn --factory labxblock.gateway.cli:create_app`` and tests."""
    return Gateway(load_config())


def main(argv: list[str] | None = None) -> int:
    """Start the gateway; exit 2 with the variable's name on a configuration error."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in {"-h", "--help"}:
        print(__doc__.strip() + "\nEnvironment variables: see docs/terminal.md (prefix " + PREFIX + ").")
        return 0
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"labxblock-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    import uvicorn  # the gateway extra; imported late so --help works without it

    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        Gateway(config),
        host=config.listen_host,
        port=config.listen_port,
        ws="websockets-sansio",  # awaits the socket's write buffer: back-pressure per session
        ws_max_size=1024 * 1024,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        lifespan="on",
        log_level=config.log_level,
        # Behind the LMS's reverse proxy: trust X-Forwarded-* from these addresses only.
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get(PREFIX + "FORWARDED_ALLOW_IPS", "127.0.0.1"),
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
