"""Terminal tickets: the only thing the gateway trusts.

The block mints a ticket for the lab's owner; the gateway verifies it and learns
everything it needs for one connection (protocol, host, port, user, key or
password, read-only, display options). Pure ``cryptography``: importable by the
block (Django) and by the gateway (no Django).

Why Fernet (AES-128-CBC + HMAC-SHA256): it is authenticated encryption with a
signed timestamp and an expiry check that takes the current time as an
argument (``decrypt_at_time``), and ``MultiFernet`` gives key rotation (first
key mints, every key verifies). AES-GCM would be shorter but needs our own
timestamp, nonce and rotation code; tickets are small and short-lived, so the
standard construction wins.

Time to open: each ticket carries its own ``ttl`` (1-60 s, the site's
``ticket_ttl_seconds``); the verifier honours it, never more than 60 s.

Single use: every ticket has a random id; ``verify_ticket`` claims it in a
replay guard, which remembers it until the ticket could no longer be valid.
The in-process ``ReplayGuard`` only covers one process; the gateway claims in
Redis when it runs as several (``labxblock.gateway.replay``), so it splits the
steps: ``open_ticket`` → claim → ``check_binding``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

MAX_TTL_SECONDS = 60
# Fernet accepts timestamps up to 60 s in the future; the guard must remember
# an id for as long as such a ticket could still be accepted.
_CLOCK_SKEW_SECONDS = 60
PROTOCOLS = frozenset({"ssh", "rdp", "vnc"})
# Options a ticket may carry (Guacamole parameter names), each with the values
# it accepts: a set of words, or a pattern. Connection parameters (hostname,
# port, read-only …) are fields of their own, never here.
_WORD = re.compile(r"^[A-Za-z0-9_.+\-/ ]{0,64}$")
_NUMBER = re.compile(r"^[0-9]{1,5}$")
_BOOLEAN = frozenset({"true", "false", ""})
_FINGERPRINTS = re.compile(r"^[a-z0-9]{3,8}:[0-9A-Fa-f:]{16,200}(,[a-z0-9]{3,8}:[0-9A-Fa-f:]{16,200}){0,7}$")
OPTION_VALUES: Mapping[str, frozenset[str] | re.Pattern[str]] = {
    "color-scheme": re.compile(r"^[A-Za-z0-9_\-#:;,/ ]{0,512}$"),
    "font-name": _WORD,
    "font-size": _NUMBER,
    "scrollback": _NUMBER,
    "terminal-type": _WORD,
    "backspace": _NUMBER,
    "locale": _WORD,
    "timezone": _WORD,
    "color-depth": frozenset({"8", "16", "24", "32"}),
    "enable-wallpaper": _BOOLEAN,
    "enable-font-smoothing": _BOOLEAN,
    "disable-audio": _BOOLEAN,
    # RDP: how the desktop follows the browser's size, and the lab's certificate.
    "resize-method": frozenset({"display-update", "reconnect", ""}),
    "security": frozenset({"any", "nla", "tls", "rdp"}),
    "ignore-cert": _BOOLEAN,
    "cert-fingerprints": _FINGERPRINTS,
}
DISPLAY_OPTIONS = frozenset(OPTION_VALUES)
_MODE_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_VERSION = 1


class TicketError(Exception):
    """A ticket was refused. ``str(error)`` is safe to log: it never holds the ticket."""

    reason = "invalid"


class TicketInvalid(TicketError):
    """Not a ticket made with any of our keys, tampered with, or malformed."""


class TicketExpired(TicketError):
    """Authentic, but older than the allowed time to open."""

    reason = "expired"


class TicketReplayed(TicketError):
    """Authentic, but already used once."""

    reason = "replayed"


class TicketWrongBinding(TicketError):
    """Authentic, but minted for another learner or another stack."""

    reason = "wrong-binding"


class TicketWrongLearner(TicketWrongBinding):
    """Minted for another learner."""


class TicketWrongStack(TicketWrongBinding):
    """Minted for another stack than the page that presents it."""


class ReplayGuardFull(TicketError):
    """The replay guard cannot remember more ids: refuse rather than allow a replay."""

    reason = "busy"


@dataclass(frozen=True)
class Ticket:
    """What one verified ticket allows. Secrets are left out of ``repr``."""

    ticket_id: str
    learner_id: str
    stack_name: str
    protocol: str
    host: str
    port: int
    username: str
    issued_at: float
    ttl: int = MAX_TTL_SECONDS
    private_key: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    host_key: str | None = None
    read_only: bool = False
    display: Mapping[str, str] = field(default_factory=dict)

    @property
    def expires_at(self) -> float:
        """When the ticket stops opening a connection."""
        return self.issued_at + self.ttl

    @property
    def remember_until(self) -> float:
        """How long a replay guard must remember the id (Fernet accepts some clock skew)."""
        return self.expires_at + _CLOCK_SKEW_SECONDS


class ReplayGuardLike(Protocol):
    """Anything that can claim a ticket id once (in-process, Redis …)."""

    def claim(self, ticket_id: str, *, expires_at: float, now: float) -> bool:
        """Return True the first time ``ticket_id`` is claimed before ``expires_at``."""
        ...


class ReplayGuard:
    """Remembers used ticket ids until they expire; bounded, thread-safe."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, ticket_id: str, *, expires_at: float, now: float) -> bool:
        with self._lock:
            self._purge(now)
            if ticket_id in self._seen:
                return False
            if len(self._seen) >= self._max:
                # Rare: sweep everything before refusing.
                self._seen = {t: e for t, e in self._seen.items() if e > now}
            if len(self._seen) >= self._max:
                raise ReplayGuardFull("too many tickets in flight")
            self._seen[ticket_id] = expires_at
            return True

    def _purge(self, now: float) -> None:
        # Ids arrive in roughly expiry order, so expired ones sit at the front.
        while self._seen:
            tid = next(iter(self._seen))
            if self._seen[tid] > now:
                break
            del self._seen[tid]


def _fernet(keys: Sequence[str | bytes] | str | bytes) -> MultiFernet:
    if isinstance(keys, str | bytes):
        keys = [keys]
    if not keys:
        raise ValueError("at least one ticket key is required")
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ValueError("ticket keys must be Fernet keys (Fernet.generate_key())") from exc


def generate_key() -> str:
    """A fresh ticket key, to put first in the shared key list."""
    return Fernet.generate_key().decode("ascii")


def mint_ticket(
    keys: Sequence[str | bytes] | str | bytes,
    *,
    learner_id: str,
    stack_name: str,
    protocol: str,
    host: str,
    port: int,
    username: str,
    private_key: str | None = None,
    password: str | None = None,
    host_key: str | None = None,
    read_only: bool = False,
    display: Mapping[str, Any] | None = None,
    ttl: int = MAX_TTL_SECONDS,
    now: float | None = None,
) -> str:
    """Encrypt a single-use ticket for one connection, to be opened within ``ttl`` seconds."""
    if not learner_id or not stack_name or not host or not username:
        raise ValueError("learner_id, stack_name, host and username are required")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("port must be an integer in 1..65535")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be an integer in 1..{MAX_TTL_SECONDS} seconds")
    options = {str(k): _display_value(v) for k, v in (display or {}).items()}
    unknown = set(options) - DISPLAY_OPTIONS
    if unknown:
        raise ValueError(f"unknown display options: {sorted(unknown)}")
    for name, value in options.items():
        if not _option_ok(name, value):
            raise ValueError(f"display option {name!r}: value not accepted")
    payload = {
        "v": _VERSION,
        "id": secrets.token_urlsafe(16),
        "lrn": str(learner_id),
        "stk": str(stack_name),
        "pro": protocol,
        "hst": host,
        "prt": port,
        "usr": username,
        "key": private_key,
        "pwd": password,
        "hk": host_key,
        "ro": bool(read_only),
        "ttl": ttl,
        "dsp": options,
    }
    data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    at = int(time.time() if now is None else now)
    return _fernet(keys).encrypt_at_time(data, at).decode("ascii")


def _display_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError("display option values must be strings, numbers or booleans")


def _option_ok(name: str, value: str) -> bool:
    rule = OPTION_VALUES.get(name)
    if rule is None:
        return False
    return value in rule if isinstance(rule, frozenset) else rule.fullmatch(value) is not None


def open_ticket(keys: Sequence[str | bytes] | str | bytes, token: str, *, now: float | None = None) -> Ticket:
    """Decrypt and check the ticket's own time to open (at most 60 s); no replay claim yet."""
    at = time.time() if now is None else now
    fernet = _fernet(keys)
    raw = token.encode("ascii", "replace") if isinstance(token, str) else b""
    try:
        issued_at = fernet.extract_timestamp(raw)
    except InvalidToken:
        raise TicketInvalid("ticket not authentic") from None
    try:
        data = fernet.decrypt_at_time(raw, MAX_TTL_SECONDS, int(at))
    except InvalidToken:
        # Authentic (timestamp extraction checks the HMAC) but out of time.
        raise TicketExpired("ticket expired") from None
    ticket = _parse(data, issued_at)
    if int(at) > ticket.expires_at:  # Fernet's own check uses whole seconds too
        raise TicketExpired("ticket expired")
    return ticket


def check_binding(ticket: Ticket, *, stack_name: str, learner_id: str | None = None) -> Ticket:
    """The ticket must be for the stack whose page presents it (and the learner, when known)."""
    if ticket.stack_name != stack_name:
        raise TicketWrongStack("ticket is for another stack")
    if learner_id is not None and ticket.learner_id != str(learner_id):
        raise TicketWrongLearner("ticket is for another learner")
    return ticket


def verify_ticket(
    keys: Sequence[str | bytes] | str | bytes,
    token: str,
    *,
    replay_guard: ReplayGuardLike,
    stack_name: str,
    learner_id: str | None = None,
    now: float | None = None,
) -> Ticket:
    """Decrypt, check expiry, claim for single use, check the binding.

    ``stack_name`` is the stack the presenting page was opened for;
    ``learner_id``, when the caller knows it, must match too. The claim comes
    before the binding check, so a ticket tried on another stack is spent.
    """
    at = time.time() if now is None else now
    ticket = open_ticket(keys, token, now=at)
    if not replay_guard.claim(ticket.ticket_id, expires_at=ticket.remember_until, now=at):
        raise TicketReplayed(f"ticket {ticket.ticket_id[:6]}… already used")
    return check_binding(ticket, stack_name=stack_name, learner_id=learner_id)


def _parse(data: bytes, issued_at: float) -> Ticket:
    try:
        p = json.loads(data)
        if p.get("v") != _VERSION:
            raise ValueError("version")
        ticket = Ticket(
            ticket_id=_str(p["id"]),
            learner_id=_str(p["lrn"]),
            stack_name=_str(p["stk"]),
            protocol=_str(p["pro"]),
            host=_str(p["hst"]),
            port=int(p["prt"]),
            username=_str(p["usr"]),
            issued_at=float(issued_at),
            ttl=_ttl(p.get("ttl", MAX_TTL_SECONDS)),
            private_key=p.get("key"),
            password=p.get("pwd"),
            host_key=p.get("hk"),
            read_only=p["ro"] is True,
            display={_str(k): _str(v) for k, v in p.get("dsp", {}).items() if _option_ok(k, _str(v))},
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise TicketInvalid("ticket payload malformed") from None
    if ticket.protocol not in PROTOCOLS or not 0 < ticket.port < 65536:
        raise TicketInvalid("ticket payload malformed")
    return ticket


def _ttl(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("ttl must be an integer")
    return max(1, min(MAX_TTL_SECONDS, value))  # never more than 60 s, whatever was minted


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def rdp_options(*, security: str, ignore_cert: bool, cert_fingerprints: str = "") -> dict[str, str]:
    """What an RDP ticket carries about the lab's certificate and its desktop size.

    Fingerprints (``sha256:ab:cd:…``, comma-separated, from the template) pin the
    certificate and win over ``ignore_cert``; malformed ones pin nothing and accept
    nothing (the connection fails visibly rather than trusting any certificate).
    An unknown ``security`` (Studio only warns) is negotiated (``any``): never an error here.
    """
    allowed = OPTION_VALUES["security"]
    options = {"security": security if security in allowed else "any", "resize-method": "display-update"}
    fingerprints = ",".join(f.strip() for f in cert_fingerprints.split(",") if f.strip())
    if fingerprints:
        options["ignore-cert"] = "false"
        if _FINGERPRINTS.fullmatch(fingerprints):
            options["cert-fingerprints"] = fingerprints
    else:
        options["ignore-cert"] = "true" if ignore_cert else "false"
    return options


def iframe_url(gateway_url: str, mode: str, ticket: str, *, stack_name: str, read_only: bool = False) -> str:
    """The iframe ``src`` for a lab: the ticket rides in the fragment, which no server sees.

    ``mode`` is ``guac`` (Guacamole via guacd) or ``console`` (built-in SSH).
    The path names the stack, and the gateway refuses a ticket for another one.
    ``read_only`` only tells the page not to attach keyboard and mouse; the
    ticket's own flag is what the gateway and guacd enforce.
    """
    if not _MODE_RE.match(mode):
        raise ValueError("mode must be a short lowercase word")
    fragment = f"ticket={ticket}" + ("&ro=1" if read_only else "")
    return f"{gateway_url.rstrip('/')}/{mode}/{quote(stack_name, safe='')}/#{fragment}"
