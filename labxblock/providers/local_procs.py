"""Finding, freezing, thawing and killing a local lab's processes through /proc.

A lab's processes are its sshd and everything under it, plus anything that
carries the lab's marker in its environment (``LABXBLOCK_LAB=<id>``, set by the
lab's login script): OpenSSH's session children call setsid(), and tmux's server
daemonises away from its parent, so neither the process group nor the session
nor ancestry alone finds them all. Linux only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
MARKER = "LABXBLOCK_LAB"


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str  # one letter: R running, S sleeping, T stopped, Z zombie…
    start: int  # clock ticks after boot: tells a pid from a reused one


def read_proc(pid: int) -> Proc | None:
    """The process ``pid`` now, or None if it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may hold spaces and parentheses: fields start after the last ")".
    fields = raw[raw.rindex(")") + 2:].split()
    return Proc(pid=pid, ppid=int(fields[1]), state=fields[0], start=int(fields[19]))


def alive(pid: int, start: int) -> bool:
    """Whether ``pid`` is still the process that started at ``start`` (and not a zombie)."""
    proc = read_proc(pid)
    return proc is not None and proc.start == start and proc.state not in ("Z", "X")


def _all() -> list[Proc]:
    procs = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (proc := read_proc(int(entry.name))) is not None:
            procs.append(proc)
    return procs


def _marked(pid: int, marker: bytes) -> bool:
    try:
        return marker in (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:  # gone, or another user's process
        return False


def lab_processes(lab_id: str, sshd_pid: int | None, sshd_start: int | None) -> list[Proc]:
    """Every live process of the lab: sshd first, then parents before their children."""
    procs = [p for p in _all() if p.state not in ("Z", "X") and p.pid != os.getpid()]
    children: dict[int, list[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    marker = f"{MARKER}={lab_id}".encode()
    roots = [p for p in procs if _marked(p.pid, marker)]
    if sshd_pid is not None:
        sshd = next((p for p in procs if p.pid == sshd_pid and p.start == sshd_start), None)
        roots = ([sshd] if sshd else []) + roots
    found: dict[int, Proc] = {}
    queue = list(roots)
    while queue:
        proc = queue.pop(0)
        if proc.pid not in found:
            found[proc.pid] = proc
            queue.extend(children.get(proc.pid, ()))
    return list(found.values())


def signal_all(procs: list[Proc], signum: int) -> None:
    """Send ``signum`` to each process that is still the one we found."""
    for proc in procs:
        if alive(proc.pid, proc.start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signum)


def freeze(lab_id: str, sshd_pid: int, sshd_start: int) -> list[Proc]:
    """SIGSTOP the lab: sshd first (so it forks nothing new), then until no process is left running."""
    stopped: dict[int, Proc] = {}
    for _ in range(10):  # a process forked between our scan and its parent's stop: scan again
        fresh = [p for p in lab_processes(lab_id, sshd_pid, sshd_start) if p.pid not in stopped]
        if not fresh:
            break
        signal_all(fresh, signal.SIGSTOP)
        stopped.update((p.pid, p) for p in fresh)
    return list(stopped.values())


def thaw(lab_id: str, sshd_pid: int, sshd_start: int) -> None:
    """SIGCONT every process of the lab, children first so no parent waits on a stopped child."""
    signal_all(list(reversed(lab_processes(lab_id, sshd_pid, sshd_start))), signal.SIGCONT)


def kill(lab_id: str, sshd_pid: int | None, sshd_start: int | None, wait_seconds: float = 2.0) -> bool:
    """SIGKILL every process of the lab (stopped ones too); True once none is left."""
    deadline = time.monotonic() + wait_seconds
    while procs := lab_processes(lab_id, sshd_pid, sshd_start):
        signal_all(procs, signal.SIGKILL)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # a killed process lingers a moment while the kernel tears it down
    return True
