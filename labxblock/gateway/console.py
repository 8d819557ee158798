"""Console mode: xterm.js in the browser, SSH from the gateway to the lab.

Browser → gateway (JSON text): first ``{"type": "ticket", "ticket", "cols",
"rows"}``, then ``data`` (keystrokes), ``resize`` and ``ack`` (bytes the
terminal has drawn). Gateway → browser: ``{"type": "ready", "read_only"}``,
binary frames of terminal output, ``{"type": "exit", "status"}``.

Flow control: at most ``HIGH_WATER`` bytes may be sent and not yet acked by the
page; past it the SSH channel stops reading, its window closes, and a runaway
``yes`` in the lab blocks instead of filling the gateway's or the browser's
memory. Read-only is enforced here: a read-only session's input is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

import asyncssh

from labxblock.gateway import admission, wsock
from labxblock.gateway.hostkeys import HostKeyError, parse_host_keys
from labxblock.tickets import Ticket

if TYPE_CHECKING:
    from labxblock.gateway.app import Gateway

log = logging.getLogger("labxblock.gateway.console")

SUBPROTOCOL = "labxblock-console"
HIGH_WATER = 256 * 1024  # unacked bytes before the SSH channel is paused
# The page acks every ACK_EVERY bytes drawn (console.js), far below HIGH_WATER.
LOW_WATER = 64 * 1024
CHUNK = 32 * 1024  # largest websocket frame of output
SSH_WINDOW = 128 * 1024  # what asyncssh may buffer per channel while paused
MAX_INPUT = 64 * 1024  # largest keystroke message accepted


class _Session(asyncssh.SSHClientSession[bytes]):
    """Collects channel output; pauses the channel when the page lags behind."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.unacked = 0
        self.wakeup = asyncio.Event()
        self.closed = asyncio.Event()
        self.exit_status: int | None = None
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._paused = False

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:  # type: ignore[override]
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.buffer += data
        self.wakeup.set()
        self.update_flow()

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.wakeup.set()

    def ack(self, count: int) -> None:
        self.unacked = max(0, self.unacked - count)
        self.wakeup.set()
        self.update_flow()

    def update_flow(self) -> None:
        backlog = len(self.buffer) + self.unacked
        if self._chan is None:
            return
        if not self._paused and backlog >= HIGH_WATER:
            self._paused = True
            self._chan.pause_reading()
        elif self._paused and backlog <= LOW_WATER:
            self._paused = False
            self._chan.resume_reading()


def _size(msg: dict[str, Any]) -> tuple[int, int]:
    def clamp(value: Any, default: int) -> int:
        return max(2, min(1000, value)) if isinstance(value, int) and not isinstance(value, bool) else default

    return clamp(msg.get("cols"), 80), clamp(msg.get("rows"), 24)


def _message(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes) or len(raw) > MAX_INPUT:
        raise ValueError("unexpected message")
    msg = json.loads(raw)
    if not isinstance(msg, dict):
        raise ValueError("unexpected message")
    return msg


async def serve(ws: wsock.WebSocket, *, gateway: Gateway, stack_name: str) -> None:
    """One console session, from the accepted websocket to its end."""
    tag = f"console {str(uuid.uuid4())[:8]}"
    try:
        first = _message(await admission.first_message(ws, gateway))
        if first.get("type") != "ticket" or not isinstance(first.get("ticket"), str):
            raise ValueError("first message must be the ticket")
    except TimeoutError:
        log.info("%s: no ticket in time", tag)
        return await ws.close(wsock.CLIENT_TIMEOUT)
    except ValueError as exc:  # FirstMessageRefused and bad JSON too
        log.info("%s: refused before the ticket: %s", tag, type(exc).__name__)
        return await ws.close(wsock.CLIENT_BAD_REQUEST)
    admitted = await admission.admit(
        ws, gateway, first["ticket"], stack_name=stack_name, tag=tag, protocols=frozenset({"ssh"})
    )
    if admitted is None:
        return
    ticket, address = admitted
    try:
        conn = await asyncio.wait_for(_connect(ticket, address), gateway.config.upstream_timeout)
    except HostKeyError as exc:
        log.warning("%s: the lab's host key cannot be used: %s", tag, exc)
        return await ws.close(wsock.UPSTREAM_ERROR)
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        # asyncssh messages name the host and the failure, never the key.
        log.warning("%s: ssh to the lab failed: %s", tag, type(exc).__name__)
        login = isinstance(exc, asyncssh.PermissionDenied)
        return await ws.close(wsock.LAB_LOGIN_FAILED if login else wsock.UPSTREAM_NOT_FOUND)
    status = await _session(ws, conn, first, ticket, tag)
    log.info("%s: closed with status %s", tag, status)
    await ws.close(status)


async def _session(
    ws: wsock.WebSocket, conn: asyncssh.SSHClientConnection, first: dict[str, Any], ticket: Ticket, tag: str
) -> int:
    try:
        cols, rows = _size(first)
        chan, session = await conn.create_session(
            _Session, term_type="xterm-256color", term_size=(cols, rows), encoding=None, window=SSH_WINDOW
        )
        await ws.send_text(json.dumps({"type": "ready", "read_only": ticket.read_only}))
        return await _relay(ws, chan, session, read_only=ticket.read_only)
    except (OSError, asyncssh.Error) as exc:
        log.warning("%s: ssh session failed: %s", tag, type(exc).__name__)
        return wsock.UPSTREAM_ERROR
    finally:
        conn.close()


async def _connect(ticket: Ticket, address: str) -> asyncssh.SSHClientConnection:
    """SSH to the checked address (never the ticket's name again), verifying the host key when known."""
    keys = [asyncssh.import_private_key(ticket.private_key)] if ticket.private_key else None
    if ticket.host_key:
        trusted = [asyncssh.import_public_key(k.bare) for k in parse_host_keys(ticket.host_key)]
        known_hosts: Any = (trusted, [], [])
    else:
        known_hosts = None  # the ticket names no host key: nothing to check against
    return await asyncssh.connect(
        address,
        ticket.port,
        username=ticket.username,
        client_keys=keys,
        password=ticket.password,
        known_hosts=known_hosts,
        agent_path=None,  # never the gateway's own agent, config or keys
        config=None,
        gss_host=None,
        preferred_auth="publickey,password,keyboard-interactive",
        keepalive_interval=30,
    )


async def _relay(
    ws: wsock.WebSocket, chan: asyncssh.SSHClientChannel[bytes], session: _Session, *, read_only: bool
) -> int:
    output = asyncio.create_task(_output(ws, session))
    inputs = asyncio.create_task(_input(ws, chan, session, read_only=read_only))
    done, _ = await asyncio.wait({output, inputs}, return_when=asyncio.FIRST_COMPLETED)
    for task in (output, inputs):
        task.cancel()
    await asyncio.gather(output, inputs, return_exceptions=True)
    chan.close()
    if inputs in done and not inputs.cancelled() and isinstance(inputs.exception(), ValueError):
        return wsock.CLIENT_BAD_REQUEST
    if output in done and not output.cancelled() and output.exception() is None:
        await ws.send_text(json.dumps({"type": "exit", "status": session.exit_status}))
    return wsock.SUCCESS


async def _output(ws: wsock.WebSocket, session: _Session) -> None:
    while True:
        await session.wakeup.wait()
        session.wakeup.clear()
        while session.buffer and session.unacked < HIGH_WATER:
            chunk = bytes(session.buffer[:CHUNK])
            del session.buffer[:CHUNK]
            session.unacked += len(chunk)
            await ws.send_bytes(chunk)
        session.update_flow()
        if session.closed.is_set() and not session.buffer:
            return


async def _input(
    ws: wsock.WebSocket, chan: asyncssh.SSHClientChannel[bytes], session: _Session, *, read_only: bool
) -> None:
    while True:
        msg = _message(await ws.receive())
        kind = msg.get("type")
        if kind == "ack" and isinstance(msg.get("bytes"), int):
            session.ack(msg["bytes"])
        elif kind == "data" and isinstance(msg.get("data"), str):
            if not read_only:  # the page disables input too, but only this counts
                chan.write(msg["data"].encode("utf-8", "replace"))
        elif kind == "resize":
            cols, rows = _size(msg)
            chan.change_terminal_size(cols, rows)
        elif kind != "ticket":
            raise ValueError("unknown message type")
