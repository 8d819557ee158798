"""Heat engine and Heat API in ONE process (runs in the services venv).

With ``transport_url = fake:/`` the RPC between API and engine only works inside
one process, and Heat's own service launcher forks; so start the engine service
in-process and serve the heat-api paste app on a thread.

Usage: python heat_launcher.py CONFIG_FILE PORT
"""

from __future__ import annotations

import sys
import threading

from _launch_common import die_with_parent, serve, sqlite_begin_immediate


def main() -> None:
    die_with_parent()
    config_file, port = sys.argv[1], int(sys.argv[2])

    from oslo_service import backend

    # Native threads, not eventlet: must happen before anything imports oslo_service.service.
    backend.init_backend(backend.BackendType.THREADING)
    sqlite_begin_immediate()

    import oslo_i18n
    from heat import version
    from heat.common import config, messaging, profiler
    from oslo_config import cfg
    from oslo_log import log as logging

    oslo_i18n.enable_lazy()
    conf = cfg.CONF
    logging.register_options(conf)
    conf(
        ["--config-file", config_file],
        project="heat",
        prog="heat-api",
        version=version.version_info.version_string(),
    )
    logging.setup(conf, "heat")
    config.set_config_defaults()
    messaging.setup()
    profiler.setup("heat-api", conf.host)

    # Imported after configuration, as heat-engine does; it also registers options the check reads.
    from heat.engine import service as engine_service
    from heat.rpc import api as rpc_api

    config.startup_sanity_check()

    engine = engine_service.EngineService(conf.host, rpc_api.ENGINE_TOPIC)
    engine.start()

    app = config.load_paste_app("heat-api")
    serve(app, "127.0.0.1", port, background=True)
    threading.Event().wait()  # until SIGTERM


if __name__ == "__main__":
    main()
