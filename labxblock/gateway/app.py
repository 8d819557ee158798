"""The gateway's ASGI application: pages, vendored assets, and the two websockets.

Routes (relative links, so any reverse-proxy prefix works):
  GET  /healthz                 "ok"
  GET  /static/<file>           vendored JS/CSS and the page scripts
  GET  /<mode>/<stack>/         the iframe page; the ticket is in the fragment
  WS   /<mode>/<stack>/ws       guac: subprotocol "guacamole"; console: "labxblock-console"
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import unquote

from labxblock.addresses import AddressPolicy
from labxblock.gateway import console, guac, wsock
from labxblock.gateway.clients import Slots, client_key
from labxblock.gateway.config import GatewayConfig
from labxblock.gateway.destinations import Destinations, resolve
from labxblock.gateway.replay import make_guard
from labxblock.tickets import Ticket, TicketReplayed, check_binding, open_ticket

log = logging.getLogger("labxblock.gateway")

PACKAGE = Path(__file__).resolve().parents[1]
VENDOR = PACKAGE / "static" / "vendor"
PAGES = PACKAGE / "templates" / "gateway"
SUBPROTOCOLS = {"guac": "guacamole", "console": console.SUBPROTOCOL}
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}


def _assets() -> dict[str, Path]:
    """Every file a page may load, by URL name; nothing else is served."""
    files = {p.name: p for p in VENDOR.glob("*") if p.suffix in _TYPES}
    files.update({p.name: p for p in PAGES.glob("*") if p.suffix in _TYPES})
    return files


class Gateway:
    """ASGI callable; one per process. Holds the config, the replay guard and the address check."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.replay_guard = make_guard(config.redis_url)
        self.destinations = Destinations(
            AddressPolicy(allowed=config.allowed_networks), own=[(config.listen_host, config.listen_port)]
        )
        # Per client (behind a proxy, the one it names): websocket sessions, and those still before
        # their ticket (the protocol classes count a direct client's sockets the same way).
        self.sessions = Slots(config.max_connections_per_address)
        self.waiting = Slots(config.max_pending_per_address)
        self._assets = _assets()
        self._csp = "; ".join(
            [
                "default-src 'none'",
                "script-src 'self'",
                # xterm.js and the Guacamole display set styles from script.
                "style-src 'self' 'unsafe-inline'",
                "img-src 'self' data: blob:",
                "font-src 'self' data:",
                "connect-src 'self'",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'self' " + " ".join(config.frame_ancestors),
            ]
        )

    async def verify(self, token: str, *, stack_name: str) -> Ticket:
        """Open the ticket, claim it once (across processes with Redis), check its stack.

        Raises TicketError, or replay.GuardUnavailable when the shared guard cannot be asked.
        """
        now = time.time()
        ticket = open_ticket(self.config.ticket_keys, token, now=now)
        if not await self.replay_guard.claim(ticket.ticket_id, expires_at=ticket.remember_until, now=now):
            raise TicketReplayed(f"ticket {ticket.ticket_id[:6]}… already used")
        return check_binding(ticket, stack_name=stack_name)

    async def lab_address(self, ticket: Ticket, scope: dict[str, Any]) -> str:
        """The checked address to use for the ticket's host (destinations.LabAddressRefused if none)."""
        server = scope.get("server")
        here = [(str(server[0]), int(server[1]))] if server and server[1] else []
        return await self.destinations.check(ticket.host, ticket.port, also_own=here)

    async def __call__(self, scope: dict[str, Any], receive: wsock.Receive, send: wsock.Send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        segments = _segments(scope)
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send, segments)
        if scope["type"] == "http":
            return await self._http(scope, send, segments)

    async def _lifespan(self, receive: wsock.Receive, send: wsock.Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._own_endpoints()
                log.info("gateway ready: modes %s", ",".join(self.config.modes))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.replay_guard.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _own_endpoints(self) -> None:
        """Refuse labs at guacd's endpoint (resolved once, here) as well as our own."""
        if "guac" not in self.config.modes:
            return
        host, port = self.config.guacd_host, self.config.guacd_port
        try:
            self.destinations.add_own((address, port) for address in await resolve(host, port))
        except Exception as exc:  # guacd may come up later; the relay will say so then
            log.warning("guacd address %s does not resolve yet (%s)", host, exc)

    async def _http(self, scope: dict[str, Any], send: wsock.Send, segments: list[str]) -> None:
        if scope["method"] not in {"GET", "HEAD"}:
            return await _respond(send, 405, b"method not allowed\n", "text/plain")
        if segments == ["healthz"]:
            return await _respond(send, 200, b"ok\n", "text/plain")
        if len(segments) == 2 and segments[0] == "static" and segments[1] in self._assets:
            path = self._assets[segments[1]]
            # Vendored file names carry their version, so they may be cached for good.
            cache = "public, max-age=31536000, immutable" if path.parent == VENDOR else "no-cache"
            return await _respond(send, 200, path.read_bytes(), _TYPES[path.suffix], cache=cache)
        if len(segments) == 3 and segments[2] == "" and segments[0] in self.config.modes and segments[1]:
            if not scope["path"].endswith("/"):
                return await _respond(send, 404, b"not found\n", "text/plain")
            page = Template((PAGES / f"{segments[0]}.html").read_text("utf-8"))
            body = page.substitute(stack=html.escape(segments[1])).encode("utf-8")
            return await _respond(send, 200, body, "text/html; charset=utf-8", csp=self._csp)
        return await _respond(send, 404, b"not found\n", "text/plain")

    async def _websocket(
        self, scope: dict[str, Any], receive: wsock.Receive, send: wsock.Send, segments: list[str]
    ) -> None:
        ws = wsock.WebSocket(scope, receive, send)
        mode = segments[0] if segments else ""
        if len(segments) != 3 or segments[2] != "ws" or mode not in self.config.modes or not segments[1]:
            return await ws.refuse()
        origin = ws.header(b"origin")
        if origin is None or origin.rstrip("/") not in self.config.allowed_origins:
            # Cross-site websocket hijacking: only our own pages may open a tunnel.
            log.warning("websocket refused: origin %r not allowed", origin)
            return await ws.refuse()
        subprotocol = SUBPROTOCOLS[mode]
        if subprotocol not in scope.get("subprotocols", []):
            log.warning("websocket refused: subprotocol %r not offered", subprotocol)
            return await ws.refuse()
        # The client address uvicorn's proxy headers give: X-Forwarded-For from a trusted proxy only.
        client = client_key(str((scope.get("client") or ("",))[0]), self.config.ipv6_client_prefix)
        session = self.sessions.take(client)
        waiting = session and self.waiting.take(client)
        try:
            await ws.accept(subprotocol)  # then closed with a reason the page shows
            if not waiting:
                what = "sessions open" if not session else "sockets waiting for their ticket"
                log.warning("websocket closed: %s has too many %s", client, what)
                return await ws.close(wsock.CLIENT_TOO_MANY)
            ws.on_authenticated = lambda: self.waiting.give(client)
            serve = guac.serve if mode == "guac" else console.serve
            await serve(ws, gateway=self, stack_name=segments[1])
        except wsock.Disconnected:
            pass
        except Exception:
            log.exception("websocket session failed")
            await ws.close(wsock.SERVER_ERROR)
        finally:
            if session:
                self.sessions.give(client)
            if waiting and not ws.is_authenticated:
                self.waiting.give(client)


def _segments(scope: dict[str, Any]) -> list[str]:
    # Split the raw path, then decode, so an escaped "/" stays inside one segment.
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    path = raw.decode("latin-1").split("?", 1)[0]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return [unquote(s) for s in path.lstrip("/").split("/")]


async def _respond(
    send: wsock.Send, status: int, body: bytes, ctype: str, *, cache: str = "no-store", csp: str | None = None
) -> None:
    headers = [
        (b"content-type", ctype.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", cache.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]
    if csp:
        headers.append((b"content-security-policy", csp.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
