"""Hostile clients beside real console sessions: does the gateway stay responsive?

N hostile clients (each from its own loopback address, in its own process) attack
without a ticket, as outsiders would:

- ping floods: open the Guacamole tunnel and send 1 MiB messages of ``ping``s;
- oversized frames: open the console socket and send 1 MiB binary frames;
- slowloris: ``--slowloris`` connections dribbling a request head, a byte a second;
- idle sockets: ``--idle`` TCP connections that send nothing;

every closed connection is opened again after ``--reconnect-delay`` seconds (15,
like slowloris.py's default; lower values turn it into a connection flood, which is
a packet filter's job, see docs/terminal.md). Beside
them, ``--sessions`` real console sessions (one classroom behind one address) type
into a real sshd through the gateway, and a probe fetches ``/healthz`` every 100 ms.

Prints the real sessions' keystroke echo p50/p95 and ``/healthz`` p50/p99, and what
the attack achieved. Goal (N = 4): echo p95 <= 50 ms, /healthz p99 <= 100 ms.

    .venv/bin/python benchmarks/gateway_hostile.py [--hostile 4] [--sessions 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import percentile
from benchmarks.gateway_console_load import KEY, cpu_seconds, open_session, rss_kib, type_and_time
from labxblock.gateway.limits import raise_fd_limit
from tests.services.process import free_port, port_open
from tests.services.sshd import run_sshd

MIB = 1024 * 1024


# --- the hostile side (one process per client) ---


class Attack:
    def __init__(self, port: int, source: str, delay: float) -> None:
        self.port, self.source, self.delay = port, source, delay
        self.stats: Counter[str] = Counter()
        self.base = f"ws://127.0.0.1:{port}"

    async def tcp(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.stats["connections"] += 1
        return await asyncio.open_connection("127.0.0.1", self.port, local_addr=(self.source, 0))

    async def hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dribble: bytes) -> None:
        """Keep the socket until the gateway closes it, sending ``dribble`` a byte a second."""
        for sent in range(len(dribble) + 1):
            if sent < len(dribble):
                writer.write(dribble[sent : sent + 1])
            try:
                data = await asyncio.wait_for(reader.read(4096), 1 if sent < len(dribble) else None)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:  # reset at once (over a cap) or closed at the header deadline
                self.stats["closed by the gateway"] += 1
                return

    async def socket_loop(self, dribble: bytes) -> None:
        while True:
            with contextlib.suppress(OSError):
                reader, writer = await self.tcp()
                await self.hold(reader, writer, dribble)
                writer.close()
            await asyncio.sleep(self.delay)

    async def ws_loop(self, path: str, subprotocol: str, payload: str | bytes) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.stats["connections"] += 1
                async with connect(self.base + path, subprotocols=[subprotocol],  # type: ignore[list-item]
                                   origin=f"http://127.0.0.1:{self.port}",  # type: ignore[arg-type]
                                   open_timeout=10, max_size=None) as ws:
                    await ws.send(payload)
                    self.stats["1 MiB messages sent"] += 1
                    async for message in ws:
                        if "ping" in str(message):
                            self.stats["ping echoes received"] += 1
            await asyncio.sleep(self.delay)


async def attack(port: int, source: str, idle: int, slowloris: int, delay: float, seconds: float,
                 out: multiprocessing.Queue) -> None:
    raise_fd_limit()
    a = Attack(port, source, delay)
    flood = "0.,4.ping,1.1;" * (MIB // 14)
    tasks = [asyncio.create_task(a.socket_loop(b"")) for _ in range(idle)]
    head = b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"x-slow: " + b"a" * 10_000
    tasks += [asyncio.create_task(a.socket_loop(head)) for _ in range(slowloris)]
    tasks += [asyncio.create_task(a.ws_loop("/guac/lab/ws", "guacamole", flood)) for _ in range(2)]
    tasks += [asyncio.create_task(a.ws_loop("/console/lab/ws", "labxblock-console", os.urandom(MIB)))
              for _ in range(2)]
    await asyncio.sleep(seconds)
    for t in tasks:
        t.cancel()
    out.put(dict(a.stats))


def run_attacker(nice: int, *args: object) -> None:
    # The attackers stand for other machines: on this one they must not take the CPU the
    # gateway (the system under test) needs. What they cost the gateway is still counted.
    os.nice(nice)
    asyncio.run(attack(*args))  # type: ignore[arg-type]


# --- the measuring side ---


async def probe_healthz(port: int, until: float, times: list[float], errors: list[str]) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
                answer = await reader.read()
                writer.close()
            if not answer.startswith(b"HTTP/1.1 200"):
                errors.append(answer[:12].decode(errors="replace"))
            times.append((time.perf_counter() - started) * 1000)
        except (OSError, TimeoutError) as exc:
            errors.append(type(exc).__name__)
        await asyncio.sleep(0.1)


async def measure(port: int, sshd, pid: int, args: argparse.Namespace) -> dict:
    base, origin = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
    sessions = [await open_session(base, sshd, origin) for _ in range(args.sessions)]
    await asyncio.sleep(2)  # let the attack reach its steady state
    healthz: list[float] = []
    latencies: list[float] = []
    errors: list[str] = []
    health_errors: list[str] = []
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    rounds = max(1, int((args.seconds - 4) / 0.5))
    await asyncio.gather(
        probe_healthz(port, time.monotonic() + args.seconds - 4, healthz, health_errors),
        *(type_and_time(s, rounds, latencies, errors) for s in sessions),
    )
    cpu = (cpu_seconds(pid) - cpu) / (time.perf_counter() - wall) * 100
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    for s in sessions:
        await s.ws.close()
    return {"latencies": latencies, "errors": errors, "healthz": healthz, "health_errors": health_errors,
            "cpu": cpu, "fds": fds, "rss": rss_kib(pid) / 1024}


def report(result: dict, attacks: list[dict], args: argparse.Namespace) -> None:
    lat, hz = result["latencies"], result["healthz"]
    p95, p99 = percentile(lat, 95), percentile(hz, 99)
    total: Counter[str] = Counter()
    for a in attacks:
        total.update(a)
    print(f"hostile clients: {args.hostile} (each: {args.idle} idle sockets, {args.slowloris} slowloris, "
          f"2 ping floods, 2 oversized-frame senders; reconnect after {args.reconnect_delay} s)")
    print("attack: " + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
    print(f"real sessions: {args.sessions}; echo over {len(lat)} keystrokes: "
          f"p50 {percentile(lat, 50):.1f} ms, p95 {p95:.1f} ms, max {max(lat):.1f} ms; "
          f"stalled: {len(result['errors'])}")
    print(f"/healthz over {len(hz)} probes: p50 {percentile(hz, 50):.1f} ms, p99 {p99:.1f} ms, "
          f"max {max(hz):.1f} ms; failed: {len(result['health_errors'])} {Counter(result['health_errors'])}")
    print(f"gateway: CPU {result['cpu']:.0f} % of one core, {result['fds']} open files, "
          f"RSS {result['rss']:.0f} MiB; cpus: {os.cpu_count()}")
    print(f"goal: echo p95 <= 50 ms: {'met' if p95 <= 50 else 'NOT met'}; "
          f"/healthz p99 <= 100 ms: {'met' if p99 <= 100 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostile", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--slowloris", type=int, default=200)
    # slowloris.py re-opens the sockets the server closed every 15 s (its --sleeptime).
    parser.add_argument("--reconnect-delay", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--attacker-nice", type=int, default=19, help="niceness of the hostile processes")
    args = parser.parse_args()
    raise_fd_limit()
    port = free_port()
    env = {
        **os.environ,
        "LABXBLOCK_GATEWAY_TICKET_KEYS": KEY,
        "LABXBLOCK_GATEWAY_ALLOWED_ORIGINS": f"http://127.0.0.1:{port}",
        "LABXBLOCK_GATEWAY_GUACD": "127.0.0.1:1",  # never reached: no attacker has a ticket
        "LABXBLOCK_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "LABXBLOCK_GATEWAY_LOG_LEVEL": "warning",
        "LABXBLOCK_GATEWAY_ALLOWED_NETWORKS": "127.0.0.0/8",  # the benchmark's sshd
        "LABXBLOCK_GATEWAY_FORWARDED_ALLOW_IPS": "",  # no proxy: every address is a client's
    }
    with run_sshd(Path(tempfile.mkdtemp(prefix="bench-sshd-")), max_sessions=args.sessions + 20) as sshd:
        gateway = subprocess.Popen([str(Path(sys.executable).parent / "labxblock-gateway")], env=env)
        try:
            while not port_open(port):
                time.sleep(0.1)
            queue: multiprocessing.Queue = multiprocessing.Queue()
            attackers = [
                multiprocessing.Process(target=run_attacker, args=(
                    args.attacker_nice, port, f"127.0.1.{i + 1}", args.idle, args.slowloris,
                    args.reconnect_delay, args.seconds + 10, queue,
                ))
                for i in range(args.hostile)
            ]
            for p in attackers:
                p.start()
            result = asyncio.run(measure(port, sshd, gateway.pid, args))
            attacks = [queue.get(timeout=60) for _ in attackers]
            for p in attackers:
                p.join(10)
            report(result, attacks, args)
            print(json.dumps({"echo_p95_ms": round(percentile(result["latencies"], 95), 1),
                              "healthz_p99_ms": round(percentile(result["healthz"], 99), 1)}))
        finally:
            gateway.terminate()
            gateway.wait(10)


if __name__ == "__main__":
    main()
