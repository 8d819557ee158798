"""Relay between guacamole-common-js's WebSocketTunnel and guacd.

Browser side: the tunnel UUID first; the ticket must be the first message, as
one internal instruction (``0.,6.ticket,<ticket>,<w>,<h>,<dpi>[,<tz>]``), never
in a URL, and nothing is answered before it is accepted (see ``admission``).
After it, pings are echoed (only the last of a message, at most every
``PING_ECHO_SECONDS``), internal instructions never reach guacd, every message
holds only complete instructions, and the close reason is a Guacamole status:
guacd's own when it gave one, even if the browser hung up first.
guacd side: ``guacd.handshake``, and ``disconnect`` when the browser leaves.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labxblock.gateway import admission, wsock
from labxblock.gateway.guacd import Target, Upstream, UpstreamFailed, handshake, status_of
from labxblock.gateway.hostkeys import HostKeyError, for_guacd, parse_host_keys
from labxblock.gateway.protocol import Instruction, ProtocolError, encode, for_browser, parse_all

if TYPE_CHECKING:
    from labxblock.gateway.app import Gateway

log = logging.getLogger("labxblock.gateway.guac")

BATCH_CHARS = 8192  # whole instructions per browser message, like the official servlet
PING_ECHO_SECONDS = 0.25  # the JS pings at most every 500 ms; a flood gets 4 answers a second
# Browser input that a read-only viewer may not send (guacd ignores it too).
READ_ONLY_DROPPED = frozenset(
    {"key", "mouse", "touch", "clipboard", "size", "file", "pipe", "argv", "blob", "end"}
)
PROTOCOLS = frozenset({"ssh", "rdp", "vnc"})
_TIMEZONE = re.compile(r"^[A-Za-z0-9_+\-/]{1,64}$")


@dataclass
class _Tunnel:
    """What the two pumps share: guacd's last error status, the last ping answered."""

    guacd_status: int | None = None
    last_echo: float = field(default=0.0)


def _int(value: str, low: int, high: int, default: int) -> int:
    try:
        return max(low, min(high, int(value)))
    except ValueError:
        return default


def _ticket_instruction(message: str) -> Instruction:
    instructions = parse_all(message)
    if len(instructions) != 1 or instructions[0][:2] != ("", "ticket") or len(instructions[0]) < 3:
        raise ProtocolError("the first message must be the ticket instruction, alone")
    return instructions[0]


def _host_key(text: str | None, address: str, port: int) -> str:
    if not text:
        return ""  # guacd then warns it cannot verify the host
    return for_guacd(parse_host_keys(text), address, port)


async def serve(ws: wsock.WebSocket, *, gateway: Gateway, stack_name: str) -> None:
    """One tunnel, from the accepted websocket to the end of the session."""
    tunnel_id = str(uuid.uuid4())
    tag = f"tunnel {tunnel_id}"
    await ws.send_text(encode("", tunnel_id))
    try:
        ins = _ticket_instruction(await admission.first_message(ws, gateway))
    except TimeoutError:
        log.info("%s: no ticket in time", tag)
        return await ws.close(wsock.CLIENT_TIMEOUT)
    except (ProtocolError, admission.FirstMessageRefused) as exc:
        log.info("%s: refused before the ticket: %s", tag, exc)
        return await ws.close(wsock.CLIENT_BAD_REQUEST)
    admitted = await admission.admit(ws, gateway, ins[2], stack_name=stack_name, tag=tag, protocols=PROTOCOLS)
    if admitted is None:
        return
    ticket, address = admitted
    try:
        target = Target(ticket, address, _host_key(ticket.host_key, address, ticket.port))
    except HostKeyError as exc:
        log.warning("%s: the lab's host key cannot be used: %s", tag, exc)
        return await ws.close(wsock.UPSTREAM_ERROR)
    extra = ins[3:]
    size = (
        _int(extra[0], 1, 8192, 1024) if len(extra) > 0 else 1024,
        _int(extra[1], 1, 8192, 768) if len(extra) > 1 else 768,
        _int(extra[2], 1, 1000, 96) if len(extra) > 2 else 96,
    )
    timezone = extra[3] if len(extra) > 3 and _TIMEZONE.match(extra[3]) else None
    status = await _session(ws, gateway, target, size, timezone, tag)
    log.info("%s: closed with status %s", tag, status)
    await ws.close(status)


async def _session(
    ws: wsock.WebSocket,
    gateway: Gateway,
    target: Target,
    size: tuple[int, int, int],
    timezone: str | None,
    tag: str,
) -> int:
    """guacd's connection, from opening to the close status."""
    config = gateway.config
    opening = Upstream.open(config.guacd_host, config.guacd_port)
    try:
        up = await asyncio.wait_for(opening, config.upstream_timeout)
    except (UpstreamFailed, TimeoutError) as exc:
        log.warning("%s: %s", tag, exc or "guacd connect timed out")
        return getattr(exc, "status", wsock.UPSTREAM_NOT_FOUND)
    try:
        width, height, dpi = size
        connection_id = await asyncio.wait_for(
            handshake(up, target, width=width, height=height, dpi=dpi, timezone=timezone),
            config.upstream_timeout,
        )
        log.info("%s: guacd connection %s ready", tag, connection_id)
        return await _relay(ws, up, read_only=target.ticket.read_only)
    except (UpstreamFailed, ProtocolError, TimeoutError) as exc:
        log.warning("%s: %s", tag, exc or "guacd handshake timed out")
        default = wsock.UPSTREAM_TIMEOUT if isinstance(exc, TimeoutError) else wsock.UPSTREAM_ERROR
        return getattr(exc, "status", default)
    finally:
        await up.close()


async def _relay(ws: wsock.WebSocket, up: Upstream, *, read_only: bool) -> int:
    """Pump both ways until one side ends; return the close status."""
    tunnel = _Tunnel()
    to_browser = asyncio.create_task(_guacd_to_browser(ws, up, tunnel))
    to_guacd = asyncio.create_task(_browser_to_guacd(ws, up, tunnel, read_only=read_only))
    done, _ = await asyncio.wait({to_browser, to_guacd}, return_when=asyncio.FIRST_COMPLETED)
    for task in (to_browser, to_guacd):
        task.cancel()
    await asyncio.gather(to_browser, to_guacd, return_exceptions=True)
    finished = to_guacd if to_guacd in done else to_browser
    exc = finished.exception() if not finished.cancelled() else None
    if finished is to_browser and exc is None:
        return to_browser.result()  # guacd ended the session: its status
    # The browser left (or misbehaved): tell guacd, or it keeps the session open.
    await up.hang_up_after(encode("disconnect"), 2)
    if isinstance(exc, ProtocolError):
        return wsock.CLIENT_BAD_REQUEST
    if exc is not None and not isinstance(exc, wsock.Disconnected):
        raise exc
    # The page hangs up on guacd's error by itself: that error is the session's status.
    return tunnel.guacd_status if tunnel.guacd_status is not None else wsock.SUCCESS


async def _guacd_to_browser(ws: wsock.WebSocket, up: Upstream, tunnel: _Tunnel) -> int:
    while True:
        item = await up.next()
        if item is None:  # guacd hung up without a disconnect instruction
            return tunnel.guacd_status or wsock.UPSTREAM_ERROR
        batch: list[str] = []
        size = 0
        while item is not None:
            ins, raw = item
            if ins[0] == "error":
                tunnel.guacd_status = status_of(ins)
            batch.append(raw)
            size += len(raw)
            if ins[0] == "disconnect" or size >= BATCH_CHARS:
                break
            item = up.take_buffered()
        await ws.send_text(for_browser("".join(batch)))
        if ins[0] == "disconnect":
            return tunnel.guacd_status or wsock.SUCCESS


async def _browser_to_guacd(ws: wsock.WebSocket, up: Upstream, tunnel: _Tunnel, *, read_only: bool) -> None:
    while True:
        message = await ws.receive()
        if isinstance(message, bytes):
            raise ProtocolError("binary message on a Guacamole tunnel")
        out = []
        ping = None
        for ins in parse_all(message):
            if ins[0] == "":
                if ins[1:2] == ("ping",):
                    ping = ins  # answered once per message, at most every PING_ECHO_SECONDS
                continue  # internal instructions are the tunnel's, never guacd's
            if read_only and ins[0] in READ_ONLY_DROPPED:
                continue
            out.append(encode(*ins))
        if out:
            await up.write("".join(out))
        now = time.monotonic()
        if ping is not None and now - tunnel.last_echo >= PING_ECHO_SECONDS:
            tunnel.last_echo = now
            await ws.send_text(encode(*ping))
