"""Stopping what the demo started, by the demo or, if it died without doing so, by its watchdog.

The watchdog is a small process the demo starts first, in a session of its own (a
Ctrl-C or a kill of the demo's process group does not reach it), reading a pipe from
the demo: the pid of each child as it starts, then ``done`` once the demo stopped
them itself. End of file without ``done`` means the demo was killed outright
(SIGKILL, a test's timeout, a closed terminal): the watchdog stops the children and
deletes the demo's labs, so nothing the demo started is left running with parent 1.

Linux only, like the local provider: liveness is read from /proc.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_SECONDS = 10.0  # a Celery worker finishes its running tasks in that time, or is killed


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie has: only its exit status is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def stop_children(pids: Iterable[int], timeout: float = STOP_SECONDS) -> None:
    """Stop each child (a session leader) and whatever is left in its process group.

    SIGTERM goes to the child alone: a Celery worker then stops its own pool processes
    (signalling the whole group would kill them under it, and it logs each as an error).
    """
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:  # the late ones, and what a child left behind in its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def delete_labs(directory: Path) -> int:
    """Delete the demo's local labs (their SSH servers and tmux); the next start makes new ones."""
    from labxblock.providers.local import LocalProvider

    provider = LocalProvider("default", {"root": str(directory / "labs")})
    labs = provider.list("labxblock-demo")
    for info in labs:
        provider.delete(info.ref)
    return len(labs)


def die_with_parent() -> None:
    """In a child, before exec: SIGTERM when the demo dies (the watchdog then finishes the job)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Watchdog:
    """The demo's end of the pipe."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        log = (directory / "logs" / "watchdog.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labxblock.demo.watchdog", str(directory)], env=env, stdin=subprocess.PIPE,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.pipe: IO[bytes] = self.proc.stdin  # type: ignore[assignment]

    def watch(self, pid: int) -> None:
        self._say(str(pid))

    def done(self) -> None:
        """The demo stopped everything itself: the watchdog exits."""
        self._say("done")
        with contextlib.suppress(OSError):
            self.pipe.close()
        self.proc.wait()

    def _say(self, word: str) -> None:
        with contextlib.suppress(OSError):
            self.pipe.write(word.encode() + b"\n")
            self.pipe.flush()


def main(argv: list[str]) -> int:
    """The watchdog: ``python -m labxblock.demo.watchdog <demo directory>``, the pipe on stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the demo's Ctrl-C is the demo's to handle
    directory = Path(argv[0])
    pids: list[int] = []
    for line in sys.stdin:
        word = line.strip()
        if word == "done":
            return 0
        if word.isdigit():
            pids.append(int(word))
    print(f"the demo died; stopping {len(pids)} process(es) it started and its labs", flush=True)
    stop_children(pids)
    print(f"deleted {delete_labs(directory)} lab(s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
