"""Lab SSH host keys: read the one a lab shows (trust on first use), parse and describe them.

When a template outputs no ``host_key``, the worker's first successful probe of
the lab reads the key with an SSH key exchange and no login (what ``ssh-keyscan``
does). That first answer comes over the cloud's network before the learner has
the lab, so the key is the lab's own; it is stored as the lab's ``host_key``
output, and every later connection (checks, the gateway, guacd) must see it again.

Keys travel as ``"<type> <base64>"`` (an ``authorized_keys``/``.pub`` line); a
``known_hosts`` line is accepted on input too. Pure: paramiko, no Django.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import itertools
import logging
import socket

import paramiko

log = logging.getLogger(__name__)


def parse_host_key(text: str) -> paramiko.PKey:
    """The public key in ``"<type> <base64> [comment]"`` or a known_hosts line; ValueError if none."""
    tokens = text.split()
    for kind, blob in itertools.pairwise(tokens):
        try:
            return paramiko.PKey.from_type_string(kind, base64.b64decode(blob, validate=True))
        except (paramiko.UnknownKeyType, paramiko.SSHException, binascii.Error, ValueError):
            continue
    raise ValueError("no public key found")


def known_hosts_line(text: str, host: str, port: int) -> str:
    """The key in ``text`` as a known_hosts line for ``host`` on ``port``; ValueError if none.

    ``[host]:port <type> <base64>`` when the port is not 22, as OpenSSH and libssh2 match it.
    """
    key = parse_host_key(text)
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {key.get_name()} {key.get_base64()}"


def describe(text: str) -> str:
    """``"<type> SHA256:<fingerprint>"``, as ``ssh-keygen -l`` shows it, for logs and events."""
    kind, _, blob = text.strip().partition(" ")
    try:
        digest = hashlib.sha256(base64.b64decode(blob.split()[0], validate=True)).digest()
    except (binascii.Error, ValueError, IndexError):
        return "(not a public key)"
    return f"{kind} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


def read_host_key(address: str, port: int, timeout: float) -> str | None:
    """The host key the SSH server at ``address:port`` shows (no login); None if it does not answer.

    Every wait (connect, banner, key exchange) is bounded by ``timeout``.
    """
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError:
        return None
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.handshake_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        return f"{key.get_name()} {key.get_base64()}"
    except (paramiko.SSHException, OSError, EOFError) as exc:
        log.debug("labxblock: no SSH host key from %s:%s: %s", address, port, exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            transport.close()
        sock.close()


__all__ = ["describe", "known_hosts_line", "parse_host_key", "read_host_key"]
