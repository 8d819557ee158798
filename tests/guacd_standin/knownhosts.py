"""guacd's ``host-key`` check, as ``src/common-ssh/key.c`` does it with libssh2.

``libssh2_knownhost_readline`` reads the parameter as one OpenSSH known_hosts
line: the first field is the host part (comma-separated names, or ``|1|salt|hash``),
then the key; then ``libssh2_knownhost_checkp(hostname, port)`` looks for
``[hostname]:port`` first, then the plain ``hostname``, and compares the key of
a matching entry of the same type. So a bare ``ssh-ed25519 AAAA…`` is read as a
host called ``ssh-ed25519`` and gives "Host key not found". Every outcome other
than a match makes guacd abort with status 512 (SERVER_ERROR).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

MATCH, MISMATCH, NOT_FOUND, FAILURE = "match", "mismatch", "not found", "failure"
_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


@dataclass(frozen=True)
class Entry:
    name: str  # a plain host name, or the raw SHA-1 HMAC of a hashed one
    salt: bytes | None
    key_type: str
    key: str


def read_line(line: str) -> list[Entry]:
    """The entries libssh2 adds for ``line``; ValueError where it fails to parse (status < 0)."""
    line = line.lstrip(" \t")
    if not line or line[0] in "#\n":
        return []
    host, _, rest = line.partition(" ")
    rest = rest.lstrip(" \t").split("\n", 1)[0]
    if not rest:
        raise ValueError("Failed to parse known_hosts line")
    if len(rest) < 20:
        raise ValueError("Failed to parse known_hosts line (key too short)")
    key_type, _, key = rest.partition(" ")
    key = key.lstrip(" \t").split(" ", 1)[0]
    if host.startswith("|1|"):
        salt_b64, _, hash_b64 = host[3:].partition("|")
        return [Entry(base64.b64decode(hash_b64).hex(), base64.b64decode(salt_b64), key_type, key)]
    return [Entry(name, None, key_type, key) for name in host.split(",") if name]


def check(host_key: str, hostname: str, port: int, remote_type: str, remote_key: str) -> str:
    """``libssh2_knownhost_checkp`` for the remote server's key (type and base64 blob)."""
    try:
        entries = read_line(host_key)
    except (ValueError, TypeError):
        return FAILURE
    bad_key = False
    for name in (f"[{hostname}]:{port}", hostname):  # port given: "[host]:port" first, then plain
        for entry in entries:
            if not _name_matches(entry, name):
                continue
            if entry.key_type not in _KEY_TYPES or entry.key_type != remote_type:
                continue  # "never match on an unknown key type"; only the same type counts
            if entry.key == remote_key:
                return MATCH
            bad_key = True
    return MISMATCH if bad_key else NOT_FOUND


def _name_matches(entry: Entry, name: str) -> bool:
    if entry.salt is None:
        return entry.name == name
    digest = hmac.new(entry.salt, name.encode(), hashlib.sha1).hexdigest()
    return hmac.compare_digest(digest, entry.name)


def log_line(outcome: str, hostname: str) -> str:
    """What guacd logs for an outcome (key.c)."""
    return {
        MATCH: f"Host key match found for {hostname}",
        NOT_FOUND: f"Host key not found for {hostname}.",
        MISMATCH: f"Host key does not match known hosts entry for {hostname}",
        FAILURE: f"Host {hostname} could not be checked against known hosts.",
    }[outcome]
