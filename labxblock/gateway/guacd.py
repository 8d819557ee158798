"""The guacd side of the relay: the TCP connection and the handshake.

A full handshake: ``select``, then ``size``/``audio``/``video``/``image``
(``timezone``), then ``connect`` with exactly one value per ``args`` element,
VERSION_1_5_0 first, unknown parameters empty. guacd gets the lab's *checked*
address as ``hostname`` (never the name from the ticket again) and, for SSH, the
host key as the known_hosts line it parses (see ``hostkeys``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from labxblock.gateway import wsock
from labxblock.gateway.protocol import ByteParser, Instruction, encode
from labxblock.tickets import Ticket

PROTOCOL_VERSION = "VERSION_1_5_0"
# For labs, unless the ticket says otherwise: a fresh lab's RDP certificate is
# self-signed and new (guacd refuses it with 519), and the desktop should follow
# the browser's size (guacd's default keeps the first size).
RDP_DEFAULTS = {"ignore-cert": "true", "resize-method": "display-update", "security": "any"}


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

    async def hang_up_after(self, text: str, timeout: float) -> None:
        """Send ``text`` (``disconnect``), then read and drop what guacd still sends until it hangs up.

        Closing a socket with unread data in it resets the connection, and a reset can lose what
        was just sent: guacd would never hear the disconnect.
        """
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(timeout):
                await self.write(text)
                while await self._reader.read(65536):
                    pass

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


@dataclass(frozen=True)
class Target:
    """What guacd connects to: the ticket, the checked address, the host-key line (SSH)."""

    ticket: Ticket
    address: str
    host_key: str = ""


def connect_values(args: Instruction, target: Target) -> list[str]:
    """One value per ``args`` element, in its order; unknown parameters are empty."""
    ticket = target.ticket
    known = {
        **(RDP_DEFAULTS if ticket.protocol == "rdp" else {}),
        **ticket.display,  # validated options (tickets.OPTION_VALUES); never a connection field
        "hostname": target.address,
        "port": str(ticket.port),
        "username": ticket.username,
        "password": ticket.password or "",
        "private-key": ticket.private_key or "",
        "host-key": target.host_key,
        "read-only": "true" if ticket.read_only else "",
    }
    return [PROTOCOL_VERSION, *(known.get(name, "") for name in args[1:])]


def status_of(instruction: Instruction) -> int:
    """The status code of an ``error`` instruction."""
    try:
        return int(instruction[2])
    except (IndexError, ValueError):
        return wsock.UPSTREAM_ERROR


async def handshake(
    up: Upstream, target: Target, *, width: int, height: int, dpi: int, timezone: str | None
) -> str:
    """Run the guacd handshake for ``target``; return guacd's connection id."""
    await up.write(encode("select", target.ticket.protocol))
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
    lines.append(encode("connect", *connect_values(args, target)))
    await up.write("".join(lines))
    got = await up.next()
    if got is None:
        raise UpstreamFailed("guacd closed during the handshake")
    if got[0][0] == "error":
        raise UpstreamFailed("guacd refused the connection", status_of(got[0]))
    if got[0][0] != "ready" or len(got[0]) < 2:
        raise UpstreamFailed(f"expected ready from guacd, got {got[0][0]!r}")
    return got[0][1]
