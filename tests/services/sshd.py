"""Debian's OpenSSH server on 127.0.0.1, in a private directory, for console tests.

``run_sshd(workdir)`` is a context manager (the benchmark uses it too); the
``sshd`` fixture wraps it for the whole session. It logs in the current user
(root in CI containers, hence ``PermitRootLogin prohibit-password``) with a
freshly generated ed25519 key; no password login, no PAM, no DNS.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
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


def _keypair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()



def _config(workdir: Path, port: int, max_sessions: int) -> str:
    return f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {workdir}/host_ed25519
PidFile {workdir}/sshd.pid
AuthorizedKeysFile {workdir}/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
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
# A private HOME: sessions never run this machine's own shell start-up files, which
# may be slow or broken (a stale pyenv rehash lock made every login wait 60 s).
SetEnv HOME={workdir}/home
AllowAgentForwarding no
# Many sessions from one address (the benchmark opens hundreds at once).
MaxStartups {max_sessions}:100:{max_sessions * 2}
PerSourceMaxStartups none
MaxSessions 10
LogLevel ERROR
"""


@contextlib.contextmanager
def run_sshd(workdir: Path, *, max_sessions: int = 64) -> Iterator[SshdServer]:
    """Start ``sshd -D`` with its own config and keys in ``workdir``; stop it afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    host_private, host_public = _keypair()
    user_private, user_public = _keypair()
    host_key_file = workdir / "host_ed25519"
    host_key_file.write_text(host_private)
    host_key_file.chmod(0o600)  # sshd refuses readable host keys
    (workdir / "authorized_keys").write_text(user_public + "\n")
    (workdir / "home").mkdir(exist_ok=True)
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(_config(workdir, port, max_sessions))
    # Privilege separation directory; packaged sshd expects it and the image may lack it.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    argv = [str(SSHD), "-D", "-e", "-f", str(config)]
    server = ServiceProcess("sshd", argv, workdir / "sshd.log").start(lambda: _speaks_ssh(port), timeout=10)
    try:
        yield SshdServer("127.0.0.1", port, getpass.getuser(), user_private, host_public, workdir)
    finally:
        server.stop(timeout=5)


def _speaks_ssh(port: int) -> bool:
    """Ready means listening and greeting with its banner, not merely bound."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
        return conn.recv(4).startswith(b"SSH-")
    return False

@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """A running OpenSSH server that accepts ``sshd.private_key`` for ``sshd.username``."""
    if not SSHD.exists() or not os.access(SSHD, os.X_OK):
        missing_service(f"{SSHD} not installed (Debian package openssh-server)")
    if os.geteuid() != 0 and not Path("/run/sshd").is_dir():
        missing_service("sshd needs /run/sshd (create it as root once)")
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
