"""uvicorn as the gateway runs it: the same settings for the command and for the tests."""

from __future__ import annotations

import logging
import socket

import uvicorn

from labxblock.gateway.app import Gateway
from labxblock.gateway.limits import ConnectionLimits, protocol_classes

# asyncio accepts up to `backlog` connections in one turn of the event loop and then
# runs all their set-ups before anything else. Measured with a burst of 3,000 refused
# sockets: the loop stalled up to 0.5-0.7 s with 2048 a turn, 0.07-0.2 s with 64,
# 0.04-0.08 s with 16. So uvicorn gets a small backlog (the batch), and the socket's
# kernel queue is set larger once it listens (GatewayServer).
ACCEPT_BATCH = 16
LISTEN_BACKLOG = 2048

# Loggers that would print frame contents (keystrokes, the ticket) at debug level.
WIRE_LOGGERS = ("websockets", "websockets.protocol", "websockets.server", "uvicorn.protocols")


def quiet_wire_loggers() -> None:
    """Never below INFO, whatever LOG_LEVEL says: frames are not logged at any level."""
    for name in WIRE_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def uvicorn_config(gateway: Gateway, *, fd_limit: int | None = None) -> uvicorn.Config:
    """uvicorn's Config for ``gateway``: its own protocols, caps, timeouts and proxy trust."""
    c = gateway.config
    http, ws = protocol_classes(ConnectionLimits(c, fd_limit=fd_limit))
    config = uvicorn.Config(
        gateway,
        host=c.listen_host,
        port=c.listen_port,
        http=http,
        ws=ws,  # websockets-sansio: awaits the socket's write buffer, back-pressure per session
        ws_max_size=c.max_message_bytes,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        lifespan="on",
        log_level=c.log_level,
        # Behind the LMS's reverse proxy: trust X-Forwarded-* from these addresses only.
        proxy_headers=True,
        forwarded_allow_ips=c.forwarded_allow_ips or "",
        server_header=False,
        timeout_keep_alive=c.keep_alive_seconds,
        h11_max_incomplete_event_size=c.max_header_bytes,
        backlog=ACCEPT_BATCH,
    )
    quiet_wire_loggers()
    return config


class GatewayServer(uvicorn.Server):
    """uvicorn's Server on a socket of its own, whose kernel queue outgrows asyncio's accept batch."""

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super().serve(sockets=sockets or [self.config.bind_socket()])

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        for sock in sockets or ():
            sock.listen(LISTEN_BACKLOG)  # asyncio keeps accepting ACCEPT_BATCH a turn
