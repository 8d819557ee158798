"""A small wrapper over one ASGI websocket connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

AUTHENTICATED = "labxblock.authenticated"  # ASGI scope extension set by gateway.limits

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Guacamole status codes used as close reasons (the JS parses the reason); each
# has its own learner message in templates/gateway/common.js.
SUCCESS = 0
SERVER_ERROR = 512
UPSTREAM_TIMEOUT = 514
UPSTREAM_ERROR = 515
RESOURCE_NOT_FOUND = 516
UPSTREAM_NOT_FOUND = 519
CLIENT_BAD_REQUEST = 768
CLIENT_UNAUTHORIZED = 769
CLIENT_FORBIDDEN = 771
CLIENT_TIMEOUT = 776
CLIENT_TOO_MANY = 797
# What they mean here. A failed lab login is guacd's own 769 (it reaches the
# page in guacd's "error" instruction), so a refused ticket needs another code.
LAB_LOGIN_FAILED = CLIENT_UNAUTHORIZED
TICKET_REFUSED = CLIENT_FORBIDDEN
LAB_ADDRESS_REFUSED = RESOURCE_NOT_FOUND


def websocket_code(status: int) -> int:
    """The WebSocket close code the official Guacamole server pairs with a status."""
    if status == SUCCESS:
        return 1000
    if status in (CLIENT_UNAUTHORIZED, CLIENT_FORBIDDEN):
        return 1008
    if status >= 768:
        return 1002 if status == CLIENT_BAD_REQUEST else 1008
    return 1011


class Disconnected(Exception):
    """The browser went away."""


class WebSocket:
    """Accept, receive, send (serialised: two tasks may send) and close."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._lock = asyncio.Lock()
        self.closed = False
        self.is_authenticated = False
        self.on_authenticated: Callable[[], None] | None = None  # the app's, called once

    def header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", []):
            if key == name:
                return value.decode("latin-1")
        return None

    async def accept(self, subprotocol: str | None) -> None:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            raise Disconnected()
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})

    async def refuse(self) -> None:
        """Close before accepting: the server answers the handshake with 403."""
        message = await self._receive()
        if message["type"] == "websocket.connect":
            await self._send({"type": "websocket.close", "code": 1008})
        self.closed = True

    def authenticated(self) -> None:
        """The ticket was accepted: lift the small pre-ticket message size and the socket's count among
        those waiting for their ticket (see gateway.limits), and tell the app (``on_authenticated``)."""
        if self.is_authenticated:
            return
        self.is_authenticated = True
        raise_limit = self.scope.get("extensions", {}).get(AUTHENTICATED)
        if raise_limit is not None:
            raise_limit()
        if self.on_authenticated is not None:
            self.on_authenticated()

    async def receive(self) -> str | bytes:
        # Let other sessions (and /healthz) run between messages: a flood of tiny
        # messages arrives in one read and would otherwise be handled in one go.
        await asyncio.sleep(0)
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self.closed = True
            raise Disconnected()
        if message.get("text") is not None:
            return message["text"]
        return message.get("bytes") or b""

    async def send_text(self, text: str) -> None:
        await self._send_message({"type": "websocket.send", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self._send_message({"type": "websocket.send", "bytes": data})

    async def close(self, status: int) -> None:
        """Close with the Guacamole status as the reason, as the JS client expects."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self._send_message(
                {"type": "websocket.close", "code": websocket_code(status), "reason": str(status)}
            )

    async def _send_message(self, message: dict[str, Any]) -> None:
        async with self._lock:
            try:
                await self._send(message)
            except (OSError, RuntimeError) as exc:
                # uvicorn raises ClientDisconnected (an OSError) or RuntimeError after a close.
                raise Disconnected() from exc
