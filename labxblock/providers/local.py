"""The local provider: each lab is an OpenSSH server on 127.0.0.1, run on this host.

For development, demos and tests — **not isolation**: the lab's shell runs as the
OS user of the Celery worker (HOME is the lab's own directory, but nothing stops
it from reading the rest of what that user can). Like JupyterHub's
LocalProcessSpawner beside its cloud spawners.

One directory per lab under ``root`` (``<root>/<stack name>/``) holds everything:
``state.json`` (id, tags, created_at, status, sshd pid), the ed25519 keys, the
sshd config and log, the login script and ``home/``. The provider keeps nothing
in memory, so a restarted worker (or another process) finds every lab again.
Worker threads and processes change a lab's state one at a time (an flock on the
lab's ``.lock``), each writing a new state file under a name of its own and moving
it into place.

- ``create`` starts sshd in the background and returns at once: CREATING until
  sshd has written its pid file (it does so once it listens), READY after.
- ``suspend`` SIGSTOPs every process of the lab, ``resume`` SIGCONTs them: shells,
  editors and whatever runs in them continue where they were.
- ``delete`` SIGKILLs them and removes the directory.

The login script keeps interactive sessions in a per-lab tmux session when tmux
is installed, so a learner who leaves and comes back finds the same shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labxblock.lifecycle import State
from labxblock.providers import local_procs as procs
from labxblock.providers import local_template as tmpl
from labxblock.providers.base import (
    CheckReport,
    NotFound,
    PermanentError,
    Provider,
    StackInfo,
    StackRef,
    StackSpec,
    TemplateProblem,
    TemporaryError,
)

DEFAULT_ROOT = "~/.local/share/labxblock/local-labs"
DEFAULT_SSHD = "/usr/sbin/sshd"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Our raw statuses (for operators): starting, running, suspended, exited.


def keypair() -> tuple[str, str]:
    """A fresh ed25519 key: (private in OpenSSH format, public ``ssh-ed25519 …``)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (sshd binds it a moment later; a lost race fails the lab)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sshd_config(lab: Path, lab_id: str, port: int, user: str, extra: Mapping[str, str]) -> str:
    """The lab's private sshd_config. Ours come first: sshd keeps the first value it reads."""
    lines = [
        # Before the login shell starts: it must not read the worker's own dotfiles.
        f"SetEnv HOME={lab}/home {procs.MARKER}={lab_id}",
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {lab}/host_ed25519",
        f"PidFile {lab}/sshd.pid",
        f"AuthorizedKeysFile {lab}/authorized_keys",
        f"ForceCommand {lab}/login.sh",
        f"AllowUsers {user}",
        "PermitRootLogin prohibit-password",  # only matters when the worker runs as root
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "StrictModes no",  # the lab directory is the worker's, not a home sshd would accept
        "UsePAM no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "PermitUserEnvironment no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
    ]
    lines += [f"{key} {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


# A Unix socket's path holds at most 107 bytes; deep lab directories (pytest's, say) pass that.
SOCKET_PATH_MAX = 100


def tmux_socket(lab: Path) -> Path:
    """Where the lab's tmux server listens: in the lab, or in a short per-user directory."""
    path = lab / "tmux.sock"
    if len(os.fsencode(path)) <= SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(lab)).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"labxblock-tmux-{os.getuid()}" / f"{digest}.sock"


def login_script(lab: Path, lab_id: str) -> str:
    """sshd's ForceCommand: marks the session as the lab's, keeps interactive shells in tmux."""
    q = shlex.quote
    return f"""#!/bin/sh
# Every process started from here carries the marker: that is how suspend finds them.
export {procs.MARKER}={q(lab_id)} HOME={q(str(lab / "home"))}
cd "$HOME" || exit 1
if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec "${{SHELL:-/bin/sh}}" -c "$SSH_ORIGINAL_COMMAND"; fi
if [ -t 0 ] && command -v tmux >/dev/null 2>&1; then
  (umask 077 && mkdir -p {q(str(tmux_socket(lab).parent))})
  exec tmux -S {q(str(tmux_socket(lab)))} -f {q(str(lab / "tmux.conf"))} new-session -A -s lab
fi
exec "${{SHELL:-/bin/sh}}" -l
"""


TMUX_CONF = "set -g status off\nset -g escape-time 0\nset -g history-limit 5000\n"


class LocalProvider(Provider):
    """Labs as sshd processes on this host. Config: ``root``, ``sshd`` (see docs/quickstart.md)."""

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Return (sub-key, what is expected) for each problem in ``config``."""
        problems = []
        for key in ("root", "sshd"):
            if key in config and not (isinstance(config[key], str) and config[key]):
                problems.append((key, "a path"))
        sshd = config.get("sshd", DEFAULT_SSHD)
        if isinstance(sshd, str) and not os.access(sshd, os.X_OK):
            problems.append(("sshd", f"an executable OpenSSH server ({sshd} is not; Debian: openssh-server)"))
        return problems

    @property
    def root(self) -> Path:
        return Path(os.path.expanduser(str(self.config.get("root") or DEFAULT_ROOT)))

    def _dir(self, name: str) -> Path:
        if not _NAME.match(name):
            raise PermanentError(f"{self.name}: {name!r} is not a stack name the local provider accepts")
        return self.root / name

    # --- state on disk -----------------------------------------------------------------

    @staticmethod
    def _read(lab: Path) -> dict[str, Any] | None:
        try:
            return json.loads((lab / "state.json").read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None  # absent, or a create that has not written it yet

    @staticmethod
    def _write(lab: Path, state: Mapping[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=lab)  # a name no writer shares
        try:
            with os.fdopen(fd, "w") as out:
                out.write(json.dumps(state, indent=1))
            os.replace(tmp, lab / "state.json")  # atomic: a reader sees the old or the new state
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    @contextlib.contextmanager
    def _locked(lab: Path) -> Iterator[None]:
        """The lab's lock (flock: other threads and processes wait) around reading and changing its state."""
        try:
            fd = os.open(lab / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except (FileNotFoundError, NotADirectoryError):  # no lab: nothing to guard, the caller finds none
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _info(self, lab: Path, state: Mapping[str, Any]) -> StackInfo:
        """The lab in our own words, from its state file and /proc."""
        ref = StackRef(state["name"], {"id": state["id"]})
        pid, start = state.get("sshd_pid"), state.get("sshd_start")
        common = {"ref": ref, "tags": tuple(state.get("tags", ())),
                  "created_at": datetime.fromisoformat(state["created_at"])}
        if not pid or not procs.alive(pid, start):
            return StackInfo(state=State.FAILED, raw_status="exited", reason=self._why(lab, state), **common)
        if state["status"] == "suspended":
            return StackInfo(state=State.SUSPENDED, raw_status="suspended", **common)  # outputs: when ready
        if self._listening(lab, pid):
            return StackInfo(state=State.READY, raw_status="running", outputs=self._outputs(lab), **common)
        return StackInfo(state=State.CREATING, raw_status="starting", **common)

    @staticmethod
    def _listening(lab: Path, pid: int) -> bool:
        # sshd writes its pid file once it listens.
        with contextlib.suppress(OSError, ValueError):
            return int((lab / "sshd.pid").read_text().strip()) == pid
        return False

    @staticmethod
    def _outputs(lab: Path) -> dict[str, Any]:
        with contextlib.suppress(OSError, json.JSONDecodeError):
            return json.loads((lab / "outputs.json").read_text())
        return {}

    @staticmethod
    def _why(lab: Path, state: Mapping[str, Any]) -> str:
        try:
            log = (lab / "sshd.log").read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            log = []
        return f"{state.get('server', 'sshd')}: sshd exited: " + (" / ".join(log) or "no message")

    def _find(self, ref: StackRef) -> tuple[Path, dict[str, Any]] | None:
        lab = self._dir(ref.name)
        state = self._read(lab)
        if state is None or (ref.data.get("id") and ref.data["id"] != state["id"]):
            return None  # gone, or another stack that took the name since
        return lab, state

    # --- the interface -------------------------------------------------------------------

    def create(self, spec: StackSpec) -> StackRef:
        """Write the lab's directory and start its sshd in the background; return at once."""
        plan = tmpl.parse(spec.template, spec.parameters)
        lab = self._dir(spec.name)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            lab.mkdir(mode=0o700)
        except FileExistsError:  # a retried create: hand back the stack of that name
            state = self._read(lab)
            if state is None:
                raise TemporaryError(f"{self.name}: {spec.name} is being created", delay=1) from None
            return StackRef(spec.name, {"id": state["id"]})
        try:
            return self._create(lab, spec, plan)
        except Exception:
            shutil.rmtree(lab, ignore_errors=True)  # nothing half-made stays behind
            raise

    def validate(
        self, template: str, environment: str | None = None, given: Collection[str] = ()
    ) -> list[TemplateProblem]:
        """What ``create`` would refuse in the template (local_template's format); nothing is started."""
        return tmpl.check(template, given)

    def _create(self, lab: Path, spec: StackSpec, plan: tmpl.LabPlan) -> StackRef:
        lab_id, user, port = uuid.uuid4().hex, getpass.getuser(), free_port()
        user_private, user_public = keypair()
        host_private, host_public = keypair()
        (lab / "home").mkdir(mode=0o700)
        for name, text, mode in (
            ("host_ed25519", host_private, 0o600),  # sshd refuses a readable host key
            ("authorized_keys", user_public + "\n", 0o600),
            ("sshd_config", sshd_config(lab, lab_id, port, user, plan.sshd_options), 0o600),
            ("login.sh", login_script(lab, lab_id), 0o700),
            ("tmux.conf", TMUX_CONF, 0o600),
        ):
            path = lab / name
            path.write_text(text)
            path.chmod(mode)
        server = {"public_ip": "127.0.0.1", "first_address": "127.0.0.1", "port": port, "user": user,
                  "private_key": user_private, "public_key": user_public, "host_key": host_public}
        outputs = tmpl.outputs(plan, tmpl.attributes(plan, server))
        out = lab / "outputs.json"
        out.touch(mode=0o600)  # holds the lab's private key
        out.write_text(json.dumps(outputs))
        state = {"id": lab_id, "name": spec.name, "tags": list(spec.tags), "server": plan.server,
                 "created_at": datetime.now(UTC).isoformat(), "status": "created", "port": port}
        sshd = str(self.config.get("sshd") or DEFAULT_SSHD)
        if os.geteuid() == 0:  # sshd's privilege separation directory, which a container may lack
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        pid = self._spawn(lab, sshd, plan.boot_seconds)
        proc = procs.read_proc(pid)
        state.update(sshd_pid=pid, sshd_start=proc.start if proc else 0)
        self._write(lab, state)
        return StackRef(spec.name, {"id": lab_id})

    @staticmethod
    def _spawn(lab: Path, sshd: str, delay: float) -> int:
        """Start ``sshd -D`` after ``delay`` s, detached: in its own session, not our child."""
        # The outer shell exits at once; its background subshell becomes sshd (exec) and is
        # adopted by init, so no zombie waits on this process and a worker restart kills nothing.
        script = 'sleep "$1"; exec "$2" -D -e -f "$3"'
        launcher = (f'({script}) </dev/null >"$4" 2>&1 & echo $!')
        out = subprocess.run(
            ["/bin/sh", "-c", launcher, "sh", f"{delay:g}", sshd, str(lab / "sshd_config"),
             str(lab / "sshd.log")],
            capture_output=True, text=True, timeout=10, start_new_session=True, check=True,
        )
        return int(out.stdout.strip())

    def get(self, ref: StackRef) -> StackInfo:
        """Read the lab now (state file and /proc); a missing lab is DELETED."""
        found = self._find(ref)
        if found is None:
            return StackInfo(ref=ref, state=State.DELETED, reason="not found")
        return self._info(*found)

    def list(self, tag: str) -> list[StackInfo]:
        """Every lab under ``root`` tagged ``tag`` (one directory scan)."""
        if not self.root.is_dir():
            return []
        infos = []
        for lab in sorted(self.root.iterdir()):
            if lab.name.startswith("."):
                continue  # a lab being deleted
            state = self._read(lab)
            if state is not None and tag in state.get("tags", ()):
                infos.append(self._info(lab, state))
        return infos

    def check(self, tag: str) -> CheckReport:
        """The OpenSSH server runs, the root directory is writable, the labs there, the free disk."""
        sshd = str(self.config.get("sshd") or DEFAULT_SSHD)
        if not os.access(sshd, os.X_OK):
            return CheckReport(False, (f"sshd: {sshd} is not an executable (Debian: openssh-server)",))
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            return CheckReport(False, (f"root: cannot create {self.root}: {exc.strerror}",))
        if not os.access(self.root, os.W_OK | os.X_OK):
            return CheckReport(False, (f"root: {self.root} is not writable by this user",))
        free = shutil.disk_usage(self.root).free / 2**30
        return CheckReport(True, (f"sshd: {sshd}", f"list: {len(self.list(tag))} lab(s) tagged {tag}",
                                  f"quota: {free:.1f} GiB free under {self.root}"))

    def describe(self) -> str:
        """The directory its labs live in, on this host."""
        return f"local labs under {self.root}"

    def _running(self, ref: StackRef, doing: str) -> tuple[Path, dict[str, Any]]:
        found = self._find(ref)
        if found is None:
            raise NotFound(f"{self.name}: {doing}: no lab {ref.name}")
        info = self._info(*found)
        if info.state == State.CREATING:
            raise TemporaryError(f"{self.name}: {doing}: {ref.name} is still starting", delay=2)
        if info.state == State.FAILED:
            raise PermanentError(f"{self.name}: {doing}: {ref.name} failed: {info.reason}")
        return found

    def suspend(self, ref: StackRef) -> None:
        """Stop every process of the lab with SIGSTOP."""
        with self._locked(self._dir(ref.name)):  # the state written is what the processes are
            lab, state = self._running(ref, "suspend")
            self._write(lab, {**state, "status": "suspended"})  # first: a crash mid-way still thaws on resume
            procs.freeze(state["id"], state["sshd_pid"], state["sshd_start"])

    def resume(self, ref: StackRef) -> None:
        """Continue every process of the lab with SIGCONT."""
        with self._locked(self._dir(ref.name)):
            lab, state = self._running(ref, "resume")
            procs.thaw(state["id"], state["sshd_pid"], state["sshd_start"])
            self._write(lab, {**state, "status": "running"})

    def delete(self, ref: StackRef) -> None:
        """Kill the lab's processes and remove its directory; a lab already gone is done."""
        with self._locked(self._dir(ref.name)):  # a suspend or resume under way finishes first
            found = self._find(ref)
            if found is None:
                return
            lab, state = found
            socket_path = tmux_socket(lab)
            # Renamed first (atomic), so get() and list() stop seeing it before it is half gone.
            doomed = lab.with_name(f".{lab.name}.deleting-{state['id']}")
            with contextlib.suppress(FileNotFoundError):
                lab.rename(doomed)
        if not procs.kill(state["id"], state.get("sshd_pid"), state.get("sshd_start")):
            with contextlib.suppress(OSError):
                doomed.rename(lab)  # visible again, so the retry finds what is left to kill
            raise TemporaryError(f"{self.name}: delete: processes of {ref.name} survived SIGKILL", delay=2)
        shutil.rmtree(doomed, ignore_errors=True)
        socket_path.unlink(missing_ok=True)
