"""keystone-manage db_sync, fernet_setup, credential_setup and bootstrap in ONE process (services venv).

Four keystone-manage processes pay Keystone's ~2 s import four times.
Usage: python keystone_setup.py CONFIG_FILE ADMIN_PASSWORD KEYSTONE_URL
"""

from __future__ import annotations

import os
import sys

from _launch_common import die_with_parent, sqlite_begin_immediate


def main() -> None:
    die_with_parent()
    config_file, admin_password, url = sys.argv[1:4]
    sqlite_begin_immediate()
    from keystone.cmd import cli
    from oslo_config import cfg

    # keystone-manage insists on --keystone-user/--keystone-group only when run as root.
    owner = ["--keystone-user", "0", "--keystone-group", "0"] if os.getuid() == 0 else []
    commands = [
        ["db_sync"],
        ["fernet_setup", *owner],
        ["credential_setup", *owner],
        [
            "bootstrap",
            "--bootstrap-password",
            admin_password,
            "--bootstrap-region-id",
            "RegionOne",
            *(
                arg
                for kind in ("admin", "public", "internal")
                for arg in (f"--bootstrap-{kind}-url", f"{url}/v3/")
            ),
        ],
    ]
    for command in commands:
        cfg.CONF.reset()  # each run parses the command line afresh
        cli.main(["keystone-manage", "--config-file", config_file, *command])


if __name__ == "__main__":
    main()
