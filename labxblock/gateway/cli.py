"""``labxblock-gateway``: run the terminal gateway on uvicorn, configured from the environment."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import TYPE_CHECKING

from labxblock.gateway.config import PREFIX, ConfigError, load_config

if TYPE_CHECKING:
    from labxblock.gateway.app import Gateway

# What the "gateway" extra installs (setup.py); a plain `pip install labxblock` lacks them.
EXTRA_MODULES = ("uvicorn", "websockets", "asyncssh")
INSTALL_EXTRA = 'pip install "labxblock[gateway]"'


def require_extra() -> None:
    """Raise ModuleNotFoundError saying which extra to install if one of its modules is missing."""
    for module in EXTRA_MODULES:
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(
                f"the gateway needs labxblock's 'gateway' extra (no module {module!r}): {INSTALL_EXTRA}",
                name=module,
            )


def create_app() -> Gateway:
    """Factory for ``uvicorn --factory labxblock.gateway.cli:create_app`` and tests."""
    require_extra()
    from labxblock.gateway.app import Gateway

    return Gateway(load_config())


def main(argv: list[str] | None = None) -> int:
    """Start the gateway; exit 2 with the variable's name on a configuration error."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in {"-h", "--help"}:
        print(__doc__.strip() + "\nEnvironment variables: see docs/terminal.md (prefix " + PREFIX + ").")
        return 0
    try:
        require_extra()
    except ModuleNotFoundError as exc:
        print(f"labxblock-gateway: {exc}", file=sys.stderr)
        return 2
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"labxblock-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    import uvicorn  # the gateway extra: imported once it is known to be there

    from labxblock.gateway.app import Gateway

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
