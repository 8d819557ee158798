"""Where the gateway may connect (or send guacd): the lab address check.

A ticket's host comes from the lab template's outputs, which a course author
writes, so the gateway checks it before every connection with
``labxblock.addresses.AddressPolicy``: the operator's
``LABXBLOCK_GATEWAY_ALLOWED_NETWORKS`` over the built-in refusals (loopback,
link-local and cloud metadata, multicast …). The name is resolved once, without
blocking the event loop; every address must pass, and the gateway connects to
(or hands guacd) the checked address, never the name again.

Refused too, whatever the networks allow: guacd's own endpoint and the
gateway's own listening endpoint (address *and* port: the local demo and the
tests run labs, guacd and the gateway on 127.0.0.1, on other ports).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

from labxblock.addresses import AddressPolicy, AddressRefused, normalise

Endpoint = tuple[str, int]


class LabAddressRefused(Exception):
    """The lab's address may not be contacted; ``str()`` says why (for the log, not the learner)."""


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal address to itself), asynchronously."""
    try:
        return [str(normalise(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise LabAddressRefused(f"lab address {host!r} does not resolve: {exc}") from None
    return list(dict.fromkeys(str(normalise(str(info[4][0]))) for info in infos))


def _same_host(a: str, b: str) -> bool:
    if a == b:
        return True
    # A socket listening on every address (0.0.0.0, ::) answers on loopback too.
    return ipaddress.ip_address(b).is_unspecified and ipaddress.ip_address(a).is_loopback


class Destinations:
    """The policy, and the endpoints of guacd and of the gateway itself."""

    def __init__(self, policy: AddressPolicy, own: Iterable[Endpoint] = ()) -> None:
        self.policy = policy
        self.own: set[Endpoint] = set(own)

    def add_own(self, endpoints: Iterable[Endpoint]) -> None:
        self.own.update((str(normalise(a)), p) for a, p in endpoints)

    async def check(self, host: str, port: int, *, also_own: Iterable[Endpoint] = ()) -> str:
        """The address to connect to for ``host``:``port``, or LabAddressRefused."""
        addresses = await resolve(host, port)
        try:
            address, _ = self.policy.check(host, port, resolver=lambda _host: addresses)
        except AddressRefused as exc:
            raise LabAddressRefused(str(exc)) from None
        own = self.own | {(str(normalise(a)), p) for a, p in also_own}
        for candidate in addresses:
            if any(p == port and _same_host(candidate, a) for a, p in own):
                raise LabAddressRefused(
                    f"lab address {candidate}:{port} is the gateway's or guacd's own endpoint"
                )
        return address
