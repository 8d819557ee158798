"""Progress checks: the author's scripts, run one by one inside a learner's lab over SSH (paramiko).

Pure of Django and Celery: the task hands in a ``CheckTarget`` (where the lab is,
its key) and ``CheckSpec``s, and gets ``CheckResult``s back.

Who runs them: whatever account the ``CheckTarget`` names. The labs layer gives
the template's check account when there is one, so the learner's account, which
the learner controls (``command="exit 0"`` in its ``authorized_keys`` passes every
check), is not the one checked with. The script stays out of the learner's reach:
it never appears in a process's arguments and is written into the login account's
own temporary directory, which no other account can open. A learner with root in
the lab defeats all of this (README, "Progress checks").

How one script runs: it travels on the channel's stdin into a private temporary
directory (``mktemp -d`` makes it ``0700``, owned by the login account; /tmp's
sticky bit stops another account swapping it), is written under ``umask 077``
and made ``chmod 700``, and runs under ``timeout`` (TERM, then KILL; GNU
``timeout`` signals the whole process group, so children go too). A script with a ``#!`` line runs under that
interpreter, named explicitly so a ``noexec`` /tmp does not matter; one without
runs under ``/bin/sh``. The directory is removed when the script ends. The lab
needs a POSIX ``/bin/sh``, ``mktemp`` and ``timeout`` (coreutils or busybox).

Time: every wait has a bound — connecting by ``connect_timeout``, each script by
its own timeout plus a short grace — so a run never holds a worker longer than
``time_budget()``. Output is read while the script runs and capped per stream
(the head of stdout, the tail of stderr, where the error usually is); what is
beyond the cap is read and dropped, so a chatty script still finishes.

Host keys: the lab's key must match its ``host_key`` (the template's output, or
the key the worker recorded when the lab first answered, see ``hostkeys``), else
nothing runs (``HostKeyMismatch``). Without one there is nothing to verify
against (an RDP lab's SSH port is never probed), so the key is accepted and a
warning logged: authors should output it.
Hosts behind the lab (a check's ``host``) are reached through the lab's SSH
connection (``direct-tcpip``, like ``ssh -J``) with the same user and key (the
check account's, when there is one); their keys are accepted unverified, as the
template has no key for them and the path to them runs through the verified lab.

Neither key nor password is ever logged or put into an exception message.
"""

from __future__ import annotations

import io
import logging
import math
import select
import shlex
import time
from dataclasses import dataclass, field

import paramiko

from labxblock.hostkeys import parse_host_key

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30
OUTPUT_CAP = 64 * 1024
KILL_GRACE_SECONDS = 2  # after the timeout's TERM, KILL this much later
SLACK_SECONDS = 3  # per script: copying it over, round trips, the KILL arriving
TIMEOUT_STATUSES = (124, 137)  # GNU timeout: TERM worked / KILL was needed
NO_STATUS = -1
READ_SIZE = 32 * 1024


class LabUnreachable(Exception):
    """The lab itself could not be reached or logged in to: nothing was checked, nothing scored.

    ``reason`` is one of ``unreachable``, ``auth``, ``host_key``.
    """

    reason = "unreachable"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class HostKeyMismatch(LabUnreachable):
    """The lab's host key is not the one its template gave: refuse to send it anything."""

    reason = "host_key"


@dataclass(frozen=True)
class CheckTarget:
    """Where the checks run: the lab's public address, user and secrets (never shown in a repr)."""

    host: str
    port: int
    username: str
    private_key: str = field(repr=False, default="")
    password: str = field(repr=False, default="")
    host_key: str = ""  # "ssh-ed25519 AAAA…" (a known_hosts line works too); "" = not verifiable
    label: str = ""  # for logs only, e.g. the stack name


@dataclass(frozen=True)
class CheckSpec:
    """One author check. ``host``: run it on ``[user@]host[:port]`` behind the lab instead."""

    name: str
    script: str
    weight: float = 1.0
    hint: str = ""
    host: str = ""
    timeout: float = DEFAULT_TIMEOUT_SECONDS


@dataclass(frozen=True)
class CheckResult:
    """What became of one check. ``error`` says why it could not run at all (then ``passed`` is False)."""

    name: str
    passed: bool
    weight: float
    exit_status: int | None
    timed_out: bool
    stdout: str
    stderr: str
    truncated: bool
    seconds: float
    error: str = ""


def time_budget(checks: list[CheckSpec], connect_timeout: float) -> float:
    """The longest a run of ``checks`` can take: connections plus each script's timeout and slack."""
    hosts = {c.host for c in checks if c.host}
    scripts = sum(c.timeout + KILL_GRACE_SECONDS + SLACK_SECONDS for c in checks)
    return connect_timeout * (1 + len(hosts)) + scripts


def run_checks(
    target: CheckTarget, checks: list[CheckSpec], *, connect_timeout: float = 10.0,
    output_cap: int = OUTPUT_CAP,
) -> list[CheckResult]:
    """Run ``checks`` in order; raise ``LabUnreachable`` if the lab cannot be reached or is lost."""
    session = _Session(target, connect_timeout)
    try:
        session.lab()
        results = []
        for spec in checks:
            try:
                client = session.client(spec.host)
            except (OSError, EOFError, ValueError, paramiko.SSHException) as exc:
                log.info("labxblock: check %r: cannot reach %s behind %s: %s",
                         spec.name, spec.host, target.label, exc)
                results.append(_not_run(spec, f"cannot reach {spec.host}"))
                continue
            try:
                results.append(_run_one(client, spec, output_cap, connect_timeout))
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if not spec.host:  # the lab went away mid-run (suspended, rebooted): not the learner's fault
                    raise LabUnreachable(f"lost the connection to the lab: {exc}") from None
                results.append(_not_run(spec, f"lost the connection to {spec.host}"))
        return results
    finally:
        session.close()


def score(results: list[CheckResult]) -> float:
    """Weighted share of passed checks, in [0, 1]."""
    total = sum(r.weight for r in results if r.weight > 0)
    return sum(r.weight for r in results if r.passed and r.weight > 0) / total if total else 0.0


# --- one script ---


def remote_command(spec: CheckSpec) -> str:
    """The command line that stores the script arriving on stdin privately and runs it under timeout."""
    seconds = max(1, math.ceil(spec.timeout))
    runner = " ".join([*(shlex.quote(word) for word in _interpreter(spec.script)), '"$d/check"'])
    inner = (
        "umask 077; d=$(mktemp -d) || exit 125; trap 'rm -rf \"$d\"' EXIT; "
        'cat > "$d/check" && chmod 700 "$d/check" && '
        f"timeout -k {KILL_GRACE_SECONDS} {seconds} {runner} < /dev/null"
    )
    return "/bin/sh -c " + shlex.quote(inner)


def _interpreter(script: str) -> list[str]:
    """The ``#!`` line as the kernel reads it (program plus at most one argument); else /bin/sh."""
    if not script.startswith("#!"):
        return ["/bin/sh"]
    line = script[2:].split("\n", 1)[0].strip()
    words = line.split(None, 1)
    return words or ["/bin/sh"]


class _Capped:
    """At most ``cap`` bytes of a stream: its head or its tail, and whether anything was dropped."""

    def __init__(self, cap: int, *, tail: bool) -> None:
        self.cap, self.tail, self.total, self.data = cap, tail, 0, bytearray()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.tail:
            self.data += chunk[-self.cap:]
            del self.data[: max(0, len(self.data) - self.cap)]
        elif len(self.data) < self.cap:
            self.data += chunk[: self.cap - len(self.data)]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.data)

    def text(self) -> str:
        return bytes(self.data).decode("utf-8", errors="replace")


def _run_one(client: paramiko.SSHClient, spec: CheckSpec, cap: int, connect_timeout: float) -> CheckResult:
    transport = client.get_transport()
    assert transport is not None
    started = time.monotonic()
    channel = transport.open_session(timeout=connect_timeout)
    try:
        channel.settimeout(connect_timeout)  # bounds sending the script; reads below never block
        channel.exec_command(remote_command(spec))
        # CRLF from a pasted script would put "\r" into the interpreter's name and every line.
        try:
            channel.sendall(spec.script.replace("\r\n", "\n").encode())
            channel.shutdown_write()
        except OSError:
            # A command may end before it reads the whole script (a forced command in
            # authorized_keys, a shell that exits early): its exit status is still its answer.
            if not (channel.exit_status_ready() or channel.closed) or not transport.is_active():
                raise
        out, err = _Capped(cap, tail=False), _Capped(cap, tail=True)
        deadline = started + spec.timeout + KILL_GRACE_SECONDS + SLACK_SECONDS
        cut_off = not _drain(channel, out, err, deadline)
        status = channel.recv_exit_status() if channel.exit_status_ready() else NO_STATUS
    finally:
        channel.close()  # on our cut-off this also ends the remote shell's stdin and output
    seconds = time.monotonic() - started
    timed_out = cut_off or (status in TIMEOUT_STATUSES and seconds >= spec.timeout - 0.5)
    return CheckResult(
        name=spec.name, passed=status == 0 and not timed_out, weight=spec.weight,
        exit_status=None if status == NO_STATUS else status, timed_out=timed_out,
        stdout=out.text(), stderr=err.text(), truncated=out.truncated or err.truncated, seconds=seconds,
    )


def _drain(channel: paramiko.Channel, out: _Capped, err: _Capped, deadline: float) -> bool:
    """Read both streams until the command ends; False if ``deadline`` came first."""
    while True:
        busy = False
        if channel.recv_ready():
            out.add(channel.recv(READ_SIZE))
            busy = True
        if channel.recv_stderr_ready():
            err.add(channel.recv_stderr(READ_SIZE))
            busy = True
        if busy:
            continue
        if channel.exit_status_ready() and (channel.eof_received or channel.closed):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        select.select([channel], [], [], min(0.5, remaining))


def _not_run(spec: CheckSpec, error: str) -> CheckResult:
    return CheckResult(name=spec.name, passed=False, weight=spec.weight, exit_status=None, timed_out=False,
                       stdout="", stderr="", truncated=False, seconds=0.0, error=error)


# --- connections ---


class _AcceptUnverified(paramiko.MissingHostKeyPolicy):
    """No key to verify against: accept, and warn for the lab itself (its template should give one)."""

    def __init__(self, label: str, warn: bool) -> None:
        self.label, self.warn = label, warn

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self.warn:
            log.warning("labxblock: lab %s has no host_key output; its %s key %s is accepted unverified",
                        self.label or hostname, key.get_name(), key.fingerprint)


def _private_key(text: str) -> paramiko.PKey | None:
    if not text.strip():
        return None
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise LabUnreachable("the lab's private key cannot be read", "auth")


def split_host(spec: str, default_user: str) -> tuple[str, str, int]:
    """``[user@]host[:port]`` (``[v6]:port`` too) as (user, host, port)."""
    user, _, rest = spec.rpartition("@")
    host, port = rest, 22
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") else 22
    elif rest.count(":") == 1:
        host, _, number = rest.partition(":")
        port = int(number)
    return user or default_user, host, port


class _Session:
    """The SSH connection to the lab, and one per host behind it, reused across checks."""

    def __init__(self, target: CheckTarget, connect_timeout: float) -> None:
        self.target, self.timeout = target, connect_timeout
        self.pkey = _private_key(target.private_key)
        self.clients: dict[str, paramiko.SSHClient] = {}

    def _connect(self, client: paramiko.SSHClient, host: str, port: int, user: str, **kwargs: object) -> None:
        client.connect(
            host, port=port, username=user, pkey=self.pkey, password=self.target.password or None,
            timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout,
            channel_timeout=self.timeout, allow_agent=False, look_for_keys=False, **kwargs,
        )

    def lab(self) -> paramiko.SSHClient:
        if "" in self.clients:
            return self.clients[""]
        t = self.target
        client = paramiko.SSHClient()
        if t.host_key.strip():
            try:
                key = parse_host_key(t.host_key)
            except ValueError:
                raise HostKeyMismatch("the lab's host_key is not a public key") from None
            name = t.host if t.port == 22 else f"[{t.host}]:{t.port}"
            client.get_host_keys().add(name, key.get_name(), key)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(_AcceptUnverified(t.label, warn=True))
        try:
            self._connect(client, t.host, t.port, t.username)
        except (paramiko.BadHostKeyException, HostKeyMismatch):
            client.close()
            raise HostKeyMismatch("the lab's host key is not the one recorded for it") from None
        except paramiko.AuthenticationException:
            client.close()
            raise LabUnreachable("the lab refused the login", "auth") from None
        except paramiko.SSHException as exc:
            client.close()
            # RejectPolicy raises a plain SSHException for a key type it was not given.
            if "not found in known_hosts" in str(exc):
                raise HostKeyMismatch("the lab offered a host key of another type than its own") from None
            raise LabUnreachable(f"cannot reach the lab: {exc}") from None
        except (OSError, EOFError) as exc:
            client.close()
            raise LabUnreachable(f"cannot reach the lab: {exc}") from None
        self.clients[""] = client
        return client

    def client(self, host: str) -> paramiko.SSHClient:
        """The connection a check with ``host`` runs on ("" is the lab itself)."""
        if host in self.clients:
            return self.clients[host]
        user, name, port = split_host(host, self.target.username)
        transport = self.lab().get_transport()
        assert transport is not None
        sock = transport.open_channel("direct-tcpip", (name, port), ("127.0.0.1", 0), timeout=self.timeout)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_AcceptUnverified(self.target.label, warn=False))
        try:
            self._connect(client, name, port, user, sock=sock)
        except BaseException:
            client.close()
            sock.close()
            raise
        self.clients[host] = client
        return client

    def close(self) -> None:
        # Hosts behind the lab first: their connections run inside the lab's.
        for key in sorted(self.clients, key=lambda k: k == ""):
            self.clients[key].close()
        self.clients.clear()
