"""``labxblock-gateway``: run the terminal gateway on uvicorn, configured from the environment.

One process, one event loop. Run it with this command rather than a bare
``uvicorn``: the connection limits and the frame-free logging live in the
protocol classes this command gives uvicorn (``labxblock.gateway.server``).
"""

from __future__ import annotations

import importlib.util
import logging
import sys

from labxblock.gateway.config import PREFIX, ConfigError, GatewayConfig, load_config

# What the "gateway" extra installs (setup.py); a plain `pip install labxblock` lacks them.
EXTRA_MODULES = ("uvicorn", "websockets", "asyncssh")
INSTALL_EXTRA = 'pip install "labxblock[gateway]"'


def require_extra(config: GatewayConfig | None = None) -> None:
    """Raise ModuleNotFoundError saying which extra to install if one of its modules is missing."""
    needed = EXTRA_MODULES + (("redis",) if config is not None and config.redis_url else ())
    for module in needed:
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(
                f"the gateway needs labxblock's 'gateway' extra (no module {module!r}): {INSTALL_EXTRA}",
                name=module,
            )


def main(argv: list[str] | None = None) -> int:
    """Start the gateway; exit 2 with the variable's name on a configuration error."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in {"-h", "--help"}:
        print(__doc__.strip() + "\nEnvironment variables: see docs/terminal.md (prefix " + PREFIX + ").")
        return 0
    if args:
        print(f"labxblock-gateway: takes no arguments (got {args[0]!r}); settings come from "
              f"{PREFIX}* variables. More processes: see docs/terminal.md.", file=sys.stderr)
        return 2
    try:
        require_extra()
        config = load_config()
        require_extra(config)
    except ModuleNotFoundError as exc:
        print(f"labxblock-gateway: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"labxblock-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    from labxblock.gateway.app import Gateway
    from labxblock.gateway.limits import raise_fd_limit
    from labxblock.gateway.server import GatewayServer, uvicorn_config

    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    fd_limit = raise_fd_limit()
    logging.getLogger("labxblock.gateway").info("open-file limit: %s", fd_limit)
    GatewayServer(uvicorn_config(Gateway(config), fd_limit=fd_limit)).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
