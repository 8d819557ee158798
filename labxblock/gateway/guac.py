"""Relay between guacamole-common-js's WebSocketTunnel and guacd.

Browser side: the tunnel UUID first; the ticket arrives as the first internal
instruction (``0.,6.ticket,<ticket>,<w>,<h>,<dpi>[,<tz>]``), never in a URL;
pings are echoed, internal instructions never reach guacd; every message holds
only complete instructions; the close reason is a Guacamole status code.
guacd side: a full handshake (one ``connect`` value per ``args`` element,
VERSION_1_5_0 first), and ``disconnect`` when the browser leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections import deque
from typing import TYPE_CHECKING

from labxblock.gateway import wsock
from labxblock.gateway.protocol import (
    ByteParser,
    Instruction,
    ProtocolError,
    encode,
    for_browser,
    parse_all,
)
from labxblock.tickets import Ticket, TicketError

if TYPE_CHECKING:
    from labxblock.gateway.app import Gateway

log = logging.getLogger("labxblock.gateway.guac")

PROTOCOL_VERSION = "VERSION_1_5_0"
BATCH_CHARS = 8192  # whole instructions per browser message, like the official servlet
# Browser input that a read-only viewer may not send (guacd ignores it too).
READ_ONLY_DROPPED = frozenset(
    {"key", "mouse", "touch", "clipboard", "size", "file", "pipe", "argv", "blob", "end"}
)
_TIMEZONE = re.compile(r"^[A-Za-z0-9_+\-/]{1,64}$")


class UpstreamFailed(Exception):
    """guacd could not be reached or refused the connection; carries a Guacamole status."""

    def __init__(self, message: str, status: int = wsock.UPSTREAM_ERROR) -> None:
        super().__init__(message)
        self.status = status


class Upstream:
    """The guacd TCP connection: complete instructions in, text out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = ByteParser()
        self._queue: deque[tuple[Instruction, str]] = deque()

    @classmethod
    async def open(cls, host: str, port: int) -> Upstream:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            raise UpstreamFailed(f"guacd unreachable: {exc}", wsock.UPSTREAM_NOT_FOUND) from None
        return cls(reader, writer)

    async def next(self) -> tuple[Instruction, str] | None:
        """The next complete instruction and its raw text; None at end of stream."""
        while not self._queue:
            data = await self._reader.read(65536)
            if not data:
                return None
            self._queue.extend(self._parser.feed(data))
        return self._queue.popleft()

    def take_buffered(self) -> tuple[Instruction, str] | None:
        return self._queue.popleft() if self._queue else None

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def connect_values(args: Instruction, ticket: Ticket) -> list[str]:
    """One value per ``args`` element, in its order; unknown parameters are empty."""
    known = {
        "hostname": ticket.host,
        "port": str(ticket.port),
        "username": ticket.username,
        "password": ticket.password or "",
        "private-key": ticket.private_key or "",
        "host-key": ticket.host_key or "",
        "read-only": "true" if ticket.read_only else "",
        **ticket.display,
    }
    values = [PROTOCOL_VERSION]
    values += [known.get(name, "") for name in args[1:]]
    return values


async def handshake(
    up: Upstream, ticket: Ticket, *, width: int, height: int, dpi: int, timezone: str | None
) -> str:
    """Run the guacd handshake for ``ticket``; return guacd's connection id."""
    await up.write(encode("select", ticket.protocol))
    got = await up.next()
    if got is None or got[0][0] != "args":
        raise UpstreamFailed(f"expected args from guacd, got {got[0][0] if got else 'EOF'!r}")
    args = got[0][1:]
    if not args or not args[0].startswith("VERSION_"):
        raise UpstreamFailed("guacd sent args without a protocol version")
    lines = [
        encode("size", width, height, dpi),
        encode("audio"),
        encode("video"),
        encode("image", "image/png", "image/jpeg", "image/webp"),
    ]
    if timezone:
        lines.append(encode("timezone", timezone))
    lines.append(encode("connect", *connect_values(args, ticket)))
    await up.write("".join(lines))
    got = await up.next()
    if got is None:
        raise UpstreamFailed("guacd closed during the handshake")
    if got[0][0] == "error":
        raise UpstreamFailed("guacd refused the connection", _status(got[0]))
    if got[0][0] != "ready" or len(got[0]) < 2:
        raise UpstreamFailed(f"expected ready from guacd, got {got[0][0]!r}")
    return got[0][1]


def _status(instruction: Instruction) -> int:
    try:
        return int(instruction[2])
    except (IndexError, ValueError):
        return wsock.UPSTREAM_ERROR


def _int(value: str, low: int, high: int, default: int) -> int:
    try:
        return max(low, min(high, int(value)))
    except ValueError:
        return default


async def _await_ticket(ws: wsock.WebSocket) -> Instruction:
    """Echo pings and drop anything else until the browser presents its ticket."""
    while True:
        for ins in parse_all(_text(await ws.receive())):
            if ins[:2] == ("", "ping"):
                await ws.send_text(encode(*ins))
            elif ins[:2] == ("", "ticket") and len(ins) >= 3:
                return ins


def _text(message: str | bytes) -> str:
    if isinstance(message, bytes):
        raise ProtocolError("binary message on a Guacamole tunnel")
    return message


async def serve(ws: wsock.WebSocket, *, gateway: Gateway, stack_name: str) -> None:
    """One tunnel, from the accepted websocket to the end of the session."""
    tunnel_id = str(uuid.uuid4())
    await ws.send_text(encode("", tunnel_id))
    try:
        ins = await asyncio.wait_for(_await_ticket(ws), gateway.config.ticket_wait_seconds)
        ticket = gateway.verify(ins[2], stack_name=stack_name)
    except TimeoutError:
        log.info("tunnel %s: no ticket in time", tunnel_id)
        return await ws.close(wsock.CLIENT_TIMEOUT)
    except ProtocolError:
        return await ws.close(wsock.CLIENT_BAD_REQUEST)
    except TicketError as exc:
        log.warning("tunnel %s: ticket refused for stack %s: %s", tunnel_id, stack_name, exc)
        return await ws.close(wsock.CLIENT_UNAUTHORIZED)
    extra = ins[3:]
    width = _int(extra[0], 1, 8192, 1024) if len(extra) > 0 else 1024
    height = _int(extra[1], 1, 8192, 768) if len(extra) > 1 else 768
    dpi = _int(extra[2], 1, 1000, 96) if len(extra) > 2 else 96
    timezone = extra[3] if len(extra) > 3 and _TIMEZONE.match(extra[3]) else None
    log.info(
        "tunnel %s: learner %s stack %s ticket %s… %s%s",
        tunnel_id,
        ticket.learner_id,
        stack_name,
        ticket.ticket_id[:6],
        ticket.protocol,
        " read-only" if ticket.read_only else "",
    )
    try:
        up = await asyncio.wait_for(
            Upstream.open(gateway.config.guacd_host, gateway.config.guacd_port),
            gateway.config.upstream_timeout,
        )
    except (UpstreamFailed, TimeoutError) as exc:
        log.warning("tunnel %s: %s", tunnel_id, exc or "guacd connect timed out")
        return await ws.close(getattr(exc, "status", wsock.UPSTREAM_NOT_FOUND))
    try:
        connection_id = await asyncio.wait_for(
            handshake(up, ticket, width=width, height=height, dpi=dpi, timezone=timezone),
            gateway.config.upstream_timeout,
        )
        log.info("tunnel %s: guacd connection %s ready", tunnel_id, connection_id)
        status = await _relay(ws, up, read_only=ticket.read_only)
    except (UpstreamFailed, ProtocolError, TimeoutError) as exc:
        log.warning("tunnel %s: %s", tunnel_id, exc or "guacd handshake timed out")
        status = getattr(exc, "status", wsock.UPSTREAM_TIMEOUT if isinstance(exc, TimeoutError) else 515)
    finally:
        await up.close()
    log.info("tunnel %s: closed with status %s", tunnel_id, status)
    await ws.close(status)


async def _relay(ws: wsock.WebSocket, up: Upstream, *, read_only: bool) -> int:
    """Pump both ways until one side ends; return the close status."""
    to_browser = asyncio.create_task(_guacd_to_browser(ws, up))
    to_guacd = asyncio.create_task(_browser_to_guacd(ws, up, read_only=read_only))
    done, _ = await asyncio.wait({to_browser, to_guacd}, return_when=asyncio.FIRST_COMPLETED)
    for task in (to_browser, to_guacd):
        task.cancel()
    await asyncio.gather(to_browser, to_guacd, return_exceptions=True)
    if to_guacd in done:
        # The browser left (or misbehaved): tell guacd, or it keeps the session open.
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(up.write(encode("disconnect")), 2)
        exc = to_guacd.exception() if not to_guacd.cancelled() else None
        if isinstance(exc, ProtocolError):
            return wsock.CLIENT_BAD_REQUEST
        if exc is not None and not isinstance(exc, wsock.Disconnected):
            raise exc
        return wsock.SUCCESS
    exc = to_browser.exception() if not to_browser.cancelled() else None
    if isinstance(exc, wsock.Disconnected):
        return wsock.SUCCESS
    if exc is not None:
        raise exc
    return to_browser.result()


async def _guacd_to_browser(ws: wsock.WebSocket, up: Upstream) -> int:
    status = wsock.SUCCESS
    while True:
        item = await up.next()
        if item is None:  # guacd hung up without a disconnect instruction
            return status or wsock.UPSTREAM_ERROR
        batch: list[str] = []
        size = 0
        while item is not None:
            ins, raw = item
            if ins[0] == "error":
                status = _status(ins)
            batch.append(raw)
            size += len(raw)
            if ins[0] == "disconnect" or size >= BATCH_CHARS:
                break
            item = up.take_buffered()
        await ws.send_text(for_browser("".join(batch)))
        if ins[0] == "disconnect":
            return status


async def _browser_to_guacd(ws: wsock.WebSocket, up: Upstream, *, read_only: bool) -> None:
    while True:
        out = []
        for ins in parse_all(_text(await ws.receive())):
            if ins[0] == "":
                if ins[1:2] == ("ping",):
                    await ws.send_text(encode(*ins))
                continue  # internal instructions are the tunnel's, never guacd's
            if read_only and ins[0] in READ_ONLY_DROPPED:
                continue
            out.append(encode(*ins))
        if out:
            await up.write("".join(out))
