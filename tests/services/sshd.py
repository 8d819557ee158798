"""Debian's OpenSSH server on 127.0.0.1, in a private directory, for console and check tests.

``run_sshd(workdir)`` is a context manager (the benchmark uses it too); the
``sshd`` fixture wraps it for the whole session. It logs in the current user
(root in CI containers, hence ``PermitRootLogin prohibit-password``) with a
freshly generated ed25519 key; no password login, no PAM, no DNS.

``run_accounts_sshd()`` and the ``accounts_sshd`` fixture are a lab as a careful
author builds one: two real Unix users made for the test with ``useradd`` (so it
needs root), a learner whose keys are in their own ``~/.ssh/authorized_keys``,
theirs to edit, and a check account whose keys are in a root-owned file
(``AuthorizedKeysFile .ssh/authorized_keys /…/keys/%u``).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.services import missing_service
from tests.services.process import ServiceProcess, free_port

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class SshdServer:
    host: str
    port: int
    username: str
    private_key: str  # OpenSSH format, as a lab template's output would give it
    host_key: str  # "ssh-ed25519 AAAA…", for tickets' host_key
    workdir: Path


@dataclass(frozen=True)
class Account:
    """A real Unix user of the accounts server, and the private key that logs it in."""

    name: str
    home: Path
    private_key: str = field(repr=False)


@dataclass(frozen=True)
class AccountsServer:
    """An sshd that logs in a learner and a check account, each a real user with its own key."""

    host: str
    port: int
    host_key: str
    learner: Account
    checker: Account

    @property
    def learner_keys(self) -> Path:
        """The learner's own ``authorized_keys``: the learner may write anything into it."""
        return self.learner.home / ".ssh" / "authorized_keys"


def _keypair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()



def _config(workdir: Path, port: int, max_sessions: int, *, accounts: str) -> str:
    """``accounts``: the lines saying who may log in, with which keys file and HOME."""
    return f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {workdir}/host_ed25519
PidFile {workdir}/sshd.pid
{accounts}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
# Local forwarding: progress checks reach a target host through the lab (a jump host).
AllowTcpForwarding local
AllowAgentForwarding no
# Many sessions from one address (the benchmark opens hundreds at once).
MaxStartups {max_sessions}:100:{max_sessions * 2}
PerSourceMaxStartups none
MaxSessions 10
LogLevel ERROR
"""


@contextlib.contextmanager
def _serve(workdir: Path, accounts: str, max_sessions: int = 64) -> Iterator[tuple[int, str]]:
    """Run ``sshd -D`` with a fresh host key and config in ``workdir``; yield its port and host key."""
    workdir.mkdir(parents=True, exist_ok=True)
    host_private, host_public = _keypair()
    host_key_file = workdir / "host_ed25519"
    host_key_file.write_text(host_private)
    host_key_file.chmod(0o600)  # sshd refuses readable host keys
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(_config(workdir, port, max_sessions, accounts=accounts))
    # Privilege separation directory; packaged sshd expects it and the image may lack it.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    argv = [str(SSHD), "-D", "-e", "-f", str(config)]
    server = ServiceProcess("sshd", argv, workdir / "sshd.log").start(lambda: _speaks_ssh(port), timeout=10)
    try:
        yield port, host_public
    finally:
        server.stop(timeout=5)


@contextlib.contextmanager
def run_sshd(workdir: Path, *, max_sessions: int = 64) -> Iterator[SshdServer]:
    """Start ``sshd -D`` with its own config and keys in ``workdir``; stop it afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    user_private, user_public = _keypair()
    (workdir / "authorized_keys").write_text(user_public + "\n")
    (workdir / "home").mkdir(exist_ok=True)
    accounts = f"""\
AuthorizedKeysFile {workdir}/authorized_keys
PermitRootLogin prohibit-password
# A private HOME: sessions never run this machine's own shell start-up files, which
# may be slow or broken (a stale pyenv rehash lock made every login wait 60 s).
SetEnv HOME={workdir}/home"""
    with _serve(workdir, accounts, max_sessions) as (port, host_public):
        yield SshdServer("127.0.0.1", port, getpass.getuser(), user_private, host_public, workdir)


def _speaks_ssh(port: int) -> bool:
    """Ready means listening and greeting with its banner, not merely bound."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
        return conn.recv(4).startswith(b"SSH-")
    return False

def _add_user(name: str, home: Path) -> None:
    """A user whose home (0700) is theirs; ``*`` = no password, yet not locked (sshd refuses ``!``)."""
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                    "--user-group", "--password", "*", name], check=True, capture_output=True, text=True)
    home.mkdir(mode=0o700)
    shutil.chown(home, name, name)


def _remove_user(name: str) -> None:
    """Kill what still runs as ``name`` (by pid: a check's leftovers), then delete the user and group."""
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if proc.name.isdigit() and proc.stat().st_uid == uid:
                os.kill(int(proc.name), signal.SIGKILL)
    subprocess.run(["userdel", name], check=False, capture_output=True)
    subprocess.run(["groupdel", name], check=False, capture_output=True)  # if userdel left it


def _write_keys(path: Path, public_key: str, owner: str, mode: int) -> None:
    path.parent.mkdir(mode=0o700 if owner != "root" else 0o755, exist_ok=True)
    path.write_text(public_key + "\n")
    path.chmod(mode)
    shutil.chown(path.parent, owner, owner)
    shutil.chown(path, owner, owner)


@contextlib.contextmanager
def run_accounts_sshd(workdir: Path) -> Iterator[AccountsServer]:
    """Make a learner and a check account, serve them over SSH, delete both afterwards."""
    # The homes need a parent every user can pass through; pytest's own tmp dirs are root's, 0700.
    base = Path(tempfile.mkdtemp(prefix="labxblock-accounts-"))
    base.chmod(0o755)
    tag = secrets.token_hex(3)
    learner, checker = f"lxl{tag}", f"lxc{tag}"
    try:
        made = {}
        for name in (learner, checker):
            _add_user(name, base / name)
            private, public = _keypair()
            made[name] = Account(name, base / name, private)
            if name == learner:  # their own file: theirs to edit
                _write_keys(base / name / ".ssh" / "authorized_keys", public, name, 0o600)
            else:  # root's file, readable by sshd acting as the user: the user cannot change it
                _write_keys(base / "keys" / name, public, "root", 0o644)
        config = (f"AuthorizedKeysFile .ssh/authorized_keys {base}/keys/%u\n"
                  f"PermitRootLogin no\nAllowUsers {learner} {checker}")
        with _serve(workdir, config) as (port, host_public):
            yield AccountsServer("127.0.0.1", port, host_public, made[learner], made[checker])
    finally:
        for name in (learner, checker):
            _remove_user(name)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def accounts_sshd(tmp_path: Path) -> Iterator[AccountsServer]:
    """A learner and a check account on a running sshd (real users: needs root, as in CI)."""
    _need_sshd()
    if os.geteuid() != 0:
        missing_service("the learner and check accounts are real users: creating them needs root")
    for tool in ("useradd", "userdel"):
        if shutil.which(tool) is None:
            missing_service(f"{tool} not installed (Debian package passwd)")
    with run_accounts_sshd(tmp_path / "sshd") as server:
        yield server


def _need_sshd() -> None:
    if not SSHD.exists() or not os.access(SSHD, os.X_OK):
        missing_service(f"{SSHD} not installed (Debian package openssh-server)")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """A running OpenSSH server that accepts ``sshd.private_key`` for ``sshd.username``."""
    _need_sshd()
    if os.geteuid() != 0 and not Path("/run/sshd").is_dir():
        missing_service("sshd needs /run/sshd (create it as root once)")
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
