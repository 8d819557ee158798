"""200 concurrent console sessions through one gateway process against a local sshd.

Prints keystroke-echo latency (p50/p95) and the gateway's resident memory per
session. Goal: p95 <= 50 ms, <= 2 MB a session.

    .venv/bin/python benchmarks/gateway_console_load.py [--sessions 200] [--rounds 20]

Each session types one character every ~250 ms (with jitter, like a person)
and times until the echo arrives, then erases it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from labxblock.tickets import generate_key, mint_ticket
from tests.services.process import free_port
from tests.services.sshd import run_sshd

KEY = generate_key()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle() -> float:
    return float(Path("/proc/stat").read_text().split("\n", 1)[0].split()[4])



class Session:
    def __init__(self, ws) -> None:
        self.ws = ws
        self.output = asyncio.Queue()
        self.pump_task: asyncio.Task | None = None

    async def pump(self) -> None:
        drawn = 0
        async for message in self.ws:
            if isinstance(message, bytes):
                drawn += len(message)
                if drawn >= 16 * 1024:  # acks batched like console.js
                    await self.ws.send(json.dumps({"type": "ack", "bytes": drawn}))
                    drawn = 0
                self.output.put_nowait(message)

    async def until(self, needle: bytes, timeout: float = 30) -> None:
        seen = b""
        async with asyncio.timeout(timeout):
            while needle not in seen:
                seen += await self.output.get()


async def open_session(base: str, sshd, origin: str) -> Session:
    token = mint_ticket(
        [KEY], learner_id="bench", stack_name="lab", protocol="ssh", host=sshd.host, port=sshd.port,
        username=sshd.username, private_key=sshd.private_key, host_key=sshd.host_key,
    )  # fmt: skip
    ws = await connect(
        base + "/console/lab/ws", subprotocols=["labxblock-console"], origin=origin, open_timeout=60
    )
    await ws.send(json.dumps({"type": "ticket", "ticket": token, "cols": 80, "rows": 24}))
    while True:
        message = await asyncio.wait_for(ws.recv(), 60)
        if isinstance(message, str) and json.loads(message)["type"] == "ready":
            break
    session = Session(ws)
    session.pump_task = asyncio.create_task(session.pump())
    # The prompt only appears once bash ran the line (the echoed line shows $((40+2))).
    await session.ws.send(json.dumps({"type": "data", "data": "PS1='%'$((40+2))'> '\r"}))
    await session.until(b"%42> ")
    return session


async def type_and_time(session: Session, rounds: int, latencies: list[float], errors: list[str]) -> None:
    try:
        await _type_and_time(session, rounds, latencies)
    except (TimeoutError, OSError) as exc:
        errors.append(type(exc).__name__)


async def _type_and_time(session: Session, rounds: int, latencies: list[float]) -> None:
    for _ in range(rounds):
        await asyncio.sleep(random.uniform(0.15, 0.35))
        while not session.output.empty():
            session.output.get_nowait()
        start = time.perf_counter()
        await session.ws.send(json.dumps({"type": "data", "data": "x"}))
        await session.until(b"x")
        latencies.append((time.perf_counter() - start) * 1000)
        await session.ws.send(json.dumps({"type": "data", "data": "\x7f"}))  # erase it again
        await session.until(b"\x08")


async def bench(base: str, origin: str, sshd, pid: int, sessions: int, rounds: int) -> None:
    first = await open_session(base, sshd, origin)  # warm up imports and code paths
    rss_before = rss_kib(pid)
    started = time.perf_counter()
    sem = asyncio.Semaphore(20)  # how fast sessions open; sshd's MaxStartups is set high too

    async def opened() -> Session:
        async with sem:
            return await open_session(base, sshd, origin)

    opened_sessions = await asyncio.gather(*(opened() for _ in range(sessions - 1)))
    all_sessions = [first, *opened_sessions]
    open_seconds = time.perf_counter() - started
    rss_open = rss_kib(pid)
    latencies: list[float] = []
    errors: list[str] = []
    cpu_gw, cpu_me, wall = cpu_seconds(pid), time.process_time(), time.perf_counter()
    idle = _idle()
    await asyncio.gather(*(type_and_time(s, rounds, latencies, errors) for s in all_sessions))
    rss_after = rss_kib(pid)
    wall = time.perf_counter() - wall
    cpu_gw = (cpu_seconds(pid) - cpu_gw) / wall * 100
    cpu_me = (time.process_time() - cpu_me) / wall * 100
    busy = 100 - (_idle() - idle) / os.sysconf("SC_CLK_TCK") / wall / os.cpu_count() * 100
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    per_session = (max(rss_open, rss_after) - rss_before) / (sessions - 1) / 1024
    print(
        f"sessions: {len(all_sessions)} concurrent (opened in {open_seconds:.1f} s); cpus: {os.cpu_count()}"
    )
    print(
        f"echo latency over {len(latencies)} keystrokes: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
        f"max {latencies[-1]:.1f} ms"
    )
    print(
        f"gateway RSS: {rss_before / 1024:.1f} MiB with 1 session, {rss_open / 1024:.1f} MiB with all open, "
        f"{rss_after / 1024:.1f} MiB after typing -> {per_session:.2f} MiB per session"
    )
    print(
        f"CPU while typing: gateway {cpu_gw:.0f} %, this load generator {cpu_me:.0f} % (of one core); "
        f"whole machine {busy:.0f} % busy"
    )
    print(f"sessions that stalled (echo not seen in 30 s): {len(errors)}")
    print(
        f"goal: p95 <= 50 ms: {'met' if p95 <= 50 else 'NOT met'}; "
        f"<= 2 MB/session: {'met' if per_session <= 2 else 'NOT met'}"
    )
    for s in all_sessions:
        await s.ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    port = free_port()
    base, origin = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
    with run_sshd(Path(tempfile.mkdtemp(prefix="bench-sshd-")), max_sessions=args.sessions + 50) as sshd:
        env = {
            **os.environ,
            "LABXBLOCK_GATEWAY_TICKET_KEYS": KEY,
            "LABXBLOCK_GATEWAY_ALLOWED_ORIGINS": origin,
            "LABXBLOCK_GATEWAY_MODES": "console",
            "LABXBLOCK_GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "LABXBLOCK_GATEWAY_LOG_LEVEL": "warning",
            "LABXBLOCK_GATEWAY_ALLOWED_NETWORKS": "127.0.0.0/8",  # the benchmark's sshd
            # Every session comes from 127.0.0.1 here; on a site, from its learner's address.
            "LABXBLOCK_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS": str(args.sessions + 50),
            "LABXBLOCK_GATEWAY_MAX_PENDING_PER_ADDRESS": str(args.sessions + 50),
        }
        command = Path(sys.executable).parent / "labxblock-gateway"
        gateway = subprocess.Popen([str(command)], env=env)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            asyncio.run(bench(base, origin, sshd, gateway.pid, args.sessions, args.rounds))
        finally:
            gateway.terminate()
            gateway.wait(10)


if __name__ == "__main__":
    main()
