"""Run the fake cloud as a process: ``python -m tests.cloudfake --port N``.

Prints one JSON line (base URL, password and application-credential provider
configs) on stdout once it is listening, then serves until killed.
"""

from __future__ import annotations

import argparse
import json
import sys

from tests.cloudfake.server import CloudFake


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.cloudfake", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--config", default="{}", help="initial fake settings as JSON, e.g. "
                                                       '\'{"delays": {"create": 2}}\'')
    args = parser.parse_args(argv)
    fake = CloudFake(port=args.port, **json.loads(args.config))
    print(json.dumps({"base_url": fake.base_url, "provider_config": fake.provider_config,
                      "app_credential_config": fake.app_credential_config}), flush=True)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
