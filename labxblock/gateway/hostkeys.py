"""A lab's SSH host key in the form each consumer wants.

The ticket may carry either form a template (or the worker's first probe) gives:
the bare ``<type> <base64>`` or an OpenSSH known_hosts line ``<host> <type>
<base64>`` / ``[host]:port <type> <base64>``, one key a line. asyncssh (console
mode) wants the bare keys; guacd's ``host-key`` is read by libssh2 as one
known_hosts line and checked for the host name and port guacd was given
(``src/common-ssh/key.c``), so it gets a line naming the checked address we hand
it, ``[address]:port`` when the port is not 22. A bare key there would be read as
a host called ``ssh-ed25519`` and fail with "Host key not found".
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass

_TYPE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.\-]+)$")
# Preferred for guacd, which takes a single line: what OpenSSH offers first.
_PREFERENCE = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


class HostKeyError(ValueError):
    """The ticket's host key is not a key we can read (the message names no key material)."""


@dataclass(frozen=True)
class HostKey:
    """One public host key: its type name and its base64 blob."""

    type: str
    blob: str

    @property
    def bare(self) -> str:
        return f"{self.type} {self.blob}"

    def known_hosts_line(self, address: str, port: int) -> str:
        """The line guacd (libssh2) matches against the host and port it connects to."""
        host = address if port == 22 else f"[{address}]:{port}"
        return f"{host} {self.type} {self.blob}"


def parse_host_keys(text: str) -> list[HostKey]:
    """Every key in ``text``: bare keys or known_hosts lines, one a line; ``#`` comments skipped."""
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0].startswith("@"):
            raise HostKeyError(f"host key line {number}: markers such as {fields[0]} are not supported")
        if not _TYPE.match(fields[0]):
            fields = fields[1:]  # a known_hosts line: the host names come first
        if len(fields) < 2 or not _TYPE.match(fields[0]):
            raise HostKeyError(f"host key line {number}: expected '[host] <type> <base64>'")
        keys.append(HostKey(fields[0], _checked_blob(fields[0], fields[1], number)))
    if not keys:
        raise HostKeyError("the host key is empty")
    return keys


def _checked_blob(key_type: str, blob: str, number: int) -> str:
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
        inner = raw[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise HostKeyError(f"host key line {number}: the key is not valid base64 key data") from None
    if inner != key_type:
        raise HostKeyError(f"host key line {number}: the key data is of type {inner!r}, not {key_type!r}")
    return blob


def for_guacd(keys: list[HostKey], address: str, port: int) -> str:
    """One known_hosts line for guacd (it reads one): the key type OpenSSH prefers."""
    ranked = sorted(keys, key=lambda k: _PREFERENCE.index(k.type) if k.type in _PREFERENCE else 99)
    return ranked[0].known_hosts_line(address, port)
