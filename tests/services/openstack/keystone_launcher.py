"""Serve Keystone's WSGI app on 127.0.0.1 with a threaded server (runs in the services venv).

Usage: python keystone_launcher.py PORT   (config via OS_KEYSTONE_CONFIG_FILES)
"""

from __future__ import annotations

import sys

from _launch_common import die_with_parent, serve, sqlite_begin_immediate


def main() -> None:
    die_with_parent()
    port = int(sys.argv[1])
    # keystone.server parses sys.argv with oslo.config: leave it nothing to reject.
    sys.argv = [sys.argv[0]]
    sqlite_begin_immediate()
    from keystone.server import wsgi

    serve(wsgi.initialize_public_application(), "127.0.0.1", port)


if __name__ == "__main__":
    main()
