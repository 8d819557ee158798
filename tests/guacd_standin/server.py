"""A guacd stand-in: speaks the Guacamole protocol like guacd 1.5/1.6 and enforces its rules.

Every broken rule is recorded in ``violations`` and makes ``check()`` (called
when the ``async with`` block ends) fail loudly. Rules enforced here, on the
guacd side of the gateway:
- the first instruction is ``select,<ssh|rdp|vnc>``;
- between ``args`` and ``connect`` only size/audio/video/image/timezone/name;
  ``size`` must come before ``connect``;
- ``connect`` has exactly one value per ``args`` element and starts with
  ``VERSION_1_5_0`` (an empty version would downgrade to protocol 1.0.0);
- no internal (empty-opcode) instruction, e.g. the browser's ping, ever arrives;
- the connection is not dropped without ``disconnect`` (unless guacd ended it).
And what guacd does with what it is given, so a test fails where guacd would:
- SSH ``host-key`` is one known_hosts line, checked for the ``hostname`` and
  ``port`` it was given (``knownhosts``); every lab's key is ``LAB_HOST_KEY``.
  A bare key, another host or another key: "Aborted. See logs." with 512;
- a failed login (user ``FAILING_USER``): ``error`` 769, then ``disconnect``;
- RDP/VNC draw the desktop in layer 0; SSH's terminal in layer 1;
- the learner typing ``exit`` + Return ends the session cleanly: ``disconnect``
  with no error (status 0).
Browser-side rules (tunnel UUID first, whole instructions per message) are
checked by the browser-like client in ``harness.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labxblock.gateway.protocol import ByteParser, Instruction, ProtocolError, encode
from tests.guacd_standin import knownhosts
from tests.guacd_standin.params import ARGS, SSH_ARGS

__all__ = ["FAILING_USER", "LAB_HOST_KEY", "SSH_ARGS", "VERSION", "GuacdStandin", "Session"]

VERSION = "VERSION_1_5_0"
PRE_CONNECT = {"size", "audio", "video", "image", "timezone", "name"}
FAILING_USER = "denied"  # a login that fails, answered like guacd 1.6.0
# Every lab behind the stand-in has this SSH host key ("ssh-ed25519 AAAA…", bare).
LAB_HOST_KEY = (
    Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)
DESKTOP_COLOUR = (30, 120, 200)  # what an RDP/VNC "desktop" is painted with
KEY_RETURN = 0xFF0D


@dataclass
class Session:
    """What one gateway connection did, for the tests to look at."""

    protocol: str = ""
    args: tuple[str, ...] = ()
    handshake: list[Instruction] = field(default_factory=list)
    connect: dict[str, str] = field(default_factory=dict)
    version: str = ""
    received: list[Instruction] = field(default_factory=list)
    disconnect_received: bool = False
    ended_by_guacd: bool = False
    log: list[str] = field(default_factory=list)  # what guacd would log
    typed: str = ""  # the line being typed (key presses of printable keysyms)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.StreamWriter | None = None

    @property
    def read_only(self) -> str:
        return self.connect.get("read-only", "")

    @property
    def port(self) -> str:
        return self.connect.get("port", "")

    async def send(self, text: str, *, split_every: int = 0) -> None:
        """Send raw protocol text, optionally in tiny TCP writes (even inside a character)."""
        assert self.writer is not None
        data = text.encode("utf-8")
        step = split_every or len(data)
        for i in range(0, len(data), step):
            self.writer.write(data[i : i + step])
            await self.writer.drain()
            if split_every:
                await asyncio.sleep(0)


class GuacdStandin:
    """``async with GuacdStandin() as guacd:`` listens on 127.0.0.1:<guacd.port>."""

    def __init__(self, *, expect_violations: bool = False) -> None:
        self.sessions: list[Session] = []
        self.violations: list[str] = []
        self.expect_violations = expect_violations
        self.port = 0
        self._server: asyncio.Server | None = None
        self._new_session = asyncio.Condition()

    async def __aenter__(self) -> GuacdStandin:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for s in self.sessions:
            if s.writer is not None:
                s.writer.close()
        await asyncio.sleep(0)
        self.check()

    def check(self) -> None:
        """Fail loudly if any rule was broken (unless the test expects it)."""
        if self.violations and not self.expect_violations:
            raise AssertionError("guacd stand-in saw protocol violations:\n  " + "\n  ".join(self.violations))

    def _violate(self, session: Session, rule: str) -> None:
        self.violations.append(f"session {self.sessions.index(session)}: {rule}")
        session.closed.set()

    def _waiting_for(self, index: int) -> bool:
        if self.violations and not self.expect_violations:
            self.check()  # fail loudly now, not after a timeout
        return len(self.sessions) > index and bool(
            self.sessions[index].connect or self.sessions[index].closed.is_set()
        )

    async def session(self, index: int = 0, timeout: float = 5) -> Session:
        """Wait until session ``index`` has completed its handshake."""
        async with self._new_session:
            await asyncio.wait_for(self._new_session.wait_for(lambda: self._waiting_for(index)), timeout)
        return self.sessions[index]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(writer=writer)
        self.sessions.append(session)
        queue: asyncio.Queue[Instruction | None] = asyncio.Queue()
        pump = asyncio.create_task(self._read(reader, queue, session))
        try:
            await self._serve(session, queue)
        except ConnectionError:
            # Our write failed (the gateway hung up): guacd still reads what the gateway sent first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), 1)
            while not queue.empty():
                ins = queue.get_nowait()
                session.disconnect_received |= ins is not None and ins[0] == "disconnect"
        finally:
            pump.cancel()
            if not session.disconnect_received and not session.ended_by_guacd and session.connect:
                self._violate(session, "connection closed without a disconnect instruction")
            session.closed.set()
            writer.close()
            async with self._new_session:
                self._new_session.notify_all()

    async def _read(self, reader: asyncio.StreamReader, queue: asyncio.Queue, session: Session) -> None:
        parser = ByteParser()
        try:
            while data := await reader.read(65536):
                for ins, _ in parser.feed(data):
                    await queue.put(ins)
        except ProtocolError as exc:
            self._violate(session, f"malformed data: {exc}")
        except ConnectionError:
            pass
        await queue.put(None)

    async def _serve(self, s: Session, queue: asyncio.Queue) -> None:
        first = await queue.get()
        if first is None:
            return
        if first[0] != "select" or len(first) != 2 or first[1] not in {"ssh", "rdp", "vnc"}:
            return self._violate(s, f"expected select,<protocol>, got {first!r}")
        s.protocol = first[1]
        s.args = (VERSION, *ARGS[s.protocol])
        await s.send(encode("args", *s.args))
        while True:
            ins = await queue.get()
            if ins is None:
                return self._violate(s, "closed during the handshake")
            if ins[0] == "connect":
                break
            if ins[0] not in PRE_CONNECT:
                return self._violate(s, f"{ins[0]!r} is not allowed before connect")
            s.handshake.append(ins)
        values = ins[1:]
        if len(values) != len(s.args):
            return self._violate(s, f"connect has {len(values)} values for {len(s.args)} args")
        if values[0] != VERSION:
            return self._violate(s, f"connect version is {values[0]!r}, expected {VERSION}")
        if not any(h[0] == "size" and len(h) in (3, 4) for h in s.handshake):
            return self._violate(s, "no size before connect")
        s.version = values[0]
        async with self._new_session:
            s.connect = dict(zip(s.args[1:], values[1:], strict=True))
            self._new_session.notify_all()
        failure = self._login(s)
        if failure:
            s.ended_by_guacd = True
            await s.send(encode("ready", "$standin") + encode("error", "Aborted. See logs.", failure))
            await asyncio.sleep(0.1)
            return await s.send(encode("disconnect"))
        await s.send(encode("ready", "$standin") + _first_frame(s) + _sync())
        await self._session_loop(s, queue)

    @staticmethod
    def _login(s: Session) -> int:
        """The status guacd aborts with once connected to the lab, or 0 when the session starts."""
        if s.protocol == "ssh" and s.connect.get("host-key"):
            try:
                port = int(s.connect.get("port") or 22)
            except ValueError:
                port = 22
            remote_type, remote_key = LAB_HOST_KEY.split()
            hostname = s.connect["hostname"]
            outcome = knownhosts.check(s.connect["host-key"], hostname, port, remote_type, remote_key)
            s.log.append(knownhosts.log_line(outcome, s.connect["hostname"]))
            if outcome != knownhosts.MATCH:
                return 512
        elif s.protocol == "ssh":
            s.log.append("No known host keys provided, host identity will not be verified.")
        if s.connect.get("username") == FAILING_USER:
            s.log.append("SSH authentication failed")
            return 769
        return 0

    async def _session_loop(self, s: Session, queue: asyncio.Queue) -> None:
        while (ins := await queue.get()) is not None:
            s.received.append(ins)
            if ins[0] == "":
                self._violate(s, f"internal instruction forwarded to guacd: {ins!r}")
            elif ins[0] == "disconnect":
                s.disconnect_received = True
                return
            elif ins[0] == "key" and ins[2:3] == ("1",) and s.read_only != "true":
                if await self._typed(s, int(ins[1])):
                    return
                # Draw something in answer to a key press, then a frame boundary.
                layer = _layer(s)
                drawn = encode("rect", layer, ins[1], 0, 1, 1) + encode("cfill", 14, layer, 0, 0, 0, 255)
                await s.send(drawn + _sync())

    @staticmethod
    async def _typed(s: Session, keysym: int) -> bool:
        """Follow the typed line; ``exit`` + Return ends the session as the lab's shell would."""
        if keysym == KEY_RETURN:
            line, s.typed = s.typed, ""
            if line == "exit":
                s.ended_by_guacd = True
                await s.send(encode("disconnect"))  # a clean end: no error, status 0
                return True
        elif 0x20 <= keysym <= 0x7E:
            s.typed += chr(keysym)
        return False


def _layer(s: Session) -> int:
    return 1 if s.protocol == "ssh" else 0  # guacd's terminal draws in a layer of its own


def _first_frame(s: Session) -> str:
    """What guacd draws first: the terminal's layer 1, or the desktop in layer 0."""
    width, height = 1024, 768
    for h in s.handshake:
        if h[0] == "size" and len(h) >= 3 and h[1].isdigit() and h[2].isdigit():
            width, height = int(h[1]), int(h[2])
    if s.protocol == "ssh":
        terminal = encode("size", 1, width, height) + encode("move", 1, 0, 0, 0, 0)
        return encode("size", 0, width, height) + terminal
    return (
        encode("size", 0, width, height)
        + encode("rect", 0, 0, 0, width, height)
        + encode("cfill", 14, 0, *DESKTOP_COLOUR, 255)
    )


def _sync() -> str:
    return encode("sync", int(time.time() * 1000))
