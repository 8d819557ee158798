"""How long a burst of refused connections holds up the gateway's event loop, per accept batch.

asyncio accepts up to ``backlog`` connections in one turn of the event loop and sets
them all up before anything else runs; the gateway gives uvicorn a small batch
(``labxblock.gateway.server.ACCEPT_BATCH``) and a large kernel queue. This script runs
the gateway in-process with each batch size, fires ``--connections`` connections at
once from one address over its cap (each is refused), and prints the event loop's
lag (how late a 2 ms timer fires) p95 and max. Goal: max lag <= 100 ms.

    .venv/bin/python benchmarks/gateway_accept_burst.py [--batches 16,64,2048] [--connections 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import percentile
from labxblock.gateway import server as gateway_server
from labxblock.gateway.app import Gateway
from labxblock.gateway.config import load_config
from labxblock.gateway.limits import raise_fd_limit
from tests.guacd_standin.harness import gateway_env

BURST = """
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
held = socket.create_connection(("127.0.0.1", port), source_address=("127.0.1.1", 0))  # fills the cap
burst = []
for _ in range(count):
    s = socket.socket()
    s.setblocking(False)
    s.bind(("127.0.1.1", 0))
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    burst.append(s)
time.sleep(3)
"""


async def one_burst(batch: int, connections: int) -> tuple[float, float]:
    gateway_server.ACCEPT_BATCH = batch  # what uvicorn_config hands uvicorn as its backlog
    config = load_config(gateway_env(listen="127.0.0.1:0", max_connections_per_address="1",
                                     forwarded_allow_ips="", log_level="error"))
    server = gateway_server.GatewayServer(gateway_server.uvicorn_config(Gateway(config)))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    lags: list[float] = []

    async def probe() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.002)
            lags.append((time.perf_counter() - started - 0.002) * 1000)

    probing = asyncio.create_task(probe())
    burst = await asyncio.create_subprocess_exec(sys.executable, "-c", BURST, str(port), str(connections))
    await burst.wait()
    probing.cancel()
    server.should_exit = True
    await serving
    return percentile(lags, 95), max(lags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="16,64,2048")
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    raise_fd_limit()
    print(f"burst of {args.connections} refused connections; default batch {gateway_server.ACCEPT_BATCH}")
    for batch in (int(b) for b in args.batches.split(",")):
        results = [asyncio.run(one_burst(batch, args.connections)) for _ in range(args.rounds)]
        worst = max(m for _, m in results)
        print(f"accept batch {batch:>5}: loop lag p95 " + ", ".join(f"{p:.1f}" for p, _ in results)
              + " ms; max " + ", ".join(f"{m:.1f}" for _, m in results)
              + f" ms -> goal max <= 100 ms: {'met' if worst <= 100 else 'NOT met'}")


if __name__ == "__main__":
    main()
