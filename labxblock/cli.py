"""``labxblock``: the project's command line. ``labxblock demo`` runs a working lab on this machine."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

from labxblock.providers.local import DEFAULT_SSHD, free_port

DEFAULT_DEMO_DIR = "~/.local/share/labxblock/demo"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labxblock", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="the xblock-sdk workbench with a local SSH lab, on 127.0.0.1 (development only)",
        description="Start the workbench (SQLite), a Celery worker and beat, the terminal gateway "
                    "(console mode) and the local provider; print the URL of an SSH lab. Ctrl-C stops all.",
    )
    demo.add_argument("--dir", default=DEFAULT_DEMO_DIR, help="where the database, labs and logs live "
                      "(default %(default)s)")
    demo.add_argument("--port", type=int, default=8000, help="the workbench's port (0: any free port)")
    demo.add_argument("--gateway-port", type=int, default=0, help="the gateway's port (0: any free port)")
    demo.add_argument("--suspend-timeout", type=int, default=30,
                      help="idle seconds before a lab is suspended (default %(default)s)")
    demo.add_argument("--broker", type=_redis_url, metavar="REDIS_URL",
                      help="the Celery broker, a Redis URL (redis://host:port/db); default: the Redis on "
                           "127.0.0.1:6379 if one answers (LABXBLOCK_DEMO_LOCAL_REDIS: look elsewhere), "
                           "else a redis-server that the demo starts and stops itself")
    return parser


def _redis_url(value: str) -> str:
    from labxblock.demo.broker import redis_url

    try:
        return redis_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def missing_for_demo() -> list[str]:
    """What the demo needs and this machine lacks, as instructions."""
    missing = [f"the {name} package: pip install -e \".[demo]\""
               for name in ("workbench", "uvicorn", "asyncssh", "redis")
               if importlib.util.find_spec(name) is None]
    if not Path(DEFAULT_SSHD).exists():
        missing.append(f"OpenSSH server at {DEFAULT_SSHD}: apt-get install openssh-server")
    if shutil.which("tmux") is None:
        print("labxblock demo: tmux is not installed; the lab's shell will not survive leaving the page "
              "(apt-get install tmux)", file=sys.stderr)
    return missing


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from labxblock.demo import broker

        directory = Path(args.dir).expanduser().resolve()
        missing = missing_for_demo()
        chosen = None
        if importlib.util.find_spec("redis") is not None:  # the broker's probe needs it (else: missing)
            try:
                chosen = broker.choose(args.broker, directory)
            except broker.BrokerUnavailable as exc:
                missing.append(str(exc))
        if missing or chosen is None:
            print("labxblock demo needs:\n  " + "\n  ".join(missing), file=sys.stderr)
            return 2
        from labxblock.demo import runner

        return runner.main(runner.Options(
            directory=directory,
            broker=chosen,
            port=args.port or free_port(),
            gateway_port=args.gateway_port or free_port(),
            suspend_timeout=args.suspend_timeout,
        ))
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
