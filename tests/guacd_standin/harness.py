"""Test harness for the gateway: run it in-process on uvicorn, talk to it like the JS client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from labxblock.gateway.app import Gateway
from labxblock.gateway.config import load_config
from labxblock.gateway.protocol import Instruction, encode, parse_all
from labxblock.gateway.server import GatewayServer, uvicorn_config
from labxblock.tickets import generate_key, mint_ticket
from tests.guacd_standin.server import GuacdStandin
from tests.services.process import ServiceProcess, free_port, port_open

COMMAND = Path(sys.executable).parent / "labxblock-gateway"

KEY = generate_key()
ORIGIN = "http://gateway.test"


def aio(seconds: float = 60) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run an async test in its own event loop, failing after ``seconds``."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), seconds))

        return run

    return decorate


def gateway_env(**overrides: str) -> dict[str, str]:
    env = {
        "LABXBLOCK_GATEWAY_TICKET_KEYS": KEY,
        "LABXBLOCK_GATEWAY_ALLOWED_ORIGINS": ORIGIN,
        "LABXBLOCK_GATEWAY_FRAME_ANCESTORS": "https://lms.test",
        "LABXBLOCK_GATEWAY_GUACD": "127.0.0.1:1",
        "LABXBLOCK_GATEWAY_LISTEN": "127.0.0.1:0",
        # The tests' labs: the stand-in's made-up 10.x hosts and the real sshd on loopback.
        "LABXBLOCK_GATEWAY_ALLOWED_NETWORKS": "10.0.0.0/8,127.0.0.0/8",
    }
    env.update({f"LABXBLOCK_GATEWAY_{k.upper()}": v for k, v in overrides.items()})
    return env


@contextlib.asynccontextmanager
async def running_gateway(env: Mapping[str, str] | None = None, **overrides: str) -> AsyncIterator[str]:
    """Serve a Gateway on a free port in this event loop, exactly as labxblock-gateway runs it.

    It is configured from ``env`` (the gateway's variables) if given, else from
    ``gateway_env(**overrides)``; it listens on 127.0.0.1 whatever the variables say.
    Yields its http:// base URL.
    """
    config = load_config(gateway_env(**overrides) if env is None else env)
    config = dataclasses.replace(config, listen_host="127.0.0.1", listen_port=0)
    server = GatewayServer(uvicorn_config(Gateway(config)))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the test's signals
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def gateway_process(
    log: Path, *, prefix: Sequence[str] = (), own_origin: bool = False, **overrides: str
) -> Iterator[tuple[str, int]]:
    """``labxblock-gateway`` as an operator runs it (env only); yields its base URL and pid.

    ``own_origin``: its own pages open the websockets (a browser test), not ``ORIGIN``.
    """
    port = free_port()
    if own_origin:
        overrides["allowed_origins"] = f"http://127.0.0.1:{port}"
    env = gateway_env(listen=f"127.0.0.1:{port}", **overrides)
    process = ServiceProcess("labxblock-gateway", [*prefix, str(COMMAND)], log, env=env)
    process.start(lambda: port_open(port), 20)
    assert process.proc is not None
    try:
        yield f"http://127.0.0.1:{port}", process.proc.pid
    finally:
        process.stop()


@contextlib.contextmanager
def standin_in_thread() -> Iterator[GuacdStandin]:
    """A guacd stand-in on its own event loop in a thread, for tests that are not async (browser tests)."""
    ready, holder = threading.Event(), {}
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with GuacdStandin() as guacd:
            holder["guacd"] = guacd
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: holder.update(error=_run(loop, serve())), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError(f"the guacd stand-in did not start: {holder.get('error')}")
    try:
        yield holder["guacd"]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
    if holder.get("error"):
        raise holder["error"]  # a rule the stand-in saw broken


def _run(loop: asyncio.AbstractEventLoop, main: Any) -> BaseException | None:
    try:
        loop.run_until_complete(main)
    except BaseException as exc:  # handed to the test's thread
        return exc
    finally:
        loop.close()
    return None


@contextlib.asynccontextmanager
async def relayed(**overrides: str) -> AsyncIterator[tuple[GuacdStandin, str]]:
    """A guacd stand-in and a gateway relaying to it; yields both (the gateway's base URL)."""
    async with GuacdStandin() as guacd, running_gateway(guacd=f"127.0.0.1:{guacd.port}", **overrides) as base:
        yield guacd, base


def ticket(keys: Sequence[str] = (KEY,), **overrides: object) -> str:
    fields: dict = dict(
        learner_id="learner-a",
        stack_name="lab-a",
        protocol="ssh",
        host="10.1.2.3",
        port=2222,
        username="training",
        private_key="KEY",
        read_only=False,
        display={"font-size": 12},
    )
    fields.update(overrides)
    return mint_ticket(list(keys), **fields)


class GuacBrowser:
    """What ``Guacamole.WebSocketTunnel`` does, with its expectations asserted."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.uuid = ""

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, base: str, stack: str = "lab-a", *, origin: str = ORIGIN, query: str = "", **connection: Any
    ) -> AsyncIterator[GuacBrowser]:
        """``connection``: e.g. host and port to dial instead of the URL's (a proxy under a public name)."""
        url = base.replace("http", "ws", 1) + f"/guac/{stack}/ws" + (f"?{query}" if query else "")
        async with connect(
            url, subprotocols=["guacamole"], origin=origin, open_timeout=5, **connection  # type: ignore[list-item,arg-type]
        ) as ws:
            assert ws.subprotocol == "guacamole", "the server must select the guacamole subprotocol"
            client = cls(ws)
            first = await client.receive()
            assert len(first) == 1 and first[0][0] == "" and len(first[0]) == 2, f"UUID first, got {first}"
            assert len(first[0][1]) == 36
            client.uuid = first[0][1]
            yield client

    async def receive(self, timeout: float = 5) -> list[Instruction]:
        """One message; it must hold only complete instructions, BMP text only."""
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(message, str), "Guacamole messages are text"
        assert all(ord(c) <= 0xFFFF for c in message), "non-BMP text desyncs guacamole-common-js 1.5.0"
        return parse_all(message)  # raises on a split instruction

    async def receive_until(self, opcode: str, timeout: float = 5) -> list[Instruction]:
        seen: list[Instruction] = []
        async with asyncio.timeout(timeout):
            while not any(i[0] == opcode for i in seen):
                seen += await self.receive()
        return seen

    async def send(self, *elements: object) -> None:
        await self.ws.send(encode(*elements))

    async def present(self, token: str, *extra: object) -> None:
        await self.send("", "ticket", token, *(extra or (1024, 768, 96)))

    async def closed(self, timeout: float = 5) -> str:
        """Wait for the server to close; return the close reason (a Guacamole status)."""
        async with asyncio.timeout(timeout):
            with contextlib.suppress(Exception):
                while True:
                    await self.ws.recv()
        return self.ws.close_reason or ""


class ConsoleBrowser:
    """What the console page does: ticket first, keystrokes as JSON, acks for output."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.output = b""
        self.read_only: bool | None = None
        self.auto_ack = True

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, base: str, token: str, stack: str = "lab-a", **size: int
    ) -> AsyncIterator[ConsoleBrowser]:
        url = base.replace("http", "ws", 1) + f"/console/{stack}/ws"
        async with connect(url, subprotocols=["labxblock-console"], origin=ORIGIN, open_timeout=5) as ws:  # type: ignore[list-item,arg-type]
            client = cls(ws)
            await client.send(
                type="ticket", ticket=token, cols=size.get("cols", 80), rows=size.get("rows", 24)
            )
            yield client

    async def send(self, **message: object) -> None:
        await self.ws.send(json.dumps(message))

    async def type(self, text: str) -> None:
        await self.send(type="data", data=text)

    async def ready(self, timeout: float = 10) -> bool:
        """Wait for the session to be up; return its read-only flag."""
        async with asyncio.timeout(timeout):
            while self.read_only is None:
                await self._receive_one()
        return bool(self.read_only)

    async def wait_for(self, needle: bytes, timeout: float = 10) -> bytes:
        async with asyncio.timeout(timeout):
            while needle not in self.output:
                await self._receive_one()
        return self.output

    async def drain(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    await self._receive_one()

    async def _receive_one(self) -> None:
        message = await self.ws.recv()
        if isinstance(message, bytes):
            self.output += message
            if self.auto_ack:
                await self.send(type="ack", bytes=len(message))
        else:
            msg = json.loads(message)
            if msg["type"] == "ready":
                self.read_only = msg["read_only"]

    async def closed(self, timeout: float = 10) -> str:
        async with asyncio.timeout(timeout):
            with contextlib.suppress(Exception):
                while True:
                    await self._receive_one()
        return self.ws.close_reason or ""
