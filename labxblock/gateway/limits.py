"""Connection limits below the ASGI app: caps, the header deadline, small messages before the ticket.

Why our own and not uvicorn's: ``limit_concurrency`` only answers 503 to a
*complete* HTTP request, never applies to websocket upgrades, and never closes a
socket; uvicorn sets no deadline at all for a connection that has not finished
its headers (its keep-alive timer starts only after a first answer, and any byte
received cancels it). Measured on uvicorn 0.54: 200 sockets that sent nothing or
half a request line were all open after 75 s. So uvicorn runs with two protocol
classes of ours (``protocol_classes``):

- HTTP (h11): refuse a socket over the total cap or over its client's cap, or over
  the smaller caps of sockets without an accepted ticket (in all, and per client:
  every socket counts there until its websocket's ticket is accepted), reset at
  once: no answer to write, no TIME_WAIT kept; on loopback a 503 cost more than
  the rest of the refusal. A client is an IPv4 address or an IPv6 network
  (``gateway.clients``). Close a connection that has not sent a request's
  headers within ``header_timeout_seconds`` of opening or of its last answer, and
  one whose request head grows past ``max_header_bytes``.
- websocket: messages may be at most ``ticket_max_bytes`` until the app says
  the ticket was accepted (then ``max_message_bytes``), and frames are never
  logged (the ``websockets`` protocol logs each frame at debug level).

Behind a trusted proxy every socket comes from the proxy, so the per-client caps
are not applied to the proxy's sockets; the app applies them to the client the
proxy names (``X-Forwarded-For``, read by uvicorn's proxy headers). Trusting every
address (``*``) lets any client name itself anyone: that is warned of at start.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import time
from collections import Counter
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from labxblock.gateway.clients import client_key
from labxblock.gateway.config import GatewayConfig
from labxblock.gateway.wsock import AUTHENTICATED

log = logging.getLogger("labxblock.gateway.limits")

FDS_PER_CONNECTION = 2  # the browser's socket and the one to guacd or the lab
FDS_RESERVED = 64  # listening socket, logs, DNS, Redis …
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def raise_fd_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # some containers forbid it: keep what we have
            log.warning("could not raise the open-file limit from %s: %s", soft, exc)
    return soft


class TrustedProxies:
    """``FORWARDED_ALLOW_IPS`` as uvicorn reads it: "*", or addresses and networks."""

    def __init__(self, spec: str) -> None:
        items = [s.strip() for s in spec.split(",") if s.strip()]
        self.everyone = "*" in items
        self.networks = []
        for item in items:
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                continue  # uvicorn also accepts literals such as unix socket paths

    def __contains__(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


class _RefusalLog:
    """One line per reason every few seconds, not one per refused socket (a flood must not flood the log)."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.counts: Counter[str] = Counter()
        self.last = 0.0

    def note(self, reason: str, address: str) -> None:
        self.counts[f"{reason} ({address})"] += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            summary = ", ".join(f"{n} x {what}" for what, n in self.counts.most_common(5))
            log.warning("connections closed by the gateway's limits: %s", summary)
            self.counts.clear()
            self.last = now


class ConnectionLimits:
    """Counts open sockets in all and per peer address; shared by the protocol classes of one server."""

    def __init__(self, config: GatewayConfig, *, fd_limit: int | None = None) -> None:
        self.config = config
        self.max_total = config.max_connections
        if fd_limit is not None:
            fit = max(1, (fd_limit - FDS_RESERVED) // FDS_PER_CONNECTION)
            if fit < self.max_total:
                log.warning(
                    "LABXBLOCK_GATEWAY_MAX_CONNECTIONS=%s does not fit %s open files; using %s",
                    self.max_total, fd_limit, fit,
                )  # fmt: skip
                self.max_total = fit
        self.trusted = TrustedProxies(config.forwarded_allow_ips)
        if self.trusted.everyone:
            log.warning(
                "LABXBLOCK_GATEWAY_FORWARDED_ALLOW_IPS=* trusts X-Forwarded-For from any address: a client "
                "can name itself anyone and escape the per-client caps; name the reverse proxies instead"
            )  # fmt: skip
        self.per_peer: Counter[str] = Counter()
        self.pending_per_peer: Counter[str] = Counter()
        self.open: dict[int, str] = {}  # socket -> its client's key ("" for a trusted proxy's)
        self.pending: set[int] = set()  # sockets whose ticket has not been accepted (yet)
        self.refusals = _RefusalLog()

    def admit(self, transport: asyncio.Transport) -> bool:
        """Count a new socket (waiting for its ticket), or say no (over a cap)."""
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        key = client_key(host, self.config.ipv6_client_prefix)
        refusal = self._over_cap(key, capped=host not in self.trusted)
        if refusal:
            self.refusals.note(refusal, key)
            return False
        self.open[id(transport)] = key if host not in self.trusted else ""
        self.pending.add(id(transport))
        if self.open[id(transport)]:
            self.per_peer[key] += 1
            self.pending_per_peer[key] += 1
        return True

    def _over_cap(self, key: str, *, capped: bool) -> str | None:
        """Which cap a new socket of ``key`` would break, if any."""
        if len(self.open) >= self.max_total:
            return "total cap"
        if len(self.pending) >= self.config.max_pending_connections:
            return "cap before the ticket"
        if capped and self.per_peer[key] >= self.config.max_connections_per_address:
            return "per-address cap"
        if capped and self.pending_per_peer[key] >= self.config.max_pending_per_address:
            return "per-address cap before the ticket"
        return None

    def authenticated(self, transport: Any) -> None:
        """The socket's ticket was accepted: it no longer counts under the caps before the ticket."""
        if id(transport) in self.pending:
            self.pending.discard(id(transport))
            _decrement(self.pending_per_peer, self.open.get(id(transport), ""))

    def release(self, transport: Any) -> None:
        self.authenticated(transport)
        key = self.open.pop(id(transport), None)
        _decrement(self.per_peer, key or "")


def _decrement(counts: Counter[str], key: str) -> None:
    if key:
        counts[key] -= 1
        if counts[key] <= 0:
            del counts[key]


def _set_max_size(conn: Any, size: int) -> None:
    # websockets >= 15 reads max_message_size per frame; older versions max_size.
    if hasattr(conn, "max_message_size"):
        conn.max_message_size = size
    else:
        conn.max_size = size


def protocol_classes(limits: ConnectionLimits) -> tuple[type[H11Protocol], type[WebSocketsSansIOProtocol]]:
    """uvicorn's h11 and websockets-sansio protocols with the limits above."""

    class GuardedHTTP(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _head_bytes = 0  # received while waiting for a request's headers

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._waiting = True

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if not limits.admit(transport):
                transport.abort()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._waiting:
                # h11's own limit only counts an *incomplete* head: one large write passes it.
                self._head_bytes += len(data)
                if self._head_bytes > limits.config.max_header_bytes:
                    limits.refusals.note("request head too large", str(self.client[0] if self.client else ""))
                    self._disarm()
                    self.transport.write(_TOO_LARGE)
                    self.transport.close()
                    return
            before = self.scope
            super().data_received(data)
            self._progress(before)

        def on_response_complete(self) -> None:
            before = self.scope
            self._arm()  # the next request's headers get the same deadline
            super().on_response_complete()
            self._progress(before)

        def handle_websocket_upgrade(self, event: Any) -> None:
            self._disarm()  # from here the websocket protocol owns the socket (and releases it)
            super().handle_websocket_upgrade(event)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self.transport is not None and self.transport.get_protocol() is self:
                limits.release(self.transport)
            super().connection_lost(exc)

        def _progress(self, before: Any) -> None:
            if self.scope is not before:  # a request's headers arrived
                self._disarm()
                self._waiting = False

        def _arm(self) -> None:
            self._disarm()
            self._waiting, self._head_bytes = True, 0
            if not self.transport.is_closing():
                self._deadline = self.loop.call_later(limits.config.header_timeout_seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                peer = self.client[0] if self.client else ""
                limits.refusals.note("no request headers in time", str(peer))
                self.transport.close()

    class GuardedWebSocket(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn.debug = False  # never log frames: they hold keystrokes and the ticket
            _set_max_size(self.conn, limits.config.ticket_max_bytes)

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            scope = getattr(self, "scope", None)
            if scope is not None:  # read by the app's task, which has not started yet
                scope["extensions"][AUTHENTICATED] = self._authenticated

        def _authenticated(self) -> None:
            _set_max_size(self.conn, limits.config.max_message_bytes)
            limits.authenticated(self.transport)

        def connection_lost(self, exc: Exception | None) -> None:
            limits.release(self.transport)
            super().connection_lost(exc)

    return GuardedHTTP, GuardedWebSocket
